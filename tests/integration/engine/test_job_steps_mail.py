# SPDX-License-Identifier: GPL-3.0-or-later
"""`cairn run-job --step ... --wait ...`, mail and healthchecks-style pings, with real parts on
loopback: an SMTP server (aiosmtpd) with STARTTLS and AUTH, a sendmail stand-in on PATH (a real
executable writing what it gets), an HTTP server recording each ping's method and path."""
import email
import email.policy
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from test_job import _job
from treeutil import ROOT, cairn, write

sys.path.insert(0, os.path.join(ROOT, "tests", "integration", "backends"))
from servers import free_port  # noqa: E402
from test_ftp import make_cert  # noqa: E402

SMTP_USER, SMTP_PASSWORD = "cairn-relay", "smtp-Secret-4711"


class MethodRecorder(BaseHTTPRequestHandler):
    hits = []

    def do_POST(self):      # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0)).decode()
        MethodRecorder.hits.append((self.command, self.path, body))
        self.send_response(200)
        self.end_headers()

    do_GET = do_POST

    def log_message(self, *a):
        pass


@pytest.fixture
def pings():
    MethodRecorder.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), MethodRecorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", MethodRecorder.hits
    server.shutdown()
    server.server_close()


@pytest.fixture
def smtpd(tmp_path):
    """A real SMTP server on loopback that requires STARTTLS, and AUTH (only over TLS)."""
    pytest.importorskip("aiosmtpd")
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    cert, key = make_cert(str(tmp_path))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    received = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):     # noqa: N802 - aiosmtpd's name
            received.append({"from": envelope.mail_from, "to": envelope.rcpt_tos, "tls": bool(session.ssl),
                             "auth": session.authenticated,
                             "msg": email.message_from_bytes(envelope.content, policy=email.policy.default)})
            return "250 OK"

    def auth(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == SMTP_USER.encode() and auth_data.password == SMTP_PASSWORD.encode()
        return AuthResult(success=ok, handled=False)      # handled=False: aiosmtpd answers 535 itself

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=True,
                            authenticator=auth, auth_require_tls=True, auth_required=True)
    controller.start()
    yield {"port": port, "cert": cert, "received": received}
    controller.stop()


def _with_smtp_password(config):
    with open(config["credentials_file"], "a") as f:
        f.write(f"CAIRN_SMTP_PASSWORD='{SMTP_PASSWORD}'\n")


def _run(path, *opts, env=None):
    return cairn("run-job", *opts, path, passphrase=None, check=False, env=env)


# --- steps -------------------------------------------------------------------------------------

def _sets(tmp_path, target="t1"):
    st = json.loads(cairn("collection-status", "--json", "--archive-dir", tmp_path / "c2",
                          f"file://{tmp_path}/{target}", passphrase=None,
                          env={"PASSPHRASE": 'job pass "quoted"'}).stdout)
    return [[s["type"] for s in chain["sets"]] for chain in st["chains"]]


def test_steps_full_backup_verify_prune(tmp_path, pings):
    """The classic setup's three timers: a forced full, the daily backup (incremental), a verify
    alone (with compare, no hooks, no backup), retention alone."""
    url, hits = pings
    path, config = _job(tmp_path, url, verify_interval=None, retention={}, verify_compare_data=True)
    assert _run(path, "--step", "full").returncode == 0
    assert _run(path).returncode == 0
    assert _sets(tmp_path) == [["full", "incremental"]]
    assert _run(path, "--step=full").returncode == 0
    assert _sets(tmp_path) == [["full", "incremental"], ["full"]]
    assert (tmp_path / "hooks").read_text().count("pre") == 3
    state = json.loads(open(config["state_file"]).read())
    assert "last_verify" not in state           # verify_interval unset: no verify after a backup

    r = _run(path, "--step", "verify")
    assert r.returncode == 0, r.stderr
    state = json.loads(open(config["state_file"]).read())
    assert state["last_verify"] and state["verify_failed"] is False
    assert (tmp_path / "hooks").read_text().count("pre") == 3     # no hooks around a verify
    assert _sets(tmp_path) == [["full", "incremental"], ["full"]]   # and no backup

    # prune alone: retention keep_full=1 on both targets
    config["retention"] = {"keep_full": 1}
    path.write_text(json.dumps(config))
    r = _run(path, "--step", "prune")
    assert r.returncode == 0, r.stderr
    assert _sets(tmp_path) == [["full"]] and _sets(tmp_path, "t2") == [["full"]]
    state = json.loads(open(config["state_file"]).read())
    assert state["last_prune"] and state["prune_failed"] is False
    metrics = open(config["metrics_file"]).read()
    assert 'cairn_verify_failed{job="web"} 0' in metrics and 'cairn_prune_failed{job="web"} 0' in metrics
    # only the backup steps send heartbeats
    assert [h[1] for h in hits] == ["/ok"] * 3


def test_verify_step_failure_fails_and_pings_failure(tmp_path, pings):
    url, hits = pings
    path, config = _job(tmp_path, url, verify_interval=None, verify_compare_data=True, pre_hook=None,
                        post_hook=None)
    assert _run(path).returncode == 0
    write(str(tmp_path / "src" / "keep" / "a.txt"), b"changed since the backup")
    os.utime(tmp_path / "src" / "keep" / "a.txt", (1, 1))
    r = _run(path, "--step", "verify")
    assert r.returncode not in (0, 23, 75), r.stderr
    state = json.loads(open(config["state_file"]).read())
    assert state["verify_failed"] is True and state["last_verify_exit_code"] == r.returncode
    assert "last_verify" not in state
    assert [h[1] for h in hits] == ["/ok", "/fail"] and "difference" in hits[1][2]
    assert 'cairn_verify_failed{job="web"} 1' in open(config["metrics_file"]).read()


@pytest.mark.parametrize("argv,message", [(["--step", "restore"], b"--step must be one of"),
                                          (["--step="], b"--step needs a value"),
                                          (["--wait", "soon"], b"--wait"),
                                          (["--bogus"], b"unknown option --bogus")])
def test_bad_command_line_is_a_usage_error(tmp_path, argv, message):
    path, _config = _job(tmp_path, "http://127.0.0.1:1")
    r = _run(path, *argv)
    assert r.returncode == 23 and message in r.stderr and b"usage: cairn run-job" in r.stderr


def test_bad_mail_config_is_a_usage_error(tmp_path):
    path, _config = _job(tmp_path, "http://127.0.0.1:1", mail_to=["root@localhost"], mail_on=["always"])
    r = _run(path)
    assert r.returncode == 23 and b"mail_on must be a list of failure, verify_failure, success" in r.stderr
    assert not (tmp_path / "t1").exists()


# --- the lock ----------------------------------------------------------------------------------

def test_a_step_waits_for_the_lock_then_runs(tmp_path, pings):
    import fcntl
    url, hits = pings
    path, config = _job(tmp_path, url, pre_hook=None, post_hook=None)
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "plugins", "module_utils"))
    with open(config["lock_file"], "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        p = subprocess.Popen([sys.executable, "-m", "cairn.cli", "run-job", "--wait", "60", str(path)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(2)
        assert p.poll() is None and not (tmp_path / "t1").exists()      # waiting, not failed
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert b"waits up to 60 s" in err and (tmp_path / "t1").exists()


def test_a_step_gives_up_after_its_wait(tmp_path, pings):
    import fcntl
    url, hits = pings
    path, config = _job(tmp_path, url, pre_hook=None, post_hook=None)
    with open(config["lock_file"], "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        t0 = time.monotonic()
        r = _run(path, "--step", "verify", "--wait", "2s")
        took = time.monotonic() - t0
    assert r.returncode == 75 and b"another run" in r.stderr and took >= 2
    assert hits == []


# --- pings -------------------------------------------------------------------------------------

def test_get_pings_with_start_and_exit_code(tmp_path, pings):
    url, hits = pings
    token = "9d1f0c2b-check-token-secret"
    path, config = _job(tmp_path, url, heartbeat_url=f"{url}/ping/{token}", failure_url=None, ping_method="GET",
                        ping_start=True, ping_exit_code=True, post_hook=None)
    r = _run(path)
    assert r.returncode == 0, r.stderr
    assert [(m, p) for m, p, _b in hits] == [("GET", f"/ping/{token}/start"), ("GET", f"/ping/{token}/0")]
    hits.clear()
    config["pre_hook"] = "exit 3"
    path.write_text(json.dumps(config))
    assert _run(path).returncode == 70
    assert [p for _m, p, _b in hits] == [f"/ping/{token}/start", f"/ping/{token}/70"]
    # verify and prune: no /start, and no heartbeat for a success
    hits.clear()
    assert _run(path, "--step", "prune").returncode == 0
    assert hits == []
    assert token.encode() not in r.stderr


def test_post_is_the_default_method(tmp_path, pings):
    url, hits = pings
    path, config = _job(tmp_path, url, ping_start=True, pre_hook=None, post_hook=None)
    assert _run(path).returncode == 0
    assert [(m, p) for m, p, _b in hits] == [("POST", "/ok/start"), ("POST", "/ok")]
    assert "success" in hits[1][2]


# --- mail --------------------------------------------------------------------------------------

def test_mail_over_smtp_with_starttls_and_auth(tmp_path, pings, smtpd):
    url, hits = pings
    path, config = _job(tmp_path, url, mail_to=["ops@example.net", "dba@example.net"], mail_on=["success", "failure"],
                        mail_from="backup@example.net", smtp_host="127.0.0.1", smtp_port=smtpd["port"],
                        smtp_user=SMTP_USER, smtp_ca_file=smtpd["cert"])
    _with_smtp_password(config)
    r = _run(path)
    assert r.returncode == 0, r.stderr
    assert len(smtpd["received"]) == 1, r.stderr
    got = smtpd["received"][0]
    assert got["tls"] and got["auth"] and got["to"] == ["ops@example.net", "dba@example.net"]
    msg = got["msg"]
    assert msg["Subject"] == f"[cairn] {os.uname().nodename} web: success" and msg["From"] == "backup@example.net"
    body = msg.get_content()
    assert "cairn job web on" in body and "success" in body and "The run's last log lines" in body
    raw = msg.as_string()
    assert SMTP_PASSWORD not in raw and 'job pass' not in raw
    assert SMTP_PASSWORD.encode() not in r.stderr + r.stdout

    # a failure: FAILURE in the subject, the log's last lines in the body
    config["pre_hook"] = "echo hook-says-no >&2; exit 3"
    path.write_text(json.dumps(config))
    r = _run(path)
    assert r.returncode == 70
    msg = smtpd["received"][1]["msg"]
    assert msg["Subject"] == f"[cairn] {os.uname().nodename} web: FAILURE"
    assert "pre-hook failed" in msg.get_content()


def test_failed_mail_is_logged_and_keeps_the_exit_code(tmp_path, pings, smtpd):
    url, hits = pings
    path, config = _job(tmp_path, url, mail_to=["ops@example.net"], mail_on=["success"], smtp_host="127.0.0.1",
                        smtp_port=smtpd["port"], smtp_user=SMTP_USER, smtp_ca_file=smtpd["cert"],
                        pre_hook=None, post_hook=None)
    with open(config["credentials_file"], "a") as f:
        f.write(f"CAIRN_SMTP_PASSWORD='wrong-{SMTP_PASSWORD}'\n")
    r = _run(path)
    assert r.returncode == 0, r.stderr
    assert b"could not send the mail to ops@example.net" in r.stderr and smtpd["received"] == []
    assert SMTP_PASSWORD.encode() not in r.stderr
    # no relay listening at all: the same
    config["smtp_port"] = free_port()
    path.write_text(json.dumps(config))
    r = _run(path)
    assert r.returncode == 0 and b"could not send the mail" in r.stderr


SENDMAIL = """#!/bin/sh
# a stand-in for the host's sendmail: keeps its arguments and the message
echo "$@" > "$(dirname "$0")/sendmail.args"
cat > "$(dirname "$0")/sendmail.msg"
"""


def test_mail_through_sendmail_on_verify_failure(tmp_path, pings):
    url, hits = pings
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "sendmail").write_text(SENDMAIL)
    os.chmod(bindir / "sendmail", 0o755)
    path, config = _job(tmp_path, url, mail_to=["root@localhost"], verify_interval=None, verify_compare_data=True,
                        pre_hook=None, post_hook=None)
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    assert _run(path, env=env).returncode == 0
    assert not (bindir / "sendmail.msg").exists()     # default mail_on: no mail on success
    write(str(tmp_path / "src" / "keep" / "a.txt"), b"changed since the backup")
    r = _run(path, "--step", "verify", env=env)
    assert r.returncode != 0
    assert (bindir / "sendmail.args").read_text().split() == ["-t", "-oi"]
    msg = email.message_from_bytes((bindir / "sendmail.msg").read_bytes(), policy=email.policy.default)
    assert msg["To"] == "root@localhost"
    assert msg["Subject"] == f"[cairn] {os.uname().nodename} web: verify FAILED (verify)"
    assert "difference" in msg.get_content() and 'job pass' not in msg.as_string()
