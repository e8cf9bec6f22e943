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
