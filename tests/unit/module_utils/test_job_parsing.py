# SPDX-License-Identifier: GPL-3.0-or-later
"""The job runner's parsing: credentials files as systemd reads them, and intervals (the one
duration parser, timespec.parse_duration, that the CLI and the modules use too)."""
import pytest

from cairn.errors import TimeStringError
from cairn.job import load_env_file
from cairn.timespec import parse_duration


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


@pytest.mark.parametrize("value,seconds", [(None, None), ("", None), (0, 0), (3600, 3600), ("90", 90), ("1s", 1),
                                           ("15m", 900), ("12h", 43200), ("7d", 604800), ("7D", 604800),
                                           ("2w", 1209600), ("1h30m", 5400), ("1y", 365 * 86400), ("6M", 180 * 86400)])
def test_intervals(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("bad", ["7 days", "d", "-1d", "1.5h", "²", True, 1.5])
def test_bad_intervals(bad):
    with pytest.raises(TimeStringError):
        parse_duration(bad)
