# SPDX-License-Identifier: GPL-3.0-or-later
"""Reading a chain back: volumes -> tar members -> per-path entries -> files (§8).

The streams of all sets in the chain are merged by path; for each path the newest snapshot is
patched by every later delta. Nothing is written through a symlink or outside the target.
"""
import os
import pwd
import grp
import shutil
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import archive, librsync
from .archive import REG, DIR, SYM, FIFO, CHR, BLK
from .backup import sha1_file
from .errors import (BackendError, BackendNotFound, CorruptArchive, HashMismatch, RestoreError, UnsafeArchive,
                     ExitCode, LOCAL_ERRNOS, LocalIOError)


# --- volumes of one set ----------------------------------------------------------------------

class TailReader:
    """Reads a file another thread is still writing; EOF once ``future`` is done.

    Restore starts parsing a volume while gpg is still decrypting it. The volume's SHA1 was
    checked before decryption began, and a gpg failure surfaces from read() as its error.
    """

    def __init__(self, path, future):
        self.path = path
        self.future = future
        self.f = None

    def _open(self):
        while self.f is None:
            try:
                self.f = open(self.path, "rb")
            except FileNotFoundError:
                if self.future.done():
                    self.future.result()          # raises the fetch/decrypt error
                    self.f = open(self.path, "rb")
                else:
                    time.sleep(0.005)

    def read(self, n=-1):
        self._open()
        n = n if n is not None and n >= 0 else 1 << 20
        data = self.f.read(n)
        while not data:
            if self.future.done():
                self.future.result()
                return self.f.read(n)
            time.sleep(0.002)
            data = self.f.read(n)
        # a short read while the writer is still going: wait for the rest
        while len(data) < n and not self.future.done():
            more = self.f.read(n - len(data))
            if more:
                data += more
            else:
                time.sleep(0.002)
        if len(data) < n:
            data += self.f.read(n - len(data))
            if len(data) < n:
                self.future.result()      # a short volume: the fetch's own error says why
        return data

    def close(self):
        if self.f is not None:
            self.f.close()


class VolumeFetcher:
    """Downloads, hash-checks and decrypts volumes, a couple ahead of the reader.

    A chain is read as ``streams`` sets at once (restore merges them by path), and the merge
    needs the first volume of every set before it can write anything; so there is a worker for
    each set's head volume plus ``prefetch - 1`` for reading ahead. With fewer, the later sets'
    first volumes would queue behind the full set's read-ahead while the writer sits idle.
    """

    def __init__(self, backend, crypto, tmpdir, *, retries=1, prefetch=2, streams=1):
        self.backend = backend
        self.crypto = crypto
        self.tmpdir = tmpdir
        self.retries = retries
        self.pool = ThreadPoolExecutor(max_workers=max(1, streams) + prefetch - 1, thread_name_prefix="cairn-fetch")
        self.prefetch = prefetch

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)

    def download(self, name, sha1):
        """(path, is_copy) of the volume as stored, hash-checked; raises HashMismatch naming it.

        A file:// target is read in place; other targets are downloaded into the temp dir.
        """
        in_place = self.backend.local_path(name)
        if in_place is not None:
            if not os.path.exists(in_place):
                raise BackendNotFound(f"volume {name} is missing from the target")
            if sha1 is not None and sha1_file(in_place) != sha1:
                raise HashMismatch(f"volume {name} is corrupt: its SHA1 does not match the manifest "
                                   f"(expected {sha1})")
            return in_place, False
        enc = os.path.join(self.tmpdir, name)
        for attempt in range(self.retries + 1):
            try:
                self.backend.get(name, enc)
            except BackendError as e:
                raise BackendError(f"volume {name} could not be fetched: {e}", e.exit_code) from None
            if sha1 is None or sha1_file(enc) == sha1:
                break
        else:
            os.unlink(enc)
            raise HashMismatch(f"volume {name} is corrupt: its SHA1 does not match the manifest "
                               f"(expected {sha1})")
        return enc, True

    def fetch(self, name, sha1, plain):
        """Download, check and decrypt ``name`` into ``plain`` (written progressively)."""
        enc, is_copy = self.download(name, sha1)
        try:
            if name.endswith((".gpg", ".g")):
                self.crypto.decrypt_stream_to(enc, plain)
            elif name.endswith((".gz", ".z")):
                _gunzip(enc, plain, name)
            elif is_copy:
                os.replace(enc, plain)
            else:
                shutil.copyfile(enc, plain)
        finally:
            if is_copy and os.path.exists(enc):
                os.unlink(enc)

    def stream(self, volumes):
        """Yield (name, reader) for [(name, sha1)] in order, prefetching and decrypting ahead."""
        futures = []
        pending = list(volumes)
        pending.reverse()
        try:
            while pending or futures:
                while pending and len(futures) < self.prefetch:
                    name, sha1 = pending.pop()
                    plain = os.path.join(self.tmpdir, name + ".tar")
                    futures.append((name, plain, self.pool.submit(self.fetch, name, sha1, plain)))
                name, plain, fut = futures.pop(0)
                reader = TailReader(plain, fut)
                try:
                    yield name, reader
                    fut.result()
                finally:
                    reader.close()
                    _unlink(plain)
        finally:
            for _name, plain, fut in futures:
                fut.cancel()
                try:
                    fut.exception()
                except Exception:
                    pass
                _unlink(plain)


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _gunzip(src, dst, name):
    import gzip
    import zlib
    try:
        with gzip.open(src, "rb") as fin, open(dst, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
    except (OSError, EOFError, zlib.error) as e:
        raise CorruptArchive(f"volume {name} is corrupt: {e}") from None


def set_members(fetcher, volumes):
    """(Member, read) of one set across its volumes, in order."""
    for name, reader in fetcher.stream(volumes):
        yield from archive.read_members(reader, what=f"volume {name}")


# --- entries of one set ----------------------------------------------------------------------

@dataclass
class SetEntry:
    index: tuple
    kind: str               # snapshot, diff, deleted
    info: object            # PathInfo or None
    stream: object          # the _EntryStream it came from

    def chunks(self):
        return self.stream.chunks(self)


class _EntryStream:
    """Groups the multivol chunks of one set's member stream into one entry per path."""

    def __init__(self, members, order):
        self.members = iter(members)
        self.order = order
        self.head = None          # (Member, read) not yet turned into an entry
        self.current = None
        self.current_first = None
        self._advance_member()

    def _advance_member(self):
        self.head = next(self.members, None)

    def next_entry(self):
        """The next SetEntry, after skipping whatever of the current one was not consumed."""
        if self.current is not None:
            for _chunk in self.chunks(self.current):
                pass
            # chunks left behind by a consumer that stopped early
            while (self.head is not None and self.head[0].index == self.current.index
                   and self.head[0].prefix.startswith("multivol_")):
                self._advance_member()
        if self.head is None:
            self.current = None
            return None
        m, read = self.head
        kind = m.prefix.replace("multivol_", "")
        self.current = SetEntry(m.index, kind, m.info, self)
        self.current_first = (m, read)
        return self.current

    def chunks(self, entry):
        if entry is not self.current or self.current_first is None:
            return
        m, read = self.current_first
        self.current_first = None
        multivol = m.prefix.startswith("multivol_")
        expect = m.chunk
        if multivol and expect != 1:
            raise CorruptArchive(f"{os.fsdecode(entry.info.relpath)}: multivolume data starts at "
                                 f"chunk {expect}; an earlier volume is missing or damaged")
        data = read()
        self._advance_member()
        yield data
        while multivol and self.head is not None:
            m, read = self.head
            if m.index != entry.index or not m.prefix.startswith("multivol_"):
                break
            expect += 1
            if m.chunk != expect:
                raise CorruptArchive(f"{os.fsdecode(entry.info.relpath)}: chunk {m.chunk} follows "
                                     f"chunk {expect - 1}; the archive is damaged")
            data = read()
            self._advance_member()
            yield data


def merged_entries(set_member_iters, on_warning):
    """Merge sets (oldest first) by path; yield (index, [SetEntry...]) cut at the newest base.

    The list starts at the newest snapshot/deleted entry and holds the deltas after it.
    """
    streams = [_EntryStream(it, i) for i, it in enumerate(set_member_iters)]
    heads = [s.next_entry() for s in streams]
    while True:
        live = [e for e in heads if e is not None]
        if not live:
            return
        index = min(e.index for e in live)
        group = [(i, e) for i, e in enumerate(heads) if e is not None and e.index == index]
        entries = [e for _i, e in group]
        base = None
        for k in range(len(entries) - 1, -1, -1):
            if entries[k].kind != "diff":
                base = k
                break
        if base is None:
            on_warning(f"{os.fsdecode(b'/'.join(index))}: only deltas found, no full version; skipped")
        else:
            yield index, entries[base:]
        for i, _e in group:
            heads[i] = streams[i].next_entry()


# --- materializing content -----------------------------------------------------------------

_ZERO = bytes(archive.CHUNK)


MEM_BASIS_LIMIT = 128 << 20    # a file patched by deltas is held in memory up to this size


def write_content(entries, dst_path, tmp_dir):
    """Write the final content of a regular file (snapshot + deltas) to ``dst_path``.

    With deltas, every version but the last is a basis for the next patch. Up to
    MEM_BASIS_LIMIT it stays in memory (writing it out doubles the disk writes of a restore,
    and on a busy disk that is most of its time); bigger ones go through temp files.
    """
    base = entries[0]
    deltas = entries[1:]
    if not deltas:
        _write_chunks(base.chunks(), dst_path)
        return
    if base.info.size <= MEM_BASIS_LIMIT:
        basis = _collect(base.chunks(), base.info.size)
        for n, d in enumerate(deltas, 1):
            job = librsync.PatchJob(basis)
            try:
                if n == len(deltas):
                    _write_chunks(_patched(job, d.chunks()), dst_path)
                else:
                    result = _collect(_patched(job, d.chunks()), d.info.size if d.info else 0)
            finally:
                job.close()
            if n != len(deltas):
                basis = result
        return
    tmp_dir = os.fsencode(tmp_dir)
    cur = os.path.join(tmp_dir, b".cairn-patch-0")
    _write_chunks(base.chunks(), cur)
    for n, d in enumerate(deltas, 1):
        out = dst_path if n == len(deltas) else os.path.join(tmp_dir, b".cairn-patch-%d" % n)
        with open(cur, "rb") as basis:
            job = librsync.PatchJob(basis)
            try:
                _write_chunks(_patched(job, d.chunks()), out)
            finally:
                job.close()
        os.unlink(cur)
        cur = out


def _collect(chunks, size):
    """The chunks as one buffer, filled in place: b"".join would hold the pieces and the whole
    at once, twice the file in memory at the peak (a 100 MiB basis cost 200 MiB of RSS)."""
    buf = bytearray(size)
    pos = 0
    for c in chunks:
        n = len(c)
        if pos + n <= size:
            buf[pos:pos + n] = c
        else:                      # more than the header said: grow (a damaged entry fails later)
            del buf[pos:]
            buf += c
            size = len(buf)
        pos += n
    if pos < size:
        del buf[pos:]
    return buf


def _patched(job, chunks):
    # pieces of at most 256 KiB: a few delta bytes can copy megabytes of the basis
    for c in chunks:
        yield from job.update_iter(c)
    yield from job.finish_iter()


def _write_chunks(chunks, path):
    """Write data, leaving holes for whole zero chunks so sparse files stay sparse."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        size = 0
        holes = False
        for c in chunks:
            n = len(c)
            if n == archive.CHUNK and c == _ZERO:
                os.lseek(fd, n, os.SEEK_CUR)
                holes = True
            elif n:
                mv = memoryview(c)
                while mv:
                    w = os.write(fd, mv)
                    mv = mv[w:]
            size += n
        if holes:
            os.ftruncate(fd, size)     # a trailing hole has no write to extend the file
    finally:
        os.close(fd)


# --- writing a tree --------------------------------------------------------------------------

class TreeWriter:
    """Writes entries under ``root``; never follows a symlink and never leaves ``root``."""

    def __init__(self, root, *, restore_owner=None, numeric_owner=False, force=False):
        self.root = os.fsencode(os.path.abspath(root))
        self.restore_owner = (os.geteuid() == 0) if restore_owner is None else restore_owner
        self.numeric_owner = numeric_owner
        self.force = force
        self.dir_stack = []        # [(index, info)] of directories whose metadata is pending
        self.written = 0
        self.warnings = []

    def path(self, index):
        return os.path.join(self.root, *index) if index else self.root

    def _enter(self, index):
        """Close directories we have left, then make sure every ancestor is a real directory."""
        while self.dir_stack and self.dir_stack[-1][0] != index[:len(self.dir_stack[-1][0])]:
            self._finish_dir(*self.dir_stack.pop())
        # directories on the stack were made by us: only deeper ancestors need a look
        known = len(self.dir_stack[-1][0]) if self.dir_stack else 0
        for depth in range(max(1, known + 1), len(index)):
            anc = index[:depth]
            p = self.path(anc)
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                os.mkdir(p, 0o700)
                continue
            if stat.S_ISLNK(st.st_mode):
                raise UnsafeArchive(f"archive entry {os.fsdecode(b'/'.join(index))!r} lies below a "
                                    f"symlink ({os.fsdecode(b'/'.join(anc))}); refusing to write "
                                    "through it")
            if not stat.S_ISDIR(st.st_mode):
                raise RestoreError(f"{os.fsdecode(p)} is not a directory")

    def write(self, index, entries, tmp_for_content):
        try:
            self._write(index, entries)
        except OSError as e:
            # a full, read-only or forbidden restore target: name the entry being restored
            # (not the temp file it was going through)
            what = f"cannot restore {os.fsdecode(self.path(index))}: {e.strerror}"
            raise (LocalIOError(what) if e.errno in LOCAL_ERRNOS else RestoreError(what)) from None

    def _write(self, index, entries):
        info = entries[-1].info
        if entries[0].kind == "deleted":
            return
        self._enter(index)
        p = self.path(index)
        if info.type == DIR:
            if index == ():
                os.makedirs(p, exist_ok=True)
            else:
                self._clear(p, keep_dir=True)
                if not os.path.isdir(p):
                    os.mkdir(p, 0o700)
            self.dir_stack.append((index, info))
            self.written += 1
            return
        if index == ():   # restoring a single file: the target path is the file itself
            os.makedirs(os.path.dirname(p) or b".", exist_ok=True)
        self._clear(p)
        if info.type == REG:
            tmp = os.path.join(os.path.dirname(p), b".cairn-restore-tmp")
            write_content(entries, tmp, os.path.dirname(p))
            os.rename(tmp, p)
        elif len(entries) > 1:
            raise CorruptArchive(f"{os.fsdecode(info.relpath)}: deltas after a non-file entry")
        elif info.type == SYM:
            os.symlink(info.linkname, p)
        elif info.type == FIFO:
            os.mkfifo(p, 0o600)
        elif info.type in (CHR, BLK):
            try:
                kind = stat.S_IFCHR if info.type == CHR else stat.S_IFBLK
                os.mknod(p, kind | 0o600, os.makedev(info.devmajor, info.devminor))
            except PermissionError:
                self.warnings.append(f"cannot create device {os.fsdecode(info.relpath)} (needs root)")
                return
        self._apply_meta(p, info)
        self.written += 1

    def _clear(self, p, keep_dir=False):
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return
            shutil.rmtree(p)
        else:
            os.unlink(p)

    def _owner(self, info):
        if self.numeric_owner:
            return info.uid, info.gid
        return (_lookup(pwd.getpwnam, "pw_uid", info.uname, info.uid),
                _lookup(grp.getgrnam, "gr_gid", info.gname, info.gid))

    def _apply_meta(self, p, info):
        if self.restore_owner:
            try:
                os.lchown(p, *self._owner(info))
            except OSError as e:
                self.warnings.append(f"cannot set owner of {os.fsdecode(p)}: {e.strerror}")
        if info.type == SYM:
            try:
                os.utime(p, (info.mtime, info.mtime), follow_symlinks=False)
            except OSError:
                pass
            return
        os.chmod(p, info.mode)
        os.utime(p, (info.mtime, info.mtime))

    def _finish_dir(self, index, info):
        self._apply_meta(self.path(index), info)

    def close(self):
        while self.dir_stack:
            self._finish_dir(*self.dir_stack.pop())


_names = {}


def _lookup(fn, field, name, default):
    """A local id for a user/group name (cached), else the stored numeric id."""
    if not name:
        return default
    key = (field, name)
    if key not in _names:
        try:
            _names[key] = getattr(fn(name), field)
        except KeyError:
            _names[key] = None
    found = _names[key]
    return default if found is None else found


def check_target(dest, force):
    """duplicity refuses a non-empty restore target (exit 11) unless forced."""
    if os.path.lexists(dest):
        if os.path.isdir(dest) and not os.path.islink(dest):
            if os.listdir(dest) and not force:
                raise RestoreError(f"restore target {dest} exists and is not empty; use --force to "
                                   "restore into it", ExitCode.RESTORE_TARGET_NOT_EMPTY)
        elif not force:
            raise RestoreError(f"restore target {dest} exists; use --force to replace it",
                               ExitCode.RESTORE_TARGET_NOT_EMPTY)
