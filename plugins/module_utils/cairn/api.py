# SPDX-License-Identifier: GPL-3.0-or-later
"""The engine's entry points: what the CLI, the Ansible modules and run-job call.

Each opens a Session, calls one layer, and returns plain data (JSON-ready: ints, strings, ISO
times). Problems are raised as errors.CairnError subclasses carrying an exit code.
"""
import contextlib
import logging
import os
import time as _time

from . import pipeline, retention, timespec
from .backends import redact_url
from .backup import merged_signatures
from .errors import ExitCode, ManifestError, RestoreError, UserError
from .lock import DEFAULT_STALE_AFTER
from .options import BackupOptions, TargetOptions
from .restore import chain_at, parse_path, parse_renames, restore_chain
from .retention import RetentionPolicy
from .session import Session
from .verify import Comparer, verify_sets
from .verify import data_sample as data_sample_of

log = logging.getLogger("cairn")

# the backup run (pipeline.py): planned, run, and checked without a walk
plan_backup = pipeline.plan_backup
plan_changes = pipeline.plan_changes
backup = pipeline.backup

__all__ = ["BackupOptions", "DEFAULT_STALE_AFTER", "RetentionPolicy", "TargetOptions", "backup", "cleanup",
           "files_at", "last_backup_age", "plan_backup", "plan_changes", "plan_prune", "plan_restore", "prune",
           "remove_all_but_n_full", "remove_all_inc_of_but_n_full", "remove_older_than", "replicate", "restore",
           "set_changes", "status", "verify"]


# --- backup ------------------------------------------------------------------------------------

def last_backup_age(target):
    """(seconds since the newest backup set, its time) or (None, None): one listing of the
    target, no walk of the source (what a module's min_interval needs)."""
    with Session(target, lock=False) as sess:
        last = sess.collection().last_backup_time()
    if last is None:
        return None, None
    return max(0, int(_time.time()) - last), timespec.to_iso(last)


# --- restore, list, verify ------------------------------------------------------------------------

def restore(target, dest, *, time=None, path=None, force=False, numeric_owner=False,
            restore_owner=None, progress=None, on_file=None, rename=()):
    """Restore the backup at ``time`` (or its ``path``) into ``dest``. A volume that cannot be
    used does not stop it: ``incomplete`` is then true, ``lost_volumes`` names each such
    volume and why, ``lost`` the paths that needed one (not written). ``skipped``: files an
    interrupted restore had completed, found correct and kept (``force``). ``on_file(relpath,
    type)``: called for each path written (the CLI's verbosity 5 lines). ``rename``: (FROM, TO)
    pairs, duplicity's --rename: FROM (below ``path``) and what is in it are written at TO."""
    started = _time.time()
    renames = parse_renames(rename)
    t = time if time is not None else int(_time.time())
    prefix = parse_path(path)
    warnings = []
    with Session(target) as sess:
        _chain, sets = chain_at(sess.collection(), t)
        writer, losses = restore_chain(sess, sets, prefix, dest, force=force, restore_owner=restore_owner,
                                       numeric_owner=numeric_owner, on_warning=warnings.append,
                                       progress=progress, on_file=on_file, rename=renames)
    if writer.written == 0 and not losses.volumes:
        if prefix:
            raise RestoreError(f"{path} is not in the backup of {timespec.to_iso(sets[-1].end_time)}",
                               ExitCode.RESTORE_PATH_NOT_FOUND)
        raise RestoreError("nothing was restored", ExitCode.NOTHING_RESTORED)
    warnings += writer.warnings
    for w in warnings:
        log.warning("%s", w)
    lost = losses.lost_paths()
    return {"files": writer.written, "skipped": writer.skipped, "time": timespec.to_iso(sets[-1].end_time),
            "timestamp": sets[-1].end_time, "dest": dest, "path": path or "",
            "sets": len(sets), "incomplete": bool(losses.volumes), "lost": lost, "lost_count": len(lost),
            "lost_volumes": losses.lost_volumes(), "warnings": warnings,
            "duration": round(_time.time() - started, 3)}


def _current_files(sess, t):
    """(iterator of PathInfo in path order, set time); the chain and its signatures are checked
    before the first entry, so a listing fails before it prints anything."""
    _chain, sets = chain_at(sess.collection(), t)
    missing = [s for s in sets if not s.signature]
    if missing:
        raise ManifestError(f"signature file of the set of {timespec.to_iso(missing[0].end_time)} "
                            "is missing; listing the files needs it")
    return (e.info for e in merged_signatures(sess.signature_paths(sets))), sets[-1].end_time


@contextlib.contextmanager
def files_at(target, time=None):
    """``with files_at(target) as (infos, set_time)``: the files of the backup at ``time``, read
    from the signatures (no volume) while ``infos`` is iterated, so memory does not grow with the
    number of files. The target stays open until the block ends."""
    with Session(target, lock=False) as sess:
        yield _current_files(sess, time if time is not None else int(_time.time()))


def plan_restore(target, *, time=None, path=None, limit=1000):
    """What a restore would write, from the signatures: {files, paths (at most ``limit``), time}.
    A path that is not in the backup is RestoreError 19, as the restore itself would say."""
    prefix = parse_path(path)
    n = len(prefix)
    count, paths = 0, []
    with files_at(target, time) as (infos, set_time):
        for i in infos:
            if i.index[:n] == prefix:
                count += 1
                if len(paths) < limit:
                    paths.append(os.fsdecode(i.relpath))
            elif count:
                break       # path order: a prefix's entries are contiguous
    if prefix and not count:
        raise RestoreError(f"{path} is not in the backup of {timespec.to_iso(set_time)}",
                           ExitCode.RESTORE_PATH_NOT_FOUND)
    return {"files": count, "paths": paths, "time": timespec.to_iso(set_time), "timestamp": set_time}


def verify(target, source=None, *, time=None, path=None, compare_data=False, rules=(), progress=None,
           data_sample=None):
    """Fetch, hash-check, decrypt and parse every volume of the chain at ``time``; with
    ``compare_data`` also compare each file with ``source`` (type, metadata, content). The
    files found are counted against the signatures (verify.verify_sets): never a pass on
    nothing. ``data_sample`` (N > 0): the content of N regular files picked at random is
    compared, the metadata of every file still is (``data_compared`` says how many)."""
    if data_sample is not None and (isinstance(data_sample, bool) or not isinstance(data_sample, int)
                                    or data_sample < 1):
        raise UserError(f"the data sample is a number of files (1 or more), not {data_sample!r}")
    t = time if time is not None else int(_time.time())
    prefix = parse_path(path)
    warnings = []
    with Session(target) as sess:
        _chain, sets = chain_at(sess.collection(), t)
        compare_data = compare_data and source is not None
        sample = data_sample_of(sess, sets, prefix, data_sample) if compare_data and data_sample else None
        if compare_data and data_sample and sample is None:
            warnings.append("a set has no signature file to pick the data sample from: every file's data is compared")
        comparer = Comparer(source, rules, sess.tmpdir, compare_data=compare_data, prefix=prefix, data_sample=sample)
        expected = verify_sets(sess, sets, prefix, comparer, warnings, progress)
    return {"compared": comparer.compared, "files_in_backup": expected, "differences": comparer.differences,
            "data_compared": comparer.data_compared, "data_sample": data_sample if sample is not None else None,
            "volumes": sum(len(s.volumes) for s in sets), "sets": len(sets),
            "time": timespec.to_iso(sets[-1].end_time), "warnings": warnings}


# --- status ------------------------------------------------------------------------------------

def _set_dict(s):
    d = {"type": "full" if s.type == "full" else "incremental",
         "time": timespec.to_iso(s.end_time),
         "timestamp": s.end_time,
         "volumes": len(s.volumes),
         "encrypted": s.encrypted}
    if s.type == "inc":
        d["start_time"] = timespec.to_iso(s.start_time)
    return d


def _chain_dict(sets):
    full = sets[0]
    end = sets[-1].end_time
    return {"start_time": timespec.to_iso(full.start_time), "end_time": timespec.to_iso(end),
            "start_timestamp": full.start_time, "end_timestamp": end,
            "sets": [_set_dict(s) for s in sets], "volumes": sum(len(s.volumes) for s in sets),
            "has_signatures": all(s.signature for s in sets)}


def _stored_bytes(backend, names):
    """Bytes ``names`` take on the target, or None when the backend cannot tell for one."""
    total = 0
    for name in names:
        size = backend.size(name)
        if size is None:
            return None
        total += size
    return total


def set_changes(target):
    """Each backup set of the target's chains, oldest first, with the files its manifest lists
    as changed (duplicity's Filelist: regular files only; empty when written with
    --no-files-changed): ``changes`` is a list of (new|changed|deleted, relative path as bytes)."""
    with Session(target, lock=False) as sess:
        col = sess.collection()
        out = []
        for chain in col.chains:
            for s in chain.sets:
                d = _set_dict(s)
                d["changes"] = [(kind, b"/".join(index) if index else b".")
                                for kind, index in sess.manifest(s).files_changed]
                out.append(d)
    return out


def status(target, stored_size=False):
    """The chains and sets of a target, as plain data; with ``stored_size``, also the bytes each
    chain and the whole archive take on the target (one size request per file, so off by
    default; None where the backend cannot tell)."""
    with Session(target, lock=False) as sess:
        col = sess.collection()
        chains = [_chain_dict(c.sets) for c in col.chains]
        if stored_size:
            for c, d in zip(col.chains, chains):
                d["stored_bytes"] = _stored_bytes(sess.backend, [n for s in c.sets for n in s.names])
        now = int(_time.time())
        last_full = col.last_full_time()
        last = col.last_backup_time()
        result = {
            "url": redact_url(target.url),
            "archive_dir": sess.cache.path,
            "chains": chains,
            "primary_chain": chains[-1] if chains else None,
            "secondary_chains": chains[:-1],
            "orphaned_sets": [_set_dict(s) for s in col.orphaned],
            "incomplete_sets": [_set_dict(s) for s in col.incomplete],
            # volumes of a run that never reached its commit (the next backup or cleanup removes them)
            "unfinished_files": sorted(col.unfinished.values()),
            "last_full": timespec.to_iso(last_full) if last_full else None,
            "last_full_timestamp": last_full,
            "last_full_age": now - last_full if last_full else None,
            "last_backup": timespec.to_iso(last) if last else None,
            "last_backup_age": now - last if last else None,
        }
        if stored_size:
            sizes = [d["stored_bytes"] for d in chains]
            result["stored_bytes"] = None if None in sizes else sum(sizes)
        return result


# --- retention ---------------------------------------------------------------------------------

def prune(target, policy, force=False):
    """Apply a RetentionPolicy: without ``force`` only say what it would remove (exact: the
    chains before and after). Writers hold the target lock; a dry run takes none."""
    with Session(target) as sess:
        if force:
            sess.lock_target(policy.action)
        prune_plan = retention.plan(sess, sess.collection(), policy)
        if force:
            retention.apply(sess, prune_plan)
        else:
            retention.hold_back(sess, prune_plan)     # what S3 Object Lock would keep
    deleted = bool(force and prune_plan.files)
    # files/sets: what is (would be) deleted; skipped/kept_sets: what S3 Object Lock keeps
    return {"action": policy.action, "deleted": deleted, "would_delete": not force,
            "files": prune_plan.files, "sets": [_set_dict(s) for s in prune_plan.sets],
            "skipped": prune_plan.skipped, "kept_sets": [_set_dict(s) for s in prune_plan.kept_sets],
            "chains_before": [_chain_dict(c) for c in prune_plan.before],
            "chains_after": [_chain_dict(c) for c in prune_plan.after], "changed": bool(prune_plan.files)}


def plan_prune(target, policy):
    """What prune would remove, touching nothing (check mode)."""
    return prune(target, policy, force=False)


def remove_older_than(target, t, force=False):
    return prune(target, RetentionPolicy(older_than=t), force)


def remove_all_but_n_full(target, n, force=False):
    return prune(target, RetentionPolicy(keep_full=n), force)


def remove_all_inc_of_but_n_full(target, n, force=False):
    return prune(target, RetentionPolicy(keep_full_with_incrementals=n), force)


def cleanup(target, force=False):
    return prune(target, RetentionPolicy(cleanup=True), force)


# --- replicate ---------------------------------------------------------------------------------

def replicate(source_target, dest_target, time=None, newer_than=None):
    """Copy the backup sets ``dest_target`` lacks from ``source_target``, byte for byte (both
    need the same keys), oldest first, in an order that keeps the destination valid for cairn
    and duplicity at any interruption (replicate.py). ``time``: only sets ending at or before it
    (duplicity 0.8's replicate --time); ``newer_than``: only sets ending after it. Holds the
    destination's target lock while writing. Returns sets_copied, files_copied, bytes_copied and
    sets_skipped (already complete at the destination)."""
    from . import replicate as _replicate
    with Session(source_target, lock=False) as src, Session(dest_target) as dst:
        dst.lock_target("replicate")
        result = _replicate.replicate(src.backend, dst.backend, dest_target.names, dst.tmpdir,
                                      crypto=src.crypto, time=time, newer_than=newer_than,
                                      check=dst.require_target_lock)
    return result
