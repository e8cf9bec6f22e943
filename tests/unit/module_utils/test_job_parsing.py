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


def _verify_job(**over):
    from cairn.job import Job
    config = {"name": "web", "source": "/srv", "targets": ["file:///b"], **over}
    return Job(config, env={}, cairn=["cairn"], log=lambda line: None)


def test_the_verify_step_compares_the_sample_it_is_given():
    args = _verify_job(verify_compare_data=True, verify_sample=500).verify_args()
    assert args[args.index("--compare-data") + 1:args.index("--compare-data") + 3] == ["--compare-data-sample", "500"]
    assert "--compare-data-sample" not in _verify_job(verify_compare_data=True).verify_args()
    # no comparison, no sample: the volumes are verified
    assert "--compare-data-sample" not in _verify_job(verify_sample=500).verify_args()


@pytest.mark.parametrize("bad", [0, -3, "500", True, 2.5])
def test_a_bad_verify_sample_is_exit_23(tmp_path, bad, capsys):
    import json
    from cairn.job import main
    path = tmp_path / "web.json"
    path.write_text(json.dumps({"name": "web", "source": "/srv", "targets": ["file:///b"], "verify_sample": bad}))
    assert main(["--step", "verify", str(path)]) == 23
    assert "verify_sample is a number of files" in capsys.readouterr().err
