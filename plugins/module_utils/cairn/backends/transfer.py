# SPDX-License-Identifier: GPL-3.0-or-later
"""The transfer layer, one for every backend: retries with backoff, a rate limit, an upload queue.

``RetryingBackend`` wraps any Backend. Transient failures (a dropped connection, a timeout, a
5xx answer) are retried ``num_retries`` times with exponential backoff and a reconnect; other
failures (bad credentials, permission, a missing file) fail at once, since retrying them only
delays the message. ``UploadQueue`` runs uploads beside volume building, a bounded number at
once so temp space stays bounded.
"""
import errno
import logging
import random
import socket
import threading
import time

from ..errors import BackendError, BackendNotFound, CairnError
from ..redact import Secrets, env_secrets, redact_error, redact_text, redact_url, url_secrets
from ..stages import Aborted, Stage
from .base import Backend

log = logging.getLogger("cairn")

MAX_DELAY = 30.0


def is_transient(exc):
    """Whether retrying ``exc`` may help."""
    if isinstance(exc, BackendNotFound):
        return False
    if isinstance(exc, BackendError):
        return exc.transient
    if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout, EOFError)):
        return True
    return isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS


_NETWORK_ERRNOS = {errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED, errno.EPIPE,
                   errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN,
                   errno.EAGAIN, None}


class RetryingBackend(Backend):
    def __init__(self, inner, options, limiter=None, sleep=time.sleep):
        self.inner = inner
        self.url = inner.url
        self.options = options
        # every message this layer lets out is redacted with what it knows of this target
        self._secrets = Secrets(url_secrets(self.url) + env_secrets(options.env))
        self._sleep = sleep
        self.retries_used = 0          # for statistics and tests
        self._lock = threading.Lock()
        if limiter is not None:
            inner.throttle = lambda f: ThrottledReader(f, limiter)

    @property
    def throttle(self):
        return self.inner.throttle

    @throttle.setter
    def throttle(self, value):
        self.inner.throttle = value

    def _call(self, what, fn, *args):
        attempts = max(0, self.options.num_retries) + 1
        delay = self.options.retry_delay
        for attempt in range(1, attempts + 1):
            try:
                return fn(*args)
            except Exception as e:   # noqa: BLE001 - classified below
                if not is_transient(e):
                    if isinstance(e, CairnError):          # the backend's own verdict
                        raise redact_error(e, self._secrets)
                    if isinstance(e, OSError):             # an I/O failure the backend did not name
                        raise BackendError(f"{what} failed: {_describe(e, self._secrets)}") from None
                    raise                                  # a bug (TypeError ...): not a server fault
                if attempt == attempts:
                    raise BackendError(f"{what} failed after {attempts} attempts, giving up: "
                                       f"{_describe(e, self._secrets)}", getattr(e, "exit_code", None)) from None
                with self._lock:
                    self.retries_used += 1
                wait = min(MAX_DELAY, delay) * (0.5 + random.random() / 2)
                log.warning("%s failed (%s); retry %d of %d in %.1f s", what, _describe(e, self._secrets),
                            attempt, attempts - 1, wait)
                try:
                    self.inner.reset()
                except Exception:   # noqa: BLE001 - a failed reset shows in the retry itself
                    pass
                self._sleep(wait)
                delay *= 2
        raise AssertionError("unreachable")

    def list(self):
        return self._call(f"listing {redact_url(self.url)}", self.inner.list)

    def get(self, name, local_path):
        return self._call(f"downloading {name}", self.inner.get, name, local_path)

    def put(self, local_path, name):
        return self._call(f"uploading {name}", self.inner.put, local_path, name)

    def delete(self, names):
        names = list(names)
        if names:
            return self._call(f"deleting {len(names)} file(s)", self.inner.delete, names)
        return None

    def held(self, names):
        names = list(names)
        return self._call("checking object retention", self.inner.held, names) if names else {}

    def rename(self, old, new):
        return self._call(f"renaming {old} to {new}", self.inner.rename, old, new)

    def local_path(self, name):
        return self.inner.local_path(name)

    def size(self, name):
        return self.inner.size(name)

    def close(self):
        self.inner.close()


def _describe(e, secrets=()):
    """A failure's text for a message: a library's exception text can quote a URL or a key."""
    if isinstance(e, BackendError):
        return redact_text(e.message, secrets)
    text = str(e) or type(e).__name__
    text = f"{type(e).__name__}: {text}" if not text.startswith(type(e).__name__) else text
    return redact_text(text, secrets)


class RateLimiter:
    """A token bucket shared by every upload of a run: at most ``rate`` bytes/s on average."""

    def __init__(self, rate, burst=None, clock=time.monotonic, sleep=time.sleep):
        self.rate = float(rate)
        # a small burst keeps the average honest over short runs
        self.burst = float(burst if burst is not None else max(16384, rate / 10))
        self.tokens = self.burst
        self.clock = clock
        self._sleep = sleep
        self.last = clock()
        self.lock = threading.Lock()

    def take(self, n):
        """Block until ``n`` bytes may pass."""
        while n > 0:
            step = min(n, self.burst)
            with self.lock:
                now = self.clock()
                self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
                self.last = now
                self.tokens -= step
                wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
            if wait > 0:
                self._sleep(wait)
            n -= step


class ThrottledReader:
    """A read-only file whose reads pass through a RateLimiter (for any backend's upload)."""

    def __init__(self, f, limiter):
        self.f = f
        self.limiter = limiter

    def read(self, n=-1):
        if n is None or n < 0:
            n = 1 << 20
        data = self.f.read(min(n, 1 << 20))
        if data:
            self.limiter.take(len(data))
        return data

    def readinto(self, buf):
        data = self.read(len(buf))
        buf[:len(data)] = data
        return len(data)

    def __getattr__(self, name):      # seek, tell, fileno, name, mode ...
        return getattr(self.f, name)

    def __iter__(self):
        return iter(lambda: self.read(1 << 16), b"")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


class UploadQueue:
    """The upload stage: uploads finished volumes while the next ones are built, ``concurrency``
    at once.

    ``submit`` blocks while that many are queued or in flight, which bounds temp space. A
    failed upload fails ``abort``: uploads not yet started are dropped (their ``cleanup`` still
    runs), and ``submit``/``drain`` raise Aborted, or with the queue's own abort (none given)
    the failure itself. ``before_put()`` runs before each upload: it raises when the run must
    not write. Files are removed (``cleanup``) once uploaded.
    """

    def __init__(self, backend, concurrency, *, abort=None, before_put=None):
        self.backend = backend
        self.before_put = before_put
        self.stage = Stage("up", self._upload, workers=max(1, concurrency), abort=abort,
                           discard=self._discard)
        self.abort = self.stage.abort
        self._own_abort = abort is None     # then nobody else reports the failure: we do

    def _upload(self, item):
        local_path, name, cleanup = item
        try:
            if self.before_put is not None:
                self.before_put()
            self.backend.put(local_path, name)
        finally:
            if cleanup is not None:
                cleanup()

    @staticmethod
    def _discard(item):
        _local_path, _name, cleanup = item
        if cleanup is not None:
            cleanup()

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except Aborted:
            if not self._own_abort:
                raise
        raise self.abort.error       # outside the handler: no "during handling of Aborted"

    def submit(self, local_path, name, cleanup=None):
        self._call(self.stage.put, (local_path, name, cleanup))

    def drain(self):
        """Wait for every upload submitted so far; raise the first failure."""
        self._call(self.stage.drain)

    def join(self):
        """No more uploads: wait for the workers to end."""
        self.stage.join()

    def close(self, cancel=False):
        if cancel:
            self.abort.fail(Aborted("the uploads were cancelled"))
        self.stage.join()
