# SPDX-License-Identifier: GPL-3.0-or-later
"""The target lock: one writer per chain, wherever the writers run (design: "one chain, one writer").

The archive dir's fcntl lock only excludes runs that share that directory. Two hosts given the
same target, or a manual run beside a timer with another --archive-dir, meet only at the target,
so the lock lives there, built on the plain Backend interface (list/get/put/delete) and thus
available on every backend, FTP and multi:// included:

1. put our own lock object ``<file_prefix>cairn-lock.<random hex>.json`` saying who we are;
2. list. Any other lock object of the same prefix that is not stale is another writer: delete
   ours and refuse (LockHeld, exit 23) naming it. Of two writers the one that lists second sees
   the other, so they never both go on; two that list at the same instant may both refuse (one
   short randomized retry makes that rare). Which writer wins is never decided by comparing two
   hosts' clocks.

While held, a thread refreshes the lock every ``refresh_interval`` seconds. It writes a new
object and only then deletes the previous one, so a lock object exists at every moment even on
servers that cannot rename over a file; it first checks that ours is still listed and that no
other lock claims to have taken ours over. A lost lock is remembered, and ``check()`` (called
before a backup commits its manifest, and before interrupted-run cleanup) raises LockLost.

A lock is stale, and taken over with a warning, when its process no longer runs on this host
(same host name, boot id and pid namespace: the SIGKILL-then-rerun case, at once) or when it
has not been refreshed for ``stale_after`` seconds by its own clock compared with ours (so the
two hosts' clocks may differ by less than that margin). ``break_lock`` takes over any lock.
A taker records whose lock it took over (``took_over``), so an old holder that was only
stalled, not dead, learns at its next refresh or check that it must not commit.
"""
import json
import logging
import os
import random
import re
import secrets
import socket
import sys
import threading
import time

from .backends import redact_url
from .errors import BackendError, BackendNotFound, CairnError, LockHeld
from . import processes
from .processes import pid_namespace, proc_stat, process_runs

log = logging.getLogger("cairn")

LOCK_WORD = "cairn-lock."
DEFAULT_STALE_AFTER = 30 * 60          # seconds without a refresh before a lock is stale
MAX_REFRESH_INTERVAL = 60.0

_HEX_NAME = re.compile(r"cairn-lock\.[0-9a-f]{8,64}\.json")
# run ids of the target locks this process holds now: a lock object with this process's pid but
# another run id is the leftover of an earlier run of this process (its release failed)
_HELD_HERE = set()


class LockLost(LockHeld):
    """Our target lock was taken over or removed while we held it: the run must not commit."""


def is_lock_name(name, prefix=""):
    """Whether ``name`` is a lock object of the archive with this file prefix."""
    return name.startswith(prefix) and bool(_HEX_NAME.fullmatch(name[len(prefix):]))


def _plausible_time(t):
    return isinstance(t, (int, float)) and 0 < t < 1e11      # finite, and printable as a date


def _iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class Identity:
    """Who writes: what a lock object says about its holder."""

    def __init__(self, host=None, pid=None, boot_id=None, pid_ns=None, proc_start=None):
        self.host = host if host is not None else socket.gethostname()
        self.pid = pid if pid is not None else os.getpid()
        self.boot_id = boot_id if boot_id is not None else processes.boot_id()
        self.pid_ns = pid_ns if pid_ns is not None else pid_namespace()
        if proc_start is None and pid is None:
            stat = proc_stat()
            proc_start = stat[1] if stat else None
        self.proc_start = proc_start

    def same_process_space(self, info):
        """Whether ``info``'s pid can be looked up here: same host, same boot, same pid namespace."""
        return (info.host == self.host and self.boot_id is not None and info.boot_id == self.boot_id
                and self.pid_ns is not None and info.pid_ns == self.pid_ns)


class LockInfo:
    """A lock object's content (read from the target: every field is checked)."""

    FIELDS = ("run_id", "host", "pid", "boot_id", "pid_ns", "proc_start", "started", "refreshed",
              "command", "took_over")

    def __init__(self, **kw):
        for k in self.FIELDS:
            setattr(self, k, kw.get(k))

    @classmethod
    def from_json(cls, data):
        """A LockInfo, or None when ``data`` is not a lock object we can trust to judge."""
        try:
            d = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(d, dict):
            return None

        def opt(key, kind):
            v = d.get(key)
            return v if isinstance(v, kind) and not isinstance(v, bool) else None
        info = cls(run_id=opt("run_id", str), host=opt("host", str), pid=opt("pid", int),
                   boot_id=opt("boot_id", str), pid_ns=opt("pid_ns", str),
                   proc_start=opt("proc_start", int), started=opt("started", (int, float)),
                   refreshed=opt("refreshed", (int, float)), command=opt("command", str),
                   took_over=[t for t in d.get("took_over") or [] if isinstance(t, str)]
                   if isinstance(d.get("took_over"), list) else [])
        if info.started is None:
            info.started = info.refreshed
        # what the target says is checked before it is used: a pid for os.kill, times to print
        if (not info.run_id or info.host is None or info.pid is None or not 0 < info.pid < 1 << 31
                or not all(_plausible_time(t) for t in (info.refreshed, info.started))):
            return None
        return info

    def describe(self):
        return (f"host {self.host}, pid {self.pid}, started {_iso(self.started)}"
                + (f" ({self.command})" if self.command else "")
                + f", last refreshed {_iso(self.refreshed)}")


_GONE = object()          # a listed lock object that was deleted before we could read it


class _Judge:
    """Reads lock objects and says whether they are stale (shared by the lock and by cleanup)."""

    def __init__(self, backend, prefix, tmpdir, stale_after, identity, clock):
        self.backend = backend
        self.prefix = prefix
        self.tmpdir = tmpdir
        self.stale_after = stale_after
        self.identity = identity
        self.clock = clock

    def read(self, name):
        """LockInfo, None (unreadable) or _GONE."""
        path = os.path.join(self.tmpdir, f"read-{secrets.token_hex(8)}-{name}")
        try:
            self.backend.get(name, path)
            with open(path, "rb") as f:
                data = f.read(1 << 16)
        except BackendNotFound:
            return _GONE
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass
        return LockInfo.from_json(data)

    def stale_reason(self, info):
        """Why ``info``'s lock is stale ("dead" or "age", text), or None while it may be live."""
        if self.identity.same_process_space(info):
            if not process_runs(info.pid, info.proc_start):
                return "dead", f"its process {info.pid} no longer runs on this host"
            if (info.pid == os.getpid() and info.proc_start == self.identity.proc_start
                    and info.run_id not in _HELD_HERE):
                return "dead", "it is left from an earlier run of this process"
        age = self.clock() - info.refreshed        # its clock against ours; negative: fresh
        if age > self.stale_after:
            return "age", (f"it was not refreshed for {int(age)} s (stale after {int(self.stale_after)} s, "
                           "--lock-stale-after)")
        return None

    def survey(self, own_names=(), attempts=5):
        """(names listed, [(name, LockInfo or None, stale reason or None)] of the others' locks).

        A lock object that vanishes between the listing and its reading (a holder that refreshed,
        a writer that gave up) makes us list again: we never call a target free on a stale view.
        """
        for _attempt in range(attempts):
            names = self.backend.list()
            found, vanished = [], False
            for name in names:
                if name in own_names or not is_lock_name(name, self.prefix):
                    continue
                info = self.read(name)
                if info is _GONE:
                    vanished = True
                    continue
                found.append((name, info, self.stale_reason(info) if info is not None else None))
            if not vanished:
                return names, found
        return names, found


class TargetLock:
    """The lock of one writer on one target (and file prefix); see the module docstring."""

    def __init__(self, backend, prefix="", *, tmpdir, stale_after=DEFAULT_STALE_AFTER, break_lock=False,
                 command="", refresh_interval=None, identity=None, clock=time.time, sleep=time.sleep,
                 retry_delay=(0.3, 1.5)):
        if not stale_after or stale_after <= 0:
            raise CairnError("the stale age of a target lock must be positive")
        self.backend = backend
        self.prefix = prefix or ""
        self.tmpdir = tmpdir
        self.stale_after = stale_after
        self.break_lock = break_lock
        self.command = command
        # several refreshes fit into the stale age, so one failed refresh does not make us stale
        self.refresh_interval = refresh_interval or max(0.2, min(MAX_REFRESH_INTERVAL, stale_after / 5))
        self.identity = identity or Identity()
        self.clock = clock
        self.sleep = sleep
        self.retry_delay = retry_delay
        self.run_id = secrets.token_hex(16)
        self.started = clock()
        self.took_over = []          # [(name, LockInfo or None, kind)] of the locks we replaced
        self.current = None          # the name of our newest lock object
        self.own = set()             # every name of ours that may still be at the target
        self.lost = None             # why we no longer hold it, once we know
        self.held = False
        self._judge = _Judge(backend, self.prefix, tmpdir, stale_after, self.identity, clock)
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    # --- the lock object -------------------------------------------------------------------

    def _content(self):
        return json.dumps({
            "cairn_lock": 1, "run_id": self.run_id, "host": self.identity.host, "pid": self.identity.pid,
            "boot_id": self.identity.boot_id, "pid_ns": self.identity.pid_ns,
            "proc_start": self.identity.proc_start, "started": self.started,
            "started_iso": _iso(self.started), "refreshed": self.clock(), "refreshed_iso": _iso(self.clock()),
            "command": self.command, "took_over": [i.run_id for _n, i, _k in self.took_over if i is not None],
        }, indent=1).encode()

    def _put_new(self):
        """Write a new lock object and make it the current one; returns the previous one, which
        the caller deletes (after the new one is in place: never a moment without one)."""
        name = f"{self.prefix}{LOCK_WORD}{secrets.token_hex(16)}.json"
        path = os.path.join(self.tmpdir, name)
        with open(path, "wb") as f:
            f.write(self._content())
        try:
            self.own.add(name)
            self.backend.put(path, name)
        finally:
            os.unlink(path)
        previous, self.current = self.current, name
        return previous

    def _delete_previous(self, previous):
        if previous is not None:
            self.backend.delete([previous])
            self.own.discard(previous)

    def _delete_own(self):
        if self.own:
            self.backend.delete(sorted(self.own))
            self.own.clear()
        self.current = None

    # --- acquire, check, release ---------------------------------------------------------------

    def acquire(self):
        """Take the lock or raise LockHeld naming the holder; takes over stale locks with a warning."""
        rnd = random.Random()
        attempts = 2
        _HELD_HERE.add(self.run_id)
        for attempt in range(attempts):
            try:
                self._put_new()        # nothing before: self.current was None
                names, found = self._judge.survey(self.own)
                if self.current not in names:
                    raise BackendError(f"the lock object {self.current} just written is not listed by "
                                       "the target; cairn cannot lock a target that does not list new "
                                       "files at once")
                live = [(n, i) for n, i, why in found if why is None and not self.break_lock]
                if not live:
                    self._take_over(found)
                    break
                self._delete_own()
            except BaseException:
                _HELD_HERE.discard(self.run_id)
                try:
                    self._delete_own()
                except Exception as e:   # noqa: BLE001 - the first error is the one to report
                    log.warning("could not remove the lock object(s) %s: %s", ", ".join(sorted(self.own)), e)
                raise
            if attempt + 1 < attempts:     # two that started at the same instant both gave way
                self.sleep(rnd.uniform(*self.retry_delay))
        else:
            _HELD_HERE.discard(self.run_id)
            raise LockHeld(_held_message(live, self.stale_after))
        self.held = True
        self._thread = threading.Thread(target=self._refresh_loop, name="cairn-target-lock", daemon=True)
        self._thread.start()

    def _take_over(self, found):
        if not found:
            return
        for name, info, why in found:
            if self.break_lock:
                kind, text = "break", "--break-lock was given"
            else:
                kind, text = why
            who = info.describe() if info is not None else "an unreadable lock"
            log.warning("taking over the target lock %s of %s: %s", name, who, text)
            self.took_over.append((name, info, kind))
        self._delete_previous(self._put_new())    # ours now says whose lock it took over
        self.backend.delete([n for n, _i, _w in found])
        # a holder that was not dead may have refreshed meanwhile: sweep its newer objects too,
        # so that it finds one of its own missing (see _refresh) even after we have finished
        runs = {i.run_id for _n, i, _w in found if i is not None}
        for _sweep in range(20):
            names, others = self._judge.survey(self.own)
            theirs = [n for n, i, _w in others if i is not None and i.run_id in runs]
            if not theirs:
                break
            self.backend.delete(theirs)

    @property
    def previous_writer_gone(self):
        """Whether every lock we took over was a dead process's. After a takeover by age or by
        --break-lock its writer may be stalled, not dead: files of an interrupted run may be its
        in-flight ones, so this run leaves them (it stops at its next volume or its commit)."""
        return all(kind == "dead" for _n, _i, kind in self.took_over)

    def _lost_reason(self, names, expect=()):
        """Why our lock is no longer ours (given a fresh listing), or None. Every object of ours
        in ``expect`` (and the current one) must be listed: we have not deleted it, so someone
        else did."""
        for name in names:
            if name in self.own or not is_lock_name(name, self.prefix):
                continue
            info = self._judge.read(name)
            if info is not _GONE and info is not None and self.run_id in info.took_over:
                return f"it was taken over by {info.describe()}"
        for name in (self.current, *expect):
            if name not in names:
                return (f"its lock object {name} was removed from the target by someone else (a run "
                        "that took the lock over, or by hand)")
        return None

    def _refresh(self):
        with self._mutex:
            if self.lost or not self.held:
                return
            reason = self._lost_reason(self.backend.list())
            if not reason:
                previous = self._put_new()
                # the previous object must still be there now that the new one is: a taker that
                # deleted it in between is noticed here, not missed (we delete it only after this)
                reason = self._lost_reason(self.backend.list(), expect=(previous,))
                if not reason:
                    self._delete_previous(previous)
            if reason:
                self.lost = reason
                log.error("the target lock is lost: %s; this run will stop before it commits", reason)

    def _refresh_loop(self):
        while not self._stop.wait(self.refresh_interval):
            try:
                self._refresh()
            except Exception as e:   # noqa: BLE001 - a target that is briefly away: try again
                log.warning("could not refresh the target lock: %s", e)
            if self.lost:
                return

    def raise_if_lost(self):
        """Raise LockLost when the refresh found the lock lost (no request: cheap to call often)."""
        if self.lost:
            raise LockLost(f"this run lost the lock on the target: {self.lost}; it stops without "
                           "committing (its files are left for `cleanup`)")

    def check(self):
        """Raise LockLost unless we still hold the lock (asks the target)."""
        with self._mutex:
            if not self.held:
                raise CairnError("internal error: the target lock is not held")
            if not self.lost:
                self.lost = self._lost_reason(self.backend.list())
        self.raise_if_lost()

    def release(self):
        """Stop refreshing and delete our lock objects (also after the lock was lost)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._mutex:
            self.held = False
            _HELD_HERE.discard(self.run_id)
            try:
                self._delete_own()
            except Exception as e:   # noqa: BLE001 - never hide the run's own outcome
                log.warning("could not remove the target lock object(s) %s: %s; the next run on this "
                            "host takes it over, others after the stale age", ", ".join(sorted(self.own)), e)


def stale_lock_names(backend, names, prefix, tmpdir, stale_after=DEFAULT_STALE_AFTER, own=(), identity=None):
    """The lock objects among ``names`` that are stale (what `cleanup` may delete): never a live one,
    never an unreadable one, never ours."""
    judge = _Judge(backend, prefix or "", tmpdir, stale_after, identity or Identity(), time.time)
    out = []
    for name in names:
        if name in own or not is_lock_name(name, prefix or ""):
            continue
        info = judge.read(name)
        if info is not _GONE and info is not None and judge.stale_reason(info) is not None:
            out.append(name)
    return out


def process_command(operation):
    """What a lock object says the holder runs: the operation and this process's command line,
    every word through the URL redaction (a password in a target URL never reaches the target)."""
    words = []
    for w in sys.argv[:40]:
        opt, sep, value = w.partition("=")
        words.append(f"{opt}={redact_url(value)}" if sep and opt.startswith("-") else redact_url(w))
    line = " ".join(os.path.basename(words[0]) if i == 0 else w for i, w in enumerate(words)) if words else ""
    return f"{operation}: {line}"[:400] if line else operation


def _held_message(live, stale_after):
    seen, parts = set(), []
    for name, info in live:
        key = info.run_id if info is not None else name
        if key in seen:
            continue
        seen.add(key)
        if info is None:
            parts.append(f"an unreadable lock object {name} (remove it, or use --break-lock, if no "
                         "other cairn writes here)")
        else:
            parts.append(f"{info.describe()} (lock object {name})")
    return ("another cairn run writes to this target: " + "; ".join(parts)
            + f". Try again when it has finished. A lock is taken over when its process no longer runs "
              f"on this host, or when it was not refreshed for {int(stale_after)} s (--lock-stale-after); "
              "--break-lock takes over any lock")
