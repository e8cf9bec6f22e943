# SPDX-License-Identifier: GPL-3.0-or-later
"""The diff and volume layers of a backup: walk + old signatures -> difftar volumes + sigtar.

Write order (what makes an interrupted run harmless): every volume is uploaded under its final
name only when complete; then the manifest; then the signatures. Until the manifest exists the
set is incomplete and every reader (cairn and duplicity) ignores it.
"""
import errno
import gzip
import hashlib
import heapq
import os
import shutil
import stat
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from . import archive, librsync, manifest as manifest_mod
from .archive import CHUNK, REG, PathInfo
from .errors import CorruptArchive, ManifestError


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


# --- volumes ---------------------------------------------------------------------------------

@dataclass
class VolumeResult:
    number: int
    name: str
    sha1: str
    size: int


class GrowingFile:
    """Reads a file while another thread is still writing it; EOF only once it is finished.

    Lets gpg encrypt a volume while the volume is being built, so compression and encryption
    run on another core from the start instead of after the volume is complete.
    """

    def __init__(self, path):
        self.f = open(path, "rb")
        self.cond = threading.Condition()
        self.finished = False
        self.failed = False

    def wake(self, finished=False, failed=False):
        with self.cond:
            self.finished = self.finished or finished
            self.failed = self.failed or failed
            self.cond.notify_all()

    def read(self, n=-1):
        while True:
            data = self.f.read(n if n and n > 0 else 1 << 20)
            if data:
                return data
            with self.cond:
                if self.failed:
                    raise OSError("volume writer failed")
                if self.finished:
                    data = self.f.read(n if n and n > 0 else 1 << 20)
                    return data
                self.cond.wait(0.05)

    def close(self):
        self.f.close()


class VolumeWriter:
    """Cuts the difftar stream into volumes of at most ``limit`` plaintext bytes and ships them.

    Each volume is handed to a worker as soon as it is started: gpg reads it while it grows,
    then the worker hashes and uploads the result. At most ``jobs`` volumes are in flight,
    which bounds temp space to about jobs x 2 x volsize. A volume is also cut early where the
    data changes between compressible and incompressible (see ``regime``), so each gpg run
    compresses only what gains from it.
    """

    def __init__(self, shipper, name_for, limit, tmpdir, jobs):
        self.shipper = shipper
        self.name_for = name_for
        self.limit = limit
        self.tmpdir = tmpdir
        self.pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="cairn-vol")
        self.slots = threading.BoundedSemaphore(jobs)
        self.futures = []
        self.volumes = []        # manifest VolumeInfo, in order
        self.number = 0
        self.f = None
        self.reader = None
        self.size = 0
        self.first = self.last = None
        self.compress = True
        self.next_compress = True
        self.future = None
        self.path = None

    # gpg starts on a volume once it holds this much, so that the first large file decides the
    # volume's compression without a cut (each gpg run costs a key derivation: ~0.3 s of CPU
    # with a passphrase)
    START_AT = 1 << 20

    def regime(self, compressible):
        """Say whether the data about to be added compresses; may start a new volume."""
        self.next_compress = compressible
        if self.f is None or compressible == self.compress:
            return
        if self.future is None:
            self.compress = compressible       # gpg has not started: just switch
        elif self.size > 0:
            self._finish()

    def add(self, index, chunk, last_chunk, hdr, data):
        if self.f is not None and self.size >= self.limit:
            self._finish()
        if self.f is None:
            self._start()
        block = None if (chunk is None or last_chunk) else chunk
        if self.first is None:
            self.first = (index, block)
        self.last = (index, block)
        if data:
            pad = archive.padding(len(data))
            self.f.write(b"".join((hdr, data, pad)))
            self.size += len(hdr) + len(data) + len(pad)
        else:
            self.f.write(hdr)
            self.size += len(hdr)
        if self.future is None:
            if self.size >= self.START_AT:
                self._submit()
        else:
            self.reader.wake()

    def _check_failures(self):
        for _vi, f in self.futures:
            if f.done() and f.exception() is not None:
                raise f.exception()

    def _start(self):
        self._check_failures()
        self.number += 1
        path = os.path.join(self.tmpdir, f"vol{self.number}.tar")
        self.f = open(path, "wb", buffering=0)
        self.reader = GrowingFile(path)
        self.size = 0
        self.first = self.last = None
        self.compress = self.next_compress
        self.path = path
        self.future = None
        self.volumes.append(manifest_mod.VolumeInfo(self.number, (), None, (), None, {}))

    def _submit(self):
        vi = self.volumes[-1]
        name = self.name_for(self.number)
        self.slots.acquire()
        self.future = self.pool.submit(self._ship, self.reader, self.path, name, self.number,
                                       self.compress)
        self.futures.append((vi, self.future))

    def _finish(self):
        self.f.write(archive.end_of_archive(self.size))
        self.f.close()
        self.f = None
        vi = self.volumes[-1]
        first = self.first or ((), None)     # an empty difftar: nothing changed
        last = self.last or ((), None)
        vi.start_index, vi.start_block = first
        vi.end_index, vi.end_block = last
        self.reader.wake(finished=True)
        if self.future is None:
            self._submit()
        self._check_failures()

    def _ship(self, reader, path, name, number, compress):
        try:
            sha1, size = self.shipper(reader, path, name, compress)
            return VolumeResult(number, name, sha1, size)
        finally:
            reader.close()
            self.slots.release()

    def close(self):
        """Finish the last volume and wait for every upload; returns the VolumeResults."""
        if self.f is None and not self.volumes:
            # an empty difftar still makes one volume (duplicity writes one too)
            self._start()
        if self.f is not None:
            self._finish()
        results = []
        try:
            for vi, fut in self.futures:
                r = fut.result()
                vi.hashes["SHA1"] = r.sha1
                results.append(r)
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
        return results

    def abort(self):
        if self.f is not None:
            self.f.close()
            self.f = None
        if self.reader is not None:
            self.reader.wake(failed=True)
        self.pool.shutdown(wait=True, cancel_futures=True)


class SigWriter:
    """The sigtar: a plain tar file written to ``path``."""

    def __init__(self, path):
        self.f = open(path, "wb")
        self.size = 0

    def add(self, name, info, data=b"", as_deleted=False):
        hdr = archive.header(name, info, len(data), as_deleted=as_deleted)
        self.f.write(hdr)
        self.size += len(hdr)
        if data:
            pad = archive.padding(len(data))
            self.f.write(data)
            self.f.write(pad)
            self.size += len(data) + len(pad)

    def close(self):
        self.f.write(archive.end_of_archive(self.size))
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


_sig_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cairn-sig")


def _read_pieces(fd, sig_job, delta_job=None, size=0):
    """Read a file in 1 MiB reads, feeding the new signature; yield the bytes to store.

    For files of a MiB or more the signature is computed on another thread (librsync drops
    the GIL) while this one computes the delta or writes the data.
    """
    parallel = size >= 1 << 20
    pending = None
    try:
        while True:
            data = os.read(fd, 1 << 20)
            if not data:
                break
            if parallel:
                if pending is not None:
                    pending.result()
                pending = _sig_pool.submit(sig_job.feed, data)
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
    def __init__(self, block_len):
        self.job = librsync.SignatureJob(block_len)
        self.out = []

    def feed(self, data):
        o = self.job.update(data)
        if o:
            self.out.append(o)

    def result(self):
        self.out.append(self.job.finish())
        return b"".join(self.out)


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
    skipped: list = field(default_factory=list)


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


def write_sets(entries, old_sigs, vol_writer, sig_writer, filelist, stats, *, incremental,
               max_blocksize=0, on_warning=None, progress=None, adaptive=True):
    """Diff the walk against the old signatures and write difftar entries and the sigtar.

    ``entries``: Selection.walk() output; ``old_sigs``: merged_signatures() or empty.
    ``filelist``: a text file object receiving the manifest's Filelist lines.
    """
    old_iter = iter(old_sigs)
    old = next(old_iter, None)
    for e in entries:
        while old is not None and old.index < e.index:
            _deleted(old, vol_writer, sig_writer, filelist, stats)
            old = next(old_iter, None)
        prev = None
        if old is not None and old.index == e.index:
            prev = old
            old = next(old_iter, None)
        _one(e, prev, vol_writer, sig_writer, filelist, stats, incremental, max_blocksize,
             on_warning, adaptive)
        if progress is not None:
            progress(stats)
    while old is not None:
        _deleted(old, vol_writer, sig_writer, filelist, stats)
        old = next(old_iter, None)


def _deleted(old, vol_writer, sig_writer, filelist, stats):
    name = archive.entry_name("deleted", old.index)
    vol_writer.add(old.index, None, True, archive.header(name, None, 0, as_deleted=True), b"")
    sig_writer.add(name, None, as_deleted=True)
    stats.deleted_files += 1
    if old.info.type == REG:
        filelist.write(b"    deleted  " + manifest_mod.quote(old.info.relpath) + b"\n")


def _one(e, prev, vol_writer, sig_writer, filelist, stats, incremental, max_blocksize, on_warning,
         adaptive):
    try:
        info = archive.path_info(e.index, e.path, e.stat)
    except OSError as exc:       # e.g. a symlink that vanished before readlink
        stats.errors += 1
        if on_warning:
            on_warning(f"cannot read {os.fsdecode(e.path)}: {exc.strerror}; skipped")
        return
    if info is None:
        return
    stats.source_files += 1
    stats.source_bytes += info.size
    unchanged = prev is not None and info.same_as(prev.info)
    if unchanged and incremental:
        stats.unchanged_files += 1
        return
    if info.type != REG:
        name = archive.entry_name("snapshot", e.index)
        vol_writer.add(e.index, None, True, archive.header(name, info, 0), b"")
        sig_writer.add(archive.entry_name("snapshot", e.index, root_dot=False), info)
        _count(stats, prev)
        return
    try:
        fd = _open_for_backup(e.path)
    except OSError as exc:
        stats.errors += 1
        stats.skipped.append(e.path)
        if on_warning:
            on_warning(f"cannot read {os.fsdecode(e.path)}: {exc.strerror}; skipped "
                       + ("(its previous version stays in the archive)" if prev else ""))
        return
    try:
        use_delta = incremental and prev is not None and prev.info.type == REG and prev.signature is not None
        if adaptive:
            # a delta is mostly copy commands: only whole new contents are worth sampling
            big = info.size >= LARGE_FILE and not use_delta
            vol_writer.regime(sample_compressible(fd, info.size) if big else True)
        sig = _SigCollector(librsync.block_len_for(info.size, max_blocksize))
        delta_job = librsync.DeltaJob(prev.signature) if use_delta else None
        single, multi = ("diff", "multivol_diff") if use_delta else ("snapshot", "multivol_snapshot")
        stored = 0
        chunk_no = 0
        for data, last in _chunks(_read_pieces(fd, sig, delta_job, info.size)):
            chunk_no += 1
            if chunk_no == 1 and last:
                name = archive.entry_name(single, e.index)
                vol_writer.add(e.index, None, True, archive.header(name, info, len(data)), data)
            else:
                name = archive.entry_name(multi, e.index, chunk_no)
                vol_writer.add(e.index, chunk_no, last, archive.header(name, info, len(data)), data)
            stored += len(data)
        signature = sig.result()
    except OSError as exc:
        # a read error mid-file: the entries already written are harmless only if a complete
        # version follows; we cannot take them back, so fail loudly rather than store half a file
        raise CorruptArchive(f"read error in {os.fsdecode(e.path)}: {exc.strerror}") from None
    finally:
        os.close(fd)
    sig_writer.add(archive.entry_name("signature", e.index), info, signature)
    if use_delta:
        stats.delta_entries += 1
        stats.raw_delta_bytes += stored
    kind = _count(stats, prev)
    filelist.write(b"    " + kind.ljust(7).encode() + b"  " + manifest_mod.quote(info.relpath) + b"\n")
    if prev is None:
        stats.new_bytes += info.size
    else:
        stats.changed_bytes += info.size


def _count(stats, prev):
    if prev is None:
        stats.new_files += 1
        return "new"
    stats.changed_files += 1
    return "changed"


# --- shipping a finished file ------------------------------------------------------------------

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


def sha1_file(path):
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def make_shipper(crypto, uploader, *, compress_level=None, gate=None):
    """Encrypt (or gzip) a volume as it is written, hash it, queue its upload; returns (sha1, size).

    ``gate()`` is called before the upload: it raises when the run must not write (a failed
    check of the target). The upload runs in ``uploader`` (a transfer.UploadQueue), so the
    worker goes on to the next volume; the caller drains the queue before the manifest.
    """
    def ship(reader, plain_path, remote_name, compress):
        out = plain_path + ".out"
        queued = False
        try:
            crypto.encrypt_fileobj(reader, out, compress=compress, compress_level=compress_level)
            sha1 = sha1_file(out)
            size = os.path.getsize(out)
            if gate is not None:
                gate()
            uploader.submit(out, remote_name, cleanup=lambda: _unlink(out))
            queued = True
            return sha1, size
        finally:
            _unlink(plain_path)
            if not queued:
                _unlink(out)
    return ship


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def gzip_file(src, dst):
    with open(src, "rb") as fin, open(dst, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", compresslevel=6, fileobj=raw, mtime=0) as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
