# SPDX-License-Identifier: GPL-3.0-or-later
"""`cairn job NAME COMMAND`: duply's vocabulary over a job config rendered from the job role's
own template (roles/job/templates/job.json.j2), its credentials file and its filelist, on
file:// targets and one sftp target (a real sshd on loopback)."""
import fcntl
import json
import os
import sys

import jinja2
import pytest

from treeutil import ROOT, cairn, write

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "backends"))
from servers import Sshd  # noqa: E402

SECRET = 'hostjob Secret "passphrase" $HOME'
ROLE = os.path.join(ROOT, "roles", "job")


def _role_defaults():
    import yaml
    with open(os.path.join(ROLE, "defaults", "main.yml")) as f:
        return yaml.safe_load(f)


def _render(template, **context):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(ROLE, "templates")), trim_blocks=True)
    # the two Ansible filters the templates use
    env.filters["to_nice_json"] = lambda v, sort_keys=True: json.dumps(v, indent=4, sort_keys=sort_keys)
    env.filters["bool"] = lambda v: v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes", "on")
    return env.get_template(template).render(ansible_managed="test", **context)


def make_job(tmp_path, name="web", **over):
    """Writes what the job role writes for one job (config, filelist, credentials file) under
    tmp_path/etc; returns (config dir, config)."""
    d = _role_defaults()
    etc = tmp_path / "etc"
    dirs = {"cairn_job_config_dir": etc / "jobs", "cairn_job_credentials_dir": etc / "credentials",
            "cairn_job_gnupg_home": etc / "gnupg", "cairn_job_archive_dir": tmp_path / "cache",
            "cairn_job_state_dir": tmp_path / "state", "cairn_job_metrics_dir": tmp_path / "metrics"}
    for p in dirs.values():
        p.mkdir(parents=True, exist_ok=True, mode=0o700)
    src = tmp_path / "src"
    if not src.exists():
        write(str(src / "keep" / "a.txt"), b"alpha\n")
        write(str(src / "keep" / "junk.tmp"), b"excluded\n")
        write(str(src / "other" / "b.txt"), b"beta\n")
    job = dict(d["cairn_job_defaults"], name=name, source=str(src),
               target=[f"file://{tmp_path}/t1", f"file://{tmp_path}/t2"], excludes=["**/*.tmp"],
               retention={"keep_full": 1, "keep_full_with_incrementals": 1, "older_than": "1h"},
               pre_hook=f"echo pre >> {tmp_path}/hooks", post_hook=f"echo post $CAIRN_JOB_STATUS >> {tmp_path}/hooks",
               args=["--volsize", "1", "--num-retries", "0"])
    job.update(over)
    ctx = {k: str(v) for k, v in dirs.items()}
    config = json.loads(_render("job.json.j2", cairn_job=job, **ctx))
    # the role's lock is under /run/lock; a test's own keeps parallel tests apart
    config["lock_file"] = str(tmp_path / f"{name}.lock")
    (etc / "jobs" / f"{name}.json").write_text(json.dumps(config))
    (etc / "jobs" / f"{name}.filelist").write_text(_render("filelist.j2", cairn_job=job))
    cred = etc / "credentials" / f"{name}.env"
    # as cairn.backup.credentials writes it: systemd's EnvironmentFile= quoting
    cred.write_text('PASSPHRASE="' + SECRET.replace("\\", "\\\\").replace('"', '\\"') + '"\n')
    os.chmod(cred, 0o600)
    return etc / "jobs", config


def job(config_dir, *args, env=None):
    """`cairn job` as an admin runs it: no PASSPHRASE of its own, the job's from its file."""
    e = {"CAIRN_JOB_DIR": str(config_dir), **(env or {})}
    r = cairn("job", *args, passphrase=None, env=e, check=False)
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert "Secret" not in out, out           # never the passphrase, whatever the command
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def _sets(config, target=0, tmp=None):
    env = {"PASSPHRASE": SECRET}
    st = json.loads(cairn("collection-status", "--json", "--archive-dir", f"{tmp}/probe-cache",
                          config["targets"][target], passphrase=None, env=env).stdout)
    return [s["type"] for c in st["chains"] for s in c["sets"]]


@pytest.fixture
def web(tmp_path):
    return make_job(tmp_path)


def test_backup_runs_the_hooks_and_reaches_every_target(tmp_path, web):
    cdir, config = web
    rc, out, err = job(cdir, "web", "backup")
    assert rc == 0, err
    assert "Backup Statistics" in out            # the CLI's own output, passed through
    assert (tmp_path / "hooks").read_text() == "pre\npost success\n"
    assert _sets(config, 0, tmp_path) == ["full"] and _sets(config, 1, tmp_path) == ["full"]
    # the job's cache, as run-job uses it
    assert (tmp_path / "cache" / "web").is_dir()


def test_bkp_full_incr_and_target_choice(tmp_path, web):
    cdir, config = web
    assert job(cdir, "web", "bkp")[0] == 0
    assert not (tmp_path / "hooks").exists()     # bkp: no hooks
    assert job(cdir, "web", "incr")[0] == 0
    assert job(cdir, "web", "full", "--target", "2")[0] == 0      # the second target alone
    assert _sets(config, 0, tmp_path) == ["full", "incremental"]
    assert _sets(config, 1, tmp_path) == ["full", "incremental", "full"]
    rc, _out, err = job(cdir, "web", "full", "--target", config["targets"][1])
    assert rc == 0, err
    rc, _out, err = job(cdir, "web", "status", "--target", "3")
    assert rc == 23 and "--target is a number from 1 to 2" in err


def test_status_list_restore_fetch(tmp_path, web):
    cdir, config = web
    assert job(cdir, "web", "bkp")[0] == 0
    rc, out, _err = job(cdir, "web", "status")
    assert rc == 0 and "Found primary backup chain" in out
    rc, out, _err = job(cdir, "web", "list")
    assert rc == 0 and "keep/a.txt" in out and "other/b.txt" in out and "junk.tmp" not in out
    rc, out, err = job(cdir, "web", "list", "now")
    assert rc == 0 and "keep/a.txt" in out, err
    rc, out, err = job(cdir, "web", "list", "not-a-time")        # TIME reaches the CLI: its error, its code
    assert rc == 23 and "not-a-time" in err
    rc, _out, err = job(cdir, "web", "restore", str(tmp_path / "r1"))
    assert rc == 0, err
    assert (tmp_path / "r1" / "other" / "b.txt").read_text() == "beta\n"
    assert not (tmp_path / "r1" / "keep" / "junk.tmp").exists()
    rc, _out, err = job(cdir, "web", "restore", str(tmp_path / "r1"))
    assert rc == 11                                  # not empty: the CLI's code
    assert job(cdir, "web", "restore", "--force", str(tmp_path / "r1"), "now")[0] == 0
    rc, _out, err = job(cdir, "web", "fetch", "keep/a.txt", str(tmp_path / "a.txt"), "now")
    assert rc == 0, err
    assert (tmp_path / "a.txt").read_text() == "alpha\n"


def test_verify_uses_the_jobs_selection(tmp_path, web):
    """junk.tmp is excluded by the job: with --compare-data it is no difference."""
    cdir, config = web
    assert job(cdir, "web", "bkp")[0] == 0
    rc, out, err = job(cdir, "web", "verify", "--compare-data")
    assert rc == 0, out + err
    assert "0 difference(s)" in out
    write(str(tmp_path / "src" / "other" / "b.txt"), b"changed\n")
    rc, out, _err = job(cdir, "web", "verify", "--compare-data")
    assert rc == 1 and "Difference found" in out and "b.txt" in out and "junk" not in out


def test_purges_delete_only_with_force(tmp_path, web):
    cdir, config = web
    for _i in range(3):
        assert job(cdir, "web", "full", "--target", "1")[0] == 0
    assert job(cdir, "web", "incr", "--target", "1")[0] == 0
    before = _sets(config, 0, tmp_path)
    assert before == ["full", "full", "full", "incremental"]
    rc, out, _err = job(cdir, "web", "purgeFull")
    assert rc == 0 and "Run again with --force" in out and _sets(config, 0, tmp_path) == before
    rc, out, _err = job(cdir, "web", "purgeFull", "2", "--force")
    assert rc == 0 and _sets(config, 0, tmp_path) == ["full", "full", "incremental"]
    rc, out, _err = job(cdir, "web", "purgeFull", "--force")          # the job's keep_full: 1
    assert rc == 0 and _sets(config, 0, tmp_path) == ["full", "incremental"]
    assert job(cdir, "web", "full", "--target", "1")[0] == 0
    rc, out, _err = job(cdir, "web", "purgeIncr")                     # keep_full_with_incrementals: 1
    assert rc == 0 and "Run again with --force" in out
    assert job(cdir, "web", "purgeIncr", "--force")[0] == 0
    assert _sets(config, 0, tmp_path) == ["full", "full"]
    assert job(cdir, "web", "purge", "--force")[0] == 0               # older_than 1h: nothing that old
    assert _sets(config, 0, tmp_path) == ["full", "full"]
    rc, out, _err = job(cdir, "web", "purge", "now")                  # the age given on the command line
    assert rc == 0 and "Run again with --force" in out and _sets(config, 0, tmp_path) == ["full", "full"]
    assert job(cdir, "web", "purge", "now", "--force")[0] == 0
    assert _sets(config, 0, tmp_path) == ["full"]
    rc, out, err = job(cdir, "web", "cleanup")
    assert rc == 0, err
    assert job(cdir, "web", "cleanup", "--force")[0] == 0


def test_purge_without_an_age_anywhere_is_a_clear_error(tmp_path):
    cdir, _config = make_job(tmp_path, retention={})
    rc, _out, err = job(cdir, "web", "purge")
    assert rc == 23 and "no retention.older_than" in err and "purge 6M" in err


def test_chain_runs_in_order_and_stops_at_the_first_failure(tmp_path, web):
    cdir, config = web
    rc, out, err = job(cdir, "web", "backup_verify_purge")
    assert rc == 0, err
    assert out.index("Backup Statistics") < out.index("Verify complete") < out.index("No old backup sets")
    write(str(tmp_path / "src" / "other" / "b.txt"), b"changed\n")
    # verify fails (exit 1): the backup after it must not run
    rc, out, _err = job(cdir, "web", "verify_bkp", "--compare-data")
    assert rc == 1 and "Backup Statistics" not in out
    assert _sets(config, 0, tmp_path) == ["full"]
    # a failing pre-hook: 70, nothing backed up, the post-hook told
    _cdir, _c = make_job(tmp_path, name="hooked", pre_hook="exit 3",
                         post_hook=f"echo post $CAIRN_JOB_STATUS >> {tmp_path}/hooked")
    rc, out, _err = job(cdir, "hooked", "backup_status")
    assert rc == 70 and "Found" not in out
    assert (tmp_path / "hooked").read_text() == "post failure\n"


def test_failing_step_exit_code_is_the_commands(tmp_path):
    cdir, _config = make_job(tmp_path, target=["sftp://nobody@127.0.0.1:1//nowhere"])
    rc, _out, err = job(cdir, "web", "bkp")
    assert rc == 50 and "127.0.0.1" in err


def test_preview_shows_the_command_lines_and_no_secret(tmp_path, web):
    cdir, config = web
    rc, out, err = job(cdir, "web", "backup_verify_purge", "--preview", "--force")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("# job web: environment") and "PASSPHRASE" in lines[0] and "GNUPGHOME" in lines[0]
    assert lines[1] == f"pre-hook: echo pre >> {tmp_path}/hooks"
    assert lines[2].startswith("cairn --archive-dir ") and f"--exclude-filelist {cdir}/web.filelist" in lines[2]
    assert f"--mirror file://{tmp_path}/t2" in lines[2]
    assert lines[3].startswith("post-hook: ")
    assert lines[4].startswith("cairn verify ") and "--exclude-filelist" in lines[4]
    assert lines[5].startswith("cairn remove-older-than 1h --force ")
    assert not (tmp_path / "t1").exists() and not (tmp_path / "hooks").exists()     # nothing ran
    # a password in a target URL is not shown either
    cdir, _c = make_job(tmp_path, name="pw", target="sftp://user:urlpass@127.0.0.1:1//x")
    rc, out, _err = job(cdir, "pw", "status", "--preview")
    assert rc == 0 and "urlpass" not in out and "127.0.0.1" in out


def test_json_gathers_every_steps_result(tmp_path, web):
    cdir, config = web
    for _i in range(2):
        assert job(cdir, "web", "full")[0] == 0
    rc, out, err = job(cdir, "--json", "web", "prune")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["exit_code"] == 0 and [s["target"] for s in doc["steps"]] == config["targets"]
    assert all(s["result"]["would_delete"] and s["result"]["sets"] for s in doc["steps"])
    rc, out, err = job(cdir, "--json", "web", "prune", "--force")
    assert rc == 0 and all(s["result"]["deleted"] for s in json.loads(out)["steps"])
    assert _sets(config, 0, tmp_path) == ["full"] and _sets(config, 1, tmp_path) == ["full"]
    rc, out, err = job(cdir, "--json", "web", "info")
    assert rc == 0, err
    info = json.loads(out)["steps"][0]["result"]
    assert info["chain_length"] == 1 and info["stored_bytes"] > 0 and info["last_backup"]


def test_table_of_jobs(tmp_path, web):
    cdir, config = web
    make_job(tmp_path, name="idle")
    r = cairn("run-job", cdir / "web.json", passphrase=None, check=False)
    assert r.returncode == 0, r.stderr
    rc, out, _err = job(cdir)
    assert rc == 0
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert rows["JOB"].split()[:3] == ["JOB", "LAST", "RUN"]
    assert " ok " in rows["web"] and "s ago" in rows["web"] and f"file://{tmp_path}/t1" in rows["web"]
    assert "never run" in rows["idle"]
    rc, out, _err = job(tmp_path / "empty-dir-that-is-missing")
    assert rc == 23


@pytest.mark.parametrize("argv,message", [
    (["nosuch", "status"], "no job nosuch in"),
    (["../web", "status"], "is not a job name"),
    (["web", "frobnicate"], "unknown command 'frobnicate'"),
    (["web", "backup_frob"], "unknown command 'frob'"),
    (["web"], "what to do with web"),
    (["web", "status", "extra"], "takes no arguments"),
    (["web", "fetch", "only-path"], "fetch takes 2 to 3 argument(s)"),
    (["web", "status", "--frob"], "no option --frob"),
])
def test_bad_input_is_a_usage_error(tmp_path, web, argv, message):
    cdir, _config = web
    rc, _out, err = job(cdir, *argv)
    assert rc == 23 and message in err, err


def test_writing_commands_wait_for_no_run(tmp_path, web):
    cdir, config = web
    assert job(cdir, "web", "bkp")[0] == 0
    with open(config["lock_file"], "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        rc, _out, err = job(cdir, "web", "bkp")
        assert rc == 75 and "another run" in err
        assert job(cdir, "web", "status")[0] == 0        # reading needs no lock


def test_sftp_target_with_the_jobs_ssh_options(tmp_path):
    sshd = Sshd(tmp_path / "sshd").start()
    try:
        cdir, config = make_job(tmp_path, target=sshd.url(tmp_path / "remote"), ssh_options=sshd.ssh_options)
        rc, _out, err = job(cdir, "web", "backup_verify")
        assert rc == 0, err
        rc, _out, err = job(cdir, "web", "restore", str(tmp_path / "r"))
        assert rc == 0, err
        assert (tmp_path / "r" / "keep" / "a.txt").read_text() == "alpha\n"
        assert any(n.startswith("duplicity-full.") for n in os.listdir(tmp_path / "remote"))
    finally:
        sshd.stop()
