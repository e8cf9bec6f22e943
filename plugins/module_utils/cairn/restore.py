# SPDX-License-Identifier: GPL-3.0-or-later
"""Reading a chain back: volumes -> tar members -> per-path entries -> files (§8).

The streams of all sets in the chain are merged by path; for each path the newest snapshot is
patched by every later delta. Every archive is hostile: entries are written through directory
descriptors, never through a symlink, and never outside the target (see TreeWriter).
"""
import errno
import grp
import os
import pwd
import stat
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import archive, librsync, timespec
from .archive import REG, DIR, SYM, FIFO, CHR, BLK
from .backup import sha1_file
from .growing import GrowingFile
from .localdirs import remove_file
from .naming import encoding
from .errors import (BackendError, BackendNotFound, CorruptArchive, HashMismatch, NoBackupFound, RestoreError,
                     UnsafeArchive, ExitCode, LOCAL_ERRNOS, LocalIOError)


# --- volumes of one set ----------------------------------------------------------------------

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
        """Download, check and decode ``name`` into ``plain`` (written progressively)."""
        enc, is_copy = self.download(name, sha1)
        try:
            if is_copy and encoding(name) is None:
                os.replace(enc, plain)           # nothing to decode: the download is the plaintext
            else:
                self.crypto.decode_file(name, enc, plain, follow=True)
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
                # the parser reads the volume while gpg still writes it; a fetch or decryption
                # failure is raised by the reader (the SHA1 was checked before decryption began)
                growing = GrowingFile(plain)
                growing.follow(fut)
                reader = growing.reader()
                try:
                    yield name, reader
                    fut.result()
                finally:
                    reader.close()
                    remove_file(plain)
        finally:
            for _name, plain, fut in futures:
                fut.cancel()
                try:
                    fut.exception()
                except Exception:
                    pass
                remove_file(plain)


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


def _shown(index):
    return os.fsdecode(b"/".join(index)) if index else "."


class _EntryStream:
    """Groups the multivol chunks of one set's member stream into one entry per path.

    Paths must come in strictly increasing order, as every writer of the format emits them:
    a path twice, or out of order, is a crafted archive (a directory replaced by a symlink
    between two of its entries is the classic escape) and is refused before it is used.
    """

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
        previous = self.current
        if previous is not None:
            for _chunk in self.chunks(previous):
                pass
            # chunks left behind by a consumer that stopped early
            while (self.head is not None and self.head[0].index == previous.index
                   and self.head[0].prefix.startswith("multivol_")):
                self._advance_member()
        if self.head is None:
            self.current = None
            return None
        m, read = self.head
        if previous is not None and m.index <= previous.index:
            raise UnsafeArchive(f"archive entry {_shown(m.index)!r} comes after {_shown(previous.index)!r}: "
                                "entries out of order or repeated; refusing a crafted archive")
        kind = m.prefix.replace("multivol_", "")
        self.current = SetEntry(m.index, kind, m.info, self)
        self.current_first = (m, read)
        return self.current

    def chunks(self, entry):
        """The entry's data, in pieces of at most one chunk, whatever its headers claim."""
        if entry is not self.current or self.current_first is None:
            return
        m, read = self.current_first
        self.current_first = None
        multivol = m.prefix.startswith("multivol_")
        expect = m.chunk
        if multivol and expect != 1:
            raise CorruptArchive(f"{os.fsdecode(entry.info.relpath)}: multivolume data starts at "
                                 f"chunk {expect}; an earlier volume is missing or damaged")
        yield from read.pieces()
        self._advance_member()
        while multivol and self.head is not None:
            m, read = self.head
            if m.index != entry.index or not m.prefix.startswith("multivol_"):
                break
            expect += 1
            if m.chunk != expect:
                raise CorruptArchive(f"{os.fsdecode(entry.info.relpath)}: chunk {m.chunk} follows "
                                     f"chunk {expect - 1}; the archive is damaged")
            yield from read.pieces()
            self._advance_member()


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


MEM_BASIS_LIMIT = 128 << 20    # a basis for the next patch is held in memory up to this size


def write_content(entries, out_fd, tmp_dir):
    """Write the final content of a regular file (snapshot + deltas) to the open ``out_fd``.

    With deltas, every version but the last is a basis for the next patch. Up to
    MEM_BASIS_LIMIT a basis stays in memory (writing it out doubles the disk writes of a
    restore, and on a busy disk that is most of its time); past that it goes on into an
    unnamed temp file in ``tmp_dir``. The limit is on the bytes really read, not on what a
    header claims.
    """
    base = entries[0]
    deltas = entries[1:]
    if not deltas:
        _write_chunks(base.chunks(), out_fd)
        return
    basis = _collect(base.chunks(), base.info.size, tmp_dir)
    try:
        for n, d in enumerate(deltas, 1):
            job = librsync.PatchJob(basis)
            try:
                if n == len(deltas):
                    _write_chunks(_patched(job, d.chunks()), out_fd)
                    return
                newer = _collect(_patched(job, d.chunks()), d.info.size if d.info else 0, tmp_dir)
            finally:
                job.close()
            _release(basis)
            basis = newer
    finally:
        _release(basis)


def _release(basis):
    if hasattr(basis, "close"):
        basis.close()


def _collect(chunks, size_hint, tmp_dir=None, limit=MEM_BASIS_LIMIT):
    """The chunks as one buffer, or as an unnamed temp file once they pass ``limit`` bytes.

    In memory the buffer is filled in place (b"".join would hold the pieces and the whole at
    once, twice the file at the peak); ``size_hint`` (a header's claim) only sizes the first
    allocation, never beyond ``limit``.
    """
    buf = bytearray(max(0, min(size_hint or 0, limit)))
    pos = 0
    spill = None
    for c in chunks:
        n = len(c)
        if spill is not None:
            spill.write(c)
            continue
        if pos + n > limit and tmp_dir is not None:
            spill = tempfile.TemporaryFile(dir=tmp_dir)
            spill.write(memoryview(buf)[:pos])
            spill.write(c)
            del buf
            continue
        if pos + n <= len(buf):
            buf[pos:pos + n] = c
        else:
            del buf[pos:]
            buf += c
        pos += n
    if spill is not None:
        spill.flush()
        spill.seek(0)
        return spill
    if pos < len(buf):
        del buf[pos:]
    return buf


def _patched(job, chunks):
    # pieces of at most 256 KiB: a few delta bytes can copy megabytes of the basis
    for c in chunks:
        yield from job.update_iter(c)
    yield from job.finish_iter()


def _write_chunks(chunks, fd):
    """Write data to ``fd``, leaving holes for whole zero chunks so sparse files stay sparse."""
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


# --- writing a tree --------------------------------------------------------------------------

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_O_PATH = getattr(os, "O_PATH", 0)


class TreeWriter:
    """Writes entries under ``root`` through directory descriptors; nothing leaves ``root``.

    Every directory below the root is opened from its parent's descriptor with O_NOFOLLOW, and
    every name is created, replaced and given its metadata relative to such a descriptor, so
    no name an archive controls is ever resolved through a symlink: neither one the archive
    made itself nor one that was there before. The restore target path itself is the user's
    and is opened as given. Entries come in strictly increasing path order (_EntryStream
    checks it), so each path is written once.

    ``whole_tree``: a full restore, whose root entry must be a directory. For a
    --path-to-restore the root may be one file, which is then the target path itself and
    nothing may follow it.
    """

    def __init__(self, root, *, restore_owner=None, numeric_owner=False, whole_tree=True, tmp_dir=None):
        self.root = os.fsencode(os.path.abspath(root))
        self.restore_owner = (os.geteuid() == 0) if restore_owner is None else restore_owner
        self.numeric_owner = numeric_owner
        self.whole_tree = whole_tree
        self.tmp_dir = tmp_dir
        self.stack = []            # [(index, fd, info)]: open directories from the root down;
        #                            info is None for one no entry describes (made as a parent)
        self.single = None         # the type of a root written as a single non-directory
        self.ids = {}              # (field, name) -> local uid/gid, or None
        self.written = 0
        self.warnings = []

    def path(self, index):
        return os.path.join(self.root, *index) if index else self.root

    def write(self, index, entries):
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
        if self.single is not None:
            raise UnsafeArchive(f"archive entry {_shown(index)!r} follows a root that is a {self.single}, "
                                "not a directory; refusing to write below it")
        if index == ():
            self._write_root(entries, info)
            return
        parent = self._parent_fd(index)
        name = index[-1]
        if info.type == DIR:
            self._clear(parent, name, keep_dir=True)
            fd = self._open_dir(parent, name, index)
            self.stack.append((index, fd, info))
            self.written += 1
            return
        self._clear(parent, name)
        self._make(parent, name, entries, info)

    def _write_root(self, entries, info):
        if info.type == DIR:
            self._open_root()
            self.stack[0] = ((), self.stack[0][1], info)
            self.written += 1
            return
        if self.whole_tree:
            raise UnsafeArchive(f"the archive's root is a {info.type}, not a directory; refusing to "
                                f"restore it as {os.fsdecode(self.root)}")
        # restoring a single file: the target path is the file itself
        parent_path, name = os.path.split(self.root)
        os.makedirs(parent_path or b".", exist_ok=True)
        parent = os.open(parent_path or b".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self._clear(parent, name)
            self._make(parent, name, entries, info)
        finally:
            os.close(parent)
        self.single = info.type

    def _open_root(self):
        if not self.stack:
            os.makedirs(self.root, exist_ok=True)
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self.stack.append(((), fd, None))

    def _parent_fd(self, index):
        """The descriptor of ``index``'s parent: directories we have left are finished, missing
        ancestors are made (0700), and none is entered through a symlink."""
        self._open_root()
        while len(self.stack) > 1 and self.stack[-1][0] != index[:len(self.stack[-1][0])]:
            self._finish(*self.stack.pop())
        for depth in range(len(self.stack[-1][0]) + 1, len(index)):
            fd = self._open_dir(self.stack[-1][1], index[depth - 1], index[:depth])
            self.stack.append((index[:depth], fd, None))
        return self.stack[-1][1]

    def _open_dir(self, parent, name, index):
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            os.mkdir(name, 0o700, dir_fd=parent)
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            if stat.S_ISLNK(os.lstat(name, dir_fd=parent).st_mode):
                raise UnsafeArchive(f"archive entries below {_shown(index)!r} would be written through a "
                                    "symlink; refusing to follow it") from None
            raise RestoreError(f"{os.fsdecode(self.path(index))} is not a directory") from None

    def _clear(self, parent, name, keep_dir=False):
        try:
            st = os.lstat(name, dir_fd=parent)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if not keep_dir:
                _remove_tree(parent, name)
        else:
            os.unlink(name, dir_fd=parent)

    def _make(self, parent, name, entries, info):
        if info.type == REG:
            tmp = b".cairn-restore-" + os.urandom(6).hex().encode()
            fd = os.open(tmp, _NEW_FILE_FLAGS, 0o600, dir_fd=parent)
            try:
                write_content(entries, fd, self.tmp_dir)
                self._meta(fd, info)
            except BaseException:
                os.close(fd)
                os.unlink(tmp, dir_fd=parent)
                raise
            os.close(fd)
            os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
        elif len(entries) > 1:
            raise CorruptArchive(f"{os.fsdecode(info.relpath)}: deltas after a non-file entry")
        elif info.type == SYM:
            os.symlink(info.linkname, name, dir_fd=parent)
            self._symlink_meta(parent, name, info)
        elif info.type == FIFO:
            os.mkfifo(name, 0o600, dir_fd=parent)
            self._meta_by_name(parent, name, info, os.O_RDONLY | os.O_NONBLOCK)
        elif info.type in (CHR, BLK):
            try:
                kind = stat.S_IFCHR if info.type == CHR else stat.S_IFBLK
                os.mknod(name, kind | 0o600, os.makedev(info.devmajor, info.devminor), dir_fd=parent)
            except PermissionError:
                self.warnings.append(f"cannot create device {os.fsdecode(info.relpath)} (needs root)")
                return
            # a device is never opened for I/O (that can act on the hardware): O_PATH only
            self._meta_by_name(parent, name, info, _O_PATH)
        self.written += 1

    # --- metadata, always through a descriptor (or, for a symlink, never following it) ----

    def _owner(self, info):
        if self.numeric_owner:
            return info.uid, info.gid
        return (self._lookup(pwd.getpwnam, "pw_uid", info.uname, info.uid),
                self._lookup(grp.getgrnam, "gr_gid", info.gname, info.gid))

    def _lookup(self, fn, field, name, default):
        """A local id for a user/group name, else the stored numeric id."""
        if not name:
            return default
        key = (field, name)
        if key not in self.ids:
            try:
                self.ids[key] = getattr(fn(name), field)
            except KeyError:
                self.ids[key] = None
        found = self.ids[key]
        return default if found is None else found

    def _meta(self, fd, info, target=None):
        """Owner (first: chown clears setuid bits), mode and mtime of an open file or directory;
        ``target`` is the path to use instead of ``fd`` for an O_PATH descriptor."""
        where = fd if target is None else target
        if self.restore_owner:
            try:
                os.chown(where, *self._owner(info))
            except OSError as e:
                self.warnings.append(f"cannot set owner of {os.fsdecode(info.relpath)}: {e.strerror}")
        os.chmod(where, info.mode)
        os.utime(where, (info.mtime, info.mtime))

    def _meta_by_name(self, parent, name, info, flags):
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        try:
            # an O_PATH descriptor takes no fchmod: its /proc link reaches the same inode
            self._meta(fd, info, f"/proc/self/fd/{fd}" if flags == _O_PATH else None)
        finally:
            os.close(fd)

    def _symlink_meta(self, parent, name, info):
        if self.restore_owner:
            try:
                os.chown(name, *self._owner(info), dir_fd=parent, follow_symlinks=False)
            except OSError as e:
                self.warnings.append(f"cannot set owner of {os.fsdecode(info.relpath)}: {e.strerror}")
        try:
            os.utime(name, (info.mtime, info.mtime), dir_fd=parent, follow_symlinks=False)
        except OSError:
            pass

    def _finish(self, index, fd, info):
        try:
            if info is not None:
                self._meta(fd, info)
        finally:
            os.close(fd)

    def close(self):
        """Give the directories still open their metadata (deepest first) and close them."""
        try:
            while self.stack:
                self._finish(*self.stack.pop())
        except OSError as e:
            what = f"cannot set the metadata of a restored directory: {e.strerror}"
            raise (LocalIOError(what) if e.errno in LOCAL_ERRNOS else RestoreError(what)) from None

    def discard(self):
        """Close what is open without touching anything more (after a failure)."""
        while self.stack:
            os.close(self.stack.pop()[1])


def _remove_tree(parent, name):
    """Remove the directory ``name`` under ``parent`` and everything in it, never following a
    symlink (shutil.rmtree takes a dir_fd only from Python 3.11)."""
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    try:
        for child in os.listdir(fd):
            st = os.lstat(child, dir_fd=fd)
            if stat.S_ISDIR(st.st_mode):
                _remove_tree(fd, child)
            else:
                os.unlink(child, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)


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


# --- a chain at a point in time ----------------------------------------------------------------

def parse_path(path):
    """The index of a --path-to-restore ("etc/nginx", "/etc/nginx/", "./etc"): its components."""
    if not path:
        return ()
    return tuple(c for c in os.fsencode(path).strip(b"/").split(b"/") if c not in (b"", b"."))


def chain_at(col, t):
    """(chain, sets) of the backup at time ``t``: the chain holding it, its full and the
    incrementals up to ``t``."""
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


def chain_entries(sess, sets, prefix, fetcher, on_warning):
    """(index, [SetEntry...]) of the chain's sets merged by path, below ``prefix`` (indexes
    relative to it), read only from the volumes that can hold it."""
    iters = []
    for s in sets:
        members = set_members(fetcher, _volumes_of(sess, s, prefix))
        iters.append(_strip_prefix(members, prefix) if prefix else members)
    return merged_entries(iters, on_warning)


def each_entry(sess, sets, prefix, handle, on_warning):
    """Call ``handle(index, entries)`` for every path of the chain's sets below ``prefix``
    (restore writes them, verify compares them); the fetcher's threads end with it."""
    fetcher = VolumeFetcher(sess.backend, sess.crypto, sess.tmpdir, streams=len(sets))
    try:
        for index, entries in chain_entries(sess, sets, prefix, fetcher, on_warning):
            handle(index, entries)
    finally:
        fetcher.close()


def restore_sets(sess, sets, prefix, writer, on_warning, progress=None):
    """Write the chain's entries below ``prefix`` through ``writer`` (a TreeWriter)."""
    def write(index, entries):
        writer.write(index, entries)
        if progress:
            progress(writer.written)
    try:
        each_entry(sess, sets, prefix, write, on_warning)
        writer.close()
    finally:
        writer.discard()
