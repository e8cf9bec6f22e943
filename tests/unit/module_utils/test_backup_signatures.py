# SPDX-License-Identifier: GPL-3.0-or-later
"""A big file's new signature taken from its delta (backup._SigFromDelta): the entries of the
blocks the delta copies come from the old signature, the others are read again, and a block
that reads back different (the file written to during the backup) leaves a signature that
makes the next backup store the file whole. Real librsync, real files."""
import contextlib
import glob
import gzip
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from cairn import archive, backup, librsync, pipeline
from cairn.crypto import CryptoOptions
from cairn.options import BackupOptions, TargetOptions

MIB = 1 << 20


def _pass(path, old_sig, block):
    """What DiffWriter._content does with a file: one read, the delta streamed out; returns
    the open descriptor, the collector and the bytes read."""
    fd = os.open(path, os.O_RDONLY)
    sig = backup._SigFromDelta(block, old_sig, fd)
    with librsync.DeltaJob(old_sig) as job:
        for data in backup._read_pieces(fd, sig, job, os.fstat(fd).st_size):
            sig.delta_out(data)
    return fd, sig


def _files(tmp_path, kind="in place", size=3 * MIB + 777):
    """(old, new, path of new): ``in place``: 5,000 bytes changed in the middle and 3,000
    added at the end (blocks copied or literal); ``insert``: 100 bytes inserted at 1 MiB
    (every later block copied from another offset: read again)."""
    rnd = random.Random(3)
    old = rnd.randbytes(size)
    new = bytearray(old)
    if kind == "in place":
        new[MIB:MIB + 5000] = rnd.randbytes(5000)
        new += rnd.randbytes(3000)
    else:
        new[MIB:MIB] = rnd.randbytes(100)
    path = tmp_path / "f.bin"
    path.write_bytes(new)
    return old, bytes(new), path


def _result(path, old, new, change=None):
    """The signature _SigFromDelta gives after one pass over ``path``, ``change(path)`` done
    between the pass and the signature; and the sizes of the reads it made again."""
    block = librsync.block_len_for(len(new))
    reads = []
    pread = os.pread

    def counting(fd, n, at):
        reads.append(n)
        return pread(fd, n, at)
    fd, sig = _pass(path, librsync.signature(old, block), block)
    try:
        if change is not None:
            change(path)
        backup.os.pread = counting
        return sig.result(), reads, block
    finally:
        backup.os.pread = pread
        os.close(fd)


def _write_at(offset):
    def change(path):
        with open(path, "r+b") as f:
            f.seek(offset)
            f.write(b"written during the backup")
    return change


@pytest.mark.parametrize("kind", ["in place", "insert"])
def test_the_signature_is_librsyncs(tmp_path, kind):
    old, new, path = _files(tmp_path, kind)
    result, reads, block = _result(path, old, new)
    assert result == librsync.signature(new, block)
    if kind == "in place":      # copied or literal: nothing read again
        assert reads == []
    else:                       # the blocks from the insertion on
        assert 2 * MIB <= sum(reads) <= len(new) - MIB + block


@pytest.mark.parametrize("change", [_write_at(2 * MIB), lambda path: os.truncate(path, MIB)])
def test_a_block_read_again_that_changed_gives_a_signature_of_no_blocks(tmp_path, change):
    old, new, path = _files(tmp_path, "insert")
    result, _reads, block = _result(path, old, new, change)
    assert result == librsync.signature_header(block)
    # the next backup's delta against it is the whole file, whatever the file holds then
    current = path.read_bytes()
    delta = librsync.delta(result, current)
    assert librsync.patch(b"", delta) == current


@pytest.mark.parametrize("offset", [2 * MIB, MIB + 10])
def test_a_block_copied_or_literal_written_to_after_the_read_keeps_what_the_delta_saw(tmp_path, offset):
    """A block taken from the old signature or signed from the delta's literal data describes
    the bytes the archive holds: a later write there is the next backup's change."""
    old, new, path = _files(tmp_path, "in place")
    result, reads, block = _result(path, old, new, _write_at(offset))
    assert result == librsync.signature(new, block) and reads == []


def _sig_of(cache, name):
    """The signature a set's sigtar in ``cache`` holds for ``name`` (bytes)."""
    (path,) = glob.glob(os.path.join(cache, "*", "duplicity-new-signatures.*.sigtar.gz"))
    with gzip.open(path) as f:
        for m, read in archive.read_members(f):
            if m.index == (name,):
                return read()
    raise AssertionError(f"{name!r} not in {path}")


def test_an_incremental_backup_takes_the_signature_from_the_delta(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    old, new, _path = _files(tmp_path)
    (src / "big.bin").write_bytes(old)
    (tmp_path / "tmp").mkdir()
    target = TargetOptions(url=f"file://{tmp_path}/target", crypto=CryptoOptions(mode="none"),
                           archive_dir=str(tmp_path / "cache"), tempdir=str(tmp_path / "tmp"))
    pipeline.backup(target, BackupOptions(source=str(src), volsize=1, mode="full"))
    time.sleep(1.05)                          # set times have second resolution
    (src / "big.bin").write_bytes(new)
    calls = []
    real = librsync.signature_from_delta
    monkeypatch.setattr(librsync, "signature_from_delta", lambda *a: calls.append(1) or real(*a))
    result = pipeline.backup(target, BackupOptions(source=str(src), volsize=1, mode="incremental"))
    assert result["type"] == "incremental" and result["changed_files"] == 1
    assert calls == [1]
    assert _sig_of(tmp_path / "cache", b"big.bin") == librsync.signature(new, librsync.block_len_for(len(new)))


# --- a big file's delta in windows -------------------------------------------------------------

def _windowed(path, old, executor, block=None):
    """_windowed_delta over ``path`` as DiffWriter runs it: (delta, signature)."""
    block = block or librsync.block_len_for(os.path.getsize(path))
    old_sig = librsync.signature(old, block)
    fd = os.open(path, os.O_RDONLY)
    try:
        sig = backup._SigFromDelta(block, old_sig, fd, executor)
        parts = []
        for out in backup._windowed_delta(fd, old_sig, block, executor, sig):
            sig.delta_out(out)
            parts.append(bytes(out))
        return b"".join(parts), sig.result()
    finally:
        os.close(fd)


def _big(tmp_path, kind):
    rnd = random.Random(4)
    old = rnd.randbytes(3 * backup.DELTA_WINDOW + 12345)
    new = bytearray(old)
    if kind == "in place":
        new[backup.DELTA_WINDOW - 100:backup.DELTA_WINDOW + 100] = rnd.randbytes(200)
    elif kind == "insert":
        new[5000:5000] = rnd.randbytes(77)
    elif kind == "cut":
        del new[2 * backup.DELTA_WINDOW:]           # ends on a window: the last one is empty
    else:
        new = rnd.randbytes(len(old))
    path = tmp_path / "big.bin"
    path.write_bytes(new)
    return old, bytes(new), path


@pytest.mark.parametrize("kind", ["in place", "insert", "cut", "new"])
@pytest.mark.parametrize("threads", [1, 2])
def test_a_windowed_delta_is_one_delta_of_the_file(tmp_path, kind, threads):
    """Whatever the change, librsync applies the windows' commands as one delta to the new file,
    and the signature beside it is the new file's; a change in place costs no more than one
    delta of the whole file does."""
    old, new, path = _big(tmp_path, kind)
    block = librsync.block_len_for(len(new))
    with ThreadPoolExecutor(1) if threads == 2 else contextlib.nullcontext() as executor:
        delta, sig = _windowed(path, old, executor)
    assert librsync.patch(old, delta) == new
    assert sig == librsync.signature(new, block)
    whole = librsync.delta(librsync.signature(old, block), new)
    if kind in ("in place", "cut"):
        assert len(delta) <= len(whole) + 64
    elif kind == "insert":        # data shifted: a window's last part block is literal
        assert len(delta) <= len(whole) + 4 * block


def test_a_windowed_delta_ends_at_the_first_short_window(tmp_path, monkeypatch):
    """A file that grows while it is read: the window read after the short one (beside it, in
    the other thread) is not used, so the delta is of one consistent prefix, never of two
    pieces with a hole between them."""
    rnd = random.Random(5)
    block = librsync.block_len_for(2 * backup.DELTA_WINDOW)
    window = backup.DELTA_WINDOW // block * block
    old = rnd.randbytes(2 * window + 12345)
    new = old[:100] + b"changed" + old[107:]
    path = tmp_path / "big.bin"
    path.write_bytes(new)
    real = backup._DeltaLane.window
    grown = threading.Event()
    offsets = []

    def growing(lane, fd, offset):
        offsets.append(offset)
        if offset == 3 * window:            # the other thread, after the short window
            assert grown.wait(10)
            result = real(lane, fd, offset)
            assert result[2] > 0            # it did read what was added
            return result
        result = real(lane, fd, offset)
        if offset == 2 * window:            # the short one: the file grows now
            with open(path, "ab") as f:
                f.write(b"grown while read" * 100000)
            grown.set()
        return result
    monkeypatch.setattr(backup._DeltaLane, "window", growing)
    with ThreadPoolExecutor(1) as executor:
        delta, sig = _windowed(path, old, executor, block)
    assert sorted(offsets) == [0, window, 2 * window, 3 * window]
    assert librsync.patch(old, delta) == new
    assert sig == librsync.signature(new, block)


def test_a_windowed_delta_is_the_same_every_time(tmp_path):
    """A resumed backup skips the chunks its kept volumes hold: the delta must come out the
    same, byte for byte, in the resumed run, with or without the second thread."""
    old, _new, path = _big(tmp_path, "insert")
    with ThreadPoolExecutor(1) as executor:
        first, _sig = _windowed(path, old, executor)
    second, _sig = _windowed(path, old, None)
    assert first == second
