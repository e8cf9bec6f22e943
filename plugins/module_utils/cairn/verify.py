# SPDX-License-Identifier: GPL-3.0-or-later
"""verify: the archive's view of each path collated with the local tree (§8)."""
import filecmp
import os
import random

from . import archive, timespec
from .archive import REG, SYM, CHR, BLK
from .backup import merged_signatures
from .errors import CairnError, ExitCode, HashMismatch
from .restore import each_entry, write_content
from .selection import Selection


class Comparer:
    """Collates the archive's entries with the local tree. ``data_sample``: the indexes whose
    content is compared (data_sample()); None compares every file's. Type, metadata, missing
    and new files are checked for every path either way."""

    def __init__(self, source, rules, tmpdir, *, compare_data, prefix=(), data_sample=None):
        self.compare_data = compare_data
        self.data_sample = data_sample
        self.data_compared = 0
        self.tmpdir = tmpdir
        self.compared = 0
        self.differences = []
        self.local = None
        self.pending = None
        if compare_data:
            root = os.path.join(os.fsencode(source), *prefix) if prefix else os.fsencode(source)
            if not os.path.lexists(root):
                raise CairnError(f"verify: {os.fsdecode(root)} does not exist", ExitCode.VERIFY_DIR_MISSING)
            self.local = iter(Selection(root, rules).walk()) if os.path.isdir(root) else None
            self.single_root = None if self.local is not None else root
            self.pending = next(self.local, None) if self.local is not None else None

    def _diff(self, index, what, message):
        self.differences.append({"path": _rel(index), "what": what, "message": message})

    def _local_until(self, index):
        """Report local paths sorting before ``index`` as new; return the local entry at it."""
        while self.pending is not None and self.pending.index < index:
            self._diff(self.pending.index, "new", f"New file {_rel(self.pending.index)}")
            self.pending = next(self.local, None)
        if self.pending is not None and self.pending.index == index:
            e, self.pending = self.pending, next(self.local, None)
            return e
        return None

    def archive_entry(self, index, entries):
        if entries[0].kind == "deleted":
            return
        self.compared += 1
        if not self.compare_data:
            return
        if self.local is None:   # a single file was verified
            path = self.single_root
            st = os.lstat(path) if os.path.lexists(path) else None
        else:
            e = self._local_until(index)
            path, st = (e.path, e.stat) if e is not None else (None, None)
        info = entries[-1].info
        if st is None:
            self._diff(index, "missing", f"File {_rel(index)} is missing")
            return
        local = archive.path_info(index, path, st)
        if local is None or local.type != info.type:
            self._diff(index, "type", f"File {_rel(index)} has type {local.type if local else 'socket'}, "
                       f"expected {info.type}")
            return
        if info.type != SYM and (local.mode, local.uid, local.gid) != (info.mode, info.uid, info.gid):
            self._diff(index, "permissions",
                       f"File {_rel(index)} has permissions {local.uid}:{local.gid} {oct(local.mode)}, "
                       f"expected {info.uid}:{info.gid} {oct(info.mode)}")
        if info.type != SYM and local.mtime != info.mtime:
            self._diff(index, "mtime", f"File {_rel(index)} has mtime {timespec.asctime(local.mtime)}, "
                       f"expected {timespec.asctime(info.mtime)}")
        if info.type == SYM and local.linkname != info.linkname:
            self._diff(index, "symlink", f"Symlink {_rel(index)} points to {os.fsdecode(local.linkname)}, "
                       f"expected {os.fsdecode(info.linkname)}")
        if info.type in (CHR, BLK) and (local.devmajor, local.devminor) != (info.devmajor, info.devminor):
            self._diff(index, "device", f"Device file {_rel(index)} has other device numbers")
        if info.type == REG and (self.data_sample is None or index in self.data_sample):
            self.data_compared += 1
            tmp = os.path.join(self.tmpdir, "verify-content")
            # read and write: a delta applied in place may copy a range of the file elsewhere
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                try:
                    write_content(entries, fd, self.tmpdir)
                finally:
                    os.close(fd)
                if not filecmp.cmp(tmp, path, shallow=False):
                    self._diff(index, "data", f"Data for file {_rel(index)} is different")
            finally:
                os.unlink(tmp)

    def finish(self):
        if self.local is not None:
            while self.pending is not None:
                self._diff(self.pending.index, "new", f"New file {_rel(self.pending.index)}")
                self.pending = next(self.local, None)


def _rel(index):
    return os.fsdecode(b"/".join(index)) if index else "."


def files_in_backup(sess, sets, prefix, warnings):
    """How many paths (under ``prefix``) the backup holds, from its signatures; None (with a
    warning) when a set has no signature file to count from."""
    missing = [s for s in sets if not s.signature]
    if missing:
        warnings.append(f"the set of {timespec.to_iso(missing[0].end_time)} has no signature file: "
                        "cannot check that the volumes hold every file")
        return None
    n = len(prefix)
    return sum(1 for e in merged_signatures(sess.signature_paths(sets)) if e.index[:n] == prefix)


def data_sample(sess, sets, prefix, size, rng=None):
    """Up to ``size`` regular files of the backup below ``prefix`` (their indexes below it),
    each as likely as any other: one pass over the signatures, reservoir sampling, so memory
    holds the sample only. None when a set has no signatures to pick from (all are compared)."""
    if any(not s.signature for s in sets):
        return None
    rng = rng or random.SystemRandom()
    n = len(prefix)
    chosen, seen = [], 0
    for e in merged_signatures(sess.signature_paths(sets)):
        if e.index[:n] != prefix or e.info.type != REG:
            continue
        seen += 1
        if len(chosen) < size:
            chosen.append(e.index[n:])
        else:
            j = rng.randrange(seen)
            if j < size:
                chosen[j] = e.index[n:]
    return frozenset(chosen)


def verify_sets(sess, sets, prefix, comparer, warnings, progress=None):
    """Fetch, hash-check, decrypt and parse every volume of ``sets`` that can hold ``prefix``,
    handing each entry to ``comparer``; the files found must be the files the signatures list
    (a damaged or forged set holds fewer: HashMismatch, 21)."""
    expected = files_in_backup(sess, sets, prefix, warnings)

    def compare(index, entries):
        comparer.archive_entry(index, entries)
        if progress:
            progress(comparer.compared)
    each_entry(sess, sets, prefix, compare, warnings.append)
    comparer.finish()
    if expected is not None and comparer.compared != expected:
        raise HashMismatch(f"verify: the volumes of the backup of {timespec.to_iso(sets[-1].end_time)} "
                           f"hold {comparer.compared} of the {expected} files its signatures list; the "
                           "backup is damaged or was not written by a backup run")
    return expected
