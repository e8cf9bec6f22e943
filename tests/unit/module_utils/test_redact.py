# SPDX-License-Identifier: GPL-3.0-or-later
"""The one redaction (cairn.redact): passwords of any bytes in URLs of every scheme, URLs in
free text, credential query parameters, known secret values in their encoded forms, log records."""
import json
import logging
from urllib.parse import quote

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cairn.backends import redact_url as reexported_redact_url
from cairn.redact import (MASK, RedactingFilter, Secrets, env_secrets, redact_data, redact_error, redact_text,
                          redact_url, url_secrets)
from cairn.errors import BackendError

MARKER = "Mk-7c1f#/?@:x%41"
SCHEMES = ["sftp", "scp", "paramiko+sftp", "ftp", "ftps", "lftp+ftp", "webdav", "webdavs", "b2", "s3", "gs",
           "azure", "faulty+ftp"]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("password", ["s3cret", MARKER, "p@ss", "a:b:c", "with space", "hash#tag", "q?x=1",
                                      "sl/ash", "pct%2F%41", "ünïcødé€", "@", ":", "", "tab\tnl\n", "x'\"\\"])
@pytest.mark.parametrize("rest", ["127.0.0.1:2222/dir", "host//abs/dir", "[::1]:21/d", "bucket", "h/p?x=1#frag"])
def test_password_of_any_shape_is_hidden(scheme, password, rest):
    url = f"{scheme}://user:{password}@{rest}"
    assert redact_url(url) == f"{scheme}://user:{MASK}@{rest}"
    assert redact_text(f"listing {url} failed: timed out") == f"listing {scheme}://user:{MASK}@{rest} failed: timed out"


@pytest.mark.parametrize("url,expected", [
    ("sftp://u:s3cret@h/p", "sftp://u:***@h/p"),
    ("b2://key:app@bucket/x", "b2://key:***@bucket/x"),
    ("s3://bucket/x", "s3://bucket/x"),
    ("s3://KEY:SECRET@/prefix", "s3://KEY:***@/prefix"),
    ("ftp://u:p@[::1/dir", "ftp://u:***@[::1/dir"),                 # unparseable, still redacted
    ("ftp://me@example.com:pw@host/x", "ftp://me@example.com:***@host/x"),
    ("sftp://backup@nas//srv/backups", "sftp://backup@nas//srv/backups"),   # no password
    ("sftp://backup@nas:2222/x", "sftp://backup@nas:2222/x"),
    ("file:///srv/backup", "file:///srv/backup"),
    ("multi:///etc/cairn/multi.json?mode=mirror&onfail=abort", "multi:///etc/cairn/multi.json?mode=mirror&onfail=abort"),
    ("sftp:/u:pw@h/x", "sftp:/u:***@h/x"),                           # one slash: still a password
    ("u:pw@host/x", "u:***@host/x"),                                 # no scheme at all
    ("sftp://h:22//srv/a@b", "sftp://h:***@b"),                      # '@' in a path: over-redacted, never under
    ("https://acct.blob.core.windows.net/c?sv=2022&sig=abc%2Bdef&se=1", "https://acct.blob.core.windows.net/c?sv=2022&sig=***&se=1"),
    ("webdav://u@h/x?token=t0k&a=1", "webdav://u@h/x?token=***&a=1"),
])
def test_url_shapes(url, expected):
    assert redact_url(url) == expected
    assert reexported_redact_url(url) == expected


def test_non_strings_pass_through():
    assert redact_url(None) is None and redact_url(5) == 5


@pytest.mark.parametrize("url,expected", [
    ("http://user:pingpass@127.0.0.1:1/ping/tok?k=tok", "http://127.0.0.1:1/..."),
    ("https://hc-ping.com/5f3c0e1a", "https://hc-ping.com/..."),
    ("https://h/ping/tok?k=a@b", "https://?/..."),           # which part is the host is not certain
    (f"https://u:{MARKER}@h/x", "https://?/..."),
    ("https://u:p@[::1/x", "https://?/..."),
    ("not a url", MASK),
])
def test_origin_only(url, expected):
    assert redact_url(url, keep_path=False) == expected


def test_free_text_shapes():
    assert redact_text(f"cannot open {'ftp://u:' + MARKER + '@h:21/d'!r}") == "cannot open 'ftp://u:***@h:21/d'"
    # a URL without a password followed by other text stays whole
    text = "sftp://root@h//x: listing sftp://root@h//x failed"
    assert redact_text(text) == text
    # two URLs, the first with a password
    assert redact_text("a ftp://u:pw@h1/x + ftp://v:pw2@h2/y") == "a ftp://u:***@h2/y"
    # the password itself holding a scheme
    assert redact_text("at ftp://u:x://y@h/z") == "at ftp://u:***@h/z"
    assert redact_text("AccountKey=abc/def==;EndpointSuffix=x and ...&sig=zz%2B&se=1") == \
        "AccountKey=***;EndpointSuffix=x and ...&sig=***&se=1"
    assert redact_text(None) is None
    assert redact_text(ValueError("ftp://u:pw@h")) == "ftp://u:***@h"


def test_known_secrets_in_every_form():
    secrets = Secrets([MARKER, "AKIA-secret-key/+=", "ab"])
    for form in (MARKER, quote(MARKER, safe=""), quote(MARKER), json.dumps(MARKER)[1:-1], repr(MARKER)[1:-1]):
        assert redact_text(f"<{form}>", secrets) == "<***>", form
    # values too short to search for in free text are left alone (URL passwords are not)
    assert redact_text("ab cd", secrets) == "ab cd"
    assert MARKER not in repr(secrets) and "2 value(s)" in repr(secrets)
    assert len(secrets | ["another-secret"]) == 3


def test_url_and_env_secrets():
    assert url_secrets(f"ftp://u:{MARKER}@h/d") == [MARKER, "Mk-7c1f#/?@:xA"]
    assert url_secrets("ftp://u:p%40ss@h/d") == ["p%40ss", "p@ss"]
    assert url_secrets("s3://bucket/x") == [] and url_secrets(None) == []
    env = {"FTP_PASSWORD": "ftp-pw", "AWS_SECRET_ACCESS_KEY": "aws-secret", "AWS_ACCESS_KEY_ID": "AKIAID",
           "AZURE_CONNECTION_STRING": "AccountName=a;AccountKey=acct-key==;SharedAccessSignature=sv=1&sig=s%2Fg",
           "AZURE_ACCOUNT_URL": "https://a.blob/?sv=1&sig=urlsig", "PASSPHRASE": "gpg pass"}
    found = env_secrets(env)
    for value in ("ftp-pw", "aws-secret", "acct-key==", "s%2Fg", "s/g", "urlsig", "gpg pass"):
        assert value in found
    assert "AKIAID" not in found


def test_log_records_are_redacted(caplog):
    log = logging.getLogger("cairn.test-redact")
    flt = RedactingFilter(Secrets(["env-secret-9"]))
    caplog.handler.addFilter(flt)
    try:
        with caplog.at_level(logging.INFO, logger="cairn.test-redact"):
            log.warning("%s failed (%s)", f"listing ftp://u:{MARKER}@h/d", "key env-secret-9 refused")
            try:
                raise ValueError(f"boom sftp://u:{MARKER}@h/x")
            except ValueError:
                log.exception("oops")
        text = caplog.text + "".join(r.exc_text or "" for r in caplog.records)
    finally:
        caplog.handler.removeFilter(flt)
    assert "ftp://u:***@h/d" in text and "key *** refused" in text and "sftp://u:***@h/x" in text
    assert "Mk-7c1f" not in text and "env-secret-9" not in text


def test_data_and_errors():
    data = {"url": f"ftp://u:{MARKER}@h/d", "n": 3, "ok": True, "none": None,
            "warnings": ["token-value-1 leaked", ("x",)], "obj": ValueError("token-value-1")}
    out = redact_data(data, ["token-value-1"])
    assert out == {"url": "ftp://u:***@h/d", "n": 3, "ok": True, "none": None, "warnings": ["*** leaked", ["x"]],
                   "obj": "***"}
    e = redact_error(BackendError(f"listing ftp://u:{MARKER}@h/d failed"))
    assert e.message == str(e) == "listing ftp://u:***@h/d failed" and e.args == (e.message,)


# --- properties: any password text ---------------------------------------------------------------

USERS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=12)
HOSTS = st.sampled_from(["127.0.0.1", "nas.example.org:2222", "[::1]:21", "bucket", "h"])
PATHS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-/", max_size=20)
PROPERTY = settings(derandomize=True, max_examples=400, deadline=None)


@PROPERTY
@given(scheme=st.sampled_from(SCHEMES), user=USERS, password=st.text(max_size=40), host=HOSTS, path=PATHS)
def test_property_redact_url_hides_any_password(scheme, user, password, host, path):
    url = f"{scheme}://{user}:{password}@{host}/{path}"
    expected = f"{scheme}://{user}:{MASK}@{host}/{path}"
    assert redact_url(url) == expected
    assert redact_text(f"listing {url} failed: connection refused") == f"listing {expected} failed: connection refused"


@PROPERTY
@given(user=USERS, password=st.text(min_size=4, max_size=40), host=HOSTS, path=PATHS)
def test_property_redact_text_hides_any_known_secret(user, password, host, path):
    assume("*" not in password)        # the mask itself could then rebuild the value
    url = f"ftp://{user}:{password}@{host}/{path}"
    text = (f"uploading x to {url!r}: 530 login refused; FTP_PASSWORD={password} ({quote(password, safe='')}) "
            f"{json.dumps(password)}")
    out = redact_text(text, Secrets(url_secrets(url)))
    assert password not in out and quote(password, safe="") not in out


# --- unparseable URLs: a usage error naming the URL redacted, never exit 30 ------------------------

BAD_URLS = [f"{scheme}://user:{MARKER}@127.0.0.1:21/d" for scheme in ("sftp", "ftp", "ftps", "webdav", "webdavs")] + [
    "ftp://u:p@[::1/dir", f"sftp://u:{MARKER}@[::1/x", "webdav://u:pw@h:99999/x", f"s3://KEY:{MARKER}@/prefix",
    f"s3://KEY:{quote(MARKER, safe='')}@/prefix", f"b2://key:{MARKER}@bucket/x", f"azure://KEY:{MARKER}@container/x",
    f"azure://container/x?sig={MARKER}", f"multi://u:{MARKER}@[::1/x.json", "file://[::1/x", "sftp:/u:pw@/x",
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_unparseable_urls_are_user_errors(url):
    from cairn.backends import BackendOptions, open_raw
    from cairn.errors import ExitCode, UserError
    options = BackendOptions(env={"AZURE_ACCOUNT_NAME": "a", "AZURE_ACCOUNT_KEY": "a2V5"})
    with pytest.raises(UserError) as info:
        open_raw(url, options).close()
    assert info.value.exit_code == ExitCode.USER_ERROR
    assert "Mk-7c1f" not in info.value.message and "x%41" not in info.value.message
    assert ":p@" not in info.value.message and ":pw@" not in info.value.message


def test_backend_set_up_errors_are_redacted_on_the_way_out():
    from cairn.backends import BackendOptions, open_raw, register, unregister
    from cairn.errors import UserError

    def factory(url, options):
        raise UserError(f"cannot use {url} with key {options.env['FTP_PASSWORD']}")
    register("leaky", factory)
    try:
        with pytest.raises(UserError) as info:
            open_raw(f"leaky://u:{MARKER}@h/x", BackendOptions(env={"FTP_PASSWORD": "env-secret-7"}))
    finally:
        unregister("leaky")
    assert info.value.message == "cannot use leaky://u:***@h/x with key ***"
