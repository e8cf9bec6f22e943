# SPDX-License-Identifier: GPL-3.0-or-later
"""`cairn duply-import`: duply confs read without a shell, mapped onto the job role's variables.

The fixtures are written by hand after duply 2.4.1's conf template (`duply NAME create`)."""
import io
import os
import subprocess
import sys

import pytest
import yaml

from cairn.duply import ConfError, import_profile, main, parse_conf, selection_from_exclude, to_yaml
from cairn.errors import ExitCode, UserError

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "..")
SPEC = os.path.join(ROOT, "roles", "job", "meta", "argument_specs.yml")

SYMMETRIC = """\
# gpg encryption settings, simple settings:
#  GPG_KEY='disabled' - disables encryption alltogether
#GPG_KEY='_KEY_ID_'
GPG_PW='s3cret sym pass'
TARGET='file:///mnt/backup/web'
# base directory to backup
SOURCE='/srv/www'
MAX_AGE=6M
MAX_FULL_BACKUPS=2
#MAX_FULLS_WITH_INCRS=1
MAX_FULLBKP_AGE=1M
DUPL_PARAMS="$DUPL_PARAMS --full-if-older-than $MAX_FULLBKP_AGE "
VOLSIZE=50
DUPL_PARAMS="$DUPL_PARAMS --volsize $VOLSIZE "
"""

PUBKEY_SIGNED = """\
GPG_KEY='ABCDEF0123456789ABCDEF0123456789ABCDEF01'
GPG_KEYS_ENC='1111222233334444,Mueller\\, Horst'
GPG_KEY_SIGN="99998888AAAABBBB"
GPG_PW='enc-pass'
GPG_PW_SIGN='sign-pass'
GPG_OPTS='--trust-model always'
TARGET='sftp://bob:pa%3Ass@backup.example.net//srv/backups/db'
SOURCE=/var/lib/postgresql
MAX_FULLS_WITH_INCRS=1
VERBOSITY=5
TEMP_DIR=/var/tmp
"""

S3_USER_PASS = """\
GPG_KEY='disabled'
TARGET='s3://s3.eu-central-1.amazonaws.com/bucket/host1'
TARGET_USER='AKIAEXAMPLE'
TARGET_PASS='wJalrXUtnFEMI/K7MDENG'
export AWS_ACCESS_KEY_ID='AKIAEXAMPLE'
export AWS_SECRET_ACCESS_KEY='wJalrXUtnFEMI/K7MDENG'
export AWS_DEFAULT_REGION=eu-central-1
SOURCE='/'
"""

PARAMS_AND_APPENDS = """\
GPG_PW='x'   # trailing comment
TARGET="sftp://backup.example.net/${PROFILE}"
SOURCE=/srv
BASE=/srv/data
SOURCE="$BASE"
FILENAME='.duplicity-ignore'
DUPL_PARAMS="$DUPL_PARAMS --exclude-if-present '$FILENAME'"
DUPL_PARAMS+=" --asynchronous-upload"
DUPL_PARAMS="$DUPL_PARAMS --ssh-options=\\"-oIdentityFile='/root/.ssh/id backup'\\" "
DUPL_PARAMS="$DUPL_PARAMS \\
  --volsize=100 --allow-source-mismatch"
ARCH_DIR=/var/cache/duply
DUPL_PRECMD="trickle -s -u 640"
"""


def _profile(tmp_path, conf, name="web", exclude=None, pre=None, post=None):
    d = tmp_path / name
    d.mkdir()
    (d / "conf").write_text(conf)
    if exclude is not None:
        (d / "exclude").write_text(exclude)
    for which, text in (("pre", pre), ("post", post)):
        if text is not None:
            (d / which).write_text(text)
            os.chmod(d / which, 0o700)
    return str(d)


def _import(tmp_path, conf, **kw):
    keyring = kw.pop("has_secret_key", lambda key: False)
    return import_profile(_profile(tmp_path, conf, **kw), environ={"HOME": "/root"}, has_secret_key=keyring)


# --- the conf parser ----------------------------------------------------------------------------

def test_assignment_forms():
    values, exported, _env = parse_conf(
        "A='single $NOT'\nB=\"double $A\"\nC=plain\\ word\nD=${C}x  # comment\n"
        "A+=' more'\nexport E=1; F=''\nexport G\nG=late\nH=\"multi\nline\"\n", environ={})
    assert values == {"A": "single $NOT more", "B": "double single $NOT", "C": "plain word",
                      "D": "plain wordx", "E": "1", "F": "", "G": "late", "H": "multi\nline"}
    assert exported == ["E", "G"]


def test_environment_references_are_reported():
    values, _exp, from_env = parse_conf("ARCH_DIR=$HOME/.cache\nT=~/x\nU=~user/x\n", environ={"HOME": "/home/u"})
    assert values == {"ARCH_DIR": "/home/u/.cache", "T": "/home/u/x", "U": "~user/x"}
    assert from_env == {"HOME"}


@pytest.mark.parametrize("conf,line,why", [
    ("A=1\nGPG_PW=$(pass show backup)\n", 2, "$("),
    ("SOURCE=`hostname`\n", 1, "shell syntax"),
    ("A=1\n\nif [ -n \"$X\" ]; then A=2; fi\n", 3, "not an assignment"),
    ("KEYS=(one two)\n", 1, "array"),
    ("T=${UNSET_THING:-/tmp}\n", 1, "parameter expansion"),
    ("S=$NOWHERE/x\n", 1, "neither the conf nor the environment"),
    ("A=1 duplicity --version\n", 1, "follows the value"),
    ("source /etc/other.conf\n", 1, "not an assignment"),
    ("A='open\n", 1, "unterminated"),
])
def test_refusals_name_the_line(conf, line, why):
    with pytest.raises(ConfError) as e:
        parse_conf(conf, environ={})
    assert f"conf line {line}" in str(e.value) and why in str(e.value)
    assert e.value.exit_code == ExitCode.USER_ERROR == 23


@pytest.mark.parametrize("conf", ["GPG_PW=\"hunter2-$(cat /x)\"\n", "[ -n 1 ] && TARGET_PASS=hunter2\n"])
def test_refusal_never_shows_a_secret_line(conf):
    with pytest.raises(ConfError) as e:
        parse_conf(conf, environ={})
    assert "hunter2" not in str(e.value) and "conf line 1" in str(e.value)


def test_exported_duply_variables_are_not_env_twice(tmp_path):
    r = _import(tmp_path, "export GPG_PW=p\nexport TARGET=file:///b\nSOURCE=/s\n")
    assert "env" not in r.entry and r.secrets == [("vault_cairn_web_passphrase", "GPG_PW")]


def test_exclude_file_keeps_order_and_makes_bare_lines_excludes():
    text = ("# comment\n\n+ /srv/www/keep\n- /srv/www/cache\n  /srv/www/tmp  \r\n- **.log\n"
            "+ /srv/www\n- **\n")
    assert selection_from_exclude(text) == ["+ /srv/www/keep", "- /srv/www/cache", "- /srv/www/tmp",
                                            "- **.log", "+ /srv/www", "- **"]


# --- the mapping --------------------------------------------------------------------------------

def test_symmetric_profile(tmp_path):
    r = _import(tmp_path, SYMMETRIC)
    e = r.entry
    assert e["name"] == "web" and e["source"] == "/srv/www" and e["target"] == "file:///mnt/backup/web"
    assert e["passphrase"] == "{{ vault_cairn_web_passphrase }}"
    assert "encrypt_keys" not in e and "sign_key" not in e and "no_encryption" not in e
    assert e["full_if_older_than"] == "1M" and e["volsize"] == 50
    assert e["retention"] == {"older_than": "6M", "keep_full": 2}
    assert "args" not in e or "--volsize" not in e["args"]
    assert r.secrets == [("vault_cairn_web_passphrase", "GPG_PW")]


def test_public_key_with_signing(tmp_path):
    r = _import(tmp_path, PUBKEY_SIGNED, name="db-1")
    e = r.entry
    assert e["name"] == "db-1"
    assert e["encrypt_keys"] == ["ABCDEF0123456789ABCDEF0123456789ABCDEF01", "1111222233334444", "Mueller, Horst"]
    assert e["sign_key"] == "99998888AAAABBBB"
    assert e["passphrase"] == "{{ vault_cairn_db_1_passphrase }}"
    assert e["sign_passphrase"] == "{{ vault_cairn_db_1_sign_passphrase }}"
    # the user stays in the URL, the password goes by FTP_PASSWORD, as duply passes it
    assert e["target"] == "sftp://bob@backup.example.net//srv/backups/db"
    assert e["env"] == {"FTP_PASSWORD": "{{ vault_cairn_db_1_target_password }}"}
    assert e["args"] == ["--gpg-options=--trust-model always", "--verbosity", "5", "--tempdir", "/var/tmp"]
    assert e["retention"] == {"keep_full_with_incrementals": 1}
    assert e["full_if_older_than"] == ""          # duply made no new fulls by itself
    assert [v for v, _what in r.secrets] == ["vault_cairn_db_1_target_password", "vault_cairn_db_1_passphrase",
                                             "vault_cairn_db_1_sign_passphrase"]


@pytest.mark.parametrize("in_keyring,sign", [(True, "AAAA1111"), (False, None)])
def test_sign_key_defaults_to_the_first_key_when_its_secret_is_here(tmp_path, in_keyring, sign):
    conf = "GPG_KEY='AAAA1111,BBBB2222'\nGPG_PW=p\nTARGET=file:///b\nSOURCE=/s\n"
    asked = []
    r = _import(tmp_path, conf, has_secret_key=lambda k: asked.append(k) or in_keyring)
    assert asked == ["AAAA1111"] and r.entry.get("sign_key") == sign


def test_sign_key_disabled(tmp_path):
    conf = "GPG_KEY='AAAA1111'\nGPG_KEY_SIGN=disabled\nTARGET=file:///b\nSOURCE=/s\n"
    assert "sign_key" not in _import(tmp_path, conf, has_secret_key=lambda k: True).entry


def test_gpg_disabled_and_unset_mean_no_encryption(tmp_path):
    r = _import(tmp_path, S3_USER_PASS)
    assert r.entry["no_encryption"] is True and "passphrase" not in r.entry
    r = _import(tmp_path, "TARGET=file:///b\nSOURCE=/s\n", name="plain")
    assert r.entry["no_encryption"] is True


def test_s3_exported_keys_win_over_target_user_and_pass(tmp_path):
    r = _import(tmp_path, S3_USER_PASS)
    e = r.entry
    # no credentials in an s3:// URL (duplicity ignores them, cairn refuses them)
    assert e["target"] == "s3://s3.eu-central-1.amazonaws.com/bucket/host1"
    assert e["env"] == {"AWS_ACCESS_KEY_ID": "{{ vault_cairn_web_aws_access_key_id }}",
                        "AWS_SECRET_ACCESS_KEY": "{{ vault_cairn_web_aws_secret_access_key }}",
                        "AWS_DEFAULT_REGION": "eu-central-1"}
    assert [v for v, _what in r.secrets] == ["vault_cairn_web_aws_access_key_id",
                                             "vault_cairn_web_aws_secret_access_key"]


def test_s3_target_user_and_pass_become_the_aws_keys(tmp_path):
    conf = "\n".join(line for line in S3_USER_PASS.splitlines() if not line.startswith("export AWS_"))
    r = _import(tmp_path, conf + "\n")
    assert r.entry["target"] == "s3://s3.eu-central-1.amazonaws.com/bucket/host1"
    assert r.entry["env"] == {"AWS_ACCESS_KEY_ID": "{{ vault_cairn_web_aws_access_key_id }}",
                              "AWS_SECRET_ACCESS_KEY": "{{ vault_cairn_web_aws_secret_access_key }}"}
    assert r.secrets == [("vault_cairn_web_aws_access_key_id", "TARGET_USER"),
                         ("vault_cairn_web_aws_secret_access_key", "TARGET_PASS")]


@pytest.mark.parametrize("target,user,pw,url,var", [
    ("ftp://h/dir", "u@corp", "p", "ftp://u%40corp@h/dir", "FTP_PASSWORD"),
    ("webdavs://old:p@h/dav", None, None, "webdavs://old@h/dav", "FTP_PASSWORD"),
    ("imaps://h/box", "u", "p", "imaps://u@h/box", "IMAP_PASSWORD"),
    ("b2://KEYID@bucket/p", None, "p", "b2://KEYID@bucket/p", "B2_APPLICATION_KEY"),
    ("file:///mnt/b", "u", None, "file:///mnt/b", None),
])
def test_target_user_and_pass_merge_as_duply_does(tmp_path, target, user, pw, url, var):
    conf = f"SOURCE=/s\nGPG_KEY=disabled\nTARGET='{target}'\n"
    conf += (f"TARGET_USER='{user}'\n" if user else "") + (f"TARGET_PASS='{pw}'\n" if pw else "")
    e = _import(tmp_path, conf).entry
    assert e["target"] == url
    assert e.get("env") == ({var: "{{ vault_cairn_web_target_password }}"} if var else None)


def test_dupl_params_split_as_the_shell_does(tmp_path):
    r = _import(tmp_path, PARAMS_AND_APPENDS, name="srv")
    e = r.entry
    assert e["target"] == "sftp://backup.example.net/srv" and e["source"] == "/srv/data"
    assert e["volsize"] == 100
    assert e["args"] == ["--exclude-if-present", ".duplicity-ignore", "--asynchronous-upload",
                         "--ssh-options=-oIdentityFile='/root/.ssh/id backup'", "--allow-source-mismatch",
                         "--archive-dir", "/var/cache/duply", "--name", "srv"]
    assert any("DUPL_PRECMD" in n for n in r.notes)


@pytest.mark.parametrize("conf,why", [
    ("TARGET=file:///b\n", "SOURCE is not set"),
    ("SOURCE=/path/of/source\nTARGET=file:///b\n", "SOURCE is not set"),
    ("SOURCE=/s\nTARGET='scheme://user[:password]@host[:port]/[/]path'\n", "TARGET is not set"),
    ("SOURCE=/s\nTARGET=/mnt/backup\n", "TARGET is not a URL"),
    ("SOURCE=/s\nTARGET=sftp://a@h/p\nTARGET_USER=b\n", "TARGET_USER and the user in TARGET differ"),
    ("SOURCE=/s\nTARGET=sftp://a:x@h/p\nTARGET_PASS=y\n", "TARGET_PASS and the password in TARGET differ"),
    ("SOURCE=/s\nTARGET=file:///b\nGPG_KEY=_KEY_ID_\nGPG_PW=p\n", "GPG_KEY is still"),
    ("SOURCE=/s\nTARGET=file:///b\nGPG_PW=_GPG_PASSWORD_\n", "symmetric encryption needs GPG_PW"),
    ("SOURCE=/s\nTARGET=file:///b\nGPG_PW=p\nMAX_FULL_BACKUPS=two\n", "not a number"),
    ("SOURCE=/s\nTARGET=file:///b\nGPG_PW=p\nDUPL_PARAMS=\"--volsize\"\n", "no value"),
    ("SOURCE=/s\nTARGET=file:///b\nGPG_PW=p\nDUPL_PARAMS=\"--name '\\$X'\"\n", "expand again"),
])
def test_profiles_duply_would_refuse(tmp_path, conf, why):
    with pytest.raises(ConfError, match=why):
        _import(tmp_path, conf)


def test_missing_profile_and_conf(tmp_path):
    with pytest.raises(UserError, match="not a directory"):
        import_profile(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="cannot read the duply conf"):
        import_profile(str(tmp_path / "empty"))


def test_profile_name_that_is_no_job_name(tmp_path):
    d = _profile(tmp_path, SYMMETRIC, name="my profile")
    with pytest.raises(UserError, match="--name"):
        import_profile(d, environ={})
    assert import_profile(d, name="mine", environ={}).entry["name"] == "mine"


# --- hooks --------------------------------------------------------------------------------------

def _run_hook(cmd, env):
    return subprocess.run(["/bin/sh", "-c", cmd], env=env, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("executable", [True, False])
def test_pre_and_post_scripts_run_with_duplys_variables(tmp_path, executable):
    script = ('echo "$PROFILE|$CONFDIR|$SOURCE|$TARGET_URL_PROT|$TARGET_URL_HOSTPATH|$TARGET_URL_USER|'
              '$TARGET_URL_PASS|$GPG_KEYS_ENC|$GPG_KEY_SIGN|$GPG_PW|$CMD_PREV|$CMD_NEXT|$CMD_ERR"\n')
    d = _profile(tmp_path, PUBKEY_SIGNED.replace("GPG_KEYS_ENC='1111222233334444,Mueller\\, Horst'\n", ""),
                 name="db", pre="#!/bin/sh\n" + script, post=script)
    if not executable:
        os.chmod(os.path.join(d, "pre"), 0o600)     # duply sources these (here: bash runs it)
    e = import_profile(d, environ={}, has_secret_key=lambda k: False).entry
    assert "sign-pass" not in e["pre_hook"] and "pa:ss" not in e["post_hook"] and "enc-pass" not in e["pre_hook"]
    env = {"PATH": os.environ["PATH"], "FTP_PASSWORD": "pa:ss", "PASSPHRASE": "enc-pass"}
    pre = _run_hook(e["pre_hook"], env)
    assert pre.returncode == 0, pre.stderr
    real = os.path.realpath(d)
    assert pre.stdout.strip() == (f"db|{real}|/var/lib/postgresql|sftp://|backup.example.net//srv/backups/db|bob|"
                                  "pa:ss|ABCDEF0123456789ABCDEF0123456789ABCDEF01|99998888AAAABBBB|enc-pass|"
                                  "START|bkp|0")
    post = _run_hook(e["post_hook"], dict(env, CAIRN_JOB_STATUS="failure"))
    assert post.stdout.strip().endswith("|pre|END|1")
    post = _run_hook(e["post_hook"], dict(env, CAIRN_JOB_STATUS="failure", CAIRN_JOB_EXIT="50"))
    assert post.stdout.strip().endswith("|pre|END|50")
    post = _run_hook(e["post_hook"], dict(env, CAIRN_JOB_STATUS="success"))
    assert post.stdout.strip().endswith("|pre|END|0")


def test_failing_script_fails_the_hook(tmp_path):
    d = _profile(tmp_path, SYMMETRIC, pre="#!/bin/sh\nexit 3\n")
    e = import_profile(d, environ={}).entry
    assert _run_hook(e["pre_hook"], {"PATH": os.environ["PATH"]}).returncode == 3
    assert "post_hook" not in e


# --- output: YAML that the role accepts -----------------------------------------------------------

def _validate(entry):
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    with open(SPEC) as f:
        spec = yaml.safe_load(f)["argument_specs"]["main"]["options"]
    result = ArgumentSpecValidator(spec).validate({"cairn_jobs": [entry]})
    return result.error_messages


@pytest.mark.parametrize("conf", [SYMMETRIC, PUBKEY_SIGNED, S3_USER_PASS, PARAMS_AND_APPENDS])
def test_yaml_parses_and_validates_against_the_role(tmp_path, conf):
    r = _import(tmp_path, conf, exclude="- **.tmp\n+ /srv\n- **\n", pre="#!/bin/sh\n")
    text = to_yaml(r.entry, comment="from duply")
    parsed = yaml.safe_load(text)
    assert parsed == [r.entry]
    assert _validate(parsed[0]) == []


def test_main_prints_yaml_and_names_secrets_only(tmp_path, capsys):
    d = _profile(tmp_path, PUBKEY_SIGNED, name="db")
    out, err = io.StringIO(), io.StringIO()
    assert main([d], stdout=out, stderr=err) == 0
    for secret in ("enc-pass", "sign-pass", "pa:ss", "pa%3Ass"):
        assert secret not in out.getvalue() and secret not in err.getvalue()
    assert yaml.safe_load(out.getvalue())[0]["name"] == "db"
    assert "vault_cairn_db_passphrase: GPG_PW" in err.getvalue()


@pytest.mark.parametrize("argv", [[], ["/nonexistent/profile"], ["a", "b"]])
def test_main_usage_errors_exit_23(argv):
    err = io.StringIO()
    assert main(argv, stdout=io.StringIO(), stderr=err) == 23
    assert err.getvalue().startswith("cairn: ")


def test_cli_dispatch(tmp_path):
    d = _profile(tmp_path, SYMMETRIC)
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "plugins", "module_utils"))
    r = subprocess.run([sys.executable, "-m", "cairn.cli", "duply-import", d, "--name", "www"], env=env,
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(r.stdout)[0]["name"] == "www"
    r = subprocess.run([sys.executable, "-m", "cairn.cli", "duply-import", str(tmp_path / "missing")], env=env,
                       capture_output=True, text=True, check=False)
    assert r.returncode == 23 and "not a directory" in r.stderr


def test_sign_key_from_the_secret_key_duply_exported_into_the_profile(tmp_path):
    conf = "GPG_KEY='AAAA1111'\nGPG_PW=p\nTARGET=file:///b\nSOURCE=/s\n"
    d = _profile(tmp_path, conf)
    for f in ("gpgkey.AAAA1111.pub.asc", "gpgkey.AAAA1111.sec.asc"):
        open(os.path.join(d, f), "w").close()
    r = import_profile(d, environ={}, has_secret_key=lambda k: False)
    assert r.entry["sign_key"] == "AAAA1111"
    assert any("gpgkey.AAAA1111.pub.asc, gpgkey.AAAA1111.sec.asc" in n for n in r.notes)


def test_arch_dir_keeps_duplys_cache_name(tmp_path):
    cache = tmp_path / "cache"
    (cache / "duply_web").mkdir(parents=True)
    r = _import(tmp_path, f"GPG_KEY=disabled\nTARGET=file:///b\nSOURCE=/s\nARCH_DIR={cache}\n")
    assert r.entry["args"] == ["--archive-dir", str(cache), "--name", "duply_web"]   # duply's bug #117 folder


@pytest.mark.parametrize("conf", [PUBKEY_SIGNED, PARAMS_AND_APPENDS])
def test_args_are_options_cairn_accepts(tmp_path, conf):
    from cairn.cli import build_parser
    e = _import(tmp_path, conf).entry
    # as run-job puts them: its common options, the job's args, then source and target
    ns = build_parser().parse_args(["--archive-dir", "/var/cache/cairn", "--name", e["name"], "--no-progress",
                                    "--json", *e["args"], e["source"], e["target"]])
    assert ns.args == [e["source"], e["target"]]
