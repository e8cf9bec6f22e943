# SPDX-License-Identifier: GPL-3.0-or-later
"""The job runner's parsing: credentials files as systemd reads them, and verify intervals."""
import pytest

from cairn.job import load_env_file, parse_interval


def test_env_file_reads_as_systemd_does(tmp_path):
    path = tmp_path / "c.env"
    path.write_text(
        "# comment\n"
        "; also a comment\n"
        'PASSPHRASE="a \\"quoted\\" pass with \\\\ and $HOME"\n'
        "SINGLE='no \\\\ escapes $HOME'\n"
        "PLAIN=value=with=equals\n"
        "\n"
        "EMPTY=\"\"\n")
    env = load_env_file(path)
    assert env == {"PASSPHRASE": 'a "quoted" pass with \\ and $HOME', "SINGLE": "no \\\\ escapes $HOME",
                   "PLAIN": "value=with=equals", "EMPTY": ""}


@pytest.mark.parametrize("value,seconds", [(None, None), ("", None), (3600, 3600), ("90", 90), ("1s", 1),
                                           ("15m", 900), ("12h", 43200), ("7d", 604800), ("2w", 1209600)])
def test_intervals(value, seconds):
    assert parse_interval(value) == seconds


@pytest.mark.parametrize("bad", ["7 days", "d", "1y", "-1d"])
def test_bad_intervals(bad):
    with pytest.raises(ValueError):
        parse_interval(bad)
