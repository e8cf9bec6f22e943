# SPDX-License-Identifier: GPL-3.0-or-later
"""Reading a chain back: volumes -> tar members -> per-path entries -> files (§8).

The streams of all sets in the chain are merged by path; for each path the newest snapshot is
patched by every later delta. Every archive is hostile: entries are written through directory
descriptors, never through a symlink, and never outside the target (see TreeWriter).

A restore goes on past a volume it cannot use (missing, failing its hash, not decrypting, not
parsing): the manifest says which paths each volume held, the set's signatures say which of them
the set had, and a path whose newest version needs such a volume is reported lost instead of
being written (see Losses and merged_entries). verify reads the same streams strictly.
"""
import errno
import grp
import gzip
import itertools
import os
import pwd
import re
import stat
import tempfile
import threading
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import archive, librsync, naming, openpgp, timespec
from .archive import REG, DIR, SYM, FIFO, CHR, BLK
from .crypto import sha1_file
from .growing import GrowingFile, MemoryPipe
from .localdirs import remove_file, signal_received
from .naming import encoding
from .errors import (BackendError, BackendNotFound, CorruptArchive, CorruptCiphertext, CryptoError, HashMismatch,
                     ManifestError, NoBackupFound, RestoreError, UnsafeArchive, ExitCode, LOCAL_ERRNOS,
                     LocalIOError, UserError)

# What makes one volume unusable without saying anything about the others: a restore records
# the volume as lost and goes on. Everything else (an entry that tries to escape, a wrong
# passphrase or missing key, a full local disk) still ends the restore.
VOLUME_FAILURES = (HashMismatch, BackendError, CorruptCiphertext, CorruptArchive)


# --- volumes of one set ----------------------------------------------------------------------

class VolumeFetcher:
    """Downloads, hash-checks and decrypts volumes, a couple ahead of the reader.

    A chain is read as ``streams`` sets at once (restore merges them by path), and the merge
    needs the first volume of every set before it can write anything; so every volume being
    read or read ahead has a worker of its own. With fewer, a later set's first volume could
    queue behind the full set's read-ahead while the writer sits idle.

    A volume the built-in OpenPGP path decrypts reaches the parser through memory (MemoryPipe):
    only once its SHA1 matches the manifest's, which the manifest's own MDC vouches for, so
    what the parser reads is what was written. Anything else (gpg, gpgsm, gzip, a volume with
    no SHA1 in its manifest) goes through a temp file that the parser follows as it grows.
    """

    def __init__(self, backend, crypto, tmpdir, *, retries=1, prefetch=2, streams=1):
        self.backend = backend
        self.crypto = crypto
        self.tmpdir = tmpdir
        self.retries = retries
        self.pool = ThreadPoolExecutor(max_workers=max(1, streams) * prefetch, thread_name_prefix="cairn-fetch")
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

    def fetch(self, name, sha1, plaintext):
        """Download, check and decode ``name``, handing its plaintext to ``plaintext``
        (a _Plaintext) as it comes."""
        streamed = sha1 is not None and self.crypto.builtin_decodes(name)
        in_place = self.backend.local_path(name) if streamed else None
        keying = None
        if in_place is not None:
            # the passphrase's S2K (about 0.1 s, once per run), or gpg's decryption of a public-key
            # volume's session key (about 0.05 s, each volume), beside the hash pass, not after it
            keying = threading.Thread(target=self.crypto.derive_builtin_keys, name="cairn-s2k", daemon=True,
                                      args=(in_place,))
            keying.start()
        try:
            enc, is_copy = self.download(name, sha1)
        finally:
            if keying is not None:
                keying.join()
        try:
            if streamed:
                sink = _FirstWrite(MemoryPipe(), plaintext)
                try:
                    self.crypto.decrypt_builtin(name, enc, sink)
                    if not sink.chosen:         # an empty plaintext writes nothing
                        plaintext.use(sink.pipe)
                    return
                except openpgp.Unsupported:
                    pass                        # nothing written: gpg reads it, below
            plaintext.use(GrowingFile(plaintext.path))
            if is_copy and encoding(name) is None:
                os.replace(enc, plaintext.path)  # nothing to decode: the download is the plaintext
            else:
                self.crypto.decode_file(name, enc, plaintext.path, follow=True)
        finally:
            if is_copy and os.path.exists(enc):
                os.unlink(enc)

    def fetched(self, volumes):
        """Yield (name, reader, future) for [(name, sha1)] in order, prefetching and decrypting
        ahead. The reader raises the fetch's failure when it gets there; a failure after the
        last byte read is the future's (``stream`` raises it, a lenient reader weighs it)."""
        futures = []
        pending = list(volumes)
        pending.reverse()
        try:
            while pending or futures:
                while pending and len(futures) < self.prefetch:
                    name, sha1 = pending.pop()
                    plaintext = _Plaintext(os.path.join(self.tmpdir, name + ".tar"))
                    fut = self.pool.submit(self.fetch, name, sha1, plaintext)
                    plaintext.follow(fut)
                    futures.append((name, plaintext, fut))
                name, plaintext, fut = futures.pop(0)
                try:
                    yield name, plaintext, fut
                    plaintext.close()   # the rest is dropped; the decryption still runs to its end
                    _wait(fut)          # gpg may still be writing what the parser left unread
                except BaseException:
                    plaintext.abandon()
                    raise
                finally:
                    plaintext.close()
                    remove_file(plaintext.path)
        finally:
            for _name, plaintext, fut in futures:
                fut.cancel()
                plaintext.abandon()
                _wait(fut)
                plaintext.close()
                remove_file(plaintext.path)

    def stream(self, volumes):
        """Yield (name, reader) for [(name, sha1)] in order; a volume that failed raises."""
        volumes = self.fetched(volumes)
        try:
            for name, reader, fut in volumes:
                yield name, reader
                reader.close()      # what the parser left (past the tar's end) must not hold up its end
                fut.result()
        finally:
            volumes.close()


class _Plaintext:
    """A volume's plaintext as the parser reads it, through whichever way its fetch picks once
    it has looked at the volume: a MemoryPipe (the built-in decryption) or a GrowingFile at
    ``path`` (gpg's output). ``read`` waits for that choice; a fetch that fails before making it
    is raised from ``read``."""

    def __init__(self, path):
        self.path = path
        self._cond = threading.Condition()
        self._source = None
        self._reader = None
        self._failure = None
        self._abandoned = False

    def use(self, source):
        """The fetch's choice (it calls this once, before writing anything)."""
        with self._cond:
            self._source = source
            abandoned = self._abandoned
            self._cond.notify_all()
        if abandoned and isinstance(source, MemoryPipe):
            source.abandon()

    def follow(self, future):
        future.add_done_callback(self._fetch_done)

    def _fetch_done(self, future):
        with self._cond:
            source = self._source
            if source is None:
                self._failure = (OSError("the fetch of this volume was cancelled") if future.cancelled()
                                 else future.exception() or OSError("the fetch of this volume gave no data"))
                self._cond.notify_all()
        if source is not None:
            source._future_done(future)     # its end, or its failure, for the reader

    def read(self, n=-1):
        if self._reader is None:
            with self._cond:
                while self._source is None and self._failure is None:
                    self._cond.wait()
                if self._source is None:
                    raise self._failure
                self._reader = self._source.reader()
        return self._reader.read(n)

    def close(self):
        """The parser is done: a pipe drops what is still written (GrowingReader's close)."""
        with self._cond:
            source, reader = self._source, self._reader
        if reader is not None:
            reader.close()
        elif isinstance(source, MemoryPipe):
            source.close()

    def abandon(self):
        """The run stops: the built-in decryption stops at its next write."""
        with self._cond:
            self._abandoned = True
            source = self._source
        if isinstance(source, MemoryPipe):
            source.abandon()


class _FirstWrite:
    """A pipe's writer that tells ``plaintext`` to use the pipe at the first byte, so that a
    decryption that gives up before any (openpgp.Unsupported) can still hand over to gpg."""

    def __init__(self, pipe, plaintext):
        self.pipe = pipe
        self.plaintext = plaintext
        self.chosen = False

    def write(self, data):
        if not self.chosen:
            self.plaintext.use(self.pipe)
            self.chosen = True
        self.pipe.write(data)


def _wait(fut):
    """Until ``fut`` has ended, whatever its outcome (who needs the outcome asks for it)."""
    try:
        fut.exception()
    except BaseException:       # noqa: BLE001 - cancelled: nothing to wait for
        pass


@dataclass
class VolumeRef:
    """One volume of a set as its manifest describes it."""

    name: str               # remote name (the name it should have, when it is missing)
    sha1: str
    info: object            # manifest.VolumeInfo: the first and last path it holds
    present: bool           # listed at the target


@dataclass
class LostVolume:
    """A volume a restore could not use, in the stream of its set where it would have been.

    It held the paths from ``first`` to ``last`` (full indexes, both included, as its manifest
    says); when it failed part-way, ``first`` is the last path read from it, whose entry may
    be cut short.
    """

    name: str
    first: tuple
    last: tuple
    reason: str
    order: int = 0          # which set of the chain (0: the full)

    def holds(self, index):
        return self.first <= index <= self.last


_FETCHING = object()     # what a set's members yield first: its first fetches are under way


def started(members):
    """``members`` (set_members, lenient_set_members) once their first volumes are being
    fetched, without waiting for any: a chain's sets are merged from their first entries, so
    an incremental's fetch (its S2K key, its hash pass) must not wait for the full's data."""
    first = next(members, _FETCHING)
    return members if first is _FETCHING else itertools.chain([first], members)


def set_members(fetcher, volumes):
    """(Member, read) of one set across its volumes (VolumeRefs), in order, after _FETCHING;
    the first volume that cannot be used raises (verify)."""
    for ref in volumes:
        if not ref.present:
            raise BackendNotFound(f"volume {ref.name} is missing from the target")
    stream = fetcher.stream([(ref.name, ref.sha1) for ref in volumes])
    try:
        first = next(stream, None)      # submits the first fetches; reads nothing
        yield _FETCHING
        if first is None:
            return
        for name, reader in itertools.chain([first], stream):
            yield from archive.read_members(reader, what=f"volume {name}")
    finally:
        stream.close()


class _VolumeState:
    failed = None           # the VOLUME_FAILURES error that ended the volume


class _GuardedRead:
    """A member's data reader that marks its volume failed when the data cannot be read, so
    that the set's reader moves on to the next volume instead of parsing on."""

    def __init__(self, read, state):
        self.read = read
        self.state = state

    def pieces(self, piece=archive.CHUNK):
        try:
            yield from self.read.pieces(piece)
        except VOLUME_FAILURES as e:
            self.state.failed = e
            raise

    def __call__(self):
        return b"".join(self.pieces(1 << 20))


def lenient_set_members(fetcher, volumes, on_warning):
    """(Member, read) of one set across its volumes (VolumeRefs), in order, after _FETCHING,
    with a LostVolume where a volume could not be used or stopped being readable: the stream
    goes on with the next volume. An entry that tries to escape (UnsafeArchive) is not a
    damaged volume and still raises."""
    fetched = fetcher.fetched([(ref.name, ref.sha1) for ref in volumes if ref.present])
    try:
        # the first next() submits the first fetches and reads nothing
        items = itertools.chain([next(fetched, None)], fetched)
        yield _FETCHING
        for ref in volumes:
            if not ref.present:
                yield LostVolume(ref.name, ref.info.start_index, ref.info.end_index,
                                 f"volume {ref.name} is missing from the target")
                continue
            item = next(items, None)
            if item is None:        # one fetch per present volume: cannot end sooner
                return
            name, reader, fut = item
            state = _VolumeState()
            last = None             # the last path read from this volume
            members = archive.read_members(reader, what=f"volume {name}")
            try:
                for m, read in members:
                    last = m.index
                    yield m, _GuardedRead(read, state)
                    if state.failed is not None:
                        break       # its data could not be read: nothing after it can be
            except VOLUME_FAILURES as e:
                state.failed = e
            finally:
                members.close()
            reader.close()          # what the parser left (past the tar's end) must not hold up its end
            _wait(fut)
            late = None if fut.cancelled() else fut.exception()
            if state.failed is not None:
                first = ref.info.start_index if last is None else last
                yield LostVolume(name, first, ref.info.end_index, str(state.failed))
            elif isinstance(late, VOLUME_FAILURES):
                # every entry up to the end of the tar stream was read and used
                on_warning(f"{late} (after the end of its tar stream: every entry in it was restored)")
            elif late is not None:
                raise late
    finally:
        fetched.close()


# --- entries of one set ----------------------------------------------------------------------

@dataclass
class SetEntry:
    index: tuple
    kind: str               # snapshot, diff, deleted
    info: object            # PathInfo or None
    stream: object          # the _EntryStream it came from

    def chunks(self):
        return self.stream.chunks(self)


@dataclass
class LostEntry:
    """A path a restore does not write: its newest version needs a lost volume."""

    index: tuple            # relative to the path restored, like SetEntry's
    volume: LostVolume
    what: str               # data, metadata, entry, deleted, unknown (see Losses.describe)


class _VolumeLost(Exception):
    """Raised while an entry's data is read, when the rest of it was in a lost volume."""

    def __init__(self, volume):
        super().__init__(volume.name)
        self.volume = volume


def _shown(index):
    return os.fsdecode(b"/".join(index)) if index else "."


class _EntryStream:
    """Groups the multivol chunks of one set's member stream into one entry per path.

    Paths must come in strictly increasing order, as every writer of the format emits them:
    a path twice, or out of order, is a crafted archive (a directory replaced by a symlink
    between two of its entries is the classic escape) and is refused before it is used.

    A LostVolume in the member stream (lenient_set_members) is handed to ``on_lost``, which
    returns the LostEntries of the paths the set had in it (sorted), or None when that cannot
    be known; the stream keeps them for the merge. Entries of the next volumes that fall in a
    lost volume's range (the rest of a file it cut) are skipped, never read as new entries.
    """

    def __init__(self, members, order, *, prefix=(), on_lost=None):
        self.members = iter(members)
        self.order = order
        self.prefix = prefix
        self.on_lost = on_lost
        self.head = None          # (Member, read) not yet turned into an entry
        self.current = None
        self.current_first = None
        self.lost = []            # LostVolumes passed, in order
        self.lost_entries = deque()   # LostEntries of the paths they held, sorted
        self.unknown = []         # LostVolumes whose paths could not be listed
        self._advance_member()

    def _advance_member(self):
        """Move the head to the next member; returns the LostVolumes passed on the way."""
        passed = []
        while True:
            head = next(self.members, None)
            if not isinstance(head, LostVolume):
                self.head = head
                return passed
            head.order = self.order
            self.lost.append(head)
            passed.append(head)
            listed = self.on_lost(head)
            if listed is None:
                self.unknown.append(head)
            else:
                tail = self.lost_entries[-1].index if self.lost_entries else None
                self.lost_entries.extend(e for e in listed if tail is None or e.index > tail)

    def _in_lost_range(self, index):
        return bool(self.lost) and self.prefix + index <= self.lost[-1].last

    def next_entry(self):
        """The next SetEntry, after skipping whatever of the current one was not consumed."""
        previous = self.current
        if previous is not None:
            try:
                for _chunk in self.chunks(previous):
                    pass
            except _VolumeLost:
                pass                # an entry nobody needed, cut by a lost volume
            # chunks left behind by a consumer that stopped early
            while (self.head is not None and self.head[0].index == previous.index
                   and self.head[0].prefix.startswith("multivol_")):
                self._advance_member()
        while self.head is not None and self._in_lost_range(self.head[0].index):
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
        """The entry's data, in pieces of at most one chunk, whatever its headers claim.
        Raises _VolumeLost when the rest of it was in a lost volume."""
        if entry is not self.current or self.current_first is None:
            return
        m, read = self.current_first
        self.current_first = None
        multivol = m.prefix.startswith("multivol_")
        expect = m.chunk
        if multivol and expect != 1:
            raise CorruptArchive(f"{os.fsdecode(entry.info.relpath)}: multivolume data starts at "
                                 f"chunk {expect}; an earlier volume is missing or damaged")
        yield from self._pieces(read)
        passed = self._advance_member()
        full = self.prefix + entry.index
        while multivol:
            cut = next((v for v in passed if v.first <= full), None)
            if cut is not None:
                raise _VolumeLost(cut)
            if self.head is None:
                break
            m, read = self.head
            if m.index != entry.index or not m.prefix.startswith("multivol_"):
                break
            expect += 1
            if m.chunk != expect:
                raise CorruptArchive(f"{os.fsdecode(entry.info.relpath)}: chunk {m.chunk} follows "
                                     f"chunk {expect - 1}; the archive is damaged")
            yield from self._pieces(read)
            passed = self._advance_member()

    def _pieces(self, read):
        try:
            yield from read.pieces()
        except VOLUME_FAILURES:
            if self.on_lost is None:
                raise
            # the set's reader turns the failure into a LostVolume starting at this entry
            passed = self._advance_member()
            if not passed:
                raise
            raise _VolumeLost(passed[0]) from None

    def lost_at(self, index):
        """The LostEntry of ``index`` if this set's entry for it was in a lost volume: listed
        from the signatures, or (when they could not be read) any path in such a volume's range."""
        q = self.lost_entries
        if q and q[0].index == index:
            return q.popleft()
        full = self.prefix + index
        for v in self.unknown:
            if v.holds(full):
                return LostEntry(index, v, "unknown")
        return None

    def drop_lost_through(self, index):
        """Forget listed lost paths up to ``index``: already decided (restored from a newer
        version, or reported when their entry was cut)."""
        q = self.lost_entries
        while q and index is not None and q[0].index <= index:
            q.popleft()


def merged_entries(set_member_iters, on_warning, *, prefix=(), on_lost=None):
    """Merge sets (oldest first) by path; yield (index, [SetEntry...], None) cut at the newest
    base, or (index, None, LostEntry) when the newest version of the path needs a lost volume.

    The list starts at the newest snapshot/deleted entry and holds the deltas after it. A path
    whose entry in some set was in a lost volume is lost unless a newer set has a base for it:
    an older version is never written as if it were the one asked for.
    """
    streams = [_EntryStream(it, i, prefix=prefix, on_lost=on_lost) for i, it in enumerate(set_member_iters)]
    heads = [s.next_entry() for s in streams]
    done = None
    while True:
        candidates = [e.index for e in heads if e is not None]
        for s in streams:
            s.drop_lost_through(done)
            if s.lost_entries:
                candidates.append(s.lost_entries[0].index)
        if not candidates:
            return
        index = done = min(candidates)
        per_set = []
        for i, s in enumerate(streams):
            visible = heads[i] if heads[i] is not None and heads[i].index == index else None
            per_set.append(s.lost_at(index) or visible)
        for k in range(len(per_set) - 1, -1, -1):
            e = per_set[k]
            if e is None:
                continue
            if isinstance(e, LostEntry):
                yield index, None, e
                break
            if e.kind != "diff":
                yield index, [x for x in per_set[k:] if x is not None], None
                break
        else:
            on_warning(f"{os.fsdecode(b'/'.join(index))}: only deltas found, no full version; skipped")
        for i, e in enumerate(heads):
            if e is not None and e.index == index:
                heads[i] = streams[i].next_entry()


# --- materializing content -----------------------------------------------------------------

_ZERO = bytes(archive.CHUNK)


MEM_BASIS_LIMIT = 128 << 20    # a basis for the next patch is held in memory up to this size


def write_content(entries, out_fd, tmp_dir):
    """Write the final content of a regular file (snapshot + deltas) to ``out_fd``, open for
    reading and writing (a delta applied in place may copy a range of the file elsewhere).

    Deltas that change the file only in place are applied over the basis written to
    ``out_fd`` (_read_deltas_ahead). Otherwise every version but the last is a basis for the
    next patch. Up to MEM_BASIS_LIMIT (for the two bases held while the next one is built) a
    basis stays in memory (writing it out doubles the disk writes of a restore, and on a busy
    disk that is most of its time); past that it goes on into an unnamed temp file in
    ``tmp_dir``. The limit is on the bytes really read, not on what a header claims.
    """
    base = entries[0]
    deltas = entries[1:]
    if not deltas:
        _write_chunks(base.chunks(), out_fd)
        return
    delta_chunks, edits = _read_deltas_ahead(deltas)
    if edits is not None:
        _apply_in_place(_write_chunks(base.chunks(), out_fd), edits, out_fd)
        return
    basis = _collect(base.chunks(), base.info.size, tmp_dir)
    try:
        for n, (d, chunks) in enumerate(zip(deltas, delta_chunks), 1):
            job = librsync.PatchJob(basis)
            try:
                if n == len(deltas):
                    _write_chunks(_patched(job, chunks), out_fd)
                    return
                # the basis and the next one are both held while it is built: together, not
                # each, within MEM_BASIS_LIMIT (two 120 MiB versions would pass 256 MiB of RSS)
                held = len(basis) if isinstance(basis, bytearray) else 0
                newer = _collect(_patched(job, chunks), d.info.size if d.info else 0, tmp_dir,
                                 limit=MEM_BASIS_LIMIT - held)
            finally:
                job.close()
            _release(basis)
            basis = newer
    finally:
        _release(basis)


DELTAS_AHEAD_LIMIT = 16 << 20   # the deltas of one file read before its basis, at most


def _read_deltas_ahead(deltas):
    """(None, [librsync.InPlaceEdits]) or ([chunk iterator] of each delta, None).

    A file's deltas are read before its basis, up to DELTAS_AHEAD_LIMIT together: when every
    one of them only overwrites, cuts or grows the file in place (a database, an image, a log),
    the basis is written straight to the restored file and the deltas' literal data over it.
    That spares holding the basis (up to MEM_BASIS_LIMIT of memory) and copying all of it
    through librsync. Otherwise the iterators give the deltas whole, from what was read ahead
    on, to PatchJob."""
    iterators, edits = [], []
    budget = DELTAS_AHEAD_LIMIT
    for d in deltas:
        it = iter(d.chunks())
        if edits is None:           # one is not in place, or the limit is reached: read no more
            iterators.append(it)
            continue
        head = []
        for c in it:
            head.append(c)
            budget -= len(c)
            if budget < 0:
                break
        iterators.append(itertools.chain(head, it))
        e = librsync.in_place_edits(b"".join(head)) if budget >= 0 else None
        edits = None if e is None else edits + [e]
    if edits is not None:
        return None, edits      # each delta was read whole: its pieces need not be kept
    return iterators, None


def _apply_in_place(size, edits, fd):
    """Turn the basis written to ``fd`` (``size`` bytes) into the last delta's version."""
    for e in edits:
        if e.copied_to > size:
            raise CorruptArchive(f"rsync delta: copies up to offset {e.copied_to} but the basis file "
                                 f"is only {size} bytes long (wrong basis or corrupt delta)")
        for offset, data in e.writes:
            _pwrite_all(fd, data, offset)
        for offset, source, n in e.moves:       # no write above touched what they read
            while n:
                data = os.pread(fd, min(n, 1 << 20), source)
                if not data:
                    raise RestoreError("the file being restored shrank while a delta was applied to it")
                _pwrite_all(fd, data, offset)
                source += len(data)
                offset += len(data)
                n -= len(data)
        if e.length != size:
            os.ftruncate(fd, e.length)
        size = e.length


def _pwrite_all(fd, data, offset):
    while data:
        n = os.pwrite(fd, data, offset)
        data = data[n:]
        offset += n


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
    """Write data to ``fd``, leaving holes for whole zero chunks so sparse files stay sparse;
    returns the size written."""
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
    return size


# --- writing a tree --------------------------------------------------------------------------

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_TEMP_PREFIX = b".cairn-restore-"          # a file being written, renamed once complete
_TEMP_NAME = re.compile(re.escape(_TEMP_PREFIX) + rb"[0-9a-f]{12}")
_NEW_FILE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_O_PATH = getattr(os, "O_PATH", 0)
_UNNAMED_FLAGS = getattr(os, "O_TMPFILE", 0) | os.O_RDWR | os.O_CLOEXEC


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

    ``same_content(entries, fd)``: given, the target is taken to hold what an interrupted
    restore left. A regular file already there with the entry's type, mode, mtime (and owner,
    when owners are restored) is kept when ``same_content`` says the open file's data is the
    entry's (``skipped``); a file is never kept on its metadata alone. The temp files such a
    restore left behind are removed from every directory entered.
    """

    def __init__(self, root, *, restore_owner=None, numeric_owner=False, whole_tree=True, tmp_dir=None,
                 same_content=None, rename=None):
        self.root = os.fsencode(os.path.abspath(root))
        self.rename = rename or {}  # {archive index: index written} (parse_renames), for a subtree too
        self.restore_owner = (os.geteuid() == 0) if restore_owner is None else restore_owner
        self.numeric_owner = numeric_owner
        self.whole_tree = whole_tree
        self.tmp_dir = tmp_dir
        self.same_content = same_content
        self.stack = []            # [(index, fd, info)]: open directories from the root down;
        #                            info is None for one no entry describes (made as a parent)
        self.single = None         # the type of a root written as a single non-directory
        self.ids = {}              # (field, name) -> local uid/gid, or None
        self.written = 0           # entries restored, the files kept as they were included
        self.skipped = 0           # regular files already restored complete, not rewritten
        self.warnings = []
        self.unnamed = None if hasattr(os, "O_TMPFILE") else False   # files written unnamed (O_TMPFILE)

    def path(self, index):
        return os.path.join(self.root, *index) if index else self.root

    def renamed(self, index):
        """Where the entry ``index`` (relative to what is restored) is written: --rename's FROM
        matched on the path or its nearest renamed ancestor, as duplicity does; the root never."""
        if self.rename and index:
            for n in range(len(index), 0, -1):
                new = self.rename.get(index[:n])
                if new is not None:
                    return new + index[n:]
        return index

    def write(self, index, entries):
        # renamed entries may come out of path order: _parent_fd reopens (or makes) their
        # parents from the root down, through the same descriptors, so they stay below it too
        index = self.renamed(index)
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
        if info.type != REG:
            self._clear(parent, name)
        self._make(parent, name, entries, info)     # a file replaces the old entry once it is whole

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
            if info.type != REG:
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
            self._remove_stale_temps(fd)

    def _parent_fd(self, index):
        """The descriptor of ``index``'s parent: directories we have left are finished, missing
        ancestors are made (0700), and none is entered through a symlink."""
        self._open_root()
        # leave what is not an ancestor; index itself may be open already (made as a parent of a
        # renamed entry that came first)
        while len(self.stack) > 1 and (self.stack[-1][0] != index[:len(self.stack[-1][0])]
                                       or len(self.stack[-1][0]) >= len(index)):
            self._finish(*self.stack.pop())
        for depth in range(len(self.stack[-1][0]) + 1, len(index)):
            fd = self._open_dir(self.stack[-1][1], index[depth - 1], index[:depth])
            self.stack.append((index[:depth], fd, None))
        return self.stack[-1][1]

    def _open_dir(self, parent, name, index):
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
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
        self._remove_stale_temps(fd)
        return fd

    def _remove_stale_temps(self, fd):
        """The temp files of an interrupted restore in a directory that was already there
        (only when restoring over one: a fresh target has none)."""
        if self.same_content is None:
            return
        for child in os.listdir(fd):
            if _TEMP_NAME.fullmatch(os.fsencode(child)):
                try:
                    if stat.S_ISREG(os.lstat(child, dir_fd=fd).st_mode):
                        os.unlink(child, dir_fd=fd)
                except FileNotFoundError:
                    pass

    @staticmethod
    def _clear(parent, name, keep_dir=False):
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
            if self.same_content is not None and self._already_restored(parent, name, entries, info):
                self.skipped += 1
                self.written += 1
                return
            fd = self._unnamed_file(parent)
            if fd is not None:
                # written unnamed, linked under its name once complete: what the temp name and
                # rename below give, at two thirds of the cost per file, and a killed restore
                # leaves no temp file behind
                try:
                    write_content(entries, fd, self.tmp_dir)
                    self._meta(fd, info)
                    self._link(fd, parent, name)
                finally:
                    os.close(fd)
                self.written += 1
                return
            tmp = _TEMP_PREFIX + os.urandom(6).hex().encode()
            fd = os.open(tmp, _NEW_FILE_FLAGS, 0o600, dir_fd=parent)
            try:
                write_content(entries, fd, self.tmp_dir)
                self._meta(fd, info)
            except BaseException:
                os.close(fd)
                os.unlink(tmp, dir_fd=parent)
                raise
            os.close(fd)
            try:
                self._clear(parent, name)       # rename replaces anything but a directory
            except BaseException:
                os.unlink(tmp, dir_fd=parent)
                raise
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

    @staticmethod
    def _link(fd, parent, name):
        """Give the unnamed file ``fd`` its name, replacing what has it (the link is tried
        first: in a new target nothing has, and a look before every link costs a syscall)."""
        source = f"/proc/self/fd/{fd}"
        try:
            os.link(source, name, dst_dir_fd=parent, follow_symlinks=True)
        except FileExistsError:
            TreeWriter._clear(parent, name)
            os.link(source, name, dst_dir_fd=parent, follow_symlinks=True)

    def _unnamed_file(self, parent):
        """A new file in ``parent`` that has no name yet (O_TMPFILE), or None where that cannot
        be had (a filesystem or kernel without it, no /proc to link it through): then files go
        through a temp name."""
        if self.unnamed is False:
            return None
        try:
            fd = os.open(".", _UNNAMED_FLAGS, 0o600, dir_fd=parent)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
            self.unnamed = False
            return None
        if self.unnamed is None:
            self.unnamed = os.path.exists(f"/proc/self/fd/{fd}")
            if not self.unnamed:
                os.close(fd)
                return None
        return fd

    def _already_restored(self, parent, name, entries, info):
        """Whether ``name`` is already this regular file, metadata and data (see same_content)."""
        try:
            st = os.lstat(name, dir_fd=parent)
        except FileNotFoundError:
            return False
        if (not stat.S_ISREG(st.st_mode) or stat.S_IMODE(st.st_mode) != info.mode
                or max(int(st.st_mtime), 0) != info.mtime):
            return False
        if self.restore_owner and (st.st_uid, st.st_gid) != tuple(self._owner(info)):
            return False
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent)
        except OSError:
            return False
        try:
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                return False        # replaced since the lstat: look no further
            return self.same_content(entries, fd)
        finally:
            os.close(fd)

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
    """duplicity refuses a non-empty restore target (exit 11) unless forced. Returns whether
    the target holds something (restored into with ``force``)."""
    if not os.path.lexists(dest):
        return False
    if os.path.isdir(dest) and not os.path.islink(dest):
        if not os.listdir(dest):
            return False
        if not force:
            raise RestoreError(f"restore target {dest} exists and is not empty; use --force to "
                               "restore into it", ExitCode.RESTORE_TARGET_NOT_EMPTY)
    elif not force:
        raise RestoreError(f"restore target {dest} exists; use --force to replace it",
                           ExitCode.RESTORE_TARGET_NOT_EMPTY)
    return True


# --- a chain at a point in time ----------------------------------------------------------------

def parse_renames(pairs):
    """--rename FROM TO pairs -> {FROM's index: TO's index} for TreeWriter. TO is a place in the
    restore target: a relative path without '..' (duplicity would write '../x' outside it)."""
    renames = {}
    for src, dst in pairs or ():
        old, new = parse_path(src), parse_path(dst)
        if not old:
            raise UserError(f"--rename {src!r} {dst!r}: FROM must name a path in the backup, not its root")
        raw = os.fsencode(dst)
        if not new or raw.startswith(b"/") or b".." in raw.split(b"/") or b"\0" in raw:
            raise UserError(f"--rename {src!r} {dst!r}: TO must be a relative path inside the restore target "
                            "(not empty, not absolute, no '..')")
        renames[old] = new
    return renames


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


def _volume_name(sess, s, n):
    """The name volume ``n`` of set ``s`` has at the target (said of one that is missing)."""
    gpgsm = (s.manifest or "").endswith(".p7m")     # a set written with --use-gpgsm
    suffix = (".p7m" if gpgsm else ".gpg") if s.encrypted else ".gz" if s.compressed else ""
    times = dict(time=s.end_time) if s.type == "full" else dict(start_time=s.start_time, end_time=s.end_time)
    return naming.volume_name(n, suffix=suffix, prefix=sess.opts.names, **times)


def _volumes_of(sess, s, prefix=(), strict=True):
    """VolumeRefs of the volumes of set ``s`` that can hold ``prefix``; ``strict``: a volume
    missing from the target raises."""
    man = sess.manifest(s)
    numbers = sorted(man.volumes) if not prefix else man.volumes_containing(prefix)
    out = []
    for n in numbers:
        name = s.volumes.get(n)
        if name is None and strict:
            raise BackendNotFound(f"volume {n} of the backup set of {timespec.to_iso(s.end_time)} "
                                  f"({_volume_name(sess, s, n)}) is missing from the target")
        out.append(VolumeRef(name or _volume_name(sess, s, n), man.volumes[n].hashes.get("SHA1"),
                             man.volumes[n], name is not None))
    return out


def _strip_prefix(members, prefix):
    n = len(prefix)
    for item in members:
        if isinstance(item, LostVolume):
            yield item              # its range stays in full indexes
            continue
        m, read = item
        if m.index[:n] != prefix:
            continue
        m.index = m.index[n:]
        if m.info is not None:
            m.info.index = m.index
        yield m, read


# --- what a damaged chain still holds ------------------------------------------------------------

# a signature file that cannot be read (the cache's gzip, the tar inside)
_SIGNATURE_READ_ERRORS = (CorruptArchive, EOFError, zlib.error, OSError)


class SetSignatures:
    """One set's signature file (sigtar), read only when needed: which paths a lost volume
    held, and the stored signature of a file (asked in path order). Both say None when the file
    cannot be had or read (``problem`` says why)."""

    def __init__(self, sess, s):
        self.sess = sess
        self.set = s
        self.problem = None
        self._path = None
        self._file = None
        self._members = None
        self._head = None

    def _local(self):
        if self._path is None and self.problem is None:
            try:
                self._path = self.sess.signature_paths([self.set])[0]
            except (ManifestError, BackendError, CryptoError, CorruptArchive) as e:
                self.problem = str(e)
        return self._path

    def _read(self, f):
        previous = None
        for m, read in archive.read_members(f, what=f"signature file {self.set.signature}"):
            if previous is not None and m.index <= previous:
                raise CorruptArchive(f"signature file {self.set.signature} lists {_shown(m.index)!r} out of order")
            previous = m.index
            yield m, read

    def between(self, first, last, prefix=()):
        """[(index, kind, type)] of the set's paths from ``first`` to ``last`` (full indexes,
        both included) below ``prefix``; kind is signature, snapshot or deleted."""
        path = self._local()
        if path is None:
            return None
        n = len(prefix)
        out = []
        try:
            with gzip.open(path, "rb") as f:
                for m, _read in self._read(f):
                    if m.index > last:
                        break
                    if m.index >= first and m.index[:n] == prefix:
                        out.append((m.index, m.prefix, m.info.type if m.info is not None else None))
        except _SIGNATURE_READ_ERRORS as e:
            self.problem = f"signature file {self.set.signature} cannot be read: {e}"
            return None
        return out

    def signature(self, index):
        """The stored librsync signature of the regular file ``index`` (full), or None."""
        if self._members is None:
            path = self._local()
            if path is None or self._file is not None:
                return None
            self._file = gzip.open(path, "rb")
            self._members = self._read(self._file)
        try:
            while True:
                if self._head is None:
                    self._head = next(self._members, None)
                    if self._head is None:
                        return None
                m, read = self._head
                if m.index > index:
                    return None
                self._head = None
                if m.index == index:
                    return read() if m.prefix == "signature" else None
        except _SIGNATURE_READ_ERRORS:
            self._members = iter(())
            return None

    def close(self):
        if self._file is not None:
            self._file.close()


def same_signature(fd, stored):
    """Whether the data of the open file ``fd`` has the librsync signature ``stored`` (a
    sigtar's): computed with the stored block length, equal signatures mean the same number of
    blocks and every block's rolling and strong sums equal. A kind of signature cairn does not
    compute is no match."""
    if stored is None or len(stored) < 12:
        return False
    magic, block_len, strong_len = (int.from_bytes(stored[i:i + 4], "big") for i in (0, 4, 8))
    if (magic != librsync.RS_MD4_SIG_MAGIC or strong_len != librsync.STRONG_LEN
            or not 0 < block_len <= librsync.MAX_BLOCK_LEN):
        return False
    blocks, rest = divmod(len(stored) - 12, 4 + strong_len)
    size = os.fstat(fd).st_size
    if rest or not ((blocks - 1) * block_len < size <= blocks * block_len if blocks else size == 0):
        return False
    pos = 0
    with librsync.SignatureJob(block_len) as job:
        while True:
            data = os.read(fd, 1 << 20)
            if not data:
                break
            out = job.update(data)
            if stored[pos:pos + len(out)] != out:
                return False
            pos += len(out)
        return stored[pos:] == job.finish()


class SameContent:
    """TreeWriter's ``same_content`` over an interrupted restore: a file holds the entry's
    data when it has the signature the newest entry's set stored for it."""

    def __init__(self, signatures, prefix=()):
        self.signatures = signatures
        self.prefix = prefix

    def __call__(self, entries, fd):
        newest = entries[-1]
        return same_signature(fd, self.signatures[newest.stream.order].signature(self.prefix + newest.index))


_LOST_WHAT = {"signature": "data", "deleted": "deleted"}


class Losses:
    """What a restore could not use: ``volumes`` [(LostVolume, listed, why not)] and ``paths``
    (LostEntry, in path order) whose newest version needed one of them.

    What a lost path was, from the signatures: ``data`` (a file's snapshot or delta, or part
    of one), ``metadata`` (a directory: what survived below it is restored, the directory
    itself is left as made), ``entry`` (a symlink, fifo or device), ``deleted`` (its deletion:
    the older version is not restored), ``unknown`` (the set's signatures could not be read).
    """

    def __init__(self, signatures, prefix=()):
        self.signatures = signatures
        self.prefix = prefix
        self.volumes = []
        self.paths = []

    def volume_lost(self, volume):
        """_EntryStream's on_lost: the LostEntries of the paths the set had in ``volume``."""
        sigs = self.signatures[volume.order]
        listed = sigs.between(volume.first, volume.last, self.prefix)
        self.volumes.append((volume, listed is not None, sigs.problem))
        if listed is None:
            return None
        n = len(self.prefix)
        return [LostEntry(index[n:], volume,
                          _LOST_WHAT.get(kind) or ("metadata" if type_ == DIR else "entry"))
                for index, kind, type_ in listed]

    def lost_paths(self):
        return [{"path": _shown(self.prefix + e.index), "volume": e.volume.name, "what": e.what}
                for e in self.paths]

    def lost_volumes(self):
        out = []
        for v, listed, problem in self.volumes:
            d = {"volume": v.name, "reason": v.reason, "first_path": _shown(v.first),
                 "last_path": _shown(v.last), "paths_listed": listed}
            if not listed:
                d["reason"] += f"; the paths it held cannot be listed ({problem})"
            out.append(d)
        return out


# --- reading and writing a chain ---------------------------------------------------------------

def chain_entries(sess, sets, prefix, fetcher, on_warning, losses=None):
    """(index, [SetEntry...], None) or (index, None, LostEntry) of the chain's sets merged by
    path, below ``prefix`` (indexes relative to it), read only from the volumes that can hold
    it. Without ``losses`` the first volume that cannot be used raises; with it, the volume
    is recorded there and the paths that needed it come as LostEntries."""
    iters = []
    for s in sets:
        refs = _volumes_of(sess, s, prefix, strict=losses is None)
        members = started(set_members(fetcher, refs) if losses is None
                          else lenient_set_members(fetcher, refs, on_warning))
        iters.append(_strip_prefix(members, prefix) if prefix else members)
    return merged_entries(iters, on_warning, prefix=prefix,
                          on_lost=None if losses is None else losses.volume_lost)


def each_entry(sess, sets, prefix, handle, on_warning, losses=None):
    """Call ``handle(index, entries)`` for every path of the chain's sets below ``prefix``
    (restore writes them, verify compares them); the fetcher's threads end with it. With
    ``losses`` (restore), the paths that needed a lost volume go to ``losses.paths`` instead,
    also when that shows only while the entry is read; without (verify), it raises."""
    fetcher = VolumeFetcher(sess.backend, sess.crypto, sess.tmpdir, streams=len(sets))
    try:
        for index, entries, lost in chain_entries(sess, sets, prefix, fetcher, on_warning, losses):
            if lost is not None:
                losses.paths.append(lost)
                continue
            try:
                handle(index, entries)
            except _VolumeLost as e:
                if losses is None:
                    raise
                losses.paths.append(LostEntry(index, e.volume, "data"))
    finally:
        fetcher.close()


def restore_sets(sess, sets, prefix, writer, on_warning, progress=None, losses=None, on_file=None):
    """Write the chain's entries below ``prefix`` through ``writer`` (a TreeWriter).
    ``on_file(relpath, type)``, given, hears of each path written below the target's root."""
    def write(index, entries):
        interrupted = signal_received()     # one that a finalizer swallowed still stops the restore
        if interrupted is not None:
            raise interrupted
        writer.write(index, entries)
        if on_file is not None and index and entries[0].kind != "deleted":
            on_file(b"/".join(writer.renamed(index)), entries[-1].info.type)
        if progress:
            progress(writer.written)
    try:
        each_entry(sess, sets, prefix, write, on_warning, losses)
        writer.close()
    finally:
        writer.discard()


def restore_chain(sess, sets, prefix, dest, *, force=False, restore_owner=None, numeric_owner=False,
                  on_warning=None, progress=None, on_file=None, rename=None):
    """Restore ``sets`` below ``prefix`` into ``dest``, going on past volumes that cannot be
    used: returns (TreeWriter, Losses). Restoring into a target that already holds something
    (``force``) keeps the files an interrupted restore completed (TreeWriter.same_content)."""
    resuming = check_target(dest, force)
    signatures = [SetSignatures(sess, s) for s in sets]
    try:
        writer = TreeWriter(dest, restore_owner=restore_owner, numeric_owner=numeric_owner,
                            whole_tree=not prefix, tmp_dir=sess.tmpdir,
                            same_content=SameContent(signatures, prefix) if resuming else None,
                            rename=rename)
        losses = Losses(signatures, prefix)
        restore_sets(sess, sets, prefix, writer, on_warning or (lambda w: None), progress, losses, on_file)
    finally:
        for sig in signatures:
            sig.close()
    return writer, losses
