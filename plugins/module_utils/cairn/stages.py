# SPDX-License-Identifier: GPL-3.0-or-later
"""What a pipeline of threads is made of: one abort per run, and stages that are workers over a
bounded queue.

The first failure anywhere fails the run's ``Abort``; everything that blocks (a stage's queue,
a wait on a future, a reader of a growing file through a callback) wakes up and raises
``Aborted``, and the run reports that first failure, not the echoes of it.
"""
import collections
import logging
import threading
from concurrent.futures import FIRST_COMPLETED, Future
from concurrent.futures import wait as wait_futures

from .localdirs import signal_received

log = logging.getLogger("cairn")


class Aborted(Exception):
    """Raised inside a run once another part of it has failed: never the error a run reports."""

    def __init__(self, message="stopped: another part of this run failed first"):
        super().__init__(message)


class Abort:
    """The first failure of a run, and the callbacks that wake whatever waits when it comes."""

    def __init__(self):
        self.error = None
        self._lock = threading.Lock()
        self._callbacks = []
        self._done = Future()        # completes at the first failure: waits on futures see it

    @property
    def failed(self):
        return self.error is not None

    def fail(self, error):
        """Record ``error`` if it is the first failure and wake every waiter; returns whether it
        was the first."""
        with self._lock:
            if self.error is not None:
                if not isinstance(error, Aborted) and error is not self.error:
                    log.debug("after the first failure of this run: %s", error)
                return False
            self.error = error
            callbacks, self._callbacks = self._callbacks, []
        self._done.set_result(None)
        for callback in callbacks:
            try:
                callback()
            except Exception as e:   # noqa: BLE001 - waking the others must go on
                log.debug("an abort callback failed: %s", e)
        return True

    def on_abort(self, callback):
        """Call ``callback()`` at the first failure (at once if it already came)."""
        with self._lock:
            if self.error is None:
                self._callbacks.append(callback)
                return
        callback()

    def check(self):
        """Raise Aborted once the run has failed (cheap: for every entry of a walk). A signal
        whose interruption a finalizer swallowed (localdirs.signal_received) is that failure."""
        if self.error is None:
            interrupted = signal_received()
            if interrupted is not None:
                self.fail(interrupted)
        if self.error is not None:
            raise Aborted()

    def result(self, future):
        """``future.result()``, unless the run fails first: then Aborted."""
        wait_futures((future, self._done), return_when=FIRST_COMPLETED)
        self.check()
        return future.result()

    def watch(self, future):
        """A failure of ``future`` (a side job of the run) fails the run at once."""
        def done(f):
            if not f.cancelled() and f.exception() is not None:
                self.fail(f.exception())
        future.add_done_callback(done)
        return future


class Stage:
    """Up to ``workers`` threads running ``work(item)`` for each item put.

    ``put`` blocks while ``capacity`` items are in the stage, queued or being worked on: that
    bounds what the stage holds (temp files, gpg processes). A worker is started only when an
    item finds none idle, as ThreadPoolExecutor does (spreading the items over more threads
    than needed costs memory: each thread gets its own malloc arena). The first exception of
    ``work`` fails ``abort``; then ``put`` raises Aborted, the items still queued go to
    ``discard`` and the workers end. ``close`` lets the workers end once the queue is empty;
    ``join`` waits for them.
    """

    def __init__(self, name, work, *, workers, capacity=None, abort=None, discard=None):
        self.name = name
        self.work = work
        self.discard = discard
        self.workers = max(1, workers)
        self.capacity = max(1, capacity or workers)
        self.abort = abort if abort is not None else Abort()
        lock = threading.Lock()
        self._items = threading.Condition(lock)     # workers wait here for an item
        self._space = threading.Condition(lock)     # put and drain wait here for room / the end
        self._queue = collections.deque()
        self._busy = 0
        self._idle = 0
        self._closed = False
        self._threads = []
        self.abort.on_abort(self._wake)

    def _wake(self):
        with self._items:
            self._items.notify_all()
            self._space.notify_all()

    def put(self, item):
        with self._items:
            while len(self._queue) + self._busy >= self.capacity and not self.abort.failed:
                self._space.wait()
            self.abort.check()
            if self._closed:
                raise RuntimeError(f"internal error: stage {self.name} is closed")
            self._queue.append(item)
            if len(self._queue) > self._idle and len(self._threads) < self.workers:
                t = threading.Thread(target=self._loop, name=f"cairn-{self.name}-{len(self._threads)}",
                                     daemon=True)
                t.start()
                # only once started: a signal's exception (SIGTERM) can cut start() short, and a
                # thread that never started cannot be joined
                self._threads.append(t)
            self._items.notify()

    def drain(self):
        """Wait until every item put so far is done; Aborted if the run failed."""
        with self._items:
            while (self._queue or self._busy) and not self.abort.failed:
                self._space.wait()
        self.abort.check()

    def close(self):
        with self._items:
            self._closed = True
            self._items.notify_all()

    def join(self):
        """Close, and wait for the workers to end (every item done, or the run aborted)."""
        self.close()
        with self._items:
            threads = list(self._threads)
        for t in threads:
            t.join()

    @property
    def alive(self):
        return any(t.is_alive() for t in self._threads)

    def _loop(self):
        while True:
            with self._items:
                while not self._queue and not self._closed and not self.abort.failed:
                    self._idle += 1
                    try:
                        self._items.wait()
                    finally:
                        self._idle -= 1
                if self.abort.failed:
                    dropped = list(self._queue)
                    self._queue.clear()
                    break
                if not self._queue:
                    return
                item = self._queue.popleft()
                self._busy += 1
            try:
                self.work(item)
            except BaseException as e:   # noqa: BLE001 - the run reports it (if it is the first)
                self.abort.fail(e)
            finally:
                with self._items:
                    self._busy -= 1
                    self._space.notify_all()
        for item in dropped:
            if self.discard is not None:
                try:
                    self.discard(item)
                except Exception as e:   # noqa: BLE001 - only tidying up after the failure
                    log.debug("stage %s could not discard an item: %s", self.name, e)
