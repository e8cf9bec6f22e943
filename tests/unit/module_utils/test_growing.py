# SPDX-License-Identifier: GPL-3.0-or-later
"""The growing file both directions use: gpg reads a volume the backup is still writing, the
restore parses a volume gpg is still decrypting. A reader waits for the writer, sees every byte,
ends only when the writer has finished and gets the writer's error.

The in-memory pipe a restore reads the built-in decryption through keeps the same contract, holds
the writer back at its capacity (memory stays bounded), and a reader that stops neither hangs the
writer nor keeps what it no longer reads."""
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from cairn.growing import GrowingFile, MemoryPipe, PipeAbandoned


def _in_thread(fn):
    """Run ``fn`` in a thread; returns (thread, result dict with 'value' or 'error')."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as e:   # noqa: BLE001 - handed to the test
            out["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_a_reader_waits_for_the_bytes_it_asked_for(tmp_path):
    g = GrowingFile(str(tmp_path / "f"), create=True)
    g.write(b"abcd")
    with g.reader() as r:
        t, out = _in_thread(lambda: r.read(10))
        t.join(0.2)
        assert t.is_alive(), "a read of 10 bytes must wait while only 4 are written"
        g.write(b"efghij")
        t.join(5)
        assert out == {"value": b"abcdefghij"}
        g.finish()
        assert r.read(5) == b"" and r.read() == b""


def test_a_reader_sees_every_byte_and_ends_only_when_the_writer_finishes(tmp_path):
    rnd = random.Random(3)
    pieces = [rnd.randbytes(rnd.randint(0, 70000)) for _piece in range(60)]
    g = GrowingFile(str(tmp_path / "f"), create=True)

    def write():
        for p in pieces:
            g.write(p)
            if rnd.random() < 0.3:
                time.sleep(0.002)
        g.finish()

    short = []

    def read():
        got = []
        reads = random.Random(4)
        with g.reader() as r:
            while True:
                n = reads.choice([1, 511, 16384, 1 << 20, -1])
                data = r.read(n)
                if not data:
                    return b"".join(got)
                short.append(0 <= n != len(data))
                got.append(data)
    reader, out = _in_thread(read)
    write()
    reader.join(10)
    assert not reader.is_alive()
    assert out.get("value") == b"".join(pieces)
    assert not any(short[:-1]), "only the last read may come back short"


def test_full_reads_are_short_only_at_the_end(tmp_path):
    g = GrowingFile(str(tmp_path / "f"), create=True)
    with g.reader() as r:
        t, out = _in_thread(lambda: [r.read(3) for _read in range(4)])
        for b in (b"ab", b"cdef", b"g", b"hijk"):
            time.sleep(0.01)
            g.write(b)
        g.finish()
        t.join(5)
    assert out == {"value": [b"abc", b"def", b"ghi", b"jk"]}


def test_a_waiting_reader_gets_the_writers_error(tmp_path):
    g = GrowingFile(str(tmp_path / "f"), create=True)
    g.write(b"partial")
    error = OSError("the writer failed")
    with g.reader() as r:
        assert r.read(7) == b"partial"
        t, out = _in_thread(lambda: r.read(1))
        t.join(0.1)
        assert t.is_alive()
        g.fail(error)
        t.join(5)
        assert out.get("error") is error
        # and every later read, even after a finish (an aborted run fails finished volumes)
        g.finish()
        with pytest.raises(OSError) as e:
            r.read()
        assert e.value is error
    assert not g.complete
    g.close()


def test_a_failure_stops_a_reader_even_with_bytes_left(tmp_path):
    g = GrowingFile(str(tmp_path / "f"), create=True)
    g.write(b"x" * 100)
    g.finish()
    assert g.complete
    error = RuntimeError("aborted")
    g.fail(error)
    with g.reader() as r, pytest.raises(RuntimeError):
        r.read(10)


def test_following_another_writer_through_its_future(tmp_path):
    """Restore: gpg writes the file; the future ends when it is done."""
    path = tmp_path / "plain"
    data = random.Random(5).randbytes(300_000)
    started = threading.Event()

    def writer():
        started.wait(5)
        with open(path, "wb", buffering=0) as f:
            for i in range(0, len(data), 7000):
                f.write(data[i:i + 7000])
                time.sleep(0.001)
    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(writer)
        g = GrowingFile(str(path))
        g.follow(fut)
        with g.reader() as r:
            t, out = _in_thread(r.read)      # the file does not even exist yet
            started.set()
            t.join(10)
    assert out == {"value": data}


def test_following_a_writer_that_fails(tmp_path):
    path = tmp_path / "plain"
    error = ValueError("gpg could not decrypt it")

    def writer():
        with open(path, "wb") as f:
            f.write(b"some")
        time.sleep(0.05)
        raise error
    with ThreadPoolExecutor(1) as pool:
        g = GrowingFile(str(path))
        g.follow(pool.submit(writer))
        with g.reader() as r, pytest.raises(ValueError) as e:
            while r.read(1 << 16):
                pass
    assert e.value is error


def test_following_a_writer_that_fails_before_creating_the_file(tmp_path):
    error = ValueError("download failed")

    def writer():
        time.sleep(0.02)
        raise error
    with ThreadPoolExecutor(1) as pool:
        g = GrowingFile(str(tmp_path / "never"))
        g.follow(pool.submit(writer))
        with g.reader() as r, pytest.raises(ValueError) as e:
            r.read(10)
    assert e.value is error


def test_a_reader_that_must_not_raise_sees_a_failure_as_the_end(tmp_path):
    """gpg's input in the backup: python-gnupg 0.4 lets a read error end its copying thread and
    then waits for gpg forever, so there a failed volume reads as ended (and is dropped, since
    it is not complete)."""
    g = GrowingFile(str(tmp_path / "f"), create=True)
    g.write(b"some bytes")
    with g.reader(fail_as_end=True) as r:
        assert r.read(4) == b"some"
        t, out = _in_thread(lambda: r.read(100))
        t.join(0.1)
        assert t.is_alive()
        g.fail(OSError("aborted"))
        t.join(5)
        assert out == {"value": b""} and r.read() == b""
    assert r.read(1) == b""          # even closed
    assert not g.complete
    g.close()


# --- MemoryPipe ------------------------------------------------------------------------------

def test_every_byte_in_order_with_reads_of_any_size():
    rnd = random.Random(5)
    pieces = [rnd.randbytes(rnd.randint(0, 90000)) for _piece in range(80)]
    pipe = MemoryPipe(capacity=100_000)

    def write():
        for p in pieces:
            pipe.write(bytearray(p))        # a buffer the writer may reuse: copied
        pipe.finish()
    t, out = _in_thread(write)
    got, reads = [], random.Random(6)
    while True:
        n = reads.choice([1, 511, 512, 65536, 200_000, -1]) if reads.random() < 0.95 else 0
        data = pipe.read(n)
        if n > 0 and not data:
            break
        if n > 0 and len(data) < n:
            assert pipe.read(1) == b"", "a short read must be the end"
            got.append(data)
            break
        got.append(data)
        if n < 0:
            break
    t.join(10)
    assert out == {"value": None}
    assert b"".join(got) == b"".join(pieces)


def test_the_writer_waits_at_the_capacity():
    pipe = MemoryPipe(capacity=1000)
    pipe.write(b"a" * 600)
    pipe.write(b"b" * 600)          # over the capacity now: the next write waits
    t, out = _in_thread(lambda: pipe.write(b"c" * 10))
    t.join(0.2)
    assert t.is_alive(), "a writer 1,200 bytes ahead of a 1,000-byte pipe must wait"
    assert pipe.read(600) == b"a" * 600
    t.join(5)
    assert out == {"value": None}
    pipe.finish()
    assert pipe.read() == b"b" * 600 + b"c" * 10


def test_a_waiting_reader_gets_the_writers_error_even_with_bytes_left():
    pipe = MemoryPipe()
    pipe.write(b"abc")
    assert pipe.read(2) == b"ab"
    t, out = _in_thread(lambda: pipe.read(10))
    t.join(0.2)
    assert t.is_alive()
    pipe.write(b"more")
    pipe.fail(ValueError("the MDC failed"))
    t.join(5)
    with pytest.raises(ValueError, match="MDC"):
        pipe.read(1)


def test_following_the_writers_future():
    with ThreadPoolExecutor(1) as pool:
        good, bad = MemoryPipe(), MemoryPipe()

        def write(pipe, error):
            pipe.write(b"x" * 5000)
            if error:
                raise error
        good.follow(pool.submit(write, good, None))
        bad.follow(pool.submit(write, bad, OSError("decryption failed")))
        assert good.read() == b"x" * 5000
        with pytest.raises(OSError, match="decryption failed"):
            bad.read()


def test_a_closed_reader_lets_the_writer_run_to_its_end():
    """The tar parser stops at the archive's end mark; the decryption must still reach its MDC."""
    pipe = MemoryPipe(capacity=1000)
    pipe.write(b"t" * 1000)
    assert pipe.read(10) == b"t" * 10
    t, out = _in_thread(lambda: [pipe.write(b"p" * 1000) for _n in range(100)])
    time.sleep(0.05)
    pipe.close()
    t.join(5)
    assert out == {"value": [None] * 100}, "writes after close are dropped, never blocked"
    assert pipe._queued == 0, "what the reader no longer reads is not kept"


def test_an_abandoned_reader_stops_the_writer():
    pipe = MemoryPipe(capacity=1000)
    pipe.write(b"t" * 1000)
    t, out = _in_thread(lambda: pipe.write(b"u" * 10))
    t.join(0.1)
    assert t.is_alive()
    pipe.abandon()
    t.join(5)
    assert isinstance(out.get("error"), PipeAbandoned)
    with pytest.raises(PipeAbandoned):
        pipe.write(b"v")
