# SPDX-License-Identifier: GPL-3.0-or-later
"""The one redaction: every URL and every exception text passes here before it is printed,
logged, stored or sent.

``redact_url`` hides a URL's password whatever its bytes. The password is everything between
the first ':' after the user name and the LAST '@' of the URL, so an unencoded '#', '/', '?',
'@' or ':' in it (which make urlsplit read a different URL) stays hidden as well. A URL with an
'@' in its path and a ':' before it loses more than its password: showing too little is the
safe side. Query parameters that carry credentials (an Azure SAS ``sig=``, ``token=`` ...) are
hidden too.

``redact_text`` does the same to every URL in free text (exception texts, log lines, messages)
and hides the secret values a front end knows of, in their plain, percent-encoded and quoted
forms. Those come as a ``Secrets`` that each front end builds from its own arguments and
environment and passes along; there is no global list of secrets.
"""
import json
import logging
import re
from urllib.parse import quote, quote_plus, unquote, urlsplit

MASK = "***"
# Secret values shorter than this are not searched for in free text, where they would mask
# ordinary words; a URL's password of any length is hidden by its place in the URL.
MIN_SECRET = 4

# Environment variables whose values are credentials (duplicity's names and the SDKs').
SECRET_ENV = ("PASSPHRASE", "SIGN_PASSPHRASE", "FTP_PASSWORD", "AWS_SECRET_ACCESS_KEY",
              "AWS_SESSION_TOKEN", "AZURE_ACCOUNT_KEY", "AZURE_CONNECTION_STRING",
              "AZURE_SHARED_ACCESS_SIGNATURE", "GS_SECRET_ACCESS_KEY", "B2_APPLICATION_KEY",
              "BACKEND_PASSWORD", "DPBX_ACCESS_TOKEN", "DPBX_REFRESH_TOKEN", "DPBX_APP_SECRET")
# Environment variables holding URLs whose passwords or signatures are secrets.
URL_ENV = ("AZURE_ACCOUNT_URL", "AWS_ENDPOINT_URL")

_SECRET_NAME = re.compile(r"(?i)pass|secret|token|key|signature|credential|connection_string")
_SCHEME_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_SCHEME_AT_START = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:/+")
# In free text a user name is taken to hold none of these, so that a URL without a password
# does not swallow the text up to some later '@'. (A password may hold anything.)
_NOT_IN_USER = re.compile(r"[/?#\s]")
_QUERY_CREDENTIAL = re.compile(
    r"(?i)([?&;](?:sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|"
    r"x-goog-signature|x-goog-credential|token|access_token|password|passwd|pwd|secret|"
    r"api_key|apikey|key)=)[^&#\s'\"]*")
# Key=Value credentials in free text: Azure connection strings and SAS tokens.
_TEXT_CREDENTIAL = re.compile(r"(?i)\b(AccountKey=|SharedAccessSignature=|sig=)[^;&\s'\"]*")
_SAS_SIGNATURE = re.compile(r"(?:^|[?&])sig=([^&]+)")


class Secrets:
    """Secret values to hide in free text, each also in the forms it takes in a URL
    (percent-encoded), a repr() or a JSON string. Immutable; build one per run."""

    def __init__(self, values=()):
        found = set()
        for v in values:
            if isinstance(v, Secrets):
                found |= v.values
            elif isinstance(v, str) and len(v) >= MIN_SECRET:
                found.add(v)
        self.values = frozenset(found)
        forms = set()
        for v in found:
            forms.update((v, quote(v, safe=""), quote(v), quote_plus(v), repr(v)[1:-1],
                          json.dumps(v)[1:-1], json.dumps(v, ensure_ascii=False)[1:-1]))
        # longest first, so that a form is never cut short by a shorter one at the same place
        ordered = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __or__(self, other):
        return Secrets([self, *(other.values if isinstance(other, Secrets) else other)])

    def __len__(self):
        return len(self.values)

    def __repr__(self):        # never the values themselves
        return f"<Secrets: {len(self.values)} value(s)>"

    def hide(self, text):
        return self._pattern.sub(MASK, text) if self._pattern is not None else text


def _authority_start(url):
    m = _SCHEME_AT_START.match(url)
    return m.end() if m else 0


def _password_span(text, start, end, free_text):
    """(begin, end) of the password of the URL whose authority starts at ``start``, or None."""
    at = text.rfind("@", start, end)
    if at < 0:
        return None
    colon = text.find(":", start, at)
    if colon < 0:
        return None
    if free_text and _NOT_IN_USER.search(text, start, colon):
        return None
    return colon + 1, at


def redact_url(url, keep_path=True):
    """The URL with its password and credential query parameters replaced by ``***``.

    ``keep_path=False`` gives only ``scheme://host[:port]/...``, for URLs whose path or query is
    itself a secret (a heartbeat service's check token); the host is shown only when it is
    certain which part of the URL it is.
    """
    if not isinstance(url, str):
        return url
    if not keep_path:
        return _origin(url)
    start = _authority_start(url)
    span = _password_span(url, start, len(url), free_text=False)
    if span is not None:
        url = url[:span[0]] + MASK + url[span[1]:]
    return _QUERY_CREDENTIAL.sub(r"\1" + MASK, url)


def _origin(url):
    start = _authority_start(url)
    if "://" not in url[:start]:
        return MASK
    rest = url[start:]
    loose = re.split(r"[/?#]", rest.rpartition("@")[2], maxsplit=1)[0]
    try:
        strict = urlsplit(url).netloc.rpartition("@")[2]
    except ValueError:
        strict = None
    # an '@' in the path or query makes the two readings differ: then no host at all
    host = loose if loose == strict and loose else "?"
    return f"{url[:start]}{host}/..."


def redact_text(text, secrets=()):
    """``text`` with every URL's password hidden (see redact_url) and every form of each of
    ``secrets`` (a Secrets, or an iterable of values) replaced by ``***``."""
    if text is None:
        return text
    if not isinstance(text, str):
        text = str(text)
    if not isinstance(secrets, Secrets):
        secrets = Secrets(secrets)
    text = secrets.hide(text)
    if "://" in text:
        text = _redact_urls(text)
    if "=" in text:           # both credential forms are key=value (and most text has none)
        text = _QUERY_CREDENTIAL.sub(r"\1" + MASK, text)
        text = _TEXT_CREDENTIAL.sub(r"\1" + MASK, text)
    return text


def _redact_urls(text):
    out, pos = [], 0
    while True:
        m = _SCHEME_IN_TEXT.search(text, pos)
        if m is None:
            break
        # where a URL ends in free text is unknown (a password may hold spaces): the password
        # may reach up to the last '@' of the whole text
        span = _password_span(text, m.end(), len(text), free_text=True)
        if span is None:
            out.append(text[pos:m.end()])
            pos = m.end()
            continue
        out.append(text[pos:span[0]])
        out.append(MASK)
        pos = span[1]
    out.append(text[pos:])
    return "".join(out)


def redact_data(value, secrets=()):
    """A copy of JSON-like data (dicts, lists, strings, numbers) with every string value
    redacted (keys are the engine's own names); other objects become their redacted str()."""
    if not isinstance(secrets, Secrets):
        secrets = Secrets(secrets)
    return _redact_data(value, secrets)


def _redact_data(value, secrets):
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, dict):
        return {k: _redact_data(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_data(v, secrets) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact_text(value, secrets)


def redact_error(error, secrets=()):
    """Redact a CairnError's message in place (it is raised on) and return it."""
    message = getattr(error, "message", None)
    if isinstance(message, str):
        error.message = redact_text(message, secrets)
        error.args = (error.message,)
    return error


def url_secrets(url):
    """The secret parts of a URL: its password as the last-'@' rule and as urlsplit read it,
    credential query values, each also percent-decoded."""
    if not isinstance(url, str) or not url:
        return []
    out = []
    span = _password_span(url, _authority_start(url), len(url), free_text=False)
    if span is not None:
        out.append(url[span[0]:span[1]])
    try:
        strict = urlsplit(url).password
    except ValueError:
        strict = None
    if strict:
        out.append(strict)
    out += [m.group(0)[len(m.group(1)):] for m in _QUERY_CREDENTIAL.finditer(url)]
    out += [unquote(v) for v in out]
    return [v for v in dict.fromkeys(out) if v]


def env_secrets(env):
    """The credentials among environment variables (duplicity's and the SDKs' names), with the
    key and signature inside an Azure connection string or SAS token."""
    out = []
    for name in SECRET_ENV:
        value = env.get(name)
        if value:
            out.append(value)
    conn = env.get("AZURE_CONNECTION_STRING") or ""
    for part in conn.split(";"):
        key, _sep, value = part.partition("=")
        if key.strip().lower() in ("accountkey", "sharedaccesssignature") and value.strip():
            out += [value.strip(), *_sas_signature(value.strip())]
    out += _sas_signature(env.get("AZURE_SHARED_ACCESS_SIGNATURE") or "")
    for name in URL_ENV:
        out += url_secrets(env.get(name))
    return out


def is_secret_name(name):
    """Whether an environment variable of this name holds a credential (by its name)."""
    return name in SECRET_ENV or bool(_SECRET_NAME.search(name))


def _sas_signature(sas):
    m = _SAS_SIGNATURE.search(sas)
    return [m.group(1), unquote(m.group(1))] if m else []


class RedactingFilter(logging.Filter):
    """A handler filter that redacts each record (message, arguments, traceback) it passes."""

    def __init__(self, secrets=()):
        super().__init__()
        self.secrets = secrets if isinstance(secrets, Secrets) else Secrets(secrets)

    def filter(self, record):
        try:
            message = record.getMessage()
        except Exception:   # noqa: BLE001 - a malformed record still gets out, redacted
            message = f"{record.msg} {record.args}"
        record.msg = redact_text(message, self.secrets)
        record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info, self.secrets)
        return True


__all__ = ["MASK", "MIN_SECRET", "RedactingFilter", "SECRET_ENV", "Secrets", "env_secrets", "is_secret_name", "redact_data",
           "redact_error", "redact_text", "redact_url", "url_secrets"]
