# SPDX-License-Identifier: GPL-3.0-or-later
"""Backends, chosen by URL scheme as duplicity does."""
from urllib.parse import urlsplit

from ..errors import UserError
from .base import Backend
from .local import LocalBackend

# scheme -> factory(url); later issues add sftp, s3, azure, webdav, ftp.
_FACTORIES = {"file": LocalBackend.from_url}


def register(scheme, factory):
    _FACTORIES[scheme] = factory


def open_backend(url):
    """Return the backend for a target URL (``file:///srv/backup``, later ``sftp://...``)."""
    scheme = urlsplit(url).scheme
    if not scheme:
        raise UserError(f"target {url!r} is not a URL; use file:///absolute/path or scheme://...")
    factory = _FACTORIES.get(scheme)
    if factory is None:
        raise UserError(f"unsupported target scheme {scheme!r} in {redact_url(url)!r}; "
                        f"supported: {', '.join(sorted(_FACTORIES))}")
    return factory(url)


def redact_url(url):
    """The URL with any password removed, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return parts._replace(netloc=f"{user}:***@{netloc[1]}").geturl()


__all__ = ["Backend", "LocalBackend", "open_backend", "register", "redact_url"]
