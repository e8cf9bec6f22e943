# SPDX-License-Identifier: GPL-3.0-or-later
"""The roles' molecule scenarios (podman containers running systemd), run from `make test`.

Each scenario runs its whole test sequence (check on a fresh host, converge, idempotence, side
effects, testinfra's verify, destroy). This wrapper adds what lives on the controller: an HTTP
server on loopback that records the jobs' heartbeat and failure pings (the containers share the
host's network), whose log the scenario's testinfra tests read.
"""
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration", "backends"))
from servers import Sshd  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENARIOS = sorted(d for d in os.listdir(os.path.join(ROOT, "molecule"))
                   if os.path.isfile(os.path.join(ROOT, "molecule", d, "molecule.yml")))


def _ready():
    if os.geteuid() != 0 or not shutil.which("podman"):
        return "needs root and podman (scripts/setup-podman.sh)"
    r = subprocess.run(["podman", "image", "exists", "localhost/cairn-debian:bookworm"], check=False)
    if r.returncode != 0:
        return "the molecule image is missing (scripts/setup-podman.sh)"
    return None


@pytest.fixture
def ping_log(tmp_path):
    path = tmp_path / "pings.jsonl"
    lock = threading.Lock()

    class Recorder(BaseHTTPRequestHandler):
        def do_POST(self):      # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode(errors="replace")
            with lock, open(path, "a") as f:
                f.write(json.dumps({"path": self.path, "body": body}) + "\n")
            self.send_response(200)
            self.end_headers()

        do_GET = do_POST

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    path.touch()
    yield f"http://127.0.0.1:{server.server_address[1]}", path
    server.shutdown()
    server.server_close()


def _failures(text):
    """The failed tasks' own lines (with the task header above each), which the log's tail
    usually no longer holds once molecule has destroyed the instances."""
    lines = text.splitlines()
    picked = []
    for i, line in enumerate(lines):
        if line.lstrip().startswith(("fatal:", "failed:")) or "FAILED!" in line:
            header = next((lines[j] for j in range(i, -1, -1) if lines[j].startswith("TASK [")), "")
            picked += [header, *lines[i:i + 15], ""]
    return ("--- failed tasks ---\n" + "\n".join(picked)[:6000] + "\n--- log tail ---\n") if picked else ""


def _molecule(scenario, env, tmp_path):
    bindir = os.path.dirname(sys.executable)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""), ANSIBLE_FORCE_COLOR="0",
               NO_COLOR="1", **env)
    out = tmp_path / "molecule.log"
    with open(out, "wb") as f:
        r = subprocess.run([os.path.join(bindir, "molecule"), "test", "-s", scenario], cwd=ROOT, env=env,
                           stdout=f, stderr=subprocess.STDOUT, check=False)
    text = out.read_text(errors="replace")
    assert r.returncode == 0, f"molecule test -s {scenario} failed:\n{_failures(text)}{text[-8000:]}"
    for step in ("converge", "idempotence", "verify"):
        assert f"{step}: Executed: Successful" in text, f"molecule test -s {scenario}: no successful {step}"
    return text


def _require_podman():
    problem = _ready()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "fleet"])
def test_role_scenario(scenario, ping_log, tmp_path):
    _require_podman()
    url, log = ping_log
    text = _molecule(scenario, {"CAIRN_PING_URL": url, "CAIRN_PING_LOG": str(log)}, tmp_path)
    assert "check: Executed: Successful" in text          # a --check run on a fresh host


def test_fleet_scenario(ping_log, tmp_path, duplicity_bin):
    """Three hosts back up to one sftp server on loopback; stock duplicity restores what a
    job wrote there."""
    _require_podman()
    url, log = ping_log
    sshd = Sshd(tmp_path / "sshd").start()
    sftp_root = tmp_path / "sftp"
    sftp_root.mkdir()
    try:
        _molecule("fleet", {"CAIRN_PING_URL": url, "CAIRN_PING_LOG": str(log), "CAIRN_SFTP_PORT": str(sshd.port),
                            "CAIRN_SFTP_ROOT": str(sftp_root), "CAIRN_SFTP_KEY": sshd.client_key,
                            "CAIRN_SFTP_KNOWN_HOSTS": sshd.known_hosts}, tmp_path)
    finally:
        sshd.stop()
    archive = sftp_root / "cairn-fleet-1" / "data"
    env = dict(os.environ, PASSPHRASE="fleet passphrase of cairn-fleet-1")
    r = subprocess.run([duplicity_bin, "restore", "--archive-dir", str(tmp_path / "dup-cache"),
                        f"file://{archive}", str(tmp_path / "dup-restored")], env=env, capture_output=True,
                       check=False)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert (tmp_path / "dup-restored" / "host.txt").read_text() == "cairn-fleet-1\n"
    assert (tmp_path / "dup-restored" / "sub" / "notes.txt").read_text() == "notes of cairn-fleet-1\n"
