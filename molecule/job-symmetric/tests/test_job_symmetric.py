"""The simplest setup (agent + job roles, a symmetric passphrase, no keys role): the job's
service runs green under systemd and leaves a restorable backup, and its result, like a failing
job's, arrives as mail at the loopback SMTP sink prepare.yml runs."""
import json
import os
from email import policy
from email.parser import BytesParser

import pytest

PASSPHRASE = 'symmetric "only" passphrase $HOME'
BROKEN_PASSPHRASE = "broken job's own passphrase"
SMTP_USER, SMTP_PASSWORD = "cairn-relay", "smtp-Secret-4711"
SPOOL = "/var/spool/smtp-sink"


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


# --- mail: the sink's spool (prepare.yml: files/smtp_sink.py on 127.0.0.1:2525) -------------------

@pytest.fixture(scope="module")
def broken_run(host):
    """The job whose target cannot be made (under a regular file) started once."""
    return host.run("systemctl start cairn-broken.service")


@pytest.fixture(scope="module")
def mails(host, run, broken_run):
    """Every message the sink caught once both jobs ran: [(raw bytes, parsed message)]."""
    names = sorted(host.run(f"ls {SPOOL}").stdout.split(), key=lambda n: int(n.split(".")[0]))
    out = []
    for name in names:
        raw = host.file(f"{SPOOL}/{name}").content      # as it came over the wire: CRLF lines
        out.append((raw, BytesParser(policy=policy.default).parsebytes(raw.replace(b"\r\n", b"\n"))))
    return out


def _node(host):
    return host.run("uname -n").stdout.strip()


def _one(mails, subject):
    found = [m for _raw, m in mails if m["Subject"] == subject]
    assert len(found) == 1, (subject, [m["Subject"] for _raw, m in mails])
    return found[0]


def test_sink_caught_one_mail_per_job(mails):
    # nightly mails every result (one backup run: one success); broken only its failure; the
    # adopted duply job has no mail_to
    assert len(mails) == 2, [m["Subject"] for _raw, m in mails]


def test_success_mail_of_the_good_job(host, run, mails):
    assert run.rc == 0
    node = _node(host)
    msg = _one(mails, f"[cairn] {node} nightly: success")
    # the relay's login with the password from the job's credentials file (the sink answers a
    # wrong one with 535, and no mail), the envelope and the headers from the job's settings
    assert msg["X-Sink-Auth"] == SMTP_USER
    assert msg["X-Sink-Mail-From"] == "cairn-backup@example.net" == msg["From"]
    assert msg["X-Sink-Rcpt-To"] == "ops@example.net, backup-log@example.net" == msg["To"]
    assert msg["Auto-Submitted"] == "auto-generated"
    state = json.loads(host.file("/var/lib/cairn/nightly.json").content_string)
    assert state["last_exit_code"] == 0 and state["failed"] is False
    summary = (f"cairn job nightly on {node}: success, full backup, {state['last_bytes']} bytes, "
               f"{state['last_duration']} s")
    body = msg.get_content()
    head, sep, tail = body.partition("\n\nThe run's last log lines:\n\n")
    assert head == summary and sep, body
    assert "full backup of /srv/data to file:///var/backups/cairn/nightly" in tail, body
    assert tail.endswith(summary + "\n"), body           # the run's last line is its summary


def test_failure_mail_of_the_broken_job(host, broken_run, mails):
    assert broken_run.rc != 0
    assert host.run("systemctl is-failed cairn-broken.service").stdout.strip() == "failed"
    node = _node(host)
    msg = _one(mails, f"[cairn] {node} broken: FAILURE")
    fqdn = host.run("python3 -c 'import socket; print(socket.getfqdn())'").stdout.strip()
    assert msg["From"] == f"cairn@{fqdn}" == msg["X-Sink-Mail-From"]        # no mail_from: the default
    assert msg["To"] == "ops@example.net" == msg["X-Sink-Rcpt-To"]
    assert msg["X-Sink-Auth"] == "-"                                         # no smtp_user: no login
    state = json.loads(host.file("/var/lib/cairn/broken.json").content_string)
    reason = ("backup failed with exit 50: cairn: cannot create target directory "
              "/var/backups/not-a-directory/broken: Not a directory")
    assert state["last_exit_code"] == 50 and state["failed"] is True and state["last_message"] == reason
    summary = f"cairn job broken on {node}: failure ({reason}), - backup, 0 bytes, {state['last_duration']} s"
    body = msg.get_content()
    head, sep, tail = body.partition("\n\nThe run's last log lines:\n\n")
    assert head == summary and sep, body
    assert tail.endswith(summary + "\n"), body


def test_no_secret_in_the_mails_or_the_jobs_journal(host, mails):
    assert mails
    secrets = ['"only" passphrase', BROKEN_PASSPHRASE, SMTP_PASSWORD]
    for raw, msg in mails:
        # the raw message (quoted-printable) and its decoded body
        texts = [raw.decode(errors="replace"), msg.get_content(), str(msg)]
        assert not [s for s in secrets for t in texts if s in t], msg["Subject"]
    journal = host.run("journalctl --no-pager -u cairn-nightly.service -u cairn-broken.service").stdout
    assert "cairn job nightly" in journal and "cairn job broken" in journal
    assert "could not send the mail" not in journal
    assert not [s for s in secrets if s in journal]
    # the password lives in the job's 0600 credentials file, not in its config
    creds = host.file("/etc/cairn/credentials/nightly.env")
    assert creds.mode == 0o600 and SMTP_PASSWORD in creds.content_string
    assert SMTP_PASSWORD not in host.file("/etc/cairn/jobs/nightly.json").content_string


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


# --- the duply profile the role adopted (prepare.yml: duply's own first full) --------------------

DUPLY_PW = 'duply "pw" of web $HOME'
DUPLY_TARGET = "/var/backups/duply/web"


def _manifests(host):
    names = host.run(f"ls {DUPLY_TARGET}").stdout.split()
    return ([n for n in names if n.startswith("duplicity-full.") and n.endswith(".manifest.gpg")],
            [n for n in names if n.startswith("duplicity-inc.") and n.endswith(".manifest.gpg")])


@pytest.fixture(scope="module")
def web_run(host):
    """`cairn job web backup` on the adopted profile, after a change in the selected data."""
    before = _manifests(host)
    cmd = host.run("rm -rf /var/tmp/duply-hooks && printf '<h1>cairn</h1>\\n' > /srv/web/htdocs/index.html && "
                   "touch -d '+5 seconds' /srv/web/htdocs/index.html && cairn job web backup")
    return before, cmd


def test_duply_made_one_full_before_the_adoption(web_run):
    (fulls, incs), _cmd = web_run
    assert len(fulls) == 1 and incs == [], (fulls, incs)


def test_adopted_job_continues_duplys_chain(host, web_run):
    (fulls, _incs), cmd = web_run
    assert cmd.rc == 0, cmd.stdout + cmd.stderr
    after_fulls, after_incs = _manifests(host)
    assert after_fulls == fulls, "a second full: the chain was not continued"
    full_time = fulls[0].split(".")[1]
    assert len(after_incs) == 1 and after_incs[0].startswith(f"duplicity-inc.{full_time}.to."), after_incs
    # no ARCH_DIR in the profile: duply's cache in duplicity's default place, used where it is, has
    # the new incremental's signatures too
    args = json.loads(host.file("/etc/cairn/jobs/web.json").content_string)["args"]
    assert args[-4:] == ["--archive-dir", "/root/.cache/duplicity", "--name", "duply_web"], args
    assert host.run("ls /root/.cache/duplicity/duply_web").stdout.count(after_incs[0].split(".")[3]) >= 1


def test_adopted_job_restores_duplys_selection(host, web_run):
    assert web_run[1].rc == 0
    cmd = host.run("cairn job web restore /tmp/web-restored && cd /tmp/web-restored && find . -type f | sort")
    assert cmd.rc == 0, cmd.stderr
    assert cmd.stdout.split() == ["./htdocs/index.html"]
    assert host.file("/tmp/web-restored/htdocs/index.html").content_string == "<h1>cairn</h1>\n"


def test_adopted_hooks_run_the_copies_with_duplys_variables(host, web_run):
    assert web_run[1].rc == 0
    pre = host.file("/var/tmp/duply-hooks/pre.env").content_string.split()
    assert pre == ["CMD_NEXT=bkp", "CMD_PREV=START", "CONFDIR=/etc/duply/web", "PROFILE=web", "SOURCE=/srv/web",
                   "TARGET_URL_HOSTPATH=/var/backups/duply/web", "TARGET_URL_PROT=file://"], pre
    assert host.file("/var/tmp/duply-hooks/pre.path").content_string == "/etc/cairn/jobs/web.duply/pre\n"
    assert host.file("/var/tmp/duply-hooks/pre.gpg_pw").content_string == "set\n"
    assert host.file("/var/tmp/duply-hooks/post.env").content_string == \
        "PROFILE=web CMD_PREV=pre CMD_NEXT=END CMD_ERR=0\n"
    for which, mode in (("pre", 0o700), ("post", 0o600)):
        copy = host.file(f"/etc/cairn/jobs/web.duply/{which}")
        assert copy.user == "root" and copy.mode == mode
        assert copy.content_string == host.file(f"/etc/duply/web/{which}").content_string


def test_adopted_secrets_only_in_the_credentials_file(host):
    creds = host.file("/etc/cairn/credentials/web.env")
    assert creds.user == "root" and creds.mode == 0o600
    assert 'PASSPHRASE="duply \\"pw\\" of web $HOME"' in creds.content_string.splitlines()
    assert host.run("grep -rlF 'pw\" of web' /etc/cairn/jobs").stdout == ""
    config = json.loads(host.file("/etc/cairn/jobs/web.json").content_string)
    assert config["targets"] == ["file:///var/backups/duply/web"] and config["full_if_older_than"] == ""
    assert config["credentials_file"] == "/etc/cairn/credentials/web.env"
    assert "--volsize" in config["args"] and config["args"][config["args"].index("--volsize") + 1] == "50"


def test_duplys_profile_and_cron_line_untouched(host):
    assert "GPG_PW='duply \"pw\" of web $HOME'" in host.file("/etc/duply/web/conf").content_string
    assert host.file("/etc/duply/web/conf").mode == 0o600
    assert host.file("/etc/cron.d/duply-web").content_string == "0 3 * * * root duply /etc/duply/web backup\n"


def test_the_controllers_job_wins_over_a_profile_of_its_name(host):
    config = json.loads(host.file("/etc/cairn/jobs/nightly.json").content_string)
    assert config["targets"] == ["file:///var/backups/cairn/nightly"]
    assert not host.file("/etc/cairn/jobs/nightly.duply").exists
