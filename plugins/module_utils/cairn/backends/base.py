# SPDX-License-Identifier: GPL-3.0-or-later
"""The one small interface every backend implements.

Retries, rate limits and (in tests) fault injection wrap a Backend; they are not backends'
business. ``put`` must make the file appear under its final name only when it is complete.
"""


class Backend:
    url = ""

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
        """Delete the given names; names already gone are not an error."""
        raise NotImplementedError

    def local_path(self, name):
        """A path to read ``name`` in place (file:// targets), or None: then use get()."""
        return None

    def size(self, name):
        """Stored size in bytes, or None when the backend cannot tell cheaply."""
        return None

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
