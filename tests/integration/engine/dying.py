# SPDX-License-Identifier: GPL-3.0-or-later
"""A file target whose run dies at a chosen call: as abrupt for the target as a SIGKILL.

Register it for a test with ``dying_scheme(dies_at)``: the URL ``dying+file://DIR`` then opens
DIR through a DyingBackend that raises Died at the first call ``dies_at(method, name)`` picks
(``put`` with the name uploaded, ``rename`` with the new name)."""
import contextlib

from cairn.backends import open_raw, register, unregister
from cairn.backends.base import Backend


class Died(BaseException):
    """The run's end: nothing after it reaches the target."""


class DyingBackend(Backend):
    def __init__(self, inner, dies_at):
        self.inner = inner
        self.url = "dying+" + inner.url
        self.dies_at = dies_at

    def _maybe_die(self, method, name):
        if self.dies_at(method, name):
            raise Died(f"{method} {name}")

    def list(self):
        return self.inner.list()

    def get(self, name, local_path):
        return self.inner.get(name, local_path)

    def put(self, local_path, name):
        self._maybe_die("put", name)
        self.inner.put(local_path, name)

    def delete(self, names):
        return self.inner.delete(names)

    def rename(self, old, new):
        self._maybe_die("rename", new)
        return self.inner.rename(old, new)

    def size(self, name):
        return self.inner.size(name)


@contextlib.contextmanager
def dying_scheme(dies_at):
    register("dying+file", lambda url, options: DyingBackend(open_raw(url[len("dying+"):], options), dies_at))
    try:
        yield
    finally:
        unregister("dying+file")
