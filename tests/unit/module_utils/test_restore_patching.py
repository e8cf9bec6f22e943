# SPDX-License-Identifier: GPL-3.0-or-later
"""Restoring a file from a snapshot and deltas in memory: right bytes, and one copy of the
basis at the peak rather than two."""
import os
import random
import tracemalloc
from types import SimpleNamespace

import pytest

from cairn import librsync, restore
from cairn.errors import CorruptArchive
from cairn.restore import _collect, write_content
from test_librsync import repeated_blocks

MiB = 1 << 20


def _chunks(data, size=65536):
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("claimed", [10 * MiB, 10 * MiB - 5, 10 * MiB + 5, 0])
def test_collect_returns_the_bytes_whatever_the_header_claimed(claimed):
    data = random.Random(1).randbytes(10 * MiB)
    assert bytes(_collect(iter(_chunks(data)), claimed)) == data


def test_collect_holds_the_file_once():
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        # fresh pieces, as read from a volume
        buf = _collect((bytes(MiB) for _piece in range(16)), 16 * MiB)
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(buf) == 16 * MiB
    assert peak < 24 * MiB          # b"".join over a generator peaks at twice the file (32 MiB)


class _Entry:
    """A SetEntry stand-in: its content comes as chunks, once."""

    def __init__(self, kind, data, size):
        self.kind = kind
        self.info = SimpleNamespace(size=size)
        self._data = data

    def chunks(self):
        data = self._data       # pieces made as they are read, as from a volume
        return (data[i:i + 65536] for i in range(0, len(data), 65536))


def test_snapshot_and_two_deltas_give_the_newest_version(tmp_path):
    rnd = random.Random(2)
    v1 = rnd.randbytes(3 * MiB)
    v2 = v1[:MiB] + rnd.randbytes(4096) + v1[MiB:]
    v3 = v2[:-1000] + b"tail"
    d2 = librsync.delta(librsync.signature(v1), v2)
    d3 = librsync.delta(librsync.signature(v2), v3)
    out = tmp_path / "f"
    entries = [_Entry("snapshot", v1, len(v1)), _Entry("diff", d2, len(v2)), _Entry("diff", d3, len(v3))]
    with open(out, "wb") as f:
        write_content(entries, f.fileno(), str(tmp_path))
    assert out.read_bytes() == v3


@pytest.mark.parametrize("claimed", [0, 10 ** 15])
def test_a_basis_past_the_memory_limit_spills_to_an_unnamed_temp_file(tmp_path, claimed):
    """Memory holds at most the limit whatever the header claims; the rest goes to disk."""
    data = random.Random(3).randbytes(3 * MiB)
    basis = _collect(iter(_chunks(data)), claimed, str(tmp_path), limit=MiB)
    try:
        assert not isinstance(basis, bytearray)
        assert basis.read() == data
        assert os.listdir(tmp_path) == []          # unnamed: nothing to leave behind
    finally:
        basis.close()


def test_a_false_claim_allocates_nothing_beyond_the_limit():
    tracemalloc.start()
    try:
        buf = _collect(iter([b"x" * 10]), 10 ** 15, None, limit=MiB)
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert bytes(buf) == b"x" * 10 and peak < 2 * MiB


def test_two_bases_in_memory_stay_within_the_limit_together(tmp_path, monkeypatch):
    """A file patched twice holds one version while it builds the next: both together, not
    each, are within the limit (else two 120 MiB versions pass the 256 MiB RSS bound)."""
    monkeypatch.setattr(restore, "MEM_BASIS_LIMIT", 4 * MiB)
    rnd = random.Random(4)
    v1 = rnd.randbytes(3 * MiB)
    v2 = v1[:MiB] + rnd.randbytes(4096) + v1[MiB:]
    v3 = v2[:2 * MiB] + b"third" + v2[2 * MiB:]
    entries = [_Entry("snapshot", v1, len(v1)),
               _Entry("diff", librsync.delta(librsync.signature(v1), v2), len(v2)),
               _Entry("diff", librsync.delta(librsync.signature(v2), v3), len(v3))]
    out = tmp_path / "f"
    tracemalloc.start()
    try:
        with open(out, "wb") as f:
            write_content(entries, f.fileno(), str(tmp_path))
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.read_bytes() == v3
    assert peak < 5 * MiB, f"{peak / MiB:.1f} MiB held: both versions in memory"


def _restored(tmp_path, snapshot, deltas):
    """The file write_content makes of ``snapshot`` and [(delta, version it makes)]."""
    entries = [_Entry("snapshot", snapshot, len(snapshot))]
    entries += [_Entry("diff", d, len(version)) for d, version in deltas]
    out = tmp_path / "f"
    with open(out, "w+b") as f:
        write_content(entries, f.fileno(), str(tmp_path))
    return out.read_bytes()


class _NoPatchJob:
    def __init__(self, *_args):
        raise AssertionError("librsync's patch was used for a delta that applies in place")


def test_a_delta_in_place_is_written_over_the_basis_without_librsync(tmp_path, monkeypatch):
    """Overwrites, then growth, then a cut: each delta goes over the file being restored."""
    rnd = random.Random(4)
    v1 = rnd.randbytes(3 * MiB)
    v2 = bytearray(v1)
    v2[MiB:MiB + 65536] = rnd.randbytes(65536)
    v2 += rnd.randbytes(5000)
    v3 = bytes(v2[:2 * MiB])
    d2 = librsync.delta(librsync.signature(v1), bytes(v2))
    d3 = librsync.delta(librsync.signature(bytes(v2)), v3)
    monkeypatch.setattr(librsync, "PatchJob", _NoPatchJob)
    assert _restored(tmp_path, v1, [(d2, bytes(v2))]) == bytes(v2)
    assert _restored(tmp_path, v1, [(d2, bytes(v2)), (d3, v3)]) == v3


def _changed_in_place(v1, seed):
    v2 = bytearray(v1)
    v2[MiB:MiB + 65536] = random.Random(seed).randbytes(65536)
    return bytes(v2)


def test_a_delta_that_copies_repeated_blocks_is_applied_over_the_basis(tmp_path, monkeypatch):
    """The copies from other offsets read the file being restored (it is opened for reading
    too), never data a literal or another copy changed: the newest version, without librsync."""
    v1 = repeated_blocks(3 * MiB, 2048, seed=7)
    v2 = _changed_in_place(v1, seed=8)
    v3 = _changed_in_place(v2[:2 * MiB] + bytes(8192), seed=9)
    d2 = librsync.delta(librsync.signature(v1, 2048), v2)
    d3 = librsync.delta(librsync.signature(v2, 2048), v3)
    assert librsync.in_place_edits(d2).moves and librsync.in_place_edits(d3).moves
    monkeypatch.setattr(librsync, "PatchJob", _NoPatchJob)
    assert _restored(tmp_path, v1, [(d2, v2)]) == v2
    assert _restored(tmp_path, v1, [(d2, v2), (d3, v3)]) == v3


def test_tree_writer_applies_such_a_delta_to_the_file_it_restores(tmp_path):
    """TreeWriter's unnamed file (and its temp-name fallback) can be read back for the copies."""
    from cairn.archive import DIR, REG, PathInfo

    class Entry(_Entry):
        def __init__(self, kind, data, index, ftype):
            super().__init__(kind, data, len(data))
            self.info = PathInfo(index, ftype, 0o644, os.getuid(), os.getgid(), "", "", 1_700_000_000, len(data))

    v1 = repeated_blocks(3 * MiB, 2048, seed=10)
    v2 = _changed_in_place(v1, seed=11)
    d2 = librsync.delta(librsync.signature(v1, 2048), v2)
    assert librsync.in_place_edits(d2).moves
    w = restore.TreeWriter(str(tmp_path / "t"), restore_owner=False)
    w.write((), [Entry("snapshot", b"", (), DIR)])
    w.write((b"f",), [Entry("snapshot", v1, (b"f",), REG), Entry("diff", d2, (b"f",), REG)])
    w.unnamed = False       # the next file through a temp name and a rename
    w.write((b"g",), [Entry("snapshot", v1, (b"g",), REG), Entry("diff", d2, (b"g",), REG)])
    w.close()
    assert (tmp_path / "t" / "f").read_bytes() == v2 == (tmp_path / "t" / "g").read_bytes()


def test_deltas_past_the_read_ahead_limit_go_through_librsync_whole(tmp_path, monkeypatch):
    """What was read ahead is not lost when the deltas are too big to hold: the patch gets
    all of them, from the first byte."""
    rnd = random.Random(5)
    v1 = rnd.randbytes(2 * MiB)
    v2 = v1[:100] + rnd.randbytes(MiB) + v1[100 + MiB:]           # in place, a 1 MiB literal
    v3 = v2[:5000] + b"inserted" + v2[5000:]                       # shifted: not in place
    d2 = librsync.delta(librsync.signature(v1), v2)
    d3 = librsync.delta(librsync.signature(v2), v3)
    monkeypatch.setattr(restore, "DELTAS_AHEAD_LIMIT", 256 << 10)
    assert _restored(tmp_path, v1, [(d2, v2)]) == v2
    assert _restored(tmp_path, v1, [(d2, v2), (d3, v3)]) == v3


def test_a_delta_in_place_over_a_shorter_basis_is_refused(tmp_path):
    v1 = random.Random(6).randbytes(MiB)
    d = librsync.delta(librsync.signature(v1), v1 + b"more")
    with open(tmp_path / "f", "wb") as f, pytest.raises(CorruptArchive, match="basis file is only"):
        write_content([_Entry("snapshot", v1[:1000], 1000), _Entry("diff", d, MiB + 4)], f.fileno(),
                      str(tmp_path))


def test_a_crafted_move_from_past_the_basis_is_refused_before_anything_is_written(tmp_path):
    """A delta (crafted, or for another basis) whose copy to another offset reads past the end
    of the basis: CorruptArchive (a documented exit code), and the restored file is the basis
    as written, untouched by the delta's literal."""
    basis = random.Random(12).randbytes(1000)
    delta = (b"rs\x026" + bytes([0x4A]) + (0).to_bytes(2, "big") + (10).to_bytes(2, "big")
             + bytes([0x4A]) + (5000).to_bytes(2, "big") + (10).to_bytes(2, "big")
             + bytes([3]) + b"new" + b"\0")
    assert librsync.in_place_edits(delta).moves == [(10, 5000, 10)]
    out = tmp_path / "f"
    with open(out, "w+b") as f, pytest.raises(CorruptArchive, match="basis file is only 1000 bytes"):
        write_content([_Entry("snapshot", basis, 1000), _Entry("diff", delta, 23)], f.fileno(), str(tmp_path))
    assert out.read_bytes() == basis
