# SPDX-License-Identifier: GPL-3.0-or-later
"""Fault injection: a Backend wrapper that fails a fraction of operations, the way networks do.

A failure is injected either before the operation (the request never arrived) or after it (it
happened, but the answer was lost: an upload that is in place yet reported failed). Only the
transfer layer stands between these faults and the engine.
"""
import random
import threading

from cairn.backends import open_raw, register, unregister
from cairn.backends.base import Backend
from cairn.errors import BackendError


class FaultyBackend(Backend):
    def __init__(self, inner, rate, seed=0, after_puts=None, on_after_puts=None):
        self.inner = inner
        self.url = "faulty+" + inner.url
        self.rate = rate
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.injected = {"before": 0, "after": 0}
        self.calls = 0
        self.puts = 0
        self.after_puts = after_puts          # call on_after_puts() once this many puts succeeded
        self.on_after_puts = on_after_puts

    @property
    def throttle(self):
        return self.inner.throttle

    @throttle.setter
    def throttle(self, value):
        self.inner.throttle = value

    def _roll(self):
        with self.lock:
            self.calls += 1
            r = self.random.random()
            if r < self.rate / 2:
                self.injected["before"] += 1
                return "before"
            if r < self.rate:
                self.injected["after"] += 1
                return "after"
            return None

    def _do(self, what, fn, *args):
        fault = self._roll()
        if fault == "before":
            raise BackendError(f"injected fault before {what}", transient=True)
        result = fn(*args)
        if fault == "after":
            raise BackendError(f"injected fault after {what} (the answer was lost)", transient=True)
        return result

    def list(self):
        return self._do("list", self.inner.list)

    def get(self, name, local_path):
        return self._do("get", self.inner.get, name, local_path)

    def put(self, local_path, name):
        result = self._do("put", self.inner.put, local_path, name)
        with self.lock:
            self.puts += 1
            fire = self.after_puts is not None and self.puts == self.after_puts
        if fire:
            self.on_after_puts()
        return result

    def delete(self, names):
        return self._do("delete", self.inner.delete, names)

    def rename(self, old, new):
        return self._do("rename", self.inner.rename, old, new)

    def reset(self):
        self.inner.reset()

    def close(self):
        self.inner.close()


class Injector:
    """Registers ``faulty+<scheme>://`` for the duration of a test; keeps the backends it made."""

    def __init__(self, scheme, **kw):
        self.scheme = "faulty+" + scheme
        self.kw = kw
        self.made = []

    def __enter__(self):
        def factory(url, options):
            be = FaultyBackend(open_raw(url[len("faulty+"):], options), **self.kw)
            self.made.append(be)
            return be
        register(self.scheme, factory)
        return self

    def __exit__(self, *exc):
        unregister(self.scheme)

    @property
    def injected(self):
        return sum(sum(b.injected.values()) for b in self.made)
