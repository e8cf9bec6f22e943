# SPDX-License-Identifier: GPL-3.0-or-later
"""A file that is read while it is still being written, in both directions of the engine.

Backup: gpg encrypts a volume while the diff is still appending to it, so compression and
encryption run on another core from the volume's first MiB instead of after it is complete.
Restore: the tar parser reads a volume while gpg is still decrypting it (GrowingFile), or
while the built-in decryption hands it over in memory (MemoryPipe).

A reader sees every byte, blocks while the writer is behind, gets end-of-file only once the
writer has finished, and gets the writer's error (raised from ``read``) as soon as it fails.
"""
import os
import threading
from collections import deque


class _WriterEnd:
    """How a writer's end reaches the readers of GrowingFile and MemoryPipe (which hold
    ``_cond``, ``_error`` and ``_finished``)."""

    def follow(self, future):
        """The writer is whatever ``future`` runs: finished when it succeeds, failed with its
        exception when it fails."""
        future.add_done_callback(self._future_done)

    def _future_done(self, future):
        if future.cancelled():
            self._end(OSError("the writer of this data was cancelled"))
        else:
            self._end(future.exception())

    def _end(self, error):
        with self._cond:
            if error is not None and self._error is None:
                self._error = error
            self._finished = True
            self._cond.notify_all()


class GrowingFile(_WriterEnd):
    """One file being written and what its readers need to know: how far it is, whether it is
    finished, whether it failed.

    The writer is this process (``create``, then ``write``/``finish``/``fail``: readers wait on
    a condition and wake when bytes arrive) or another process writing the path, such as gpg
    (``follow(future)``: readers look at the file again every ``poll`` seconds, since nothing
    tells us when such a writer writes, and wake at once when the future ends).
    """

    def __init__(self, path, *, create=False, poll=0.002):
        self.path = path
        self.poll = poll
        self._cond = threading.Condition()
        self._waiting = 0            # readers inside wait(): the writer notifies only then
        self._size = 0 if create else None       # None: written elsewhere, size unknown
        self._finished = False
        self._error = None
        self._out = None
        if create:
            self._out = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600),
                                  "wb", buffering=0)

    # --- the writer ----------------------------------------------------------------------

    @property
    def size(self):
        """Bytes written so far by ``write``."""
        return self._size

    def write(self, data):
        view = memoryview(data)
        while view:
            n = self._out.write(view)
            view = view[n:]
        self._size += len(data)
        if self._waiting:
            with self._cond:
                self._cond.notify_all()

    def finish(self):
        """No more bytes: readers get end-of-file once they have read everything."""
        self.close()
        self._end(None)

    def fail(self, error):
        """The file will not be complete: every read from now on raises ``error``. Any thread
        may call it, also after ``finish`` (a run that aborts stops readers still busy with a
        finished file); the writer's descriptor stays open until the writer calls ``close``."""
        self._end(error)

    def close(self):
        """The writer's side: close the descriptor (``finish`` does it too)."""
        if self._out is not None:
            self._out.close()
            self._out = None

    @property
    def complete(self):
        """Finished without an error: everything the writer meant to write is there."""
        return self._finished and self._error is None

    # --- readers -------------------------------------------------------------------------

    def reader(self, *, fail_as_end=False):
        """A reader from the start. With ``fail_as_end`` a failure reads as the end of the file
        instead of raising, for a consumer that must not see an exception (python-gnupg 0.4,
        Debian 12's, lets one end its copying thread and then waits forever for gpg): who uses
        such a reader checks ``complete`` afterwards."""
        return GrowingReader(self, fail_as_end=fail_as_end)

    def _wait(self, pos):
        """Block until there may be more than ``pos`` bytes, or the file is finished or failed."""
        with self._cond:
            self._waiting += 1
            try:
                while not self._finished:
                    if self._size is None:
                        self._cond.wait(self.poll)     # written elsewhere: look again
                        return
                    if self._size > pos:
                        return
                    self._cond.wait()
            finally:
                self._waiting -= 1


class GrowingReader:
    """A read-only file object over a GrowingFile: ``read(n)`` returns ``n`` bytes, fewer only
    at the end (as a regular file does); ``read()`` reads to the end."""

    def __init__(self, growing, *, fail_as_end=False):
        self.growing = growing
        self.fail_as_end = fail_as_end
        self.f = None
        self.pos = 0
        self.closed = False

    def _open(self):
        g = self.growing
        if self.closed:       # gpg's input thread may read once more after the encryption gave up
            raise ValueError("read of a closed GrowingReader")
        while self.f is None:
            if g._error is not None:
                raise g._error
            finished = g._finished
            try:
                self.f = open(g.path, "rb")
            except FileNotFoundError:
                if finished:          # done without ever creating it
                    raise
                g._wait(0)

    def read(self, n=-1):
        try:
            return self._read(n)
        except Exception:
            if not self.fail_as_end:
                raise
            return b""

    def _read(self, n):
        g = self.growing
        self._open()
        want = n if n is not None and n >= 0 else None
        parts = []
        got = 0
        while want is None or got < want:
            if g._error is not None:
                raise g._error
            finished = g._finished      # before the read: a writer may finish in between
            data = self.f.read(1 << 20 if want is None else want - got)
            if data:
                parts.append(data)
                got += len(data)
                self.pos += len(data)
            elif finished:
                if g._error is not None:
                    raise g._error
                break
            else:
                g._wait(self.pos)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self):
        self.closed = True
        if self.f is not None:
            self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class PipeAbandoned(Exception):
    """Raised to the writer of a MemoryPipe whose reader gave up (the run is stopping)."""


class MemoryPipe(_WriterEnd):
    """Bytes handed from one thread to another in memory, at most ``capacity`` of them waiting:
    a writer that is ahead blocks until the reader catches up, so memory stays bounded whatever
    the size of what flows through.

    Restore decrypts a volume into one (the built-in OpenPGP path), so its plaintext never goes
    through a temp file. The reader has GrowingReader's contract: ``read(n)`` returns ``n``
    bytes, fewer only at the end; end-of-file comes only once the writer has finished; the
    writer's error is raised by the next ``read`` as soon as it fails.

    The reader's ``close`` lets the writer run to its end with what it writes dropped (the
    decryption still checks its MDC after the tar stream's end); ``abandon`` makes the writer's
    next ``write`` raise PipeAbandoned, to stop it.
    """

    def __init__(self, capacity=8 << 20):
        self.capacity = capacity
        self._cond = threading.Condition()
        self._chunks = deque()
        self._queued = 0
        self._finished = False
        self._error = None
        self._closed = False         # the reader is done: writes are dropped
        self._abandoned = False      # the reader gave up: writes raise
        self._head = b""             # the reader's current chunk and its position in it
        self._pos = 0

    # --- the writer ----------------------------------------------------------------------

    def write(self, data):
        if not data:
            return
        if not isinstance(data, bytes):
            data = bytes(data)       # the writer may reuse its buffer once this returns
        with self._cond:
            while True:
                if self._abandoned:
                    raise PipeAbandoned("the reader of this data gave up")
                if self._closed:
                    return
                if self._queued < self.capacity or not self._chunks:
                    break
                self._cond.wait()
            self._chunks.append(data)
            self._queued += len(data)
            self._cond.notify_all()

    def finish(self):
        self._end(None)

    def fail(self, error):
        self._end(error)

    # --- the reader ----------------------------------------------------------------------

    def reader(self):
        return self         # one reader, which is the pipe itself

    def read(self, n=-1):
        want = n if n is not None and n >= 0 else None
        parts = []
        got = 0
        while want is None or got < want:
            head, pos = self._head, self._pos
            left = len(head) - pos
            if left:
                take = left if want is None else min(left, want - got)
                parts.append(head if take == len(head) else head[pos:pos + take])
                self._pos = pos + take
                got += take
                continue
            data = self._next()
            if data is None:
                break
            self._head, self._pos = data, 0
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _next(self):
        """The next chunk written, waiting for it; None at the end."""
        with self._cond:
            while True:
                if self._error is not None:
                    raise self._error
                if self._closed:
                    raise ValueError("read of a closed MemoryPipe")
                if self._chunks:
                    data = self._chunks.popleft()
                    self._queued -= len(data)
                    self._cond.notify_all()
                    return data
                if self._finished:
                    return None
                self._cond.wait()

    def close(self):
        """The reader is done: what is still written is dropped."""
        with self._cond:
            self._closed = True
            self._chunks.clear()
            self._queued = 0
            self._head = b""
            self._cond.notify_all()

    def abandon(self):
        """The reader gives up: the writer's next write raises PipeAbandoned."""
        with self._cond:
            self._abandoned = True
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
