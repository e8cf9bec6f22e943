# SPDX-License-Identifier: GPL-3.0-or-later
"""Backends, chosen by URL scheme as duplicity does.

Each backend's module is imported only when its scheme is used, so a host that backs up to
file:// or sftp:// needs neither boto3 nor the Azure SDK.
"""
import importlib

from ..errors import CairnError, UserError
from ..redact import Secrets, env_secrets, redact_error, redact_url, url_secrets
from .base import Backend, BackendOptions, split_url
from .local import LocalBackend
from .transfer import RateLimiter, RetryingBackend, ThrottledReader

# scheme -> (module, factory name); duplicity's aliases map to the same backend.
_BUILTIN = {
    "file": (".local", "LocalBackend.from_url"),
    "sftp": (".sftp", "from_url"),
    "paramiko+sftp": (".sftp", "from_url"),
    "scp": (".sftp", "from_url"),
    "paramiko+scp": (".sftp", "from_url"),
    "s3": (".s3", "from_url"),
    "boto3+s3": (".s3", "from_url"),
    "s3+http": (".s3", "from_url"),     # duplicity 0.7's boto 2 form of s3://
    "gs": (".gcs", "from_url"),        # HMAC keys go on to s3.from_gs_url
    "b2": (".s3", "from_b2_url"),
    "azure": (".azure", "from_url"),
    "webdav": (".webdav", "from_url"),
    "webdavs": (".webdav", "from_url"),
    "ftp": (".ftp", "from_url"),
    "ftps": (".ftp", "from_url"),
    "lftp+ftp": (".ftp", "from_url"),
    "lftp+ftps": (".ftp", "from_url"),
    "multi": (".multi", "from_url"),
    "dpbx": (".dpbx", "from_url"),
}
_REGISTERED = {}


def register(scheme, factory):
    """Add a scheme: ``factory(url, options)`` returns a Backend (tests use it for fault injection)."""
    _REGISTERED[scheme] = factory


def unregister(scheme):
    _REGISTERED.pop(scheme, None)


def schemes():
    return sorted(set(_BUILTIN) | set(_REGISTERED))


def _factory(scheme):
    if scheme in _REGISTERED:
        return _REGISTERED[scheme]
    if scheme not in _BUILTIN:
        return None
    module, attr = _BUILTIN[scheme]
    try:
        obj = importlib.import_module(module, __name__)
    except ImportError as e:
        raise UserError(f"the {scheme}:// backend needs a Python library that is not installed "
                        f"({e.name or e})") from None
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def open_raw(url, options=None):
    """The backend for ``url`` without the transfer layer."""
    options = options or BackendOptions()
    scheme = split_url(url, check_port=False).scheme
    if not scheme:
        raise UserError(f"target {redact_url(url)!r} is not a URL; use file:///absolute/path or scheme://...")
    factory = _factory(scheme)
    if factory is None:
        raise UserError(f"unsupported target scheme {scheme!r} in {redact_url(url)!r}; "
                        f"supported: {', '.join(schemes())}")
    try:
        return factory(url, options)
    except CairnError as e:
        # a backend's set-up messages are redacted where they are made; this is the net
        raise redact_error(e, Secrets(url_secrets(url) + _env_secrets(options.env))) from None


def _env_secrets(env):
    """The credentials in ``env``, with those inside the Google credentials file it leads to."""
    from .gcs import file_secrets
    return list(env_secrets(env)) + file_secrets(env)


def secrets_of(urls, env):
    """What a front end must never show for a run on ``urls``: their passwords (those of a
    multi:// config's entries and env values too) and the credentials in ``env`` (and in the
    Google credentials file it names)."""
    values = _env_secrets(env)
    for url in urls:
        values += url_secrets(url)
        if isinstance(url, str) and url.lower().startswith("multi:"):
            from .multi import config_secrets
            values += config_secrets(url)
    return Secrets(values)


def open_backend(url, options=None, mirrors=(), stand_in=False):
    """The backend for a target URL, wrapped in retries and the rate limit.

    ``mirrors`` are further URLs that get every file too (several targets for redundancy); the
    rate limit is shared by all of them. A mirror that fails lags alone (multi.py's lag mode);
    ``stand_in``: a healthy mirror takes the primary's place when the primary fails.
    """
    options = options or BackendOptions()
    from .multi import MultiBackend
    limiter = RateLimiter(options.max_upload_rate) if options.max_upload_rate else None
    wrapped = []
    for u in [url, *mirrors]:
        raw = open_raw(u, options)
        if isinstance(raw, MultiBackend):       # multi:// retries per target already
            if limiter is not None:
                raw.throttle = lambda f: ThrottledReader(f, limiter)
            wrapped.append(raw)
        else:
            wrapped.append(RetryingBackend(raw, options, limiter=limiter))
    if len(wrapped) == 1:
        return wrapped[0]
    return MultiBackend(wrapped, mode="mirror", onfail="lag", stand_in=stand_in)


__all__ = ["Backend", "BackendOptions", "LocalBackend", "open_backend", "open_raw", "register",
           "unregister", "redact_url", "schemes", "secrets_of"]
