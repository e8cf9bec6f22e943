# SPDX-License-Identifier: GPL-3.0-or-later
"""The one small interface every backend implements, and the options they share.

Retries, rate limits and (in tests) fault injection wrap a Backend; they are not backends'
business. ``put`` must make the file appear under its final name only when it is complete.
"""
import errno
import threading
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..errors import BackendError, ExitCode

# Uploads land under this name first and are renamed when complete, on every backend that can
# rename; duplicity ignores such names (not one of its own) and `cleanup` removes leftovers.
TEMP_PREFIX = ".cairn-tmp."


class ThreadConnections:
    """One connection per thread for backends whose connections cannot be shared (FTP control
    connections, HTTP sessions). ``take_all()`` hands every connection over for closing and makes
    the ones threads still hold stale, so ``current()`` never returns a closed one."""

    def __init__(self):
        self._lock = threading.Lock()
        self._local = threading.local()
        self._all = []
        self.generation = 0

    def current(self):
        """This thread's connection, or None when it has none or it went stale."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "generation", None) == self.generation:
            return conn
        return None

    def holds(self, conn):
        """Whether ``conn`` is still this thread's (not dropped meanwhile)."""
        return getattr(self._local, "conn", None) is conn

    def adopt(self, conn, generation):
        """Make ``conn`` this thread's; ``generation`` is what it was when connecting began."""
        self._local.conn = conn
        self._local.generation = generation
        with self._lock:
            self._all.append(conn)

    def forget(self):
        """Drop this thread's connection and return it (None if there was none) for closing."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._lock:
                if conn in self._all:
                    self._all.remove(conn)
        return conn

    def take_all(self):
        """Every connection, for closing; those threads still hold go stale."""
        with self._lock:
            conns, self._all = self._all, []
            self.generation += 1
        return conns


class LocalWriteError(Exception):
    """Writing a downloaded file failed: a local problem, not the server's (raised from inside
    a library's transfer loop so the backend can tell it from the server's errors)."""

    def __init__(self, error):
        super().__init__(error)
        self.error = error


def local_write_error(what, path, error):
    """The BackendError for an OSError writing ``path`` locally (no space: exit 53)."""
    code = ExitCode.BACKEND_NO_SPACE if error.errno == errno.ENOSPC else None
    return BackendError(f"{what}: cannot write {path}: {error.strerror}", code)


# (no '@' in it: after a URL in a message, text up to an '@' reads as that URL's password)
_SPECIAL_IN_PASSWORD = ("percent-encode special characters in a user name or password: # as %23, / as %2F, "
                        "? as %3F, : as %3A, the at sign as %40")


def split_url(url, what="target", check_port=True):
    """urlsplit() of a target URL whose host (and port) are known to be readable: a URL that
    cannot be parsed (bad brackets, a port that is no number) is a UserError naming it redacted.
    The parser's own words are left out: they can quote the password."""
    from ..errors import UserError
    from ..redact import redact_url
    if not isinstance(url, str):
        raise UserError(f"the {what} must be a URL, not {type(url).__name__}")
    try:
        parts = urlsplit(url)
        parts.hostname    # noqa: B018 - these raise ValueError for what urlsplit let through
        if check_port:
            parts.port    # noqa: B018
    except ValueError as e:
        text = str(e).lower()
        reason = ("its port is not a number from 0 to 65535" if "port" in text
                  else "its [IPv6] host brackets do not match" if "ipv6" in text or "bracket" in text
                  else "it cannot be parsed")
        hint = f"; {_SPECIAL_IN_PASSWORD}" if "@" in url else ""
        raise UserError(f"the {what} {redact_url(url)!r} is not a valid URL: {reason}{hint}") from None
    return parts


def read_full(f, n):
    """Up to ``n`` bytes of ``f``, fewer only at its end: upload sources (the rate limit's
    reader) may return less per read() than asked, and SDKs that take bytes need whole parts."""
    parts, got = [], 0
    while got < n:
        data = f.read(n - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


class FullReads:
    """A file whose read(n) returns ``n`` bytes unless at its end (see read_full), for
    libraries that take a short read for the end of the file."""

    def __init__(self, f):
        self.f = f

    def read(self, n=-1):
        if n is None or n < 0:
            return b"".join(iter(lambda: self.f.read(1 << 20), b""))
        return read_full(self.f, n)

    def __getattr__(self, name):      # tell, seek, name ...
        return getattr(self.f, name)


def error_text(e):
    """A library exception's text for a message, redacted (some quote the URL they were given)."""
    from ..redact import redact_text
    return redact_text(str(e) or type(e).__name__)


def missing_library(error, scheme, pip_name, debian, rhel):
    """The UserError for a backend whose Python library is not installed."""
    from ..errors import UserError
    return UserError(f"{scheme} targets need the Python library {pip_name} ({error}): pip install {pip_name}, "
                     f"or the package {debian} (Debian, Ubuntu) or {rhel} (RHEL family)")


def certificate_error(what, host, port, reason, options):
    """The BackendError for a TLS certificate that could not be verified: exit 52, no retries."""
    hint = ("check the file given with --ssl-cacert-file" if options.ssl_cacert_file
            else "give its CA with --ssl-cacert-file")
    return BackendError(f"{what}: the TLS certificate of {host}:{port} could not be verified "
                        f"({reason}); {hint}, or skip the check with --ssl-no-check-certificate",
                        ExitCode.BACKEND_PERMISSION)


@dataclass
class BackendOptions:
    """How to reach and talk to a target; duplicity's option names in comments."""

    num_retries: int = 5                 # --num-retries: attempts after the first, per operation
    retry_delay: float = 1.0             # first backoff in seconds; doubles, capped at 30 s
    timeout: float = 30.0                # --timeout: seconds a network operation may stall
    max_upload_rate: int = None          # --max-upload-rate: bytes/s over all uploads together
    upload_concurrency: int = 4          # volumes uploading at once (--asynchronous-upload)
    # where credentials come from: AWS_*, AZURE_*, FTP_PASSWORD ... Given by the front end
    # (options.backend_options: the process environment, then the module's no_log options),
    # never read from this process's environment behind its back
    env: dict = field(default_factory=dict, repr=False)
    ssh_options: str = ""                # --ssh-options "-oIdentityFile=... -oPort=..."
    ssh_accept_new_host_key: bool = False
    s3_endpoint_url: str = None          # --s3-endpoint-url (MinIO, Ceph, Wasabi, GCS, B2)
    s3_region_name: str = None           # --s3-region-name
    s3_storage_class: str = None         # STANDARD, STANDARD_IA, ONEZONE_IA, GLACIER, ...
    s3_sse: str = None                   # None, "AES256" or "aws:kms"
    s3_kms_key_id: str = None            # --s3-kms-key-id, with s3_sse="aws:kms"
    s3_kms_grant: str = None             # --s3-kms-grant: x-amz-grant-full-control of each object
    s3_unencrypted_connection: bool = False   # --s3-unencrypted-connection: http, not https
    s3_multipart_chunk_size: int = 20    # MiB; --s3-multipart-chunk-size
    s3_multipart_max_procs: int = 4      # parts of one volume in flight
    s3_object_lock_mode: str = None      # --s3-object-lock-mode governance|compliance
    s3_object_lock_days: int = None      # --s3-object-lock-days: retention of every object written
    azure_blob_tier: str = None          # --azure-blob-tier: Hot, Cool, Archive
    azure_max_connections: int = None    # --azure-max-connections: requests per blob transfer
    azure_max_block_size: int = None     # --azure-max-block-size: bytes per block of a large blob
    azure_max_single_put_size: int = None   # --azure-max-single-put-size: one Put Blob up to this
    webdav_headers: str = None           # --webdav-headers "Name,value,Name,value" (CSV pairs)
    ssl_verify: bool = True              # False: --ssl-no-check-certificate (webdavs, ftps)
    ssl_cacert_file: str = None          # --ssl-cacert-file: CA bundle for webdavs/ftps
    ssl_cacert_path: str = None          # --ssl-cacert-path: a directory of hashed CA files (c_rehash)
    ftp_passive: bool = True             # --ftp-passive (default) / --ftp-regular

    def secret(self, name):
        """A credential from ``env`` (None when unset or empty)."""
        value = self.env.get(name)
        return value or None


class Backend:
    url = ""
    # set by the transfer layer: wraps upload sources (rate limit); identity by default
    throttle = None

    def list(self):
        """Names of all files at the target (no directories), any order."""
        raise NotImplementedError

    def get(self, name, local_path):
        """Download ``name`` into ``local_path`` (overwritten)."""
        raise NotImplementedError

    def put(self, local_path, name):
        """Upload ``local_path`` as ``name``, atomically where the target allows it."""
        raise NotImplementedError

    def delete(self, names):
        """Delete the given names; names already gone are not an error. Returns None, or the
        names it kept (S3 Object Lock): a list of dicts with ``name``, ``reason`` ("retention",
        "legal-hold" or "denied"), ``mode`` and ``retain_until`` (ISO 8601, UTC, or None)."""
        raise NotImplementedError

    def held(self, names):
        """Which of ``names`` cannot be deleted now because the target keeps them (S3 Object
        Lock retention or a legal hold): {name: dict as in delete's answer}. Targets without
        such a thing keep nothing."""
        return {}

    def rename(self, old, new):
        """Give the file ``old`` the name ``new`` (replacing a ``new`` that is there), as one
        step where the target can (a rename) or as copy-then-delete (object stores). A missing
        ``old`` is BackendNotFound, unless ``new`` is already there (a rename done once, whose
        answer was lost)."""
        raise NotImplementedError

    def local_path(self, name):
        """A path to read ``name`` in place (file:// targets), or None: then use get()."""
        return None

    def size(self, name):
        """Stored size in bytes, or None when the backend cannot tell cheaply."""
        return None

    def reset(self):
        """Drop connections after a failure; the next operation reconnects (before a retry)."""

    def open_upload(self, local_path):
        """The file to read an upload from: rate-limited when the transfer layer says so."""
        f = open(local_path, "rb")
        return self.throttle(f) if self.throttle is not None else f

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def object_key(prefix, name):
    """An object store's key of file ``name`` under the target's ``prefix`` (s3, gs, azure)."""
    check_name(name)
    return f"{prefix}/{name}" if prefix else name


def check_name(name):
    """Remote names are plain file names: never a path, never empty."""
    from ..errors import BackendError
    if not name or "/" in name or name in (".", "..") or "\0" in name:
        raise BackendError(f"refusing remote name {name!r}")
    return name
