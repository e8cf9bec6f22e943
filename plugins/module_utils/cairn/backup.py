# SPDX-License-Identifier: GPL-3.0-or-later
"""The diff and volume layers of a backup: walk + old signatures -> difftar volumes + sigtar.

``merge_with_previous`` pairs each entry of the walk with its previous signature entry;
``DiffWriter`` turns those pairs into difftar entries (through a ``VolumeWriter``, which cuts
them into volumes that grow while gpg reads them) and the sigtar. The run around them (threads,
encryption, uploads, the commit) is pipeline.BackupRun.
"""
import dataclasses
import errno
import gzip
import heapq
import os
import stat
import zlib
from dataclasses import dataclass

from . import archive, librsync, manifest as manifest_mod
from .openpgp import crc32
from .archive import CHUNK, REG, PathInfo
from .errors import CorruptArchive, ManifestError, ResumeMismatch
from .growing import GrowingFile


# --- old signatures --------------------------------------------------------------------------

@dataclass
class SigEntry:
    index: tuple
    order: int
    info: PathInfo          # None when deleted
    signature: bytes = None


def _sig_stream(path, order):
    """The entries of one cached sigtar; one that cannot be read is a ManifestError (6)."""
    name = os.path.basename(path)
    try:
        yield from _sig_entries(path, order, name)
    except CorruptArchive as e:
        raise ManifestError(f"signature file {name} cannot be read: {e}") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise ManifestError(f"signature file {name} cannot be read: {e or type(e).__name__}") from None


def _sig_entries(path, order, name):
    previous = None
    with gzip.open(path, "rb") as f:
        for m, read in archive.read_members(f, what=f"signature file {name}"):
            if previous is not None and m.index <= previous:
                # the merge below and every diff against it rely on the order
                raise CorruptArchive(f"it lists {os.fsdecode(b'/'.join(m.index))!r} out of order")
            previous = m.index
            if m.prefix == "deleted":
                yield SigEntry(m.index, order, None)
            elif m.prefix == "signature":
                yield SigEntry(m.index, order, m.info, read())
            elif m.prefix == "snapshot":
                yield SigEntry(m.index, order, m.info)
            else:
                raise CorruptArchive(f"unexpected entry {os.fsdecode(m.name)!r}")


def merged_signatures(paths):
    """The current state from a chain's sigtars (oldest first): later entries win, deleted drop.

    A streaming k-way merge: memory holds one entry per sigtar, never the whole tree.
    """
    streams = [_sig_stream(p, i) for i, p in enumerate(paths)]
    current = None
    for e in heapq.merge(*streams, key=lambda e: (e.index, e.order)):
        if current is not None and current.index != e.index:
            if current.info is not None:
                yield current
        current = e
    if current is not None and current.info is not None:
        yield current


def merge_with_previous(entries, previous):
    """The walk merged with the previous state, both in path order (the one merge of a backup,
    and of check mode's counts): yields ``(entry, prev)`` for each entry of the walk, ``prev``
    being the SigEntry of the same path or None when it is new, and ``(None, prev)`` for each
    path of the previous state that the walk no longer has, where it would have come."""
    old_iter = iter(previous)
    old = next(old_iter, None)
    for e in entries:
        while old is not None and old.index < e.index:
            yield None, old
            old = next(old_iter, None)
        if old is not None and old.index == e.index:
            yield e, old
            old = next(old_iter, None)
        else:
            yield e, None
    while old is not None:
        yield None, old
        old = next(old_iter, None)


# --- volumes ---------------------------------------------------------------------------------

@dataclass
class VolumeResult:
    number: int
    name: str
    sha1: str
    size: int


@dataclass
class Volume:
    """One difftar volume on its way: built by VolumeWriter, encrypted and uploaded by the run."""
    number: int
    name: str                   # at the target
    path: str                   # the plaintext tar, in the run's temp dir
    data: GrowingFile
    info: manifest_mod.VolumeInfo
    compress: bool = True       # whether gpg compresses it (see VolumeWriter.regime)
    result: VolumeResult = None


class VolumeWriter:
    """Cuts the difftar stream into volumes of at most ``limit`` plaintext bytes.

    A volume is handed to ``hand_off`` (the run's encrypt stage) once it holds START_AT bytes,
    or when it is finished if it stays smaller: gpg reads it while it grows. ``hand_off`` blocks
    while the stage is full, which bounds the volumes in flight and with them the temp space
    (about jobs x 2 x volsize). A volume is also cut early where the data changes between
    compressible and incompressible (see ``regime``), so each gpg run compresses only what
    gains from it. ``check()`` runs for every entry added: it raises when the run has failed.
    """

    # gpg starts on a volume once it holds this much, so that the first large file decides the
    # volume's compression without a cut (each gpg run costs a key derivation: ~0.3 s of CPU
    # with a passphrase)
    START_AT = 1 << 20

    def __init__(self, hand_off, name_for, limit, tmpdir, check=None, first_number=1, on_cut=None):
        self.hand_off = hand_off
        self.name_for = name_for
        self.limit = limit
        self.tmpdir = tmpdir
        self.check = check or (lambda: None)
        self.first_number = first_number    # after the volumes a resumed run keeps
        # on_cut(volume, index, chunk): a volume was closed and the next starts with this piece
        # (the run's checkpoint of where the next volume starts)
        self.on_cut = on_cut
        self.cut = None            # the volume just closed, until the next piece says what follows
        self.volumes = []          # Volume, in order
        self.current = None        # the Volume being written
        self.handed = False        # whether the current one has been handed off
        self.first = self.last = None
        self.compress = True
        self.next_compress = True

    def regime(self, compressible):
        """Say whether the data about to be added compresses; may start a new volume."""
        self.next_compress = compressible
        if self.current is None or compressible == self.compress:
            return
        if not self.handed:
            self.compress = compressible       # gpg has not started: just switch
        elif self.current.data.size > 0:
            self._finish()

    def add(self, index, chunk, last_chunk, hdr, data):
        self.check()
        vol = self.current
        if vol is not None and vol.data.size >= self.limit:
            self._finish()
            vol = None
        if vol is None:
            vol = self._start()
        if self.cut is not None:
            cut, self.cut = self.cut, None
            if self.on_cut is not None:
                self.on_cut(cut, index, chunk)
        block = None if (chunk is None or last_chunk) else chunk
        if self.first is None:
            self.first = (index, block)
        self.last = (index, block)
        if data:
            vol.data.write(b"".join((hdr, data, archive.padding(len(data)))))
        else:
            vol.data.write(hdr)
        if not self.handed and vol.data.size >= self.START_AT:
            self._hand_off()

    def _start(self):
        number = len(self.volumes) + self.first_number
        path = os.path.join(self.tmpdir, f"vol{number}.tar")
        vol = Volume(number, self.name_for(number), path, GrowingFile(path, create=True),
                     manifest_mod.VolumeInfo(number, (), None, (), None, {}))
        self.volumes.append(vol)
        self.current = vol
        self.handed = False
        self.first = self.last = None
        self.compress = self.next_compress
        return vol

    def _hand_off(self):
        self.current.compress = self.compress
        self.handed = True
        self.hand_off(self.current)

    def _finish(self):
        vol = self.current
        vol.data.write(archive.end_of_archive(vol.data.size))
        first = self.first or ((), None)     # an empty difftar: nothing changed
        last = self.last or ((), None)
        vol.info.start_index, vol.info.start_block = first
        vol.info.end_index, vol.info.end_block = last
        vol.data.finish()
        if not self.handed:
            self._hand_off()
        self.current = None
        self.cut = vol

    def close(self, none_before=True):
        """Finish the last volume; returns every Volume, in order. An empty difftar still makes
        one volume (duplicity writes one too), unless a resumed run has volumes before."""
        if self.current is None and not self.volumes and none_before:
            self._start()
        if self.current is not None:
            self._finish()
        return self.volumes

    def fail(self, error):
        """Any thread, when the run fails: every reader of a volume gets ``error`` at once."""
        for vol in list(self.volumes):
            vol.data.fail(error)

    def close_files(self):
        """The writer's thread, after a failure: close the volume being written."""
        if self.current is not None:
            self.current.data.close()


class SigWriter:
    """The sigtar: a plain tar file written to ``path`` (continued after its first ``keep``
    bytes: the entries a resumed run keeps)."""

    def __init__(self, path, keep=None):
        if keep is None:
            self.f = open(path, "wb")
            self.size = 0
        else:
            self.f = open(path, "r+b")
            self.f.truncate(keep)
            self.f.seek(keep)
            self.size = keep

    def add(self, name, info, data=b"", as_deleted=False):
        hdr = archive.header(name, info, len(data), as_deleted=as_deleted)
        self.f.write(hdr)
        self.size += len(hdr)
        if data:
            pad = archive.padding(len(data))
            self.f.write(data)
            self.f.write(pad)
            self.size += len(data) + len(pad)

    def flush(self):
        """What is written so far, on disk (a checkpoint counts it)."""
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self, complete=True):
        """Write the end of the archive (unless ``complete`` is false: a failed run) and close."""
        if self.f.closed:
            return
        try:
            if complete:
                self.f.write(archive.end_of_archive(self.size))
        finally:
            self.f.close()


# --- content -------------------------------------------------------------------------------

def _chunks(pieces):
    """Re-cut a byte stream into duplicity's 64 KiB pieces: yields (data, is_last).

    A stream shorter than one piece is a single entry; otherwise every piece is a multivol chunk
    and the last one is whatever is left (possibly empty), as duplicity's reads produce.
    """
    buf = b""
    for p in pieces:
        if not p:
            continue
        buf = buf + p if buf else p
        view, off, n = memoryview(buf), 0, len(buf)
        while n - off >= CHUNK:
            yield view[off:off + CHUNK], False
            off += CHUNK
        buf = buf[off:]
    yield buf, True


def _read_pieces(fd, sig_job, delta_job=None, size=0, sig_executor=None):
    """Read a file in 1 MiB reads, feeding the new signature; yield the bytes to store.

    For files of a MiB or more the signature is computed in ``sig_executor`` (librsync drops
    the GIL) while this thread computes the delta or writes the data.
    """
    parallel = sig_executor is not None and size >= 1 << 20
    pending = None
    try:
        while True:
            data = os.read(fd, 1 << 20)
            if not data:
                break
            if parallel:
                if pending is not None:
                    pending.result()
                pending = sig_executor.submit(sig_job.feed, data)
            else:
                sig_job.feed(data)
            if delta_job is None:
                yield data
            else:
                out = delta_job.update(data)
                if out:
                    yield out
        if delta_job is not None:
            out = delta_job.finish()
            if out:
                yield out
    finally:
        if pending is not None:
            pending.result()


class _SigCollector:
    """A file's new signature from the pieces it is read in: a file read in one piece (most are)
    is signed in one call (librsync.signature_whole); a streaming job starts at the second."""

    def __init__(self, block_len):
        self.block_len = block_len
        self.first = None
        self.job = None
        self.out = []

    def feed(self, data):
        if self.job is None:
            if self.first is None and len(data) <= librsync.MAX_IN_SLICE:
                self.first = bytes(data)
                return
            self.job = librsync.SignatureJob(self.block_len)
            if self.first is not None:
                self._feed(self.first)
                self.first = None
        self._feed(data)

    def _feed(self, data):
        o = self.job.update(data)
        if o:
            self.out.append(o)

    def result(self):
        if self.job is None:
            return librsync.signature_whole(self.first or b"", self.block_len)
        self.out.append(self.job.finish())
        return b"".join(self.out)


class _ChangedWhileRead(Exception):
    """A block read again is not what the delta was computed from."""


class _BlockCrcs:
    """The CRC-32 of every block of a file as it is read, so that a block read again later is
    known to hold the bytes the delta saw."""

    def __init__(self, block_len):
        self.block_len = block_len
        self.crcs = []
        self.length = 0
        self._crc = 0
        self._filled = 0            # octets of the current block so far

    def feed(self, data):
        mv, pos, end, block = memoryview(data), 0, len(data), self.block_len
        self.length += end
        while pos < end:
            n = min(block - self._filled, end - pos)
            self._crc = crc32(mv[pos:pos + n], self._crc)
            self._filled += n
            pos += n
            if self._filled == block:
                self.crcs.append(self._crc)
                self._crc = self._filled = 0

    def finish(self):
        if self._filled:
            self.crcs.append(self._crc)
            self._crc = self._filled = 0


DELTA_WINDOW = 4 << 20      # a big file's delta goes in windows of about this, two at a time


class _DeltaLane:
    """One thread's share of a windowed delta: its own loaded signature and window buffer."""

    def __init__(self, signature, window, block_len):
        self.loaded = librsync.LoadedSignature(signature)
        self.buffer = bytearray(window)
        self.block_len = block_len

    def window(self, fd, offset):
        """The delta commands (no magic, no end command) of the window of the file at
        ``offset``, its blocks' CRC-32s and its length (short at the end of the file)."""
        view = memoryview(self.buffer)
        got = 0
        while got < len(view):
            n = os.preadv(fd, [view[got:]], offset + got)
            if not n:
                break
            got += n
        data = self.buffer if got == len(view) else bytes(view[:got])
        view.release()
        with librsync.DeltaJob(self.loaded) as job:
            out = job.update(data) + job.finish()
        if out[:4] != librsync.RS_DELTA_MAGIC.to_bytes(4, "big") or out[-1:] != b"\0":
            raise CorruptArchive("rsync delta: librsync wrote an unexpected delta")
        crcs = _BlockCrcs(self.block_len)
        crcs.feed(data)
        crcs.finish()
        return out[4:-1], crcs.crcs, got

    def close(self):
        self.loaded.close()


def _windowed_delta(fd, signature, block_len, executor, sig):
    """The delta of a big file in windows of whole blocks, each a delta of its own against the
    whole signature, two at a time: this thread's and ``executor``'s, each reading its own
    window. The commands of all of them in order are one delta of the file, which any librsync
    applies; only a match across a window's end is lost, and only for data shifted against the
    basis (what stays in place lines up with the window's blocks). Yields the delta; each
    window's CRCs go to ``sig``. The file ends at the first short window: what a window after it
    read (a file that grew meanwhile) is not used."""
    window = max(1, DELTA_WINDOW // block_len) * block_len
    mine = _DeltaLane(signature, window, block_len)
    theirs = _DeltaLane(signature, window, block_len) if executor is not None else None
    future = None
    offset = 0
    try:
        yield librsync.RS_DELTA_MAGIC.to_bytes(4, "big")
        while True:
            if theirs is not None:
                future = executor.submit(theirs.window, fd, offset + window)
            out, crcs, n = mine.window(fd, offset)
            sig.add_window(crcs, n)
            yield out
            offset += n
            if n < window:
                break
            if future is not None:
                out, crcs, n = future.result()
                future = None
                sig.add_window(crcs, n)
                yield out
                offset += n
                if n < window:
                    break
        yield b"\0"
    finally:
        if future is not None and not future.cancel():
            future.exception()          # wait: it uses ``theirs``
        mine.close()
        if theirs is not None:
            theirs.close()


class _SigFromDelta:
    """The new signature of a file diffed against an old signature of the same block length,
    from what the delta says of each block (librsync.DeltaBlocks): a block it copies in place
    of a whole old block keeps the old entry (librsync computed exactly that over the new bytes
    to find it), a block it carries as literal data is signed from those bytes in the
    signature thread as they stream out, and the others are read again and signed. The pass
    itself only takes each block's CRC-32 (``feed``) instead of the MD4 and rolling sum of
    every block: half the CPU of a big file that changed little. A block that reads back
    different (the file was written to during the backup) leaves a signature with no blocks:
    the next backup then stores the file whole, never a delta against blocks that are not
    what the archive holds."""

    def __init__(self, block_len, old_signature, fd, executor=None):
        self.crcs = _BlockCrcs(block_len)
        self.old_signature = old_signature
        self.fd = fd
        self.feed = self.crcs.feed
        self._signing = []
        run = None if executor is None else (lambda fn, data: self._signing.append(executor.submit(fn, data)))
        self.blocks = librsync.DeltaBlocks(block_len, run)
        self.delta_out = self.blocks.feed

    def add_window(self, crcs, length):
        """The CRC-32s of a window of whole blocks (_windowed_delta), in order."""
        self.crcs.crcs.extend(crcs)
        self.crcs.length += length

    def result(self):
        self.crcs.finish()
        try:
            for future in self._signing:
                future.result()
            return librsync.signature_from_delta(self.old_signature, self.blocks, self.crcs.length,
                                                 self._read_blocks)
        except _ChangedWhileRead:
            return librsync.signature_header(self.crcs.block_len)
        finally:
            self.close()

    def close(self):
        for future in self._signing:
            future.cancel()
        for future in self._signing:
            if not future.cancelled():
                future.exception()          # wait: the job is freed below
        self.blocks.close()

    def _read_blocks(self, first, end):
        block, length, crcs = self.crcs.block_len, self.crcs.length, self.crcs.crcs
        step = max(1, (1 << 20) // block)
        for at in range(first, end, step):
            upto = min(at + step, end)
            want = min(upto * block, length) - at * block
            data = _pread_exact(self.fd, want, at * block)
            mv = memoryview(data)
            for i in range(at, upto):
                if crc32(mv[(i - at) * block:(i - at + 1) * block]) != crcs[i]:
                    raise _ChangedWhileRead()
            yield data


def _pread_exact(fd, n, offset):
    parts = []
    while n:
        data = os.pread(fd, n, offset)
        if not data:
            raise _ChangedWhileRead()       # shorter than when it was read
        parts.append(data)
        n -= len(data)
        offset += len(data)
    return b"".join(parts) if len(parts) != 1 else parts[0]


@dataclass
class Stats:
    source_files: int = 0
    source_bytes: int = 0
    new_files: int = 0
    new_bytes: int = 0
    changed_files: int = 0
    changed_bytes: int = 0
    deleted_files: int = 0
    unchanged_files: int = 0
    delta_entries: int = 0
    raw_delta_bytes: int = 0
    errors: int = 0


def file_identity(st):
    """What tells a file that has not been written to since (ctime moves on every write): the
    checkpoint of a volume cut inside a file keeps it (resume.py)."""
    return {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns}


def _open_for_backup(path):
    """Open a file the scan saw as regular. O_NONBLOCK: if it was swapped for a FIFO since the
    scan, open must not wait for a writer that never comes; the type is checked on the open
    descriptor, so what is read is what is stored as a regular file."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | getattr(os, "O_NOATIME", 0))
    except PermissionError:
        fd = os.open(path, flags)   # O_NOATIME needs ownership; plain open may still work
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "no longer a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


class DiffWriter:
    """Writes one backup set from the walk merged with the previous state (merge_with_previous):
    difftar entries into ``volumes`` (a VolumeWriter), the sigtar into ``signatures`` (a
    SigWriter), the manifest's Filelist lines into ``filelist`` (a binary file), counts into
    ``stats``. ``sig_executor`` computes big files' signatures beside the delta; ``check()``
    runs for every entry and raises when the run has failed elsewhere. ``on_file(kind, relpath,
    type)``, given, hears of each entry stored, as duplicity's verbosity 5 lists them: kind "A"
    for a whole new version (snapshot), "M" for a delta, "D" for a deletion."""

    def __init__(self, volumes, signatures, filelist, stats, *, incremental, max_blocksize=0,
                 adaptive=True, on_warning=None, progress=None, sig_executor=None, check=None,
                 resume_at=None, on_file=None):
        self.volumes = volumes
        self.signatures = signatures
        self.filelist = filelist
        self.stats = stats
        self.incremental = incremental
        self.max_blocksize = max_blocksize
        self.adaptive = adaptive
        self.on_warning = on_warning or (lambda message: None)
        self.progress = progress
        self.on_file = on_file
        self.sig_executor = sig_executor
        self.check = check or (lambda: None)
        self.owner_names = archive.OwnerNames()     # each uid and gid looked up once a run
        # a resumed run: (index, chunk, file identity) where the kept volumes end; entries
        # before it are in them, and a chunk > 1 continues that file
        self.resume_at = resume_at
        self._pending = None        # the source counts of the entry being written
        self._current_file = None   # (index, identity) of the regular file being written

    def write(self, merged):
        check = self.check
        for entry, prev in self._after_resume_point(merged):
            check()
            skip = 0
            if self.resume_at is not None:
                if self.resume_at[1]:       # the first entry here is the file the volume stopped in
                    skip = self._check_resumed_file(entry)
                self.resume_at = None
            if entry is None:
                self.deleted(prev)
                continue
            self.entry(entry, prev, skip)
            if self.progress is not None:
                self.progress(self.stats)

    def _after_resume_point(self, merged):
        """Skip what the kept volumes of a resumed run hold: every path before where they end."""
        if self.resume_at is None:
            yield from merged
            return
        index, chunk, _identity = self.resume_at
        merged = iter(merged)
        for entry, prev in merged:
            at = entry.index if entry is not None else prev.index
            if at < index:
                continue
            if at > index and chunk:
                raise ResumeMismatch(f"{os.fsdecode(b'/'.join(index))}, which the last volume stopped in, "
                                     "is gone")
            yield entry, prev
            break
        yield from merged

    def _check_resumed_file(self, entry):
        """The file a kept volume stopped inside must be the very file it was: else the chunks
        at the target and the ones to come would be of two files. Returns the chunks to skip."""
        index, chunk, identity = self.resume_at
        if entry is None:
            raise ResumeMismatch(f"{os.fsdecode(b'/'.join(index))}, which the last volume stopped in, is gone")
        if not stat.S_ISREG(entry.stat.st_mode) or file_identity(entry.stat) != identity:
            raise ResumeMismatch(f"{os.fsdecode(entry.path)}, which the last volume stopped in, has changed")
        return chunk - 1

    def checkpoint(self, index, chunk):
        """Where the stream stands when a volume was closed and the next begins with (index,
        chunk): the signature and file-list bytes of the entries before it, the statistics
        without the entry in progress, and that entry's identity when it is a file cut in two."""
        stats = dataclasses.replace(self.stats)
        if self._pending is not None:
            stats.source_files -= self._pending[0]
            stats.source_bytes -= self._pending[1]
        self.signatures.flush()
        self.filelist.flush()
        os.fsync(self.filelist.fileno())
        inside = chunk is not None and chunk > 1
        identity = None
        if inside:
            current_index, identity = self._current_file
            if current_index != index:      # a bug, not bad input: the cut must be in this file
                raise RuntimeError("a volume cut inside another file than the one being written")
        return {"sig_bytes": self.signatures.size, "filelist_bytes": self.filelist.tell(),
                "stats": dataclasses.asdict(stats), "next_index": index,
                "next_chunk": chunk if inside else None, "next_file": identity}

    def deleted(self, prev):
        name = archive.entry_name("deleted", prev.index)
        self.volumes.add(prev.index, None, True, archive.header(name, None, 0, as_deleted=True), b"")
        self.signatures.add(name, None, as_deleted=True)
        self.stats.deleted_files += 1
        if self.on_file is not None:
            self.on_file("D", prev.info.relpath, prev.info.type)
        if prev.info.type == REG:
            self.filelist.write(b"    deleted  " + manifest_mod.quote(prev.info.relpath) + b"\n")

    def entry(self, e, prev, skip_chunks=0):
        stats = self.stats
        try:
            info = archive.path_info(e.index, e.path, e.stat, self.owner_names)
        except OSError as exc:       # e.g. a symlink that vanished before readlink
            stats.errors += 1
            self.on_warning(f"cannot read {os.fsdecode(e.path)}: {exc.strerror}; skipped")
            return
        if info is None:
            return
        stats.source_files += 1
        stats.source_bytes += info.size
        self._pending = (1, info.size)
        try:
            self._entry(e, prev, info, skip_chunks)
        finally:
            self._pending = self._current_file = None

    def _entry(self, e, prev, info, skip_chunks):
        stats = self.stats
        if self.incremental and prev is not None and info.same_as(prev.info):
            stats.unchanged_files += 1
            return
        if info.type != REG:
            name = archive.entry_name("snapshot", e.index)
            self.volumes.add(e.index, None, True, archive.header(name, info, 0), b"")
            self.signatures.add(archive.entry_name("snapshot", e.index, root_dot=False), info)
            self._count(prev)
            if self.on_file is not None:
                self.on_file("A", info.relpath, info.type)
            return
        try:
            fd = _open_for_backup(e.path)
        except OSError as exc:
            stats.errors += 1
            self.on_warning(f"cannot read {os.fsdecode(e.path)}: {exc.strerror}; skipped "
                            + ("(its previous version stays in the archive)" if prev else ""))
            return
        try:
            identity = file_identity(os.fstat(fd))
            if skip_chunks and identity != file_identity(e.stat):
                raise ResumeMismatch(f"{os.fsdecode(e.path)}, which the last volume stopped in, has changed")
            self._current_file = (e.index, identity)
            use_delta = (self.incremental and prev is not None and prev.info.type == REG
                         and prev.signature is not None)
            signature, stored = self._content(fd, e.index, info, prev if use_delta else None, skip_chunks)
        except OSError as exc:
            # a read error mid-file: the entries already written are harmless only if a complete
            # version follows; we cannot take them back, so fail loudly rather than store half a file
            raise CorruptArchive(f"read error in {os.fsdecode(e.path)}: {exc.strerror}") from None
        finally:
            os.close(fd)
        self.signatures.add(archive.entry_name("signature", e.index), info, signature)
        if use_delta:
            stats.delta_entries += 1
            stats.raw_delta_bytes += stored
        kind = self._count(prev)
        if self.on_file is not None:
            self.on_file("M" if use_delta else "A", info.relpath, info.type)
        self.filelist.write(b"    " + kind.ljust(7).encode() + b"  " + manifest_mod.quote(info.relpath) + b"\n")
        if prev is None:
            stats.new_bytes += info.size
        else:
            stats.changed_bytes += info.size

    def _content(self, fd, index, info, base, skip_chunks=0):
        """Write a regular file's data (a delta against ``base``, else a snapshot) in 64 KiB
        chunks; returns (its new signature, bytes stored). The first ``skip_chunks`` are not
        written (a resumed run's kept volumes hold them) but go into the signature as ever."""
        if self.adaptive:
            # a delta is mostly copy commands: only whole new contents are worth sampling
            big = info.size >= LARGE_FILE and base is None
            self.volumes.regime(sample_compressible(fd, info.size) if big else True)
        block_len = librsync.block_len_for(info.size, self.max_blocksize)
        if (base is not None and info.size >= 1 << 20
                and base.signature[:12] == librsync.signature_header(block_len)):
            sig = _SigFromDelta(block_len, base.signature, fd, self.sig_executor)
        else:
            sig = _SigCollector(block_len)
        try:
            stored = self._write_content(fd, index, info, base, skip_chunks, sig)
        except BaseException:
            if isinstance(sig, _SigFromDelta):
                sig.close()
            raise
        return sig.result(), stored

    def _write_content(self, fd, index, info, base, skip_chunks, sig):
        delta_out = getattr(sig, "delta_out", None)
        if delta_out is not None and info.size >= 2 * DELTA_WINDOW:
            pieces = _windowed_delta(fd, base.signature, sig.crcs.block_len, self.sig_executor, sig)
        else:
            delta_job = librsync.DeltaJob(base.signature) if base is not None else None
            pieces = _read_pieces(fd, sig, delta_job, info.size, self.sig_executor)
        single, multi = ("diff", "multivol_diff") if base is not None else ("snapshot", "multivol_snapshot")
        stored = 0
        chunk_no = 0
        for data, last in _chunks(pieces):
            if delta_out is not None:
                delta_out(data)
            chunk_no += 1
            if chunk_no <= skip_chunks:
                if last:
                    raise ResumeMismatch(f"{os.fsdecode(b'/'.join(index))} is shorter than where the "
                                         "last volume stopped in it")
                stored += len(data)
                continue
            if chunk_no == 1 and last:
                name = archive.entry_name(single, index)
                self.volumes.add(index, None, True, archive.header(name, info, len(data)), data)
            else:
                name = archive.entry_name(multi, index, chunk_no)
                self.volumes.add(index, chunk_no, last, archive.header(name, info, len(data)), data)
            stored += len(data)
        return stored

    def _count(self, prev):
        if prev is None:
            self.stats.new_files += 1
            return "new"
        self.stats.changed_files += 1
        return "changed"


# --- content sampling and hashing ---------------------------------------------------------------

LARGE_FILE = 8 << 20      # files at least this big get their compressibility sampled


def sample_compressible(fd, size, samples=8, piece=32768):
    """Whether gpg's compression is worth its CPU for a file: zlib level 1 on a few samples.

    Incompressible data (media, archives, encrypted files) gains nothing from compression,
    which is most of a backup's CPU time; such data goes into volumes written with
    --compress-algo none.
    """
    if size <= piece * samples:
        offsets = [0]
        piece = size
    else:
        step = (size - piece) // (samples - 1)
        offsets = [i * step for i in range(samples)]
    raw = comp = 0
    for off in offsets:
        data = os.pread(fd, piece, off)
        raw += len(data)
        comp += len(zlib.compress(data, 1))
    return raw == 0 or comp < 0.9 * raw
