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
