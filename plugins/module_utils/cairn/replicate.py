# SPDX-License-Identifier: GPL-3.0-or-later
"""Copy backup sets from one target to another (``cairn replicate``; a lagging mirror's catch-up).

Files are copied byte for byte: the same names, the same ciphertext, so both targets need the
same keys. Nothing is re-encrypted or re-compressed (duplicity 0.8's replicate re-encrypts with
the run's options; cairn refuses those options, see cli.py). A set is copied when the target
lacks any of its files (volumes, manifest, signatures), oldest set first, and only complete
sets of the source's chains are copied (no incomplete, orphaned or unfinished ones).

Copy order, so that the target is valid for cairn and stock duplicity at every moment of an
interruption (the same order as a backup's commit, pipeline.py):

1. each volume the target lacks is uploaded under its unfinished name (naming.unfinished_name),
   which neither tool reads as part of a set, and checked by size at the target (and by SHA1
   against the manifest, when this host can read the manifest);
2. the manifest under its final name;
3. each volume renamed to its final name;
4. the signatures.

Interrupted before 2, the target is its previous state plus unfinished files (the next
replicate, backup or ``cleanup --force`` takes or removes them); inside 3 or 4 it is a set with
a manifest and missing volumes or no signatures, which duplicity reports and passes over, and
cairn counts incomplete. A re-run copies what is still missing.
"""
import logging
import os

from . import naming, timespec
from .crypto import sha1_file
from .collection import Collection
from .errors import BackendError, CryptoError, ManifestError
from .localdirs import remove_file
from .manifest import Manifest
from .redact import redact_url

log = logging.getLogger("cairn")


def sets_to_copy(src_names, dst_names, prefix="", time=None, newer_than=None):
    """([(BackupSet, [names the target lacks])], [BackupSet already complete at the target]):
    the complete sets of the source's chains, oldest first; ``time``: only sets ending at or
    before it (duplicity's replicate --time), ``newer_than``: only sets ending after it."""
    col = Collection(src_names, prefix)
    dst = set(dst_names)
    sets = sorted((s for c in col.chains for s in c.sets), key=lambda s: (s.end_time, s.type != "full"))
    todo, present = [], []
    for s in sets:
        if time is not None and s.end_time > time:
            continue
        if newer_than is not None and s.end_time <= newer_than:
            continue
        missing = [n for n in s.names if n not in dst]
        (todo.append((s, missing)) if missing else present.append(s))
    return todo, present


def _source_get(src, name, local):
    """Download from the source; its failures are marked as the source's (catch_up tells a
    primary's fault from a mirror's by it)."""
    try:
        src.get(name, local)
    except BackendError as e:
        e.from_source = True
        raise


def _check_size(backend, name, size):
    stored = backend.size(name)
    if stored is not None and stored != size:
        raise BackendError(f"{redact_url(backend.url)}: {name} is stored with {stored} bytes, "
                           f"{size} were copied")


def _volume_hashes(crypto, manifest_name, fetched, tmpdir):
    """{volume number: SHA1} from the manifest, or None when this host cannot read it."""
    if crypto is None:
        return None
    plain = fetched + ".plain"
    try:
        crypto.decode_file(manifest_name, fetched, plain)
        with open(plain, "rb") as f:
            man = Manifest.from_bytes(f.read())
    except (CryptoError, ManifestError, OSError) as e:
        log.debug("cannot read %s to check the volumes' hashes: %s", manifest_name, e)
        return None
    finally:
        remove_file(plain)
    return {n: v.hashes.get("SHA1") for n, v in man.volumes.items()}


def copy_set(src, dst, s, missing, prefix, tmpdir, crypto=None, check=None):
    """Copy the files ``missing`` of set ``s`` from backend ``src`` to ``dst`` in the safe order
    (module docstring). Returns (files, bytes) copied. ``check()`` runs before each write (the
    target lock's check)."""
    check = check or (lambda: None)
    missing = set(missing)
    files = nbytes = 0
    man_local = os.path.join(tmpdir, "replicate-" + s.manifest)
    _source_get(src, s.manifest, man_local)
    try:
        hashes = _volume_hashes(crypto, s.manifest, man_local, tmpdir)
        if hashes is not None:
            absent = sorted(set(hashes) - set(s.volumes))
            if absent:
                raise ManifestError(f"the source's set of {timespec.to_iso(s.end_time)} lacks volume(s) "
                                    f"{', '.join(map(str, absent))} its manifest names; not copied")
        renames = []
        for number in sorted(s.volumes):
            name = s.volumes[number]
            if name not in missing:
                continue
            local = os.path.join(tmpdir, "replicate-vol")
            _source_get(src, name, local)
            try:
                want = hashes.get(number) if hashes else None
                if want and sha1_file(local) != want:
                    e = BackendError(f"{name} at the source does not match the SHA1 in its manifest; "
                                     "not copied (run verify on the source)")
                    e.from_source = True
                    raise e
                size = os.path.getsize(local)
                temp = naming.unfinished_name(name, prefix)
                check()
                dst.put(local, temp)
                _check_size(dst, temp, size)
            finally:
                remove_file(local)
            renames.append((temp, name, size))
            files += 1
            nbytes += size
        check()
        if s.manifest in missing:
            dst.put(man_local, s.manifest)
            _check_size(dst, s.manifest, os.path.getsize(man_local))
            files += 1
            nbytes += os.path.getsize(man_local)
        for temp, name, size in renames:
            check()
            dst.rename(temp, name)
            _check_size(dst, name, size)
    finally:
        remove_file(man_local)
    if s.signature and s.signature in missing:
        local = os.path.join(tmpdir, "replicate-sig")
        _source_get(src, s.signature, local)
        try:
            check()
            dst.put(local, s.signature)
            size = os.path.getsize(local)
            _check_size(dst, s.signature, size)
        finally:
            remove_file(local)
        files += 1
        nbytes += size
    return files, nbytes


def _set_dict(s):
    d = {"type": "full" if s.type == "full" else "incremental", "time": timespec.to_iso(s.end_time),
         "timestamp": s.end_time, "volumes": len(s.volumes)}
    if s.type == "inc":
        d["start_time"] = timespec.to_iso(s.start_time)
    return d


def replicate(src, dst, prefix, tmpdir, crypto=None, time=None, newer_than=None, check=None):
    """Copy the sets ``dst`` lacks from ``src`` (backends). The caller holds the target lock
    on ``dst``. Returns plain data: sets copied, files, bytes, sets skipped as present."""
    try:
        src_names = src.list()
    except BackendError as e:
        e.from_source = True
        raise
    todo, present = sets_to_copy(src_names, dst.list(), prefix, time=time, newer_than=newer_than)
    copied, files, nbytes = [], 0, 0
    for s, missing in todo:
        log.info("replicating the %s set of %s (%d file(s)) to %s", "full" if s.type == "full" else "incremental",
                 timespec.to_iso(s.end_time), len(missing), redact_url(dst.url))
        n, b = copy_set(src, dst, s, missing, prefix, tmpdir, crypto=crypto, check=check)
        copied.append(_set_dict(s))
        files += n
        nbytes += b
    return {"source": redact_url(src.url), "target": redact_url(dst.url), "sets_copied": copied,
            "files_copied": files, "bytes_copied": nbytes, "sets_skipped": [_set_dict(s) for s in present],
            "changed": bool(copied)}


def catch_up(sess):
    """Before a backup to a primary with mirrors (multi.py's lag mode): copy to each mirror the
    sets it lacks from the primary, under that mirror's own target lock. A mirror that cannot be
    brought up to date (down, full, refusing, locked by another writer) is marked lagging and
    the backup goes on without it. Returns [{url, sets_copied, files_copied, bytes_copied}] of
    the mirrors that were copied to."""
    from .backends.multi import MultiBackend
    from .errors import CairnError
    from .lock import TargetLock, process_command
    multi = sess.backend
    if not isinstance(multi, MultiBackend) or not multi.lags or sess.opts.read_only:
        return []
    prefix = sess.opts.file_prefix
    primary = multi.backends[multi.primary]
    out = []
    for index, mirror in multi.healthy()[1:]:
        lock = TargetLock(mirror, prefix, tmpdir=sess.tmpdir, stale_after=sess.opts.lock_stale_after,
                          break_lock=sess.opts.break_lock, command=process_command("replicate"))
        try:
            lock.acquire()
            try:
                r = replicate(primary, mirror, sess.opts.names, sess.tmpdir, crypto=sess.crypto, check=lock.check)
            finally:
                lock.release()
        except BackendError as e:
            if getattr(e, "from_source", False):    # the primary's fault: the backup itself says so
                return out
            multi.mark_lagging(index, e)
            continue
        except CairnError as e:
            multi.mark_lagging(index, e)
            continue
        if r["sets_copied"]:
            log.warning("%s brought up to date: %d set(s), %d file(s) copied to it from %s", r["target"],
                        len(r["sets_copied"]), r["files_copied"], r["source"])
            out.append({"url": r["target"], "sets_copied": r["sets_copied"], "files_copied": r["files_copied"],
                        "bytes_copied": r["bytes_copied"]})
    return out


def with_mirrors(sess, run):
    """A backup ``run()`` on ``sess`` with its mirrors: the catch-up first, then the run; its
    result gets ``mirrors_caught_up`` and ``lagging_targets`` ([{url, error}], redacted), and
    the exit code MIRROR_LAGGING when a target lags (it outranks 9, whose warnings stay)."""
    from .errors import ExitCode
    caught = catch_up(sess)
    result = run()
    lagging = sess.backend.lagging_targets() if hasattr(sess.backend, "lagging_targets") else []
    result["mirrors_caught_up"] = caught
    result["lagging_targets"] = lagging
    if lagging:
        result["exit_code"] = ExitCode.MIRROR_LAGGING
    return result
