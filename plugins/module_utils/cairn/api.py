# SPDX-License-Identifier: GPL-3.0-or-later
"""The engine's entry points: what the CLI and the Ansible modules call.

Each takes typed options and returns a plain dict (JSON-ready: ints, strings, ISO times).
Problems are raised as errors.CairnError subclasses carrying an exit code.
"""
import io
import logging
import os
import shutil
import socket
import threading
import time as _time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from . import archive, naming, timespec
from .backends import BackendOptions, open_backend, redact_url
from .backends.base import TEMP_PREFIX
from .backends.transfer import UploadQueue
from .backup import (Stats, SigWriter, VolumeWriter, gzip_file, make_shipper, merged_signatures,
                     write_sets)
from .cache import ArchiveDir, default_name, local_manifest_name
from .localdirs import make_tempdir, restore_signals, terminate_as_interrupt
from .collection import Collection
from .crypto import Crypto, CryptoOptions
from .errors import (BackendError, BackendNotFound, CairnError, CryptoError, ExitCode, HashMismatch,
                     ManifestError, ManifestMismatch, NoBackupFound, NoSignatures, RestoreError, SourceError,
                     UserError, local_io_error)
from .lock import DEFAULT_STALE_AFTER, TargetLock, is_lock_name, process_command, stale_lock_names
from .manifest import Manifest
from .restore import TreeWriter, VolumeFetcher, check_target, merged_entries, set_members
from .selection import Selection

log = logging.getLogger("cairn")

MiB = 1 << 20


@dataclass
class TargetOptions:
    """Where the archive is and how to read/write it: shared by every operation."""

    url: str
    crypto: CryptoOptions = field(default_factory=CryptoOptions)
    archive_dir: str = None
    name: str = None
    tempdir: str = None
    file_prefix: str = ""
    backend: BackendOptions = field(default_factory=BackendOptions)
    mirrors: list = field(default_factory=list)    # more URLs that get every file too
    # the target lock of writers (lock.py): seconds without a refresh before another run takes
    # it over, and whether to take over any lock at once
    lock_stale_after: int = DEFAULT_STALE_AFTER
    break_lock: bool = False
    # check mode: nothing local or remote is created, changed or removed
    read_only: bool = False


@dataclass
class BackupOptions:
    source: str
    mode: str = "auto"                 # auto | full | incremental
    full_if_older_than: int = None     # epoch seconds: a full is due when the last is older
    volsize: int = 200                 # MiB
    rules: list = field(default_factory=list)   # selection rules, see selection.Selection
    allow_source_mismatch: bool = False
    max_blocksize: int = 0
    jobs: int = 0                      # parallel gpg processes; 0 = number of CPUs
    adaptive_compression: bool = True  # no compression for data that does not compress
    compress_level: int = 3            # gpg -z; None = gpg's default (6), as duplicity


class Session:
    """An open target: backend, crypto, local archive dir, temp dir and (optionally) the lock."""

    target_lock = None      # a TargetLock while this session writes (lock_target)

    def __init__(self, target, lock=True):
        self.opts = target
        self.backend = open_backend(target.url, target.backend, target.mirrors)
        self.crypto = Crypto(target.crypto)
        self.cache = ArchiveDir(target.archive_dir, target.name or default_name(target.url),
                                read_only=target.read_only)
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
        # a full or read-only local disk is the admin's to fix, not a bug (exit 30): say which
        # (backends turn their own OSErrors into BackendError before they get here)
        local = local_io_error(exc, f"the temp dir {self.tmpdir} or the archive dir {self.cache.path}")
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
        col = Collection(self.backend.list(), self.opts.file_prefix)
        self.cache.drop_stale(col)
        return col

    def manifest(self, s):
        return self.cache.manifest(s, self.backend, self.crypto, self.tmpdir)

    def signature_paths(self, sets):
        return [self.cache.signature(s, self.backend, self.crypto, self.tmpdir) for s in sets]


def _set_dict(s, manifest=None):
    d = {"type": "full" if s.type == "full" else "incremental",
         "time": timespec.to_iso(s.end_time),
         "timestamp": s.end_time,
         "volumes": len(s.volumes),
         "encrypted": s.encrypted}
    if s.type == "inc":
        d["start_time"] = timespec.to_iso(s.start_time)
    return d


def _now_after(t):
    """A set time strictly after ``t`` (names have second resolution)."""
    now = int(_time.time())
    while t is not None and now <= t:
        _time.sleep(t + 1 - _time.time() + 0.01)
        now = int(_time.time())
    return now


def _unused_time(col, after, prefix):
    """A set time after ``after`` that no set at the target has, not even an incomplete one or one
    whose first upload is still under its temp name: that may be the in-flight set of a writer
    whose lock this run took over, and its files are never to be overwritten."""
    taken = {s.end_time for s in col.sets}
    for name in col.foreign:
        p = naming.parse(name[len(TEMP_PREFIX):], prefix) if name.startswith(TEMP_PREFIX) else None
        if p is not None:
            taken.add(p.time if p.time is not None else p.end_time)
    now = _now_after(after)
    while now in taken:
        now = _now_after(now)
    return now


def _localdir(source):
    parts = os.fsencode(source).split(b"/")
    out = b"/".join(p for i, p in enumerate(parts) if p != b"." or i == 0)
    return out.rstrip(b"/") or b"/"


# --- backup ----------------------------------------------------------------------------------

def plan_backup(target, opts, session=None):
    """Decide full or incremental, and why (used by backup and by check mode)."""
    def decide(sess):
        col = sess.collection()
        chain = col.last_chain
        sig_chain = col.signature_chain
        usable = sig_chain is not None and sig_chain is chain
        if opts.mode == "full":
            return "full", "full backup requested", col
        if opts.mode == "incremental":
            if not usable:
                raise NoSignatures("no usable signature chain at the target for an incremental "
                                   "backup; run a full backup first")
            return "incremental", "incremental backup requested", col
        if chain is None:
            return "full", "no previous backup at the target", col
        if not usable:
            return "full", "the last chain has no complete signatures", col
        if opts.full_if_older_than is not None and chain.start_time < opts.full_if_older_than:
            return "full", (f"last full backup ({timespec.to_iso(chain.start_time)}) is older than "
                            f"{timespec.to_iso(opts.full_if_older_than)}"), col
        return "incremental", f"extends the chain started {timespec.to_iso(chain.start_time)}", col
    if session is not None:
        return decide(session)
    with Session(target, lock=False) as sess:
        return decide(sess)


def plan_changes(target, opts):
    """What a backup would do, from metadata alone: type, reason and change counts (check mode)."""
    if not os.path.isdir(opts.source):
        raise SourceError(f"source directory {opts.source} does not exist or is not a directory")
    with Session(target, lock=False) as sess:
        kind, reason, col = plan_backup(target, opts, sess)
        old = []
        if kind == "incremental":
            old = sess.signature_paths(col.signature_chain.sets)
        counts = {"new_files": 0, "changed_files": 0, "deleted_files": 0, "unchanged_files": 0}
        old_iter = iter(merged_signatures(old))
        prev = next(old_iter, None)
        for e in Selection(opts.source, opts.rules, on_warning=lambda m: None).walk():
            while prev is not None and prev.index < e.index:
                counts["deleted_files"] += 1
                prev = next(old_iter, None)
            info = archive.path_info(e.index, e.path, e.stat)
            if info is None:
                continue
            if prev is not None and prev.index == e.index:
                key = "unchanged_files" if info.same_as(prev.info) else "changed_files"
                prev = next(old_iter, None)
            else:
                key = "new_files"
            counts[key] += 1
        while prev is not None:
            counts["deleted_files"] += 1
            prev = next(old_iter, None)
        last = col.last_backup_time()
        return dict(type=kind, reason=reason, last_backup=timespec.to_iso(last) if last else None,
                    last_backup_age=int(_time.time()) - last if last else None, **counts)


def backup(target, opts, progress=None):
    source = opts.source
    if not os.path.isdir(source):
        raise SourceError(f"source directory {source} does not exist or is not a directory")
    started = _time.time()
    with Session(target) as sess, ThreadPoolExecutor(max_workers=2, thread_name_prefix="cairn-meta") as pool:
        sess.lock_target("backup")
        kind, reason, col = plan_backup(target, opts, sess)
        hostname = socket.gethostname()
        localdir = _localdir(source)
        old_sig_paths = []
        precheck = None
        if kind == "incremental":
            chain = col.signature_chain
            last = sess.manifest(chain.sets[-1])
            if not opts.allow_source_mismatch:
                _check_source(last, hostname, localdir)
            # runs beside the scan; nothing is uploaded or deleted before it has passed
            precheck = pool.submit(_check_remote_manifest, sess, chain.sets[-1])
            old_sig_paths = sess.signature_paths(chain.sets)
            start = chain.end_time
            now = _unused_time(col, start, target.file_prefix)
            names = dict(start_time=start, end_time=now)
        else:
            now = _unused_time(col, col.last_backup_time(), target.file_prefix)
            names = dict(time=now)
        log.info("%s backup of %s to %s: %s", kind, source, redact_url(target.url), reason)
        gate = _Gate(lambda: (precheck.result() if precheck else None, _remove_interrupted(sess, col)))
        suffix = sess.crypto.suffix
        jobs = opts.jobs or os.cpu_count() or 1
        uploader = UploadQueue(sess.backend, target.backend.upload_concurrency)
        # a run that lost its target lock stops at its next volume, not only at the commit
        shipper = make_shipper(sess.crypto, uploader, compress_level=opts.compress_level,
                               gate=lambda: (gate(), sess.target_lock.raise_if_lost()))
        vol_writer = VolumeWriter(shipper, lambda n: naming.volume_name(n, suffix=suffix, prefix=target.file_prefix, **names),
                                  opts.volsize * MiB, sess.tmpdir, jobs)
        sig_plain = os.path.join(sess.tmpdir, "signatures.tar")
        sig_writer = SigWriter(sig_plain)
        filelist_path = os.path.join(sess.tmpdir, "filelist")
        stats = Stats()
        warnings = []

        def warn(msg):      # something could not be read: the run goes on, the exit code says so
            warnings.append(msg)
            log.warning("%s", msg)

        selection = Selection(source, opts.rules, on_warning=warn)
        try:
            with open(filelist_path, "wb") as filelist:
                write_sets(selection.walk(), merged_signatures(old_sig_paths), vol_writer, sig_writer,
                           filelist, stats, incremental=(kind == "incremental"),
                           max_blocksize=opts.max_blocksize, on_warning=warn, progress=progress,
                           adaptive=opts.adaptive_compression)
            sig_writer.close()
            # the signatures are encrypted (and gzipped for the cache) while the volumes finish
            sig_out = sig_plain + ".out"
            sig_gz = sig_plain + ".gz"
            sig_done = pool.submit(sess.crypto.encrypt_file, sig_plain, sig_out)
            gz_done = pool.submit(gzip_file, sig_plain, sig_gz)
            results = vol_writer.close()
            uploader.drain()
        except BaseException:
            vol_writer.abort()
            uploader.close(cancel=True)
            raise
        uploader.close()
        # the manifest, only once every volume is in place
        man = Manifest(hostname=hostname, localdir=localdir)
        for vi in vol_writer.volumes:
            man.add_volume(vi)
        man_plain = os.path.join(sess.tmpdir, "manifest")
        with open(man_plain, "wb") as f:
            f.write(man.to_bytes())
            count = _count_lines(filelist_path)
            f.write(b"Filelist %d\n" % count)
            with open(filelist_path, "rb") as fl:
                shutil.copyfileobj(fl, f)
        man_suffix = ".gpg" if sess.crypto.encrypted else ""
        man_name = naming.manifest_name(suffix=man_suffix, prefix=target.file_prefix, **names)
        man_out = man_plain + ".out"
        sess.crypto.encrypt_file(man_plain, man_out, gzip_when_plain=False)
        gate()
        _check_uploaded(sess, results)     # a set that lost volumes never gets its manifest
        sess.backend.put(man_out, man_name)
        # then the signatures
        sig_name = naming.signature_name(suffix=suffix, prefix=target.file_prefix, **names)
        sig_done.result()
        sess.backend.put(sig_out, sig_name)
        stored = sum(r.size for r in results) + os.path.getsize(man_out) + os.path.getsize(sig_out)
        # and the local cache
        new_set = _set_for(kind, names)
        sess.cache.store_manifest(new_set, man_plain)
        gz_done.result()
        sess.cache.store_signature(new_set, sig_gz)
    elapsed = _time.time() - started
    return {
        "type": kind,
        "reason": reason,
        "time": timespec.to_iso(now),
        "timestamp": now,
        "start_time": timespec.to_iso(names.get("start_time", now)),
        "volumes": len(results),
        "bytes_stored": stored,
        "source_files": stats.source_files,
        "source_bytes": stats.source_bytes,
        "new_files": stats.new_files,
        "changed_files": stats.changed_files,
        "deleted_files": stats.deleted_files,
        "unchanged_files": stats.unchanged_files,
        "delta_entries": stats.delta_entries,
        "raw_delta_bytes": stats.raw_delta_bytes,
        "errors": stats.errors,
        "warnings": warnings,
        "duration": round(elapsed, 3),
        "exit_code": ExitCode.SKIPPED_FILES if (stats.errors or warnings) else 0,
    }


def _count_lines(path):
    with open(path, "rb") as f:
        return sum(1 for _line in f)


def _set_for(kind, names):
    from .collection import BackupSet
    if kind == "full":
        return BackupSet("full", names["time"], names["time"])
    return BackupSet("inc", names["start_time"], names["end_time"])


def _check_source(last, hostname, localdir):
    if last.hostname and last.hostname not in (hostname, socket.getfqdn()):
        raise CairnError(f"the last backup at this target was made on host {last.hostname!r}, "
                         f"this is {hostname!r}; use --allow-source-mismatch if that is intended",
                         ExitCode.HOSTNAME_MISMATCH)
    if last.localdir and last.localdir != localdir:
        raise CairnError(f"the last backup at this target was of {os.fsdecode(last.localdir)!r}, "
                         f"this run backs up {os.fsdecode(localdir)!r}; use --allow-source-mismatch "
                         "if that is intended", ExitCode.SOURCE_PATH_MISMATCH)


def _check_remote_manifest(sess, s):
    """The remote manifest of the set we extend must equal the cached one (duplicity's check).

    It also proves the passphrase before anything is written: a wrong one fails here (exit 31).
    With public-key encryption and no secret key on this host the check is skipped, as a host
    that only encrypts cannot read its own archive.
    """
    fetched = os.path.join(sess.tmpdir, "remote-" + s.manifest)
    sess.backend.get(s.manifest, fetched)
    plain = fetched + ".plain"
    if s.manifest.endswith((".gpg", ".g")):
        try:
            sess.crypto.decrypt_file(fetched, plain)
        except CryptoError:
            if sess.opts.crypto.mode == "pubkey":
                log.debug("no secret key to check the remote manifest; relying on the cache")
                return
            raise
    else:
        os.replace(fetched, plain)
    cached = os.path.join(sess.cache.path, local_manifest_name(s))
    with open(plain, "rb") as a, open(cached, "rb") as b:
        if a.read() != b.read():
            raise ManifestMismatch(f"the manifest of the last backup at the target ({s.manifest}) differs "
                                   f"from the cached copy in {sess.cache.path}; remove the cached "
                                   "copy to fetch it again, or check who else writes to this target")


class _Gate:
    """Runs a check once, before the first write to the target; later callers see its error."""

    def __init__(self, check):
        self.check = check
        self.lock = threading.Lock()
        self.passed = False

    def __call__(self):
        with self.lock:
            if not self.passed:
                self.check()
                self.passed = True


def _check_uploaded(sess, results):
    """Before the commit: the lock is still ours and the target lists every volume this run
    uploaded, at the size uploaded where the backend can tell (BackendError naming the others)."""
    sess.require_target_lock()
    listed = set(sess.backend.list())
    bad = [f"{r.name} (missing)" for r in results if r.name not in listed]
    for r in results:
        size = sess.backend.size(r.name) if r.name in listed else None
        if size is not None and size != r.size:
            bad.append(f"{r.name} ({size} bytes stored, {r.size} uploaded)")
    if bad:
        raise BackendError(f"the target lost volume(s) of this backup set, so it is not committed: "
                           f"{', '.join(bad)}; check who else writes to or prunes this target")


def _remove_interrupted(sess, col):
    """Delete the remains of an interrupted run: sets newer than the last complete one."""
    sess.require_target_lock()     # only the lock holder deletes: no other writer is live
    last = col.last_backup_time() or 0
    stale = [s for s in col.incomplete if s.end_time >= last]
    if not stale:
        return
    if not sess.target_lock.previous_writer_gone:
        log.warning("leaving %d set(s) of an interrupted run: this run took over a lock whose writer "
                    "may still run; a later run or `cleanup --force` removes them", len(stale))
        return
    names = [n for s in stale for n in s.names]
    log.warning("removing %d file(s) of %d set(s) left by an interrupted run", len(names), len(stale))
    sess.backend.delete(names)
    sess.cache.forget(stale)


# --- reading a chain -------------------------------------------------------------------------

def _chain_at(col, t):
    chain = col.chain_for_time(t)
    if chain is None:
        raise NoBackupFound("no backup found at the target (no complete backup set with a manifest)")
    return chain, chain.sets_until(t)


def _volumes_of(sess, s, prefix=()):
    man = sess.manifest(s)
    numbers = sorted(man.volumes) if not prefix else man.volumes_containing(prefix)
    out = []
    for n in numbers:
        name = s.volumes.get(n)
        if name is None:
            raise BackendNotFound(f"volume {n} of the backup set of {timespec.to_iso(s.end_time)} is "
                                  "missing from the target")
        out.append((name, man.volumes[n].hashes.get("SHA1")))
    return out


def _strip_prefix(members, prefix):
    n = len(prefix)
    for m, read in members:
        if m.index[:n] != prefix:
            continue
        m.index = m.index[n:]
        if m.info is not None:
            m.info.index = m.index
        yield m, read


def _restore_stream(sess, sets, prefix, fetcher, on_warning):
    iters = []
    for s in sets:
        members = set_members(fetcher, _volumes_of(sess, s, prefix))
        iters.append(_strip_prefix(members, prefix) if prefix else members)
    return merged_entries(iters, on_warning)


def _parse_path(path):
    if not path:
        return ()
    return tuple(c for c in os.fsencode(path).strip(b"/").split(b"/") if c not in (b"", b"."))


def restore(target, dest, *, time=None, path=None, force=False, numeric_owner=False,
            restore_owner=None, progress=None):
    started = _time.time()
    t = time if time is not None else int(_time.time())
    prefix = _parse_path(path)
    with Session(target) as sess:
        col = sess.collection()
        chain, sets = _chain_at(col, t)
        check_target(dest, force)
        warnings = []
        writer = TreeWriter(dest, restore_owner=restore_owner, numeric_owner=numeric_owner,
                            whole_tree=not prefix, tmp_dir=sess.tmpdir)
        fetcher = VolumeFetcher(sess.backend, sess.crypto, sess.tmpdir, streams=len(sets))
        try:
            for index, entries in _restore_stream(sess, sets, prefix, fetcher, warnings.append):
                writer.write(index, entries)
                if progress:
                    progress(writer.written)
            writer.close()
        finally:
            writer.discard()
            fetcher.close()
        if writer.written == 0:
            if prefix:
                raise RestoreError(f"{path} is not in the backup of {timespec.to_iso(sets[-1].end_time)}",
                                   ExitCode.RESTORE_PATH_NOT_FOUND)
            raise RestoreError("nothing was restored", ExitCode.NOTHING_RESTORED)
    for w in warnings + writer.warnings:
        log.warning("%s", w)
    return {"files": writer.written, "time": timespec.to_iso(sets[-1].end_time),
            "timestamp": sets[-1].end_time, "dest": dest, "path": path or "",
            "sets": len(sets), "warnings": warnings + writer.warnings,
            "duration": round(_time.time() - started, 3)}


def list_files(target, time=None):
    """[(PathInfo)] of the backup at ``time``, from the signatures (cheap: no volume is read)."""
    t = time if time is not None else int(_time.time())
    with Session(target, lock=False) as sess:
        col = sess.collection()
        chain, sets = _chain_at(col, t)
        missing = [s for s in sets if not s.signature]
        if missing:
            raise ManifestError(f"signature file of the set of {timespec.to_iso(missing[0].end_time)} "
                                "is missing; list-current-files needs it")
        paths = sess.signature_paths(sets)
        return [e.info for e in merged_signatures(paths)], sets[-1].end_time


def verify(target, source=None, *, time=None, path=None, compare_data=False, rules=(), progress=None):
    """Fetch, hash-check, decrypt and parse every volume of the chain at ``time``.

    With ``compare_data`` also compare each file with ``source`` (type, metadata, content).
    The files the volumes hold are counted against those the signatures list: a manifest or
    signature that cannot be read fails (ManifestError, 6), and volumes that hold fewer files
    than the backup does (a damaged or forged set) fail with HashMismatch (21), so a verify can
    never pass on nothing.
    """
    from .verify import Comparer
    t = time if time is not None else int(_time.time())
    prefix = _parse_path(path)
    with Session(target) as sess:
        col = sess.collection()
        chain, sets = _chain_at(col, t)
        warnings = []
        expected = _files_in_backup(sess, sets, prefix, warnings)
        fetcher = VolumeFetcher(sess.backend, sess.crypto, sess.tmpdir, streams=len(sets))
        comparer = Comparer(source, rules, sess.tmpdir, compare_data=compare_data and source is not None,
                            prefix=prefix)
        try:
            for index, entries in _restore_stream(sess, sets, prefix, fetcher, warnings.append):
                comparer.archive_entry(index, entries)
                if progress:
                    progress(comparer.compared)
            comparer.finish()
        finally:
            fetcher.close()
        if expected is not None and comparer.compared != expected:
            raise HashMismatch(f"verify: the volumes of the backup of {timespec.to_iso(sets[-1].end_time)} "
                               f"hold {comparer.compared} of the {expected} files its signatures list; the "
                               "backup is damaged or was not written by a backup run")
    return {"compared": comparer.compared, "files_in_backup": expected, "differences": comparer.differences,
            "volumes": sum(len(s.volumes) for s in sets), "sets": len(sets),
            "time": timespec.to_iso(sets[-1].end_time), "warnings": warnings}


def _files_in_backup(sess, sets, prefix, warnings):
    """How many paths (under ``prefix``) the backup holds, from its signatures; None (with a
    warning) when a set has no signature file to count from."""
    missing = [s for s in sets if not s.signature]
    if missing:
        warnings.append(f"the set of {timespec.to_iso(missing[0].end_time)} has no signature file: "
                        "cannot check that the volumes hold every file")
        return None
    n = len(prefix)
    return sum(1 for e in merged_signatures(sess.signature_paths(sets)) if e.index[:n] == prefix)


# --- status ----------------------------------------------------------------------------------

def status(target, stored_size=False):
    """The chains and sets of a target; with ``stored_size``, also the bytes each chain and the
    whole archive take on the target (one size request per file, so off by default)."""
    with Session(target, lock=False) as sess:
        col = sess.collection()
        chains = []
        for c in col.chains:
            chains.append({"start_time": timespec.to_iso(c.start_time), "end_time": timespec.to_iso(c.end_time),
                           "start_timestamp": c.start_time, "end_timestamp": c.end_time,
                           "sets": [_set_dict(s) for s in c.sets],
                           "volumes": sum(len(s.volumes) for s in c.sets),
                           "has_signatures": c.has_signatures})
            if stored_size:
                chains[-1]["stored_bytes"] = sum(sess.backend.size(n) or 0 for st in c.sets for n in st.names)
        now = int(_time.time())
        last_full = col.last_full_time()
        last = col.last_backup_time()
        return {
            "url": redact_url(target.url),
            "archive_dir": sess.cache.path,
            "chains": chains,
            "primary_chain": chains[-1] if chains else None,
            "secondary_chains": chains[:-1],
            "orphaned_sets": [_set_dict(s) for s in col.orphaned],
            "incomplete_sets": [_set_dict(s) for s in col.incomplete],
            "last_full": timespec.to_iso(last_full) if last_full else None,
            "last_full_age": now - last_full if last_full else None,
            "last_backup": timespec.to_iso(last) if last else None,
            "last_backup_age": now - last if last else None,
            "_collection": col,
            **({"stored_bytes": sum(c["stored_bytes"] for c in chains)} if stored_size else {}),
        }


def format_status(st):
    """duplicity's collection-status text (3.x wording)."""
    col = st["_collection"]
    out = io.StringIO()
    w = out.write
    if col.chains:
        w(f"Last full backup date: {timespec.asctime(col.last_full_time())}\n")
    else:
        w("Last full backup date: none\n")
    w("Collection Status\n-----------------\n")
    w(f"Connecting with backend: {type_name(st)}\n")
    w(f"Archive dir: {st['archive_dir']}\n\n")
    secondary = col.chains[:-1]
    w(f"Found {len(secondary)} secondary backup chain(s).\n")
    for i, c in enumerate(secondary, 1):
        w(f"Secondary chain {i} of {len(secondary)}:\n")
        _chain_text(w, c)
    w("\n")
    if col.chains:
        w("Found primary backup chain with matching signature chain:\n")
        _chain_text(w, col.chains[-1])
    else:
        w("No backup chains with active signatures found\n")
    if col.orphaned or col.incomplete:
        w(f"Also found {len(col.orphaned)} backup set(s) not part of any chain,\n")
        w(f"and {len(col.incomplete)} incomplete backup set(s).\n")
        w('These may be deleted by running duplicity with the "cleanup" command.\n')
    else:
        w("No orphaned or incomplete backup sets found.\n")
    return out.getvalue()


def type_name(st):
    return "BackendWrapper"


def _chain_text(w, c):
    w("-------------------------\n")
    w(f"Chain start time: {timespec.asctime(c.start_time)}\n")
    w(f"Chain end time: {timespec.asctime(c.end_time)}\n")
    w(f"Number of contained backup sets: {len(c.sets)}\n")
    w(f"Total number of contained volumes: {sum(len(s.volumes) for s in c.sets)}\n")
    w("%20s   %30s   %15s\n" % ("Type of backup set:", "Time:", "Num volumes:"))
    for s in c.sets:
        w("%20s   %30s   %15s\n" % ("Full" if s.type == "full" else "Incremental",
                                    timespec.asctime(s.end_time), len(s.volumes)))
    w("-------------------------\n")


# --- pruning ---------------------------------------------------------------------------------

def _prune(target, select, force, what, stale_locks=False):
    """Delete (or, without force, list) the files of the sets ``select(col)`` returns; with
    ``stale_locks`` also the target's stale lock objects (never a live one)."""
    with Session(target) as sess:
        if force:
            sess.lock_target(what)
        col = sess.collection()
        sets, extra_names = select(col)
        if stale_locks:
            own = sess.target_lock.own if sess.target_lock else ()
            extra_names = list(extra_names) + stale_lock_names(
                sess.backend, col.foreign, target.file_prefix, sess.tmpdir, target.lock_stale_after, own=own)
        if sess.target_lock is not None and not sess.target_lock.previous_writer_gone:
            # we took over a lock whose writer may be stalled or broken into, not dead
            in_flight = {id(s) for s in col.incomplete}
            if any(id(s) in in_flight for s in sets):
                log.warning("leaving incomplete sets and temporary files: the writer whose lock was "
                            "taken over may still run; run cleanup again later")
            sets = [s for s in sets if id(s) not in in_flight]
            extra_names = [n for n in extra_names if not n.startswith(TEMP_PREFIX)]
        newest = col.last_chain
        if newest is not None:
            protected = {id(s) for s in newest.sets}
            sets = [s for s in sets if id(s) not in protected]
        names = sorted({n for s in sets for n in s.names} | set(extra_names))
        if force and names:
            sess.backend.delete(names)
            sess.cache.forget(sets)
        return {"action": what, "deleted": bool(force and names), "would_delete": not force,
                "files": names, "sets": [_set_dict(s) for s in sets], "changed": bool(names)}


def remove_older_than(target, t, force=False):
    def select(col):
        sets = [s for c in col.chains if c.end_time < t for s in c.sets]
        return sets + [s for s in col.orphaned if s.end_time < t], []
    return _prune(target, select, force, "remove-older-than")


def _older_than_nth_full(col, n):
    if n < 1:
        raise UserError("the number of full backups to keep must be at least 1")
    fulls = [c.start_time for c in col.chains]
    if len(fulls) <= n:
        return None
    return fulls[-n]


def remove_all_but_n_full(target, n, force=False):
    def select(col):
        t = _older_than_nth_full(col, n)
        if t is None:
            return [], []
        return [s for c in col.chains if c.end_time < t for s in c.sets], []
    return _prune(target, select, force, "remove-all-but-n-full")


def remove_all_inc_of_but_n_full(target, n, force=False):
    def select(col):
        t = _older_than_nth_full(col, n)
        if t is None:
            return [], []
        return [s for c in col.chains if c.end_time < t for s in c.incs], []
    return _prune(target, select, force, "remove-all-inc-of-but-n-full")


def cleanup(target, force=False):
    prefix = target.file_prefix

    def ours(temp_name):
        # only temp names of this prefix's archive: another prefix's writer holds its own lock
        name = temp_name[len(TEMP_PREFIX):]
        return naming.parse(name, prefix) is not None or is_lock_name(name, prefix)

    def select(col):
        sets = list(col.incomplete) + list(col.orphaned)
        extra = list(col.orphaned_signatures) + [n for n in col.foreign
                                                 if n.startswith(TEMP_PREFIX) and ours(n)]
        return sets, extra
    return _prune(target, select, force, "cleanup", stale_locks=True)
