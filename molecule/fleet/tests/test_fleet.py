"""The fleet after site.yml, backup.yml, restore.yml, verify.yml, prune.yml and status.yml."""
import json
import os

import pytest

HOSTS = ["cairn-fleet-1", "cairn-fleet-2", "cairn-fleet-3"]


def _name(host):
    return host.backend.name


def test_each_host_runs_its_job_by_timer(host):
    timer = host.service("cairn-data.timer")
    assert timer.is_enabled and timer.is_running
    state = json.loads(host.file("/var/lib/cairn/data.json").content_string)
    assert state["failed"] is False and state["last_type"] == "full"


def test_archives_on_the_shared_sftp_target():
    root = os.environ.get("CAIRN_SFTP_ROOT")
    if not root:
        pytest.skip("run through tests/molecule/test_scenarios.py (it starts the sftp server)")
    for h in HOSTS:
        names = os.listdir(os.path.join(root, h, "data"))
        assert any(n.startswith("duplicity-full.") and n.endswith(".vol1.difftar.gpg") for n in names), h
        assert any(n.endswith(".manifest.gpg") for n in names), h


def test_status_report_covers_the_fleet():
    path = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "status.json")
    with open(path) as f:
        rows = json.load(f)
    got = {(r["host"], r["job"]) for r in rows}
    # status.yml ran before the scratch job was retired
    assert got == {(h, "data") for h in HOSTS} | {("cairn-fleet-3", "scratch")}
    for r in rows:
        assert r["error"] is None, r
        assert r["chain_length"] == 1 and r["stored_bytes"] > 0 and r["last_full"] == r["last_backup"]
        assert r["last_verify"] and r["last_run_failed"] is False


def test_restore_onto_another_host(host):
    if _name(host) != "cairn-fleet-2":
        pytest.skip("the restore went to cairn-fleet-2")
    assert host.file("/srv/restored-from-fleet-1/host.txt").content_string == "cairn-fleet-1\n"
    assert host.file("/srv/restored-from-fleet-1/sub/notes.txt").content_string == "notes of cairn-fleet-1\n"
    assert host.file("/srv/data/host.txt").content_string == "cairn-fleet-2\n"     # its own data untouched


def test_retired_job_leaves_nothing(host):
    if _name(host) != "cairn-fleet-3":
        pytest.skip("scratch was a job of cairn-fleet-3")
    for path in ("/etc/systemd/system/cairn-scratch.timer", "/etc/systemd/system/cairn-scratch.service",
                 "/etc/cairn/jobs/scratch.json", "/etc/cairn/jobs/scratch.filelist",
                 "/etc/cairn/credentials/scratch.env", "/var/lib/cairn/scratch.json"):
        assert not host.file(path).exists, path
    assert "cairn-scratch" not in host.run("systemctl list-unit-files --no-pager").stdout
    assert host.service("cairn-data.timer").is_enabled


def test_heartbeats():
    log = os.environ.get("CAIRN_PING_LOG")
    if not log:
        pytest.skip("run through tests/molecule/test_scenarios.py to record pings")
    with open(log) as f:
        paths = [json.loads(line)["path"] for line in f]
    assert sorted(p for p in paths if p.startswith("/ok/")) == sorted(f"/ok/{h}/data" for h in HOSTS)
    assert not [p for p in paths if p.startswith("/fail/")]
