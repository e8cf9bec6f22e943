# SPDX-License-Identifier: GPL-3.0-or-later
"""The open target that api, the backup pipeline, restore and retention share, below them all:
the backend (with retries, rate limit and mirrors), the crypto layer, the archive dir (cache),
the run's private temp dir, the archive dir's lock and, for writers, the target lock.
"""
import shutil

from .backends import open_backend
from .cache import ArchiveDir, default_name
from .collection import Collection
from .crypto import Crypto
from .errors import CairnError, UserError, local_io_error
from .localdirs import make_tempdir, restore_signals, terminate_as_interrupt
from .lock import TargetLock, process_command


class Session:
    """An open target: backend, crypto, local archive dir, temp dir and (optionally) the lock."""

    target_lock = None      # a TargetLock while this session writes (lock_target)

    def __init__(self, target, lock=True):
        self.opts = target
        self.backend = open_backend(target.url, target.backend, target.mirrors,
                                    stand_in=getattr(target, "mirror_stand_in", False))
        self.crypto = Crypto(target.crypto)
        self.cache = ArchiveDir(target.archive_dir, target.name or default_name(target.url),
                                read_only=target.read_only, names=target.names)
        self.tmpdir = None
        self.locked = False
        self.want_lock = lock and not target.read_only
        self.signals = None

    def __enter__(self):
        if self.want_lock:
            self.cache.lock()
            self.locked = True
        # SIGTERM (systemd stopping a unit, a kill) unwinds like ^C, so the temp dir with its
        # plaintext goes too; a SIGKILLed run's temp dir is removed by the next run
        self.signals = terminate_as_interrupt()
        self.tmpdir = make_tempdir(self.opts.tempdir)
        self.cache.open(self.tmpdir, clean=self.locked)
        return self

    def __exit__(self, exc_type, exc, tb):
        self.release_target()
        self.crypto.close(stop_started_agent=self.opts.read_only)
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        restore_signals(self.signals)
        if self.locked:
            self.cache.unlock()
        self.backend.close()
        # a full, read-only or failing local disk is the admin's to fix (exit 62), not a bug:
        # named by the file when the error knows it, never by a guess (backends and the restore
        # writer classify their own OSErrors before they get here)
        local = local_io_error(exc)
        if local is not None:
            raise local from None

    def lock_target(self, operation):
        """Writers: take the lock on the target (after the archive dir's); __exit__ releases it."""
        if self.opts.read_only:      # every write goes through here: check mode must not reach it
            raise UserError(f"a {operation} cannot run in a read-only (check mode) session")
        lock = TargetLock(self.backend, self.opts.file_prefix, tmpdir=self.tmpdir,
                          stale_after=self.opts.lock_stale_after, break_lock=self.opts.break_lock,
                          command=process_command(operation))
        lock.acquire()
        self.target_lock = lock

    def release_target(self):
        lock, self.target_lock = self.target_lock, None
        if lock is not None:
            lock.release()

    def require_target_lock(self):
        """Before deleting or committing anything: raise unless this run still holds the lock."""
        if self.target_lock is None:
            raise CairnError("internal error: a write to the target without the target lock")
        self.target_lock.check()

    def collection(self):
        col = Collection(self.backend.list(), self.opts.names)
        self.cache.drop_stale(col)
        return col

    def manifest(self, s):
        return self.cache.manifest(s, self.backend, self.crypto, self.tmpdir)

    def signature_paths(self, sets):
        return [self.cache.signature(s, self.backend, self.crypto, self.tmpdir) for s in sets]
