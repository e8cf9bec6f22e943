# SPDX-License-Identifier: GPL-3.0-or-later
"""The backup run: plan (full or incremental), write the volumes, write the manifest, commit.

Write order (what makes an interrupted run harmless): every volume is uploaded under its final
name only when complete; then the manifest; then the signatures. Until the manifest exists the
set is incomplete and every reader (cairn and duplicity) ignores it.
"""
import logging
import os
import shutil
import socket
import threading
import time as _time
from concurrent.futures import ThreadPoolExecutor

from . import archive, naming, timespec
from .backends import redact_url
from .backends.base import TEMP_PREFIX
from .backends.transfer import UploadQueue
from .backup import (Stats, SigWriter, VolumeWriter, gzip_file, make_shipper, merged_signatures,
                     write_sets)
from .cache import local_manifest_name
from .errors import (BackendError, CairnError, ExitCode, ManifestMismatch, NoSecretKey, NoSignatures,
                     SourceError)
from .manifest import Manifest
from .selection import Selection
from .session import Session

log = logging.getLogger("cairn")

MiB = 1 << 20


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
    try:
        sess.crypto.decode_file(s.manifest, fetched, plain)
    except NoSecretKey:
        # only that: a corrupt remote manifest, a wrong passphrase, are errors here too
        log.debug("no secret key to check the remote manifest; relying on the cache")
        return
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
