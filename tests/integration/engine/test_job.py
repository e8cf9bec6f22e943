# SPDX-License-Identifier: GPL-3.0-or-later
"""`cairn run-job`: what a scheduled job does, on this host (the roles' molecule tests run it
under systemd in containers): hooks, a filelist, two targets, retention, verify, metrics,
heartbeat and failure pings to a real HTTP server on loopback, and the overlap lock."""
import fcntl
import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from treeutil import cairn, write


class Recorder(BaseHTTPRequestHandler):
    hits = []

    def do_POST(self):      # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        Recorder.hits.append((self.path, body))
        self.send_response(200)
        self.end_headers()

    do_GET = do_POST

    def log_message(self, *a):
        pass


@pytest.fixture
def pings():
    Recorder.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", Recorder.hits
    server.shutdown()
    server.server_close()


def _job(tmp_path, url, **over):
    src = tmp_path / "src"
    write(str(src / "keep" / "a.txt"), b"a")
    write(str(src / "keep" / "junk.tmp"), b"tmp")
    write(str(src / "other" / "b.txt"), b"b")
    filelist = tmp_path / "job.filelist"
    filelist.write_text(f"- **/*.tmp\n+ {src}/keep\n- **\n")
    cred = tmp_path / "cred.env"
    cred.write_text('PASSPHRASE="job pass \\"quoted\\""\n')
    os.chmod(cred, 0o600)
    config = {
        "name": "web", "source": str(src),
        "targets": [f"file://{tmp_path}/t1", f"file://{tmp_path}/t2"],
        "archive_dir": str(tmp_path / "cache"), "filelist": str(filelist), "credentials_file": str(cred),
        "state_file": str(tmp_path / "state.json"), "lock_file": str(tmp_path / "job.lock"),
        "metrics_file": str(tmp_path / "metrics" / "cairn_web.prom"),
        "heartbeat_url": f"{url}/ok", "failure_url": f"{url}/fail", "verify_interval": "1s",
        "retention": {"keep_full": 2}, "args": ["--volsize", "1"],
        "pre_hook": f"echo pre >> {tmp_path}/hooks", "post_hook": f"echo post $CAIRN_JOB_STATUS $CAIRN_JOB_EXIT >> {tmp_path}/hooks",
    }
    config.update(over)
    path = tmp_path / "web.json"
    path.write_text(json.dumps(config))
    return path, config


def _metrics(config):
    out = {}
    with open(config["metrics_file"]) as f:
        for line in f:
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                out[key.split("{")[0]] = float(value)
    return out


def test_job_backs_up_prunes_verifies_and_reports(tmp_path, pings):
    url, hits = pings
    path, config = _job(tmp_path, url, mode="full")
    for _run in range(3):
        r = cairn("run-job", path, passphrase=None, check=False)
        assert r.returncode == 0, r.stderr
    assert [h[0] for h in hits] == ["/ok"] * 3 and "success" in hits[0][1]
    assert (tmp_path / "hooks").read_text().split("\n")[:2] == ["pre", "post success 0"]
    assert json.loads(open(config["state_file"]).read())["last_message"] == ""
    # both targets, three fulls, two kept by retention
    env = {"PASSPHRASE": 'job pass "quoted"'}
    for t in ("t1", "t2"):
        st = json.loads(cairn("collection-status", "--json", "--archive-dir", tmp_path / "c2", f"file://{tmp_path}/{t}",
                              passphrase=None, env=env).stdout)
        assert len(st["chains"]) == 2
    files = cairn("list-current-files", "--archive-dir", tmp_path / "c2", f"file://{tmp_path}/t1",
                  passphrase=None, env=env).stdout.decode()
    assert "keep/a.txt" in files and "junk.tmp" not in files and "other" not in files
    m = _metrics(config)
    assert m["cairn_backup_failed"] == 0 and m["cairn_backup_last_exit_code"] == 0
    assert m["cairn_backup_last_bytes_stored"] > 0 and m["cairn_verify_last_success_timestamp_seconds"] > 0
    assert m["cairn_backup_last_success_timestamp_seconds"] >= m["cairn_backup_last_run_timestamp_seconds"]


def test_failing_pre_hook_fails_the_job_and_calls_the_failure_url(tmp_path, pings):
    url, hits = pings
    path, config = _job(tmp_path, url, pre_hook="exit 3")
    r = cairn("run-job", path, passphrase=None, check=False)
    assert r.returncode == 70
    assert [h[0] for h in hits] == ["/fail"] and "pre-hook failed" in hits[0][1]
    assert not (tmp_path / "t1").exists()
    assert _metrics(config)["cairn_backup_failed"] == 1


def test_unreachable_target_fails_the_job(tmp_path, pings):
    url, hits = pings
    path, config = _job(tmp_path, url, targets=["sftp://root@127.0.0.1:1//nowhere"],
                        args=["--num-retries", "0"], pre_hook=None, post_hook=None)
    r = cairn("run-job", path, passphrase=None, check=False)
    assert r.returncode == 50, r.stderr
    assert [h[0] for h in hits] == ["/fail"] and "exit 50" in hits[0][1]
    # the state file (and so the fleet's backup summary) says why, not only that it failed
    state = json.loads(open(config["state_file"]).read())
    assert state["failed"] and state["last_exit_code"] == 50
    assert state["last_message"].startswith("backup failed with exit 50: ") and "127.0.0.1" in state["last_message"]
    m = _metrics(config)
    assert m["cairn_backup_failed"] == 1 and "cairn_backup_last_success_timestamp_seconds" not in m


def test_runs_never_overlap(tmp_path, pings):
    url, hits = pings
    path, config = _job(tmp_path, url)
    with open(config["lock_file"], "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        r = cairn("run-job", path, passphrase=None, check=False)
    assert r.returncode == 75 and b"another run" in r.stderr
    assert hits == [] and not (tmp_path / "t1").exists()


def test_secrets_stay_out_of_pings_and_logs(tmp_path, pings):
    url, hits = pings
    path, config = _job(tmp_path, url)
    r = cairn("run-job", path, passphrase=None, check=False)
    assert r.returncode == 0
    assert b"quoted" not in r.stdout + r.stderr and all("quoted" not in h[1] for h in hits)


def _agent_running(home):
    r = subprocess.run(["gpg-connect-agent", "--no-autostart", "/bye"], env=dict(os.environ, GNUPGHOME=home),
                       capture_output=True, check=False)
    return b"no gpg-agent running" not in r.stderr


def test_run_ends_the_gpg_agent_it_started(tmp_path, pings):
    """A gpg-agent left behind would keep the systemd unit 'deactivating' (and linger under cron);
    one that was already running (an admin's) is left alone."""
    url, hits = pings
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    path, config = _job(tmp_path, url, gnupg_home=str(home), pre_hook=None, post_hook=None)
    r = cairn("run-job", path, passphrase=None, check=False, env={"GNUPGHOME": str(home)})
    assert r.returncode == 0, r.stderr
    assert not _agent_running(str(home))
    # an agent that was there before the run stays
    subprocess.run(["gpg-connect-agent", "/bye"], env=dict(os.environ, GNUPGHOME=str(home)), capture_output=True,
                   check=True)
    try:
        r = cairn("run-job", path, passphrase=None, check=False, env={"GNUPGHOME": str(home)})
        assert r.returncode == 0, r.stderr
        assert _agent_running(str(home))
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=dict(os.environ, GNUPGHOME=str(home)), check=False)


def test_failed_ping_is_logged_without_the_checks_token(tmp_path, pings):
    """A heartbeat URL's path is the check's secret (healthchecks.io style); an unreachable one is
    reported by host only, and the backup still succeeds."""
    url, hits = pings
    token = "5f3c0e1a-secret-check-token"
    path, config = _job(tmp_path, url, heartbeat_url=f"http://user:pingpass@127.0.0.1:1/ping/{token}?k={token}",
                        pre_hook=None, post_hook=None)
    r = cairn("run-job", path, passphrase=None, check=False)
    assert r.returncode == 0, r.stderr
    assert b"could not reach http://127.0.0.1:1/" in r.stderr
    assert token.encode() not in r.stdout + r.stderr and b"pingpass" not in r.stdout + r.stderr


def _processes_of(home):
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if os.fsencode(home) in f.read():
                    out.append(pid)
        except OSError:
            pass
    return out


def test_run_ends_with_the_agents_process_gone(tmp_path, pings):
    """Not only its sockets: an agent still exiting when run-job ends keeps a systemd unit waiting
    for its cgroup to empty (on cgroup v1 until TimeoutStopSec, and the unit fails)."""
    url, hits = pings
    home = tmp_path / "gnupg-fresh"
    home.mkdir(mode=0o700)
    path, config = _job(tmp_path, url, gnupg_home=str(home), pre_hook=None, post_hook=None)
    r = cairn("run-job", path, passphrase=None, check=False, env={"GNUPGHOME": str(home)})
    assert r.returncode == 0, r.stderr
    assert _processes_of(str(home)) == []
