"""The simplest setup (agent + job roles, a symmetric passphrase, no keys role): the job's
service runs green under systemd and leaves a restorable backup."""
import json
import os

import pytest

PASSPHRASE = 'symmetric "only" passphrase $HOME'


@pytest.fixture(scope="module")
def run(host):
    """The job's service started once, as its timer starts it (a oneshot: returns when done)."""
    return host.run("systemctl start cairn-nightly.service")


def test_jobs_gnupg_home_exists_root_only_without_the_keys_role(host):
    home = host.file("/etc/cairn/gnupg")
    assert home.is_directory and home.user == "root" and home.mode == 0o700


def test_service_succeeds(host, run):
    # on failure, what systemd and the job said (the instance is destroyed after verify)
    assert run.rc == 0, run.stderr + host.run("systemctl status cairn-nightly.service --no-pager; "
                                              "journalctl -u cairn-nightly.service --no-pager -n 60").stdout
    assert host.run("systemctl is-failed cairn-nightly.service").stdout.strip() != "failed"
    state = json.loads(host.file("/var/lib/cairn/nightly.json").content_string)
    assert state["failed"] is False and state["last_exit_code"] == 0 and state["last_verify"]
    metrics = host.file("/var/lib/prometheus/node-exporter/cairn_nightly.prom").content_string
    assert 'cairn_backup_failed{job="nightly"} 0' in metrics


def test_backup_restores_with_the_passphrase_alone(host, run):
    assert run.rc == 0
    cmd = host.run(f"PASSPHRASE='{PASSPHRASE}' cairn restore --archive-dir /tmp/r-cache "
                   "file:///var/backups/cairn/nightly /tmp/restored && find /tmp/restored -type f | sort")
    assert cmd.rc == 0, cmd.stderr
    assert cmd.stdout.split() == ["/tmp/restored/a.txt", "/tmp/restored/sub/b.txt"]
    assert host.file("/tmp/restored/sub/b.txt").content_string == "beta\n"


def test_cairn_job_on_the_host(host, run):
    """The on-call admin's commands: the job's own config and credentials, nothing by hand."""
    assert run.rc == 0
    cmd = host.run("cairn job nightly restore /tmp/restored-by-job && cat /tmp/restored-by-job/a.txt")
    assert cmd.rc == 0 and cmd.stdout == "alpha\n", cmd.stderr
    cmd = host.run("cairn job nightly verify --compare-data")
    assert cmd.rc == 0 and "0 difference(s)" in cmd.stdout, cmd.stdout + cmd.stderr
    cmd = host.run("cairn job")
    row = [line for line in cmd.stdout.splitlines() if line.startswith("nightly ")]
    assert cmd.rc == 0 and row and " ok " in row[0], cmd.stdout


def test_passphrase_not_in_the_journal(host, run):
    journal = host.run("journalctl -u cairn-nightly.service --no-pager").stdout
    assert "cairn job nightly" in journal and "success" in journal
    assert '"only" passphrase' not in journal       # (the host's name holds "symmetric")


def test_heartbeat_recorded(run):
    log = os.environ.get("CAIRN_PING_LOG")
    if not log:
        pytest.skip("run through tests/molecule/test_scenarios.py to record pings")
    with open(log) as f:
        paths = [json.loads(line)["path"] for line in f]
    assert "/ok/nightly" in paths and "/fail/nightly" not in paths
