# SPDX-License-Identifier: GPL-3.0-or-later
"""The librsync binding against the real library and the rdiff command line tool."""
import collections
import gc
import io
import os
import random
import shutil
import subprocess
import sys
import textwrap
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cairn import librsync
from cairn.errors import CairnError, CorruptArchive

RDIFF = shutil.which("rdiff")
needs_rdiff = pytest.mark.skipif(RDIFF is None, reason="rdiff is not installed (Debian: rdiff)")

MODULE_UTILS = os.path.dirname(os.path.dirname(librsync.__file__))
KIB = 1024
MIB = 1024 * 1024


def rand(n, seed=0):
    return random.Random(seed).randbytes(n)


def rdiff(*args):
    subprocess.run([RDIFF, *map(str, args)], check=True, capture_output=True)


def rdiff_signature(tmp_path, data, block_len, name="old"):
    src, sig = tmp_path / f"{name}.bin", tmp_path / f"{name}.rdiff-sig"
    src.write_bytes(data)
    rdiff("signature", "-R", "rollsum", "-H", "md4", "-S", "8", "-b", block_len, src, sig)
    return sig.read_bytes()


def pieces(data, seed, low=1, high=100 * KIB):
    """``data`` cut at random points, 1 byte .. 100 KiB per piece."""
    rng = random.Random(seed)
    pos = 0
    while pos < len(data):
        n = rng.randint(low, high)
        yield data[pos:pos + n]
        pos += n


def run_job(job, chunks):
    out = [job.update(c) for c in chunks]
    out.append(job.finish())
    return b"".join(out)


def edits(old, seed=1):
    """(name, new) pairs: the kinds of change a backup sees between two versions of a file."""
    rng = random.Random(seed)
    mid = len(old) // 2
    return [
        ("identical", old),
        ("edit-middle", old[:mid] + b"<<changed in the middle>>" + old[mid + 25:]),
        ("insert-middle", old[:mid] + rng.randbytes(3333) + old[mid:]),
        ("delete-middle", old[:mid] + old[mid + 7000:]),
        ("append", old + rng.randbytes(12345)),
        ("prepend", b"header!" + old),
        ("truncate", old[:len(old) // 3]),
        ("empty", b""),
        ("different", rng.randbytes(len(old) + 1000)),
    ]


# --- block length ---------------------------------------------------------------------------

@pytest.mark.parametrize("size,expected", [
    (0, 512), (1, 512), (511, 512), (262_144, 512), (263_168, 512), (263_169, 1024),
    (200_000, 512), (1_048_576, 1024), (3_100_000, 2048), (4_198_400, 2048), (4_198_401, 2560),
    (10 ** 12, 1_000_448),
])
def test_block_len_for_duplicity_3_rule(size, expected):
    assert librsync.block_len_for(size) == expected


def test_block_len_for_cap():
    assert librsync.block_len_for(3_100_000, 1024) == 1024
    assert librsync.block_len_for(3_100_000, 2048) == 2048
    assert librsync.block_len_for(3_100_000, 4096) == 2048      # a cap, never a floor
    assert librsync.block_len_for(200_000, 4096) == 512
    assert librsync.block_len_for(10 ** 12, 0) == 1_000_448     # 0 = no cap (duplicity default)
    assert librsync.block_len_for(10 ** 12, 1536) == 1536


# --- signatures -----------------------------------------------------------------------------

@needs_rdiff
@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, 2048, 2048 * 7, 100_000, 3_100_000])
@pytest.mark.parametrize("block_len", [512, 700, 2048])
def test_signature_identical_to_rdiff(tmp_path, size, block_len):
    data = rand(size, seed=size)
    ours = librsync.signature(data, block_len)
    assert ours == rdiff_signature(tmp_path, data, block_len)
    assert ours[:4] == bytes.fromhex("72730136")
    assert int.from_bytes(ours[4:8], "big") == block_len
    assert int.from_bytes(ours[8:12], "big") == 8
    assert len(ours) == 12 + 12 * -(-size // block_len)


@needs_rdiff
def test_signature_default_block_len_is_duplicity_rule(tmp_path):
    data = rand(3_100_000, seed=3)
    ours = librsync.signature(data)
    assert int.from_bytes(ours[4:8], "big") == 2048
    assert ours == rdiff_signature(tmp_path, data, 2048)
    assert librsync.signature(b"") == bytes.fromhex("727301360000020000000008")


def test_signature_streaming_matches_one_shot():
    data = rand(1_500_000, seed=4)
    expected = librsync.signature(data, 1024)
    for seed in range(3):
        assert run_job(librsync.SignatureJob(1024), pieces(data, seed)) == expected
    # other buffer types, empty pieces in between, one byte at a time at the start
    job = librsync.SignatureJob(1024)
    out = [job.update(b""), job.update(bytearray(data[:10]))]
    out += [job.update(data[i:i + 1]) for i in range(10, 2000)]
    out += [job.update(b""), job.update(memoryview(data)[2000:])]
    out.append(job.finish())
    assert b"".join(out) == expected


def test_signature_job_rejects_bad_block_len():
    for bad in (0, -1, 1 << 31):
        with pytest.raises(ValueError):
            librsync.SignatureJob(bad)


# --- deltas and patches ---------------------------------------------------------------------

@needs_rdiff
@pytest.mark.parametrize("case", [name for name, _data in edits(b"x" * 10)])
def test_our_delta_applied_by_rdiff(tmp_path, case):
    old = rand(600_000, seed=5)
    new = dict(edits(old))[case]
    sig = librsync.signature(old)
    delta = librsync.delta(sig, new)
    assert delta[:4] == bytes.fromhex("72730236")
    (tmp_path / "old").write_bytes(old)
    (tmp_path / "delta").write_bytes(delta)
    rdiff("patch", tmp_path / "old", tmp_path / "delta", tmp_path / "new")
    assert (tmp_path / "new").read_bytes() == new
    assert librsync.patch(old, delta) == new
    if case in ("identical", "edit-middle", "append", "truncate"):
        assert len(delta) < 20_000          # real copy commands, not one big literal


@needs_rdiff
@pytest.mark.parametrize("case", [name for name, _data in edits(b"x" * 10)])
def test_rdiff_delta_applied_by_us(tmp_path, case):
    old = rand(600_000, seed=6)
    new = dict(edits(old, seed=2))[case]
    sig = rdiff_signature(tmp_path, old, 512)
    (tmp_path / "new.bin").write_bytes(new)
    rdiff("delta", tmp_path / "old.rdiff-sig", tmp_path / "new.bin", tmp_path / "delta")
    delta = (tmp_path / "delta").read_bytes()
    # a real file (positional reads on its descriptor)
    with open(tmp_path / "old.bin", "rb") as basis:
        job = librsync.PatchJob(basis)
        assert run_job(job, pieces(delta, seed=7, high=20 * KIB)) == new
    # a file object without a descriptor, and plain bytes
    assert librsync.patch(io.BytesIO(old), delta) == new
    assert librsync.patch(old, delta) == new
    # and our delta against rdiff's signature gives the same kind of result
    assert librsync.patch(old, librsync.delta(sig, new)) == new


@needs_rdiff
def test_delta_accepts_rdiff_default_signatures(tmp_path):
    """librsync 2.x defaults (RabinKarp + BLAKE2) work too: deltas read any signature kind."""
    old = rand(300_000, seed=8)
    new = old[:1000] + b"edit" + old[1000:]
    (tmp_path / "old").write_bytes(old)
    rdiff("signature", tmp_path / "old", tmp_path / "sig")
    sig = (tmp_path / "sig").read_bytes()
    assert sig[:4] != bytes.fromhex("72730136")
    delta = librsync.delta(sig, new)
    assert len(delta) < 5000
    assert librsync.patch(old, delta) == new


def test_round_trip_streaming_matches_one_shot():
    old = rand(2_000_000, seed=9)
    sig = librsync.signature(old)
    sig_streamed = run_job(librsync.SignatureJob(librsync.block_len_for(len(old))), pieces(old, 1))
    assert sig_streamed == sig
    for n, (name, new) in enumerate(edits(old, seed=3)):
        one_shot = librsync.delta(sig, new)
        streamed = run_job(librsync.DeltaJob(sig), pieces(new, seed=10 + n))
        assert streamed == one_shot, name
        patched = run_job(librsync.PatchJob(old), pieces(one_shot, seed=20 + n))
        assert patched == new, name
        assert librsync.patch(old, streamed) == new, name


def test_patch_basis_kinds(tmp_path):
    old = rand(400_000, seed=11)
    new = old[:5000] + old[9000:] + b"tail"
    delta = librsync.delta(librsync.signature(old), new)

    class ReadOnly:             # seek + read only: no readinto, no fileno
        def __init__(self, data):
            self._f = io.BytesIO(data)

        def seek(self, pos, whence=0):
            return self._f.seek(pos, whence)

        def tell(self):
            return self._f.tell()

        def read(self, n=-1):
            return self._f.read(n)

    assert librsync.patch(ReadOnly(old), delta) == new
    assert librsync.patch(bytearray(old), delta) == new
    assert librsync.patch(memoryview(old), delta) == new
    with open(tmp_path / "basis", "w+b") as f:      # unflushed writes are seen
        f.write(old)
        assert librsync.patch(f, delta) == new
    with pytest.raises(TypeError):
        librsync.PatchJob(12345)


def test_patch_output_in_bounded_pieces():
    """A few bytes of delta can stand for megabytes of basis: update_iter keeps pieces small."""
    old = rand(5 * MIB, seed=12)
    delta = librsync.delta(librsync.signature(old), old)
    assert len(delta) < 20
    job = librsync.PatchJob(old)
    got = list(job.update_iter(delta)) + list(job.finish_iter())
    assert b"".join(got) == old
    assert len(got) >= 5 * MIB // librsync.OUT_BUFFER_SIZE
    assert max(map(len, got)) <= librsync.OUT_BUFFER_SIZE


# --- corrupt input --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sample():
    old = rand(300_000, seed=13)
    new = old[:100_000] + rand(5000, seed=14) + old[100_000:]
    sig = librsync.signature(old)
    return old, new, sig, librsync.delta(sig, new)


def corrupt_deltas(delta):
    yield "garbage", rand(1000, seed=15)
    yield "empty", b""
    yield "bad-magic", b"\x72\x73\x02\x37" + delta[4:]
    yield "header-only", delta[:4]
    yield "short-header", delta[:3]
    yield "bogus-command", delta[:4] + b"\x99" + delta[5:]
    yield "trailing-garbage", delta + b"\x00more"
    for cut in (5, 6, 20, 1000, len(delta) // 2, len(delta) - 1):
        yield f"truncated-{cut}", delta[:cut]


def test_corrupt_delta_raises(sample):
    old, new, sig, delta = sample
    for name, bad in corrupt_deltas(delta):
        with pytest.raises(CorruptArchive) as exc:
            librsync.patch(old, bad)
        assert "rsync delta" in str(exc.value), name
        # the same, streamed: the error comes from update() or finish()
        job = librsync.PatchJob(io.BytesIO(old))
        with pytest.raises(CorruptArchive):
            run_job(job, pieces(bad, seed=16, high=4 * KIB))
        with pytest.raises(ValueError):         # a failed job is closed
            job.update(b"more")


def test_corrupt_delta_messages(sample):
    old, new, sig, delta = sample
    with pytest.raises(CorruptArchive, match="magic"):
        librsync.patch(old, b"not a delta at all")
    with pytest.raises(CorruptArchive, match="end of input"):
        librsync.patch(old, delta[:-1])
    with pytest.raises(CorruptArchive, match="after the end"):
        librsync.patch(old, delta + b"x")
    assert CorruptArchive("x").exit_code == 61


def test_delta_copying_beyond_short_basis(sample, tmp_path):
    old, new, sig, delta = sample
    (tmp_path / "short").write_bytes(old[:50_000])
    for basis in (old[:50_000], io.BytesIO(old[:50_000]), open(tmp_path / "short", "rb")):
        with pytest.raises(CorruptArchive, match="basis file"):
            librsync.patch(basis, delta)
        if hasattr(basis, "close"):
            basis.close()


def test_garbage_signature_raises(sample):
    old, new, sig, delta = sample
    bad = [
        b"", b"rs\x016", sig[:11], rand(5000, seed=17), b"\x00" * 24,
        sig[:4] + b"\x00\x00\x00\x00" + sig[8:],            # block length 0
        sig[:4] + b"\xff\xff\xff\xff" + sig[8:],            # block length 4 GiB
        sig[:8] + b"\x00\x00\x00\x63" + sig[12:],           # strong sum length 99
        sig[:8] + b"\x00\x00\x00\x00" + sig[12:],           # strong sum length 0
        sig[:-1], sig[:-5], sig + b"\x01",                  # not whole block entries
        b"\x72\x73\x02\x36" + sig[4:],                      # a delta's magic
    ]
    for b in bad:
        with pytest.raises(CorruptArchive, match="signature"):
            librsync.DeltaJob(b)
        with pytest.raises(CorruptArchive):
            librsync.delta(b, new)
    # a header with no blocks is a valid signature (of an empty file)
    assert librsync.patch(b"", librsync.delta(sig[:12], b"abc")) == b"abc"


# --- callbacks, lifetime, threads -----------------------------------------------------------

class Exploding(io.BytesIO):
    def __init__(self, data, exc):
        super().__init__(data)
        self.exc = exc

    def readinto(self, b):
        raise self.exc


def test_basis_read_errors_are_not_swallowed(sample):
    old, new, sig, delta = sample
    err = OSError(5, "Input/output error")
    with pytest.raises(OSError) as exc:
        librsync.patch(Exploding(old, err), delta)
    assert exc.value is err

    class Stop(BaseException):
        pass

    job = librsync.PatchJob(Exploding(old, Stop()))
    with pytest.raises(Stop):
        run_job(job, [delta])
    with pytest.raises(ValueError):
        job.finish()


class CountingLib:
    """Stands in for the cffi library object and counts the frees."""

    def __init__(self, lib):
        self._lib = lib
        self.freed = collections.Counter()

    def __getattr__(self, name):
        return getattr(self._lib, name)

    def rs_job_free(self, job):
        self.freed["job"] += 1
        return self._lib.rs_job_free(job)

    def rs_free_sumset(self, sumset):
        self.freed["sumset"] += 1
        return self._lib.rs_free_sumset(sumset)


def test_jobs_are_freed(sample, monkeypatch):
    old, new, sig, delta = sample
    librsync._load()
    counting = CountingLib(librsync._lib)
    monkeypatch.setattr(librsync, "_lib", counting)

    librsync.signature(old)                                 # finish() frees
    assert counting.freed == {"job": 1}
    librsync.delta(sig, new)                                # loader + delta job + sumset
    assert counting.freed == {"job": 3, "sumset": 1}
    librsync.patch(old, delta)
    assert counting.freed == {"job": 4, "sumset": 1}

    counting.freed.clear()
    jobs = [librsync.SignatureJob(512), librsync.DeltaJob(sig), librsync.PatchJob(old)]
    jobs[0].update(old[:70_000])
    jobs[1].update(new[:70_000])
    jobs[2].update(delta[:1000])
    assert counting.freed == {"job": 1}                     # only DeltaJob's loader so far
    del jobs                                                # abandoned mid-stream
    gc.collect()
    assert counting.freed == {"job": 4, "sumset": 1}

    counting.freed.clear()
    with librsync.DeltaJob(sig) as job:
        job.update(new[:1000])
    assert counting.freed == {"job": 2, "sumset": 1}
    job.close()                                             # idempotent
    assert counting.freed == {"job": 2, "sumset": 1}
    with pytest.raises(ValueError):
        job.update(b"x")

    counting.freed.clear()
    with pytest.raises(CorruptArchive):
        librsync.PatchJob(old).update(b"garbage!")           # errors free at once
    assert counting.freed == {"job": 1}
    with pytest.raises(CorruptArchive):
        librsync.DeltaJob(sig[:4] + b"\x00\x00\x02\x00\x00\x00\x00\x63" + rand(103 * 7))
    gc.collect()
    assert counting.freed == {"job": 1}                     # rejected before librsync saw it
    counting.freed.clear()
    big = sig[:4] + b"\x00\x00\x02\x00\x00\x00\x00\x08" + rand(12 * 7)   # loads fine
    librsync.DeltaJob(big).close()
    assert counting.freed == {"job": 2, "sumset": 1}


def test_abandoned_iteration_closes_job(sample):
    old, new, sig, delta = sample
    job = librsync.PatchJob(old)
    it = job.update_iter(librsync.delta(sig, old + old))
    next(it)
    it.close()
    with pytest.raises(ValueError):
        job.update(b"x")


def test_threads(sample):
    old, new, sig, delta = sample
    expected_sig, expected_delta = librsync.signature(new), librsync.delta(sig, new)
    results, errors = [], []

    def work():
        try:
            for _round in range(5):
                results.append(librsync.signature(new) == expected_sig
                               and librsync.delta(sig, new) == expected_delta
                               and librsync.patch(old, delta) == new)
                with pytest.raises(CorruptArchive, match="magic"):
                    librsync.patch(old, b"garbage garbage")
        except BaseException as e:      # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [True] * 20


# --- loading --------------------------------------------------------------------------------

def test_import_does_not_load_the_library():
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {MODULE_UTILS!r})
        from cairn import librsync
        assert librsync._lib is None and librsync._ffi is None
        librsync.block_len_for(10)
        assert librsync._lib is None
        librsync.signature(b"x")
        assert librsync._lib is not None
    """)
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_library_names_the_package(monkeypatch):
    monkeypatch.setattr(librsync, "_lib", None)
    monkeypatch.setattr(librsync, "_ffi", None)
    monkeypatch.setattr(librsync, "_library_names", lambda: ["libcairn-no-such-rsync.so.9"])
    for make in (lambda: librsync.SignatureJob(512), lambda: librsync.signature(b"x"),
                 lambda: librsync.PatchJob(b"")):
        with pytest.raises(CairnError) as exc:
            make()
        assert "librsync2" in str(exc.value) and "RHEL" in str(exc.value)
        assert not isinstance(exc.value, CorruptArchive)


# --- memory ---------------------------------------------------------------------------------

MEMORY_SCRIPT = r"""
import os, random, resource, sys, tracemalloc
sys.path.insert(0, sys.argv[1])
from cairn import librsync

SIZE, PIECE = 50 * 1024 * 1024, 64 * 1024

def stream(seed, edit_every=0):
    rng = random.Random(seed)
    for pos in range(0, SIZE, PIECE):
        data = rng.randbytes(PIECE)
        if edit_every and pos % edit_every == 0:
            data = data[:1000] + b"edited" + data[1006:]
        yield data

def rss_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

# warm up: library loaded, one of each job run
sig = librsync.signature(random.Random(9).randbytes(3 * PIECE))
librsync.patch(b"", librsync.delta(sig, b"warm up"))
base = rss_kib()
tracemalloc.start()

job = librsync.SignatureJob(librsync.block_len_for(SIZE))
parts = [job.update(piece) for piece in stream(1)]
parts.append(job.finish())
sig = b"".join(parts)
del parts

job = librsync.DeltaJob(sig)
delta_len = 0
for piece in stream(1, edit_every=1024 * 1024):
    delta_len += len(job.update(piece))
delta_len += len(job.finish())

job = librsync.DeltaJob(sig)
different = 0
for piece in stream(2):
    different += len(job.update(piece))
different += len(job.finish())

_, py_peak = tracemalloc.get_traced_memory()
tracemalloc.stop()
print(len(sig), delta_len, different, py_peak, rss_kib() - base)
"""


def test_memory_is_bounded_by_the_piece_size(tmp_path):
    script = tmp_path / "mem.py"
    script.write_text(MEMORY_SCRIPT)
    out = subprocess.run([sys.executable, str(script), MODULE_UTILS], check=True,
                         capture_output=True, text=True).stdout.split()
    sig_len, delta_len, different, py_peak, rss_growth_kib = map(int, out)
    size = 50 * MIB
    assert sig_len == 12 + 12 * -(-size // librsync.block_len_for(size))
    assert delta_len < 2 * MIB                  # 50 edits: mostly copy commands
    assert different > size                     # unrelated data: all literal
    assert py_peak < 4 * MIB, py_peak           # Python-side allocations (signature included)
    assert rss_growth_kib < 24 * 1024, rss_growth_kib   # C side too: a few MB, not 50


# --- the out-of-line FFI module ----------------------------------------------------------------

def test_the_generated_ffi_module_is_current():
    """_librsync_ffi.py is what cffi makes of _CDEF now: a declaration changed without
    `python -m cairn.librsync` would make the library's calls disagree with what Python passes."""
    with open(os.path.join(MODULE_UTILS, "cairn", "_librsync_ffi.py"), encoding="ascii") as f:
        assert f.read() == librsync.ffi_module_source()


def test_loading_the_library_does_not_build_a_c_parser():
    """The first job of every run paid 30 ms for pycparser's parser of _CDEF."""
    code = textwrap.dedent("""
        import sys
        from cairn import librsync
        job = librsync.SignatureJob(2048)
        sig = job.update(b"x" * 5000) + job.finish()
        assert sig[:4] == bytes.fromhex("72730136"), sig[:4]
        print("pycparser" in sys.modules, "cffi.api" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=MODULE_UTILS),
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_a_cffi_that_refuses_the_generated_module_parses_the_declarations(monkeypatch):
    monkeypatch.setitem(sys.modules, "cairn._librsync_ffi", None)     # its import fails
    ffi = librsync._new_ffi()
    assert type(ffi).__module__ == "cffi.api"
    assert ffi.sizeof("rs_buffers_t") == ffi.sizeof(librsync._load()[0].typeof("rs_buffers_t"))


# --- deltas applied in place ----------------------------------------------------------------

def _put(out, offset, data):
    if offset > len(out):
        out += bytes(offset - len(out))
    out[offset:offset + len(data)] = data


def apply_in_place(basis, e):
    """What restore does with InPlaceEdits, on a bytearray: the moves read the file after every
    write and every earlier move (as restore does), so one that read changed data would show."""
    assert e.copied_to <= len(basis)
    out = bytearray(basis)
    for offset, data in e.writes:
        _put(out, offset, data)
    for offset, source, n in e.moves:
        assert source + n <= len(basis)
        _put(out, offset, bytes(out[source:source + n]))
    if e.length < len(out):
        del out[e.length:]
    else:
        out += bytes(e.length - len(out))
    return bytes(out)


IN_PLACE = {"identical", "edit-middle", "append", "truncate", "empty"}


@pytest.mark.parametrize("name,new", edits(rand(300 * KIB, seed=5)))
def test_in_place_edits_of_real_deltas(name, new):
    """A change in place, at the end or a cut gives copies to the same offsets: the delta applies
    over the basis itself, to what librsync's patch gives. Shifted data does not."""
    old = rand(300 * KIB, seed=5)
    d = librsync.delta(librsync.signature(old), new)
    e = librsync.in_place_edits(d)
    if name in IN_PLACE:
        assert e is not None, name
    elif name != "different":       # all literal: in place too, and right
        assert e is None, name
    if e is not None:
        assert apply_in_place(old, e) == librsync.patch(old, d) == new


def _command(op, *args):
    """One delta command: ``args`` as (value, width) pairs, big-endian."""
    return bytes([op]) + b"".join(v.to_bytes(w, "big") for v, w in args)


def test_in_place_edits_read_every_command_as_librsync_does():
    """Every literal and copy command, with arguments of every width, checked against
    librsync's own patch of the same delta."""
    basis = rand(70000, seed=6)
    widths = (1, 2, 4, 8)
    parts, pos, rng = [b"rs\x026"], 0, random.Random(7)
    for op in range(0x01, 0x41):                                    # literal, length in the op
        parts.append(bytes([op]) + rng.randbytes(op))
        pos += op
    for i, w in enumerate(widths):                                  # literal, length after it
        n = rng.randint(1, 255)
        parts.append(_command(0x41 + i, (n, w)) + rng.randbytes(n))
        pos += n
    for i, ws in enumerate(widths):                                 # copy to the same offset
        for j, wl in enumerate(widths):
            n = rng.randint(1, 255) if pos < 1 << (8 * ws) else 0
            if pos >= 1 << (8 * ws):
                continue                                            # start does not fit
            parts.append(_command(0x45 + 4 * i + j, (pos, ws), (n, wl)))
            pos += n
    parts.append(b"\0")
    delta = b"".join(parts)
    e = librsync.in_place_edits(delta)
    assert e is not None and e.length == pos
    assert apply_in_place(basis, e) == librsync.patch(basis, delta)


def repeated_blocks(size, block, seed):
    """Data made of a few distinct blocks repeated (runs of zeros, repeated records): librsync
    copies a block of such a file from the first place it saw it, not from the same offset."""
    rng = random.Random(seed)
    kinds = [bytes(block), rng.randbytes(block), rng.randbytes(block)]
    blocks = [kinds[0] if rng.random() < 0.6 else rng.choice(kinds[1:] + [None]) for _i in range(size // block)]
    return b"".join(b if b is not None else rng.randbytes(block) for b in blocks)


def test_in_place_edits_copy_repeated_blocks_from_where_librsync_found_them():
    """A file of repeated blocks changed in place (what a database file or an image with runs
    of zeros gives): the copies from other offsets are moves, and the result is librsync's."""
    old = repeated_blocks(2 << 20, 2048, seed=8)
    new = bytearray(old)
    new[300_000:300_000 + 65536] = random.Random(9).randbytes(65536)
    new[1_500_000:1_500_010] = b"0123456789"
    new = bytes(new)
    d = librsync.delta(librsync.signature(old, 2048), new)
    e = librsync.in_place_edits(d)
    assert e is not None
    assert e.moves, "the repeated blocks were copied from the same offsets: nothing tested"
    assert all(source != offset for offset, source, _n in e.moves)
    assert apply_in_place(old, e) == librsync.patch(old, d) == new


def test_a_move_from_data_that_a_command_changes_is_left_to_librsync():
    """Moves are done after the writes: one that reads a range a literal (before or after it)
    or another move overwrites, or its own target, would copy the new data, not the basis's."""
    basis = bytes(range(256)) * 4

    def copy(start, n):
        return _command(0x4A, (start, 2), (n, 2))       # start and length in 2 octets each

    def lit(data):
        return bytes([len(data)]) + data

    head = b"rs\x026"
    reads_a_later_write = head + copy(0, 10) + copy(20, 10) + lit(b"x" * 10) + b"\0"
    reads_an_earlier_write = head + lit(b"y" * 10) + copy(0, 10) + b"\0"
    reads_its_own_target = head + copy(1, 10) + b"\0"
    reads_another_move = head + copy(100, 10) + copy(0, 10) + b"\0"
    for delta in (reads_a_later_write, reads_an_earlier_write, reads_its_own_target, reads_another_move):
        assert librsync.in_place_edits(delta) is None, delta
    fine = head + copy(0, 10) + copy(500, 10) + lit(b"z" * 5) + copy(25, 900) + b"\0"
    e = librsync.in_place_edits(fine)
    assert e is not None and e.moves == [(10, 500, 10)]
    assert apply_in_place(basis, e) == librsync.patch(basis, fine)


@pytest.mark.parametrize("delta", [
    b"", b"rs\x026", b"rs\x016\0", b"rs\x026\x05abc\0",            # no end, cut literal
    b"rs\x026\x02ab\0x",                                             # something after the end
    b"rs\x026\x55\0", b"rs\x026\xff\0",                              # no such command
    b"rs\x026\x45\x00", b"rs\x026\x45\x01\x05\0",                    # cut copy; a copy onto its source
])
def test_in_place_edits_leave_anything_else_to_librsync(delta):
    assert librsync.in_place_edits(delta) is None


def drawn_edits(data, max_size, max_chunk):
    """(old, new) drawn by hypothesis: up to four overwrites, cuts, growths or insertions."""
    old = data.draw(st.binary(max_size=max_size))
    new = bytearray(old)
    for _edit in range(data.draw(st.integers(0, 4))):
        kind = data.draw(st.sampled_from(["overwrite", "cut", "grow", "insert"]))
        at = data.draw(st.integers(0, len(new)))
        chunk = data.draw(st.binary(min_size=1, max_size=max_chunk))
        if kind == "overwrite":
            new[at:at + len(chunk)] = chunk
        elif kind == "cut":
            del new[at:]
        elif kind == "grow":
            new += chunk
        else:
            new[at:at] = chunk
    return old, bytes(new)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_in_place_edits_agree_with_librsync(data):
    """Any change (overwrites, cuts, growth, insertions): whenever the delta reads as in place,
    applying it over the basis gives librsync's result."""
    old, new = drawn_edits(data, 6000, 700)
    block = data.draw(st.sampled_from([64, 512]))
    d = librsync.delta(librsync.signature(old, block), new)
    e = librsync.in_place_edits(d)
    if e is not None:
        assert apply_in_place(old, e) == new


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_in_place_edits_with_repeated_blocks_agree_with_librsync(data):
    """The same over files made of repeated blocks, where librsync copies from other offsets."""
    block = data.draw(st.sampled_from([64, 512]))
    pieces = data.draw(st.lists(st.sampled_from([bytes(block), b"\x01" * block, b"ab" * (block // 2)]),
                                max_size=40))
    old = b"".join(pieces)
    new = bytearray(old)
    for _edit in range(data.draw(st.integers(0, 4))):
        at = data.draw(st.integers(0, len(new)))
        chunk = data.draw(st.one_of(st.binary(min_size=1, max_size=300), st.sampled_from(pieces or [b"q"])))
        if data.draw(st.booleans()):
            new[at:at + len(chunk)] = chunk
        else:
            new[at:at] = chunk
    d = librsync.delta(librsync.signature(old, block), bytes(new))
    e = librsync.in_place_edits(d)
    if e is not None:
        assert apply_in_place(old, e) == bytes(new)


# --- a new signature from the delta ---------------------------------------------------------

def signature_via_delta(old_sig, new, block_len, seed=0, read=None):
    """signature_from_delta as a backup uses it: the delta streamed through AlignedCopies in
    random pieces; ``read`` (default: from ``new``) serves the blocks read again."""
    copies = librsync.DeltaBlocks(block_len)
    with librsync.DeltaJob(old_sig) as job:
        for out in pieces(run_job(job, pieces(new, seed)), seed + 1, high=5000):
            copies.feed(out)
    asked = []

    def read_blocks(first, end):
        asked.extend(range(first, end))
        yield new[first * block_len:min(end * block_len, len(new))]
    return librsync.signature_from_delta(old_sig, copies, len(new), read or read_blocks), asked


@pytest.mark.parametrize("name,new", edits(rand(300 * KIB, seed=8)))
def test_signature_from_delta_is_the_new_files_signature(name, new):
    """Whatever the change, what comes out is librsync's own signature of the new file; a change
    in place or at the end reads again only the blocks it touched (and the last one)."""
    block = 2048
    old_sig = librsync.signature(rand(300 * KIB, seed=8), block)
    got, asked = signature_via_delta(old_sig, new, block)
    assert got == librsync.signature(new, block)
    count = -(-len(new) // block)
    if name == "identical":
        assert asked == [count - 1]                 # the old last block may be short: not taken
    elif name == "truncate":
        assert asked == ([count - 1] if len(new) % block else []) and count > 1
    elif name in ("edit-middle", "append"):
        assert 0 < len(asked) <= 8, (name, asked)
    elif name in ("insert-middle", "prepend"):
        assert len(asked) >= count // 2, name     # shifted: read again, not taken
    elif name == "different":
        assert asked == []                          # all literal: signed from the delta


@pytest.mark.parametrize("kind", ["another block length", "BLAKE2", "strong sums of 16"])
def test_signature_from_delta_takes_no_entry_of_another_kind(tmp_path, kind):
    """The delta copies every block, but from a signature whose entries are not what
    SignatureJob writes: every block is read again."""
    new = rand(100 * KIB, seed=9)
    if kind == "another block length":
        old_sig = librsync.signature(new, 1024)
    elif RDIFF is None:
        pytest.skip("rdiff is not installed (Debian: rdiff)")
    else:
        (tmp_path / "old.bin").write_bytes(new)
        hash_, strong = ("blake2", 8) if kind == "BLAKE2" else ("md4", 16)
        rdiff("signature", "-R", "rollsum", "-H", hash_, "-S", strong, "-b", 2048, tmp_path / "old.bin",
              tmp_path / "old.sig")
        old_sig = (tmp_path / "old.sig").read_bytes()
    got, asked = signature_via_delta(old_sig, new, 2048)
    assert got == librsync.signature(new, 2048)
    assert asked == list(range(50))


def test_signature_from_delta_of_an_empty_signature_signs_the_literal_data():
    new = rand(100 * KIB, seed=9)
    got, asked = signature_via_delta(librsync.signature(b"", 2048), new, 2048)
    assert got == librsync.signature(new, 2048) and asked == []


def test_signature_from_delta_of_an_unfinished_or_broken_delta_reads_every_block():
    old = rand(64 * KIB, seed=10)
    old_sig = librsync.signature(old, 1024)
    delta = librsync.delta(old_sig, old)
    for stream in (delta[:-1], b"XX" + delta[2:], delta + b"\x01"):
        copies = librsync.DeltaBlocks(1024)
        copies.feed(stream)
        got = librsync.signature_from_delta(old_sig, copies, len(old), lambda a, b: [old[a * 1024:b * 1024]])
        assert got == librsync.signature(old, 1024)
        assert not copies.ended or copies.malformed


def test_signature_from_delta_checks_what_is_read_again():
    old = rand(64 * KIB, seed=11)
    new = old[:10 * KIB] + b"!" + old[10 * KIB + 1:]
    old_sig = librsync.signature(old, 1024)

    def short(first, end):
        yield new[first * 1024:end * 1024 - 1]
    with pytest.raises(CorruptArchive, match="did not read as counted"):
        signature_via_delta(old_sig, new, 1024, read=short)

    class Changed(Exception):
        pass

    def failing(first, end):
        yield new[first * 1024:first * 1024 + 10]
        raise Changed()
    with pytest.raises(Changed):
        signature_via_delta(old_sig, new, 1024, read=failing)


def test_delta_blocks_read_every_command():
    """Literals and copies with arguments of every width, split anywhere: the copies that line
    up with the basis at block boundaries give runs of copied blocks, the others nothing; the
    blocks wholly in literal data are signed from it."""
    block = 16
    parts, out, expected = [b"rs\x026"], 0, []
    parts.append(bytes([0x10]) + b"x" * 16)                             # block 0: literal
    out += 16
    parts.append(_command(0x45 + 4 * 1 + 0, (out + 32, 2), (48, 1)))    # blocks 1-3 = old 3-5
    expected.append((1, 4, 2))
    out += 48
    parts.append(_command(0x45 + 4 * 3 + 2, (out, 8), (40, 4)))         # blocks 4-5 = old 4-5,
    expected.append((4, 6, 0))                                         # and half of block 6
    out += 40
    parts.append(_command(0x42, (24, 2)) + b"y" * 24)                   # rest of 6, half of 7
    out += 24
    parts.append(_command(0x45 + 4 * 2 + 3, (out + 3, 4), (64, 8)))     # shifted: nothing
    out += 64
    parts.append(_command(0x44, (8, 8)) + b"z" * 8 + b"\0")
    out += 8
    stream = b"".join(parts)
    for cut in (1, 2, 3, 5, 7, 1000):
        copies = librsync.DeltaBlocks(block)
        for i in range(0, len(stream), cut):
            copies.feed(stream[i:i + cut])
        assert copies.ended and not copies.malformed
        assert copies.copied == expected and copies.length == out
        # whole blocks of literal data: 0, 7 (from the middle of 6 on) and the short last one
        assert copies.literal == [(0, 1), (7, 8), (12, 13)]
        entries = copies.literal_entries()
        assert entries == (librsync.signature(b"x" * 16, block)[12:] + librsync.signature(b"y" * 16, block)[12:]
                           + librsync.signature(b"z" * 8, block)[12:])


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_signature_from_delta_agrees_with_librsync(data):
    """Any change (overwrites, cuts, growth, insertions), any block length and cut of the
    stream: the signature from the delta is the one librsync computes from the new bytes."""
    old, new = drawn_edits(data, 20000, 3000)
    block = data.draw(st.sampled_from([64, 512, 1024]))
    got, _asked = signature_via_delta(librsync.signature(old, block), new, block,
                                      seed=data.draw(st.integers(0, 1000)))
    assert got == librsync.signature(new, block)


# --- a signature in one call ---------------------------------------------------------------------

def _streamed_signature(data, block_len, piece=None):
    """SignatureJob's output, fed in pieces of ``piece`` bytes (all at once if None)."""
    step = piece or max(1, len(data))
    with librsync.SignatureJob(block_len) as job:
        out = [job.update(data[i:i + step]) for i in range(0, len(data), step)]
        return b"".join(out) + job.finish()


@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, 4096, 65535, 65536, 300_001, librsync.MAX_IN_SLICE])
def test_a_signature_in_one_call_is_the_streamed_one(size):
    data = random.Random(size).randbytes(size)
    for block_len in sorted({librsync.block_len_for(size), 1, 7, 512, 2048, 1 << 20}):
        assert librsync.signature_whole(data, block_len) == _streamed_signature(data, block_len, piece=1000)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=20_000), st.integers(1, 5000))
def test_a_signature_in_one_call_for_any_data_and_block_length(data, block_len):
    assert librsync.signature_whole(data, block_len) == _streamed_signature(data, block_len)


def test_a_signature_in_one_call_refuses_what_it_cannot_take():
    with pytest.raises(ValueError):
        librsync.signature_whole(b"x" * (librsync.MAX_IN_SLICE + 1), 512)
    with pytest.raises(ValueError):
        librsync.signature_whole(b"x", 0)


@pytest.mark.parametrize("pieces", [[], [0], [100], [librsync.MAX_IN_SLICE], [1000, 1000],
                                    [librsync.MAX_IN_SLICE, 5], [librsync.MAX_IN_SLICE + 1, 10, 0, 7]])
def test_the_backups_signature_collector_in_one_piece_or_many(pieces):
    """A file read in one piece is signed in one call; from a second piece on, streamed: either
    way librsync's signature of the whole file."""
    from cairn.backup import _SigCollector
    rnd = random.Random(len(pieces))
    parts = [rnd.randbytes(n) for n in pieces]
    data = b"".join(parts)
    block_len = librsync.block_len_for(len(data))
    collector = _SigCollector(block_len)
    for p in parts:
        collector.feed(p)
    assert collector.result() == librsync.signature(data, block_len)
    assert (collector.job is None) == (len(parts) <= 1 and len(data) <= librsync.MAX_IN_SLICE)
