# SPDX-License-Identifier: GPL-3.0-or-later
"""Fuzz duply-import: a profile's conf (bash assignments read without a shell), its exclude file,
and the YAML and credentials file made of them. Anything gives data or ConfError/UserError
(exit 23); what is printed reads back as the entry it says, and no secret is in it."""
import re

import yaml
from hypothesis import assume, given
from hypothesis import strategies as st

from hostile import documented, fuzz_settings

from cairn import duply, options
from cairn.errors import ExitCode

USER_CODES = frozenset({ExitCode.USER_ERROR})

# pieces of what duply confs hold, and what a hostile or broken one may hold
_NAMES = st.sampled_from(["GPG_KEY", "GPG_PW", "GPG_KEYS_ENC", "GPG_KEY_SIGN", "GPG_PW_SIGN", "GPG_OPTS",
                          "TARGET", "TARGET_USER", "TARGET_PASS", "SOURCE", "MAX_AGE", "MAX_FULL_BACKUPS",
                          "MAX_FULLS_WITH_INCRS", "MAX_FULLBKP_AGE", "VOLSIZE", "DUPL_PARAMS", "ARCH_DIR",
                          "TEMP_DIR", "VERBOSITY", "AWS_SECRET_ACCESS_KEY", "X", "_y1"])
_VALUES = st.one_of(
    st.sampled_from(["'disabled'", "'s3://host/bucket/path'", '"sftp://u:p%40ss@127.0.0.1/p"', "/srv",
                     "1M", "25", "'--asynchronous-upload --volsize 50'", '"$DUPL_PARAMS --exclude x"',
                     "${TARGET}", "$CONFDIR/x", "'a'\"b\"c", "\"$(rm -rf /)\"", "`id`", "$((1+1))",
                     "${X:-default}", "\"unterminated", "'", "a\\ b", "~/x", "*.tmp", "{a,b}",
                     "\"line\\\nnext\"", "$'\\x41'", "''", '""', "$UNSET_ANYWHERE", "${!X}"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30),
)
_LINE = st.one_of(
    st.tuples(st.sampled_from(["", "export ", "  ", "declare "]), _NAMES, _VALUES).map(lambda t: f"{t[0]}{t[1]}={t[2]}"),
    st.sampled_from(["# comment", "", "   ", "GPG_PW=secret # trailing", "if true; then X=1; fi",
                     "source /etc/passwd", ". ./other", "X+=more", "X=a; Y=b", "X=$(cat /etc/shadow)",
                     "\t", "\r", "X=\x00", "=value", "1X=a", "X =a", "X= a"]),
    st.text(max_size=40),
)
CONF = st.lists(_LINE, max_size=12).map("\n".join)


@fuzz_settings(600)
@given(CONF)
def test_a_conf_is_read_or_refused_naming_why(text):
    with documented(USER_CODES):
        values, exported, from_env = duply.parse_conf(text, environ={"HOME": "/root", "CONFDIR": "/etc/duply/p"})
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in values.items())
        assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n) for n in [*values, *exported, *from_env])
        assert not ({"HOME", "CONFDIR"} & set(values)) or "HOME" in text or "CONFDIR" in text


_EXCLUDE_LINE = st.one_of(
    st.tuples(st.sampled_from(["+ ", "- ", "", "+", "-", "  - ", "# "]),
              st.sampled_from(["/srv/www", "**/*.tmp", "/home/*/.cache", "ignorecase:/Data", "re:x", " "]))
    .map("".join),
    st.text(max_size=30),
)


@fuzz_settings(300)
@given(st.lists(_EXCLUDE_LINE, max_size=10).map("\n".join))
def test_an_exclude_file_keeps_its_order_as_selection_lines(text):
    lines = duply.selection_from_exclude(text)
    assert all(line[:2] in ("+ ", "- ") and line[2:].strip() for line in lines)
    # every rule line, in its order; one without a sign excludes (an --exclude-filelist's meaning)
    kept = [raw.strip() for raw in text.replace("\r\n", "\n").split("\n")
            if raw.strip() and not raw.strip().startswith("#")]
    assert lines == [k if k.startswith(("+ ", "- ")) else "- " + k for k in kept]
    with documented(USER_CODES):
        rules = options.selection_rules({"selection": lines})
        assert [kind for kind, _glob in rules] == ["include" if line[0] == "+" else "exclude" for line in lines]


_SECRET = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=8, max_size=20)


@fuzz_settings(200)
@given(st.fixed_dictionaries({
    "TARGET": st.sampled_from(["file:///srv/backup", "sftp://u@127.0.0.1/p", "s3://127.0.0.1:9000/bucket/p",
                               "webdav://127.0.0.1/dav", "b2://bucket/p"]),
    "SOURCE": st.sampled_from(["/", "/srv", "/home/user with space"]),
    "MAX_AGE": st.sampled_from(["", "1M", "6M", "2Y"]),
    "MAX_FULL_BACKUPS": st.sampled_from(["", "1", "3"]),
    "VOLSIZE": st.sampled_from(["", "25", "250"]),
    "DUPL_PARAMS": st.sampled_from(["", "--asynchronous-upload", "--exclude-if-present .nobackup"]),
}), _SECRET, _SECRET, st.lists(_EXCLUDE_LINE, max_size=5).map("\n".join))
def test_an_imported_profile_prints_yaml_that_reads_back_without_its_secrets(
        tmp_path_factory, conf, passphrase, target_pass, exclude):
    assume("'" not in passphrase and "'" not in target_pass)
    assume(passphrase.strip() == passphrase and target_pass.strip() == target_pass)
    assume(not any(secret in exclude for secret in (passphrase, target_pass)))   # else it is printed rightly
    profile = tmp_path_factory.mktemp("duply") / "web"
    profile.mkdir()
    lines = [f"GPG_PW='{passphrase}'", f"TARGET_PASS='{target_pass}'"]
    lines += [f"{k}='{v}'" for k, v in conf.items() if v]
    (profile / "conf").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (profile / "exclude").write_text(exclude, encoding="utf-8")
    with documented(USER_CODES):
        imported = duply.import_profile(str(profile), environ={"HOME": "/root"}, has_secret_key=lambda key: False)
        text = duply.to_yaml(imported.entry)
        assert yaml.safe_load(text) == [imported.entry]
        for secret in (passphrase, target_pass):
            assert secret not in text and secret not in "\n".join(imported.notes)
        assert imported.credentials_env().get("PASSPHRASE") == passphrase
        creds = duply.credentials_text(imported.credentials_env(), "web")
        assert all(line.startswith("#") or "=" in line for line in creds.splitlines())
