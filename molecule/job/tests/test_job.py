"""What the job role leaves on a host, and what its jobs do when systemd runs them."""
import json
import os

import pytest

PASSPHRASE = 'molecule "job" passphrase $HOME'


def _runs(host):
    return json.loads(host.file("/var/tmp/molecule-runs.json").content_string)


def test_timers_enabled_with_spread_and_catch_up(host):
    for job in ("files", "pubkey", "brokenhook", "unreachable"):
        timer = host.service(f"cairn-{job}.timer")
        assert timer.is_enabled and timer.is_running, job
    unit = host.file("/etc/systemd/system/cairn-files.timer").content_string
    assert "OnCalendar=*-*-* 03:15:00" in unit and "Persistent=true" in unit
    assert "RandomizedDelaySec=1h" in unit and "FixedRandomDelay=true" in unit


def test_classic_setup_has_its_own_timers(host):
    for unit, calendar in (("pubkey", "Mon..Sat *-*-* 01:00"), ("pubkey-full", "Sun *-*-* 01:00"),
                           ("pubkey-verify", "*-*-01 05:00")):
        timer = host.service(f"cairn-{unit}.timer")
        assert timer.is_enabled and timer.is_running, unit
        assert f"OnCalendar={calendar}" in host.file(f"/etc/systemd/system/cairn-{unit}.timer").content_string
    assert not host.file("/etc/systemd/system/cairn-pubkey-prune.timer").exists
    # the full and the verify ran through systemd; only the backup steps ping the heartbeat
    assert _runs(host)["pubkey-full"] == 0 and _runs(host)["pubkey-verify"] == 0
    state = json.loads(host.file("/var/lib/cairn/pubkey.json").content_string)
    assert state["last_verify"] and state["verify_failed"] is False


def test_secrets_only_in_root_only_credentials(host):
    cred = host.file("/etc/cairn/credentials/files.env")
    assert cred.user == "root" and cred.mode == 0o600
    assert cred.content_string.count("PASSPHRASE=") == 1
    for path in ("/etc/cairn/jobs/files.json", "/etc/systemd/system/cairn-files.service",
                 "/etc/cairn/jobs/files.filelist"):
        assert "molecule" not in host.file(path).content_string, path
    assert not host.file("/etc/cairn/credentials/pubkey.env").content_string.count("PASSPHRASE")


def test_successful_jobs_wrote_restorable_archives(host):
    assert _runs(host)["files"] == 0 and _runs(host)["pubkey"] == 0
    for target in ("files", "files-mirror"):
        names = host.file(f"/var/backups/cairn/{target}").listdir()
        assert any(n.startswith("duplicity-full.") for n in names), target
        assert any(n.startswith("duplicity-inc.") for n in names), target
    # the passphrase as written, with no shell expansion (systemd's EnvironmentFile= does none)
    cmd = host.run(f"PASSPHRASE='{PASSPHRASE}' "
                   "cairn restore --archive-dir /tmp/r-cache file:///var/backups/cairn/files-mirror /tmp/restored "
                   "&& find /tmp/restored -type f | sort")
    assert cmd.rc == 0, cmd.stderr
    assert cmd.stdout.split() == ["/tmp/restored/keep/a.txt"]           # the filelist held
    cmd = host.run("GNUPGHOME=/etc/cairn/gnupg cairn restore --archive-dir /tmp/r2 "
                   "file:///var/backups/cairn/pubkey /tmp/restored-pk && cat /tmp/restored-pk/other/b.txt")
    assert cmd.rc == 0 and cmd.stdout == "beta\n", cmd.stderr


def test_success_metrics_and_hooks(host):
    metrics = host.file("/var/lib/prometheus/node-exporter/cairn_files.prom").content_string
    assert 'cairn_backup_failed{job="files"} 0' in metrics
    assert "cairn_backup_last_success_timestamp_seconds" in metrics
    assert "cairn_verify_last_success_timestamp_seconds" in metrics
    assert host.file("/var/tmp/files-hooks").content_string.split("\n")[:2] == ["pre", "post success"]


@pytest.mark.parametrize("job", ["brokenhook", "unreachable"])
def test_failing_jobs_mark_the_unit_failed(host, job):
    assert _runs(host)[job] != 0
    assert host.run(f"systemctl is-failed cairn-{job}.service").stdout.strip() == "failed"
    metrics = host.file(f"/var/lib/prometheus/node-exporter/cairn_{job}.prom").content_string
    assert f'cairn_backup_failed{{job="{job}"}} 1' in metrics
    journal = host.run(f"journalctl -u cairn-{job}.service --no-pager").stdout
    assert f"cairn job {job}" in journal and "failure" in journal


def test_pings_recorded():
    log = os.environ.get("CAIRN_PING_LOG")
    if not log:
        pytest.skip("run through tests/molecule/test_scenarios.py to record pings")
    with open(log) as f:
        paths = [json.loads(line)["path"] for line in f]
    # pubkey: its backup and its full (the verify step sends no heartbeat)
    assert paths.count("/ok/files") == 2 and paths.count("/ok/pubkey") == 2
    assert "/fail/brokenhook" in paths and "/fail/unreachable" in paths
    assert not [p for p in paths if p.startswith("/fail/files")]


def test_retired_job_leaves_nothing_behind(host):
    for path in ("/etc/systemd/system/cairn-retired.service", "/etc/systemd/system/cairn-retired.timer",
                 "/etc/systemd/system/cairn-retired-full.timer", "/etc/systemd/system/cairn-retired-prune.service",
                 "/etc/cairn/jobs/retired.json", "/etc/cairn/jobs/retired.filelist",
                 "/etc/cairn/credentials/retired.env", "/var/lib/cairn/retired.json",
                 "/var/lib/prometheus/node-exporter/cairn_retired.prom", "/var/cache/cairn/retired"):
        assert not host.file(path).exists, path
    assert "cairn-retired" not in host.run("systemctl list-timers --all --no-pager").stdout
    # its archive stays: retiring a job does not delete backups
    assert host.file("/var/backups/cairn/retired").is_directory


def test_passphrase_not_in_the_journal(host):
    journal = host.run("journalctl --no-pager").stdout
    assert PASSPHRASE not in journal and "molecule \\\"job\\\"" not in journal


def test_cron_fallback(host):
    entry = host.file("/etc/cron.d/cairn-cronjob")
    assert entry.user == "root" and entry.mode == 0o644
    line = [x for x in entry.content_string.splitlines() if " root " in x][0]
    minute, hour, *_rest = line.split()
    assert 0 <= int(minute) <= 59 and hour == "3"
    assert "cairn run-job --step backup --wait 6h /etc/cairn/jobs/cronjob.json" in line
    assert "logger -t cairn-cronjob" in line
    assert host.package("cron").is_installed
    # the run the side effect started the way cron would: archive written, metrics say success
    names = host.file("/var/backups/cairn/cronjob").listdir()
    assert any(n.startswith("duplicity-full.") for n in names)
    metrics = host.file("/var/lib/prometheus/node-exporter/cairn_cronjob.prom").content_string
    assert 'cairn_backup_failed{job="cronjob"} 0' in metrics
    cmd = host.run("cairn restore --archive-dir /tmp/r-cron file:///var/backups/cairn/cronjob /tmp/restored-cron")
    assert cmd.rc != 0                         # the passphrase is needed ...
    cmd = host.run("PASSPHRASE='cron pass with \\ and \"quotes\"' cairn restore --archive-dir /tmp/r-cron2 "
                   "file:///var/backups/cairn/cronjob /tmp/restored-cron2 && cat /tmp/restored-cron2/keep/a.txt")
    assert cmd.rc == 0 and cmd.stdout == "alpha\n", cmd.stderr       # ... and it is the one written
