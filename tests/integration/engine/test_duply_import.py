# SPDX-License-Identifier: GPL-3.0-or-later
"""`cairn duply-import` against real duply 2.4.1 (Debian's package) driving stock duplicity:

- the imported `selection`, written by the job role's filelist.j2, makes cairn back up exactly the
  files duply backs up with the profile's exclude file;
- the imported pre/post hooks run the profile's scripts with the variables duply gives them.
"""
import json
import os
import re
import shutil
import subprocess

import jinja2
import pytest
import yaml

from treeutil import ROOT, cairn, duplicity, write

from cairn.crypto import stop_agent

pytestmark = pytest.mark.duplicity

DUPLY = shutil.which("duply")
_LINE = re.compile(rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4} ")
DUMP = ('env | grep -E "^(PROFILE|CONFDIR|SOURCE|TARGET_URL|GPG_|CMD_|CND_)" | sort > "$DUMP_DIR/{}.{}"\n')


@pytest.fixture
def duply(duplicity_bin, tmp_path):
    if DUPLY is None:
        pytest.skip("duply is not installed (apt-get install duply)")
    home = tmp_path / "home"
    gnupg = tmp_path / "duply-gnupg"
    home.mkdir()
    gnupg.mkdir(mode=0o700)
    env = dict(os.environ, HOME=str(home), GNUPGHOME=str(gnupg),
               PATH=os.path.dirname(duplicity_bin) + os.pathsep + os.environ["PATH"])

    def run(profile, *args, extra=None):
        r = subprocess.run([DUPLY, str(profile), *args], env=dict(env, **(extra or {})), capture_output=True,
                           text=True, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        return r
    yield run
    stop_agent(str(gnupg))      # duply's gpg started one; it is the test's to end


def _import(profile, *args):
    r = cairn("duply-import", profile, *args, passphrase=None)
    entry = yaml.safe_load(r.stdout)[0]
    return entry, r.stderr.decode()


def _render_filelist(entry, path):
    with open(os.path.join(ROOT, "roles", "job", "defaults", "main.yml")) as f:
        job = dict(yaml.safe_load(f)["cairn_job_defaults"], **entry)      # as the role merges them
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(ROOT, "roles", "job", "templates")),
                             trim_blocks=True, undefined=jinja2.StrictUndefined)
    with open(path, "w") as f:
        f.write(env.get_template("filelist.j2").render(cairn_job=job, ansible_managed="managed"))


def _listing(duplicity_bin, url, tmp_path):
    r = duplicity(duplicity_bin, "list-current-files", "--no-encryption", "--archive-dir", tmp_path / "lc",
                  "--name", "l", url, passphrase=None)
    return [line[25:] for line in r.stdout.split(b"\n") if _LINE.match(line)]


def test_selection_selects_what_duply_selects(duply, duplicity_bin, tmp_path):
    src = tmp_path / "src"
    for name in ("a/keep.txt", "a/skip/x", "a/deep/y.log", "a/deep/z.txt", "b/other.txt", "top.txt",
                 "top.log", "c d/spaced.txt"):
        write(src / name, name.encode())
    profile = tmp_path / "web"
    profile.mkdir()
    (profile / "conf").write_text(f"GPG_KEY='disabled'\nTARGET='file://{tmp_path}/duply-dst'\n"
                                  f"SOURCE='{src}'\nARCH_DIR={tmp_path}/duply-cache\n")
    # duply's own example shape, comments, a bare line (an exclude), first match wins
    (profile / "exclude").write_text(f"# what duply's template says\n- **.log\n\n{src}/a/skip\n+ {src}/a\n"
                                     f"+ {src}/c d\n  + {src}/top.txt  \n- **\n")
    duply(profile, "backup")
    want = _listing(duplicity_bin, f"file://{tmp_path}/duply-dst", tmp_path)
    assert b"a/keep.txt" in want and b"top.txt" in want and b"b/other.txt" not in want

    entry, _err = _import(profile)
    assert entry["selection"][:3] == ["- **.log", f"- {src}/a/skip", f"+ {src}/a"]
    filelist = tmp_path / "web.filelist"
    _render_filelist(entry, filelist)
    cairn("backup", "--no-encryption", "--archive-dir", tmp_path / "cairn-cache", "--exclude-filelist", filelist,
          src, f"file://{tmp_path}/cairn-dst", passphrase=None)
    assert _listing(duplicity_bin, f"file://{tmp_path}/cairn-dst", tmp_path) == want


@pytest.fixture(params=["symmetric", "public-key"])
def gpg_conf(request):
    """(conf lines, GNUPGHOME or None) for symmetric or public-key encryption (two keys, the
    first one's secret key here: duply signs with it)."""
    if request.param == "symmetric":
        return "GPG_PW='sym pass'\nGPG_OPTS='--pinentry-mode loopback'\n", None
    keys = request.getfixturevalue("gnupghome")
    return (f"GPG_KEY='{keys['enc']},{keys['sign']}'\nGPG_PW='sym pass'\n"
            "GPG_OPTS='--pinentry-mode loopback --trust-model always'\n", keys["home"])


def test_hooks_give_the_scripts_duplys_variables(duply, tmp_path, gpg_conf):
    conf, home = gpg_conf
    profile = tmp_path / "db"
    profile.mkdir()
    (profile / "conf").write_text(
        conf + f"TARGET='file://{tmp_path}/dst'\nTARGET_USER='bob'\nTARGET_PASS='p@ss word'\n"
        f"SOURCE='{tmp_path}/src'\nARCH_DIR={tmp_path}/cache\n")
    write(tmp_path / "src" / "f", b"data")
    (profile / "pre").write_text("#!/bin/sh\n" + DUMP.format("pre", "${WHO}"))
    os.chmod(profile / "pre", 0o700)
    (profile / "post").write_text(DUMP.format("post", "${WHO}"))     # not executable: duply sources it
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    gnupg = {"GNUPGHOME": home} if home else {}
    duply(profile, "backup", extra={"DUMP_DIR": str(dumps), "WHO": "duply", **gnupg})

    entry, err = _import(profile)
    assert "p@ss word" not in yaml.safe_dump(entry) and "sym pass" not in err
    # what run-job gives a hook: the job's environment (the credentials file) and the status
    env = {"PATH": os.environ["PATH"], "DUMP_DIR": str(dumps), "WHO": "cairn",
           "FTP_PASSWORD": "p@ss word", "PASSPHRASE": "sym pass"}
    for hook, extra in (("pre_hook", {}), ("post_hook", {"CAIRN_JOB_STATUS": "success"})):
        r = subprocess.run(["/bin/sh", "-c", entry[hook]], env=dict(env, **extra), capture_output=True,
                           text=True, check=False)
        assert r.returncode == 0, r.stderr
    for which in ("pre", "post"):
        theirs = (dumps / f"{which}.duply").read_text()
        ours = (dumps / f"{which}.cairn").read_text()
        assert "TARGET_URL_PASS=p@ss word" in theirs and "CMD_NEXT=" in theirs
        if home:      # two keys, joined by duply with a literal \n; signing with the first
            assert "\\n" in theirs.split("GPG_KEYS_ENC=")[1].split("\n")[0]
            assert "GPG_KEY_SIGN=disabled" not in theirs
        assert ours == theirs, f"{which}:\nduply:\n{theirs}\ncairn:\n{ours}"


def _render_job_config(entry, tmp_path):
    """job.json.j2 as the role renders it (to_nice_json as Ansible's), with the role's defaults."""
    with open(os.path.join(ROOT, "roles", "job", "defaults", "main.yml")) as f:
        defaults = yaml.safe_load(f)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(ROOT, "roles", "job", "templates")),
                             trim_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["to_nice_json"] = lambda value, sort_keys=True: json.dumps(value, indent=4, sort_keys=sort_keys)
    env.filters["bool"] = bool
    text = env.get_template("job.json.j2").render(
        cairn_job=dict(defaults["cairn_job_defaults"], **entry), cairn_job_config_dir=str(tmp_path / "jobs"),
        cairn_job_archive_dir=str(tmp_path / "cairn-cache"), cairn_job_gnupg_home=str(tmp_path / "job-gnupg"),
        cairn_job_credentials_dir=str(tmp_path / "cred"), cairn_job_state_dir=str(tmp_path / "state"),
        cairn_job_metrics_dir=str(tmp_path / "metrics"))
    config = json.loads(text)
    config["lock_file"] = str(tmp_path / "job.lock")
    return config


def test_imported_job_continues_duplys_chain(duply, duplicity_bin, tmp_path):
    """The migration: duply made the full; the imported job, run by run-job, adds an incremental
    to the same chain (no new full: duply made none by itself), with the same selection, and its
    hooks see what duply's saw."""
    src = tmp_path / "src"
    for name in ("keep/a.txt", "keep/b.log", "other/c.txt"):
        write(src / name, name.encode())
    profile = tmp_path / "web"
    profile.mkdir()
    (profile / "conf").write_text(
        "GPG_PW='migrate me'\nGPG_OPTS='--pinentry-mode loopback'\n"
        f"TARGET='file://{tmp_path}/dst'\nSOURCE='{src}'\nARCH_DIR={tmp_path}/duply-cache\n"
        "MAX_FULL_BACKUPS=3\n")
    (profile / "exclude").write_text(f"- **.log\n+ {src}/keep\n- **\n")
    (profile / "pre").write_text("#!/bin/sh\n" + DUMP.format("pre", "${WHO}"))
    os.chmod(profile / "pre", 0o700)
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    duply(profile, "backup", extra={"DUMP_DIR": str(dumps), "WHO": "duply"})

    entry, _err = _import(profile)
    config = _render_job_config(entry, tmp_path)
    os.makedirs(os.path.dirname(config["filelist"]))
    _render_filelist(entry, config["filelist"])
    os.makedirs(os.path.dirname(config["credentials_file"]))
    with open(config["credentials_file"], "w") as f:
        f.write('PASSPHRASE="migrate me"\n')                 # what the credentials role writes from the vault
    job_json = tmp_path / "web.json"
    job_json.write_text(json.dumps(config))
    write(src / "keep" / "new.txt", b"after the migration")
    r = cairn("run-job", job_json, passphrase=None, check=False,
              env={"DUMP_DIR": str(dumps), "WHO": "cairn", "GNUPGHOME": str(tmp_path / "duply-gnupg")})
    assert r.returncode == 0, r.stderr.decode()

    status = duplicity(duplicity_bin, "collection-status", "--archive-dir", tmp_path / "st", "--name", "s",
                       f"file://{tmp_path}/dst", passphrase="migrate me").stdout.decode()
    assert "Full" in status and "Incremental" in status and status.count("Full") == 1, status
    files = duplicity(duplicity_bin, "list-current-files", "--archive-dir", tmp_path / "st", "--name", "s",
                      f"file://{tmp_path}/dst", passphrase="migrate me").stdout
    assert b"keep/new.txt" in files and b"keep/a.txt" in files
    assert b"b.log" not in files and b"other" not in files
    assert (dumps / "pre.cairn").read_text() == (dumps / "pre.duply").read_text()


# --- adoption on the host: `duply-import --json --hook-dir --credentials-file` (the job role) ----

_SECRETS = ('pw "with" $HOME \\ and \'quotes\'', "p@ss word", "aws secret")


def _adoptable(tmp_path, conf_extra=""):
    profile = tmp_path / "etc-duply" / "web"
    profile.mkdir(parents=True)
    (profile / "conf").write_text(
        f"GPG_PW='{_SECRETS[0].replace(chr(39), chr(39) + chr(92) + chr(39) + chr(39))}'\n"
        "GPG_OPTS='--pinentry-mode loopback'\n"
        f"TARGET='file://{tmp_path}/dst'\nTARGET_PASS='{_SECRETS[1]}'\nSOURCE='{tmp_path}/src'\n"
        f"export AWS_SECRET_ACCESS_KEY='{_SECRETS[2]}'\nexport SOME_SETTING=plain\n" + conf_extra)
    (profile / "pre").write_text("#!/bin/sh\n" + DUMP.format("pre", "${WHO}"))
    os.chmod(profile / "pre", 0o700)
    (profile / "post").write_text(DUMP.format("post", "${WHO}"))
    return profile


def _adopt(profile, creds, *more, check=True):
    return cairn("duply-import", "--json", "--hook-dir", "/etc/cairn/jobs/web.duply", "--credentials-file", creds,
                 *more, profile, passphrase=None, check=check)


def test_adoption_writes_the_secrets_to_the_credentials_file_only(tmp_path):
    from cairn.job import load_env_file
    profile = _adoptable(tmp_path)
    creds = tmp_path / "cred" / "web.env"
    creds.parent.mkdir(mode=0o700)
    r = _adopt(profile, creds)
    out = r.stdout.decode() + r.stderr.decode()
    assert not any(s in out for s in _SECRETS) and "vault_" not in out
    doc = json.loads(r.stdout)
    assert doc["name"] == "web" and doc["profile_dir"] == str(profile) and doc["credentials_changed"] is True
    assert doc["credentials"] == ["AWS_SECRET_ACCESS_KEY", "FTP_PASSWORD", "PASSPHRASE", "SOME_SETTING"]
    assert doc["scripts"] == {"pre": str(profile / "pre"), "post": str(profile / "post")}
    entry = doc["entry"]
    assert not {"passphrase", "sign_passphrase", "env"} & set(entry) and entry["full_if_older_than"] == ""
    # the hooks run the copies the role makes; CONFDIR stays the profile's, as under duply
    assert entry["pre_hook"].endswith(" /etc/cairn/jobs/web.duply/pre") and f"CONFDIR={profile}" in entry["pre_hook"]
    assert entry["post_hook"].endswith(" /etc/cairn/jobs/web.duply/post")
    assert os.stat(creds).st_mode & 0o7777 == 0o600
    # what systemd's EnvironmentFile= (and run-job for cron) reads back
    assert load_env_file(creds) == {"PASSPHRASE": _SECRETS[0], "FTP_PASSWORD": _SECRETS[1],
                                    "AWS_SECRET_ACCESS_KEY": _SECRETS[2], "SOME_SETTING": "plain"}
    assert [p.name for p in creds.parent.iterdir()] == ["web.env"]           # no temporary file left


def test_adoption_is_idempotent_and_check_writes_nothing(tmp_path):
    profile = _adoptable(tmp_path)
    creds = tmp_path / "web.env"
    assert json.loads(_adopt(profile, creds, "--check").stdout)["credentials_changed"] is True
    assert not creds.exists()
    assert json.loads(_adopt(profile, creds).stdout)["credentials_changed"] is True
    written = creds.read_bytes()
    assert json.loads(_adopt(profile, creds).stdout)["credentials_changed"] is False
    assert json.loads(_adopt(profile, creds, "--check").stdout)["credentials_changed"] is False
    os.chmod(creds, 0o644)                                                  # a mode gone wrong is repaired
    assert json.loads(_adopt(profile, creds, "--check").stdout)["credentials_changed"] is True
    assert os.stat(creds).st_mode & 0o777 == 0o644
    assert json.loads(_adopt(profile, creds).stdout)["credentials_changed"] is True
    assert os.stat(creds).st_mode & 0o777 == 0o600 and creds.read_bytes() == written
    with open(profile / "conf", "a") as f:                                  # a changed secret is rewritten
        f.write("GPG_PW='another one'\n")
    assert json.loads(_adopt(profile, creds).stdout)["credentials_changed"] is True
    assert b'PASSPHRASE="another one"' in creds.read_bytes()


def test_adoption_credentials_in_the_credentials_roles_format(tmp_path):
    """One format: the file is what roles/credentials renders for the same variables."""
    profile = _adoptable(tmp_path)
    creds = tmp_path / "web.env"
    _adopt(profile, creds)
    with open(os.path.join(ROOT, "roles", "credentials", "tasks", "main.yml")) as f:
        task = next(t for t in yaml.safe_load(f) if t["name"].startswith("Write the credential files"))
    env = jinja2.Environment(trim_blocks=True)
    env.filters["dictsort"] = lambda d: sorted(d.items(), key=lambda kv: kv[0].lower())
    rendered = env.from_string(task["ansible.builtin.copy"]["content"]).render(item={"env": {
        "PASSPHRASE": _SECRETS[0], "FTP_PASSWORD": _SECRETS[1], "AWS_SECRET_ACCESS_KEY": _SECRETS[2],
        "SOME_SETTING": "plain"}})
    ours = creds.read_text().splitlines()
    theirs = rendered.splitlines()
    assert ours[0].startswith("# Managed by Ansible (") and ours[1:] == theirs[1:], (ours, theirs)


@pytest.mark.parametrize("argv", [["--credentials-file", "x.env"], ["--check"], ["--json", "--check"],
                                  ["--json", "--base-env-stdin"]])
def test_adoption_usage_errors_exit_23(tmp_path, argv):
    profile = _adoptable(tmp_path)
    r = cairn("duply-import", *argv, profile, passphrase=None, check=False)
    assert r.returncode == 23 and r.stdout == b"", r.stderr


def test_adoption_takes_the_roles_defaults_from_stdin_and_the_profile_wins(tmp_path):
    """cairn_job_defaults' env and smtp_password reach the file by stdin, never argv."""
    from cairn.job import load_env_file
    profile = _adoptable(tmp_path)
    creds = tmp_path / "web.env"
    base = {"CAIRN_SMTP_PASSWORD": "smtp secret", "PASSPHRASE": "the default's", "X_FLEET": "1"}
    r = cairn("duply-import", "--json", "--credentials-file", creds, "--base-env-stdin", profile, passphrase=None,
              input=json.dumps(base).encode())
    assert b"smtp secret" not in r.stdout + r.stderr
    env = load_env_file(creds)
    assert env["CAIRN_SMTP_PASSWORD"] == "smtp secret" and env["X_FLEET"] == "1" and env["PASSPHRASE"] == _SECRETS[0]
    for bad in (b'["smtp secret"]', b'{"BAD NAME": "smtp secret"}', b'{"A": ["smtp secret"]}', b"smtp secret"):
        r = cairn("duply-import", "--json", "--credentials-file", tmp_path / "x.env", "--base-env-stdin", profile,
                  passphrase=None, check=False, input=bad)
        assert r.returncode == 23 and b"smtp secret" not in r.stdout + r.stderr, r.stderr
    assert not (tmp_path / "x.env").exists()


def test_duplys_default_cache_is_reused_where_it_is(duply, tmp_path):
    """No ARCH_DIR: duply kept its cache in duplicity's default archive dir under --name
    duply_PROFILE; the job uses it there (a host with only the public key needs its signatures)."""
    write(tmp_path / "src" / "f", b"data")
    profile = tmp_path / "web"
    profile.mkdir()
    (profile / "conf").write_text(f"GPG_KEY='disabled'\nTARGET='file://{tmp_path}/dst'\nSOURCE='{tmp_path}/src'\n")
    home = tmp_path / "home"                                 # the duply fixture's HOME
    entry, _err = _import(profile)
    assert "--archive-dir" not in entry.get("args", [])       # another HOME: nothing to reuse
    duply(profile, "backup")
    assert (home / ".cache" / "duplicity" / "duply_web").is_dir()
    r = cairn("duply-import", "--json", profile, passphrase=None, env={"HOME": str(home)})
    doc = json.loads(r.stdout)
    assert doc["entry"]["args"][-4:] == ["--archive-dir", str(home / ".cache" / "duplicity"), "--name", "duply_web"]
    assert any("is reused where it is" in n for n in doc["notes"])
    r = cairn("duply-import", "--json", profile, passphrase=None, env={"HOME": "/nonexistent",
                                                                       "XDG_CACHE_HOME": str(home / ".cache")})
    assert json.loads(r.stdout)["entry"]["args"][-3] == str(home / ".cache" / "duplicity")


def test_adoption_refuses_a_secret_with_a_line_break_without_showing_it(tmp_path):
    profile = _adoptable(tmp_path, conf_extra="GPG_PW_SIGN='line one\nline two'\n")
    creds = tmp_path / "web.env"
    r = _adopt(profile, creds, check=False)
    assert r.returncode == 23 and b"SIGN_PASSPHRASE" in r.stderr and b"line one" not in r.stderr + r.stdout
    assert not creds.exists()


def test_adopted_job_continues_duplys_chain_and_rebuilds_its_cache(duply, duplicity_bin, tmp_path):
    """What cairn_job_adopt_duply does on a host, end to end: duply made the full (its cache in
    duply's own ARCH_DIR, which the profile does not name); the job adopted on the host - credentials
    file written by the engine, hooks run from their copies - adds an incremental to that chain with
    an empty cache of its own, rebuilt from the target."""
    src = tmp_path / "src"
    for name in ("keep/a.txt", "keep/b.log", "other/c.txt"):
        write(src / name, name.encode())
    profile = tmp_path / "etc-duply" / "web"
    profile.mkdir(parents=True)
    (profile / "conf").write_text(
        "GPG_PW='adopt \"me\" $HOME'\nGPG_OPTS='--pinentry-mode loopback'\n"
        f"TARGET='file://{tmp_path}/dst'\nSOURCE='{src}'\nMAX_FULL_BACKUPS=3\n")
    (profile / "exclude").write_text(f"- **.log\n+ {src}/keep\n- **\n")
    (profile / "pre").write_text("#!/bin/sh\n" + DUMP.format("pre", "${WHO}") + 'echo "$0" > "$DUMP_DIR/pre.path"\n')
    os.chmod(profile / "pre", 0o700)
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    duply(profile, "backup", extra={"DUMP_DIR": str(dumps), "WHO": "duply"})

    hook_dir = tmp_path / "jobs" / "web.duply"
    cred = tmp_path / "cred"
    cred.mkdir(mode=0o700)
    doc = json.loads(cairn("duply-import", "--json", "--hook-dir", hook_dir, "--credentials-file", cred / "web.env",
                           profile, passphrase=None).stdout)
    config = _render_job_config(doc["entry"], tmp_path)
    hook_dir.mkdir(parents=True)
    for which, script in doc["scripts"].items():                 # the role's copy (mode preserved)
        shutil.copy2(script, hook_dir / which)
    _render_filelist(doc["entry"], config["filelist"])
    assert config["credentials_file"] == str(cred / "web.env") and not os.path.exists(config["archive_dir"])
    job_json = tmp_path / "web.json"
    job_json.write_text(json.dumps(config))
    write(src / "keep" / "new.txt", b"after the adoption")
    r = cairn("run-job", job_json, passphrase=None, check=False,
              env={"DUMP_DIR": str(dumps), "WHO": "cairn", "GNUPGHOME": str(tmp_path / "duply-gnupg")})
    assert r.returncode == 0, r.stderr.decode()
    assert 'adopt "me"' not in r.stdout.decode() + r.stderr.decode()

    status = duplicity(duplicity_bin, "collection-status", "--archive-dir", tmp_path / "st", "--name", "s",
                       f"file://{tmp_path}/dst", passphrase='adopt "me" $HOME').stdout.decode()
    assert status.count("Full") == 1 and "Incremental" in status, status
    files = duplicity(duplicity_bin, "list-current-files", "--archive-dir", tmp_path / "st", "--name", "s",
                      f"file://{tmp_path}/dst", passphrase='adopt "me" $HOME').stdout
    assert b"keep/new.txt" in files and b"b.log" not in files and b"other" not in files
    assert any(n.startswith("duplicity-full") for n in os.listdir(os.path.join(config["archive_dir"], "web")))
    assert (dumps / "pre.cairn").read_text() == (dumps / "pre.duply").read_text()
    assert (dumps / "pre.path").read_text() == f"{hook_dir}/pre\n"
