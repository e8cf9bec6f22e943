# SPDX-License-Identifier: GPL-3.0-or-later
"""The backup run's one abort path: a failure injected at each stage (the walk, a volume's
encryption, an upload, the signatures' encryption, the manifest's upload, a lost lock) stops
the run with that first error and its exit code, every thread of the run ended, nothing of it
left in the temp dir, and no manifest or signatures of the set at the target, whose volumes
are all complete. A file:// target and unencrypted (gzip) volumes: no gpg needed."""
import fnmatch
import gzip
import json
import os
import random
import threading
import time
from dataclasses import replace

import pytest

from cairn import pipeline
from cairn.archive import BLOCK
from cairn.crypto import CryptoOptions
from cairn.errors import BackendError, CryptoError, SourceError
from cairn.lock import LockLost
from cairn.options import BackupOptions, TargetOptions
from cairn.pipeline import BackupRun
from cairn.selection import Selection
from cairn.session import Session
from cairn.stages import Abort, Aborted, Stage


def _tree(src, files=40, size=100_000, seed=1):
    rnd = random.Random(seed)
    for i in range(files):
        d = src / f"d{i % 4}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:03d}.bin").write_bytes(rnd.randbytes(size))
    (src / "small.txt").write_bytes(b"hello\n" * 100)


@pytest.fixture
def src(tmp_path):
    s = tmp_path / "src"
    _tree(s)         # 4 MB of random data: four or five 1 MiB volumes
    return s


def _target(tmp_path):
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return TargetOptions(url=f"file://{tmp_path}/target", crypto=CryptoOptions(mode="none"),
                         archive_dir=str(tmp_path / "cache"), tempdir=str(tmp_path / "tmp"))


def _opts(src, **kw):
    kw.setdefault("mode", "full")
    return BackupOptions(source=str(src), volsize=1, jobs=2, **kw)


class FaultyCrypto:
    """The session's crypto; the encryption of files named like ``pattern`` reads ``after``
    bytes of its input (gpg under way) and fails with ``error``; decoding files named like
    ``decode_pattern`` fails with ``decode_error``."""

    def __init__(self, inner, pattern, error, after=100_000, decode_pattern=None, decode_error=None):
        self.inner = inner
        self.pattern = pattern
        self.error = error
        self.after = after
        self.decode_pattern = decode_pattern
        self.decode_error = decode_error

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encrypt_file(self, src, dst, **kw):
        if fnmatch.fnmatch(os.path.basename(dst), self.pattern):
            if hasattr(src, "read"):
                src.read(self.after)
            raise self.error
        return self.inner.encrypt_file(src, dst, **kw)

    def decode_file(self, name, src, dst, **kw):
        if self.decode_pattern and fnmatch.fnmatch(name, self.decode_pattern):
            raise self.decode_error
        return self.inner.decode_file(name, src, dst, **kw)


class FaultyBackend:
    """The session's backend; ``on_put(name)`` runs before each upload and may raise."""

    def __init__(self, inner, on_put):
        self.inner = inner
        self.on_put = on_put

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def put(self, local_path, name):
        self.on_put(name)
        return self.inner.put(local_path, name)


def _fail_put(pattern, error):
    def on_put(name):
        if fnmatch.fnmatch(name, pattern):
            raise error
    return on_put


def _walk_failing_at(n, error, slow_after=None):
    """A Selection whose walk raises ``error`` at its ``n``-th entry (and sleeps a little per
    entry after ``slow_after``: a walk that is still going when another stage fails)."""
    class FailingSelection(Selection):
        yielded = 0

        def walk(self):
            for i, e in enumerate(super().walk()):
                if i == n:
                    raise error
                if slow_after is not None and i >= slow_after:
                    time.sleep(0.01)
                FailingSelection.yielded += 1
                yield e
    return FailingSelection


def _threads():
    # the target lock's refresh thread is the session's: it ends when the session closes
    return {t for t in threading.enumerate() if t.name != "cairn-target-lock"}


def _run_failing(tmp_path, src, inject, opts=None):
    """Run one backup with ``inject(session)`` applied; returns (the error raised, the
    session's temp dir listing before and after the run, threads before and after it)."""
    outside = set(threading.enumerate())
    with Session(_target(tmp_path)) as sess:
        inject(sess)
        threads_before = _threads()
        tmp_before = sorted(os.listdir(sess.tmpdir))
        with pytest.raises(BaseException) as e:
            BackupRun(sess, opts or _opts(src)).run()
        threads_after = _threads()
        tmp_after = sorted(os.listdir(sess.tmpdir))
    # no thread of this run outlives it (an earlier test's pool may still be winding down: one of
    # its threads gone meanwhile is no failure of this run)
    assert set(threading.enumerate()) - outside == set()
    return e.value, (tmp_before, tmp_after), (threads_before, threads_after)


def _check_stopped_cleanly(tmp_path, error, expected, tmps, threads):
    """``error`` is the injected one (or of its class), every thread of the run has ended, the
    temp dir holds nothing of it, the target has no manifest or signatures of the set, and
    every volume there is whole."""
    if isinstance(expected, type):
        assert error.__class__ is expected, repr(error)
    else:
        assert error is expected, f"the first failure must surface, not {error!r}"
    assert not isinstance(error, Aborted)
    assert error.exit_code == expected.exit_code      # the class's or the instance's: the same
    before, after = threads
    assert after == before, f"threads of the run still alive: {[t.name for t in after - before]}"
    assert tmps[0] == tmps[1], "the run left files in the temp dir"
    names = os.listdir(tmp_path / "target") if (tmp_path / "target").exists() else []
    assert not [n for n in names if "manifest" in n or "signatures" in n], names
    for n in names:
        if fnmatch.fnmatch(n, "cairn-unfinished.duplicity-full.*.resume.*.gz"):
            with gzip.open(tmp_path / "target" / n) as f:
                assert json.loads(f.read())["record"]["checkpoints"]     # a resume record, whole
            continue
        # only under unfinished names: duplicity reads none of them (issue 11)
        assert fnmatch.fnmatch(n, "cairn-unfinished.duplicity-full.*.vol*.difftar.gz"), f"unexpected {n} at the target"
        with gzip.open(tmp_path / "target" / n) as f:
            plain = f.read()          # a gzip stream cut short raises here
        assert plain.endswith(b"\0" * (2 * BLOCK)), f"{n} is not a whole tar"
    return names


def _stopped(tmp_path, src, inject, expected, opts=None):
    error, tmps, threads = _run_failing(tmp_path, src, inject, opts)
    return _check_stopped_cleanly(tmp_path, error, expected, tmps, threads)


def test_a_run_without_failures_leaves_no_thread_and_no_temp_file(tmp_path, src):
    with Session(_target(tmp_path)) as sess:
        threads = _threads()
        tmp = sorted(os.listdir(sess.tmpdir))
        result = BackupRun(sess, _opts(src)).run()
        assert _threads() == threads
        assert sorted(os.listdir(sess.tmpdir)) == tmp
    assert result["volumes"] >= 4 and result["new_files"] == 46 and result["exit_code"] == 0
    names = os.listdir(tmp_path / "target")
    assert len([n for n in names if "manifest" in n]) == 1 and len([n for n in names if "signatures" in n]) == 1


def test_a_failing_walk(tmp_path, src, monkeypatch):
    error = SourceError("injected: the walk failed")
    monkeypatch.setattr(pipeline, "Selection", _walk_failing_at(30, error))
    _stopped(tmp_path, src, lambda sess: None, error)


def test_a_failing_volume_encryption(tmp_path, src):
    error = CryptoError("injected: gpg failed on volume 2")

    def inject(sess):
        sess.crypto = FaultyCrypto(sess.crypto, "vol2.tar.out", error)
    names = _stopped(tmp_path, src, inject, error)
    assert not [n for n in names if ".vol2." in n]


def test_a_failing_upload_stops_the_walk_too(tmp_path, src, monkeypatch):
    error = BackendError("injected: the upload of volume 1 failed")
    walk = _walk_failing_at(10_000, None, slow_after=12)
    monkeypatch.setattr(pipeline, "Selection", walk)

    def inject(sess):
        sess.backend = FaultyBackend(sess.backend, _fail_put("*.vol1.difftar.gz", error))
    names = _stopped(tmp_path, src, inject, error)
    assert not [n for n in names if ".vol1." in n]
    assert walk.yielded < 40, "the walk went on to the end after the upload had failed"


def test_a_failing_signature_encryption(tmp_path, src):
    error = CryptoError("injected: gpg failed on the signatures")

    def inject(sess):
        sess.crypto = FaultyCrypto(sess.crypto, "signatures.tar.out", error)
    _stopped(tmp_path, src, inject, error)


def test_a_failing_manifest_upload(tmp_path, src):
    error = BackendError("injected: the manifest upload failed")

    def inject(sess):
        sess.backend = FaultyBackend(sess.backend, _fail_put("*.manifest", error))
    names = _stopped(tmp_path, src, inject, error)
    assert len(names) >= 4, "every volume was in place before the manifest"


def test_a_lock_lost_while_the_volumes_upload(tmp_path, src):
    def inject(sess):
        # one upload at a time: with four, volumes 2 to 4 may each pass the lock check before
        # volume 1's upload starts, and their uploads are then rightly finished
        sess.opts.backend = replace(sess.opts.backend, upload_concurrency=1)

        def on_put(name):
            # the first volume uploaded (volumes are encrypted two at a time, so on a busy
            # machine that may be volume 2): what the lock's refresh thread finds out
            if ".vol" in name:
                sess.target_lock.lost = "it was taken over by the test"
        sess.backend = FaultyBackend(sess.backend, on_put)
    names = _stopped(tmp_path, src, inject, LockLost)
    assert len([n for n in names if ".vol" in n]) == 1, names


def test_a_lock_lost_is_found_at_the_commit(tmp_path, src):
    def inject(sess):
        def on_put(name):
            if ".vol1." in name:         # someone removes our lock object; nobody refreshes
                for n in os.listdir(tmp_path / "target"):
                    if n.startswith("cairn-lock."):
                        os.unlink(tmp_path / "target" / n)
        sess.backend = FaultyBackend(sess.backend, on_put)
    names = _stopped(tmp_path, src, inject, LockLost)
    assert len(names) >= 4


def test_the_next_run_after_a_failure_completes_the_chain(tmp_path, src):
    error = BackendError("injected: the upload of volume 3 failed")

    def inject(sess):
        sess.backend = FaultyBackend(sess.backend, _fail_put("*.vol3.difftar.gz", error))
    _stopped(tmp_path, src, inject, error)
    time.sleep(1.05)      # set times have second resolution
    result = pipeline.backup(_target(tmp_path), _opts(src, mode="auto"))
    assert result["type"] == "full" and result["new_files"] == 46
    names = os.listdir(tmp_path / "target")
    times = {n.split(".")[1] for n in names if n.startswith("duplicity-full")}
    assert len(times) == 1, f"the interrupted set was not removed: {sorted(names)}"
    assert not [n for n in names if n.startswith("cairn-unfinished.")], sorted(names)


def test_a_failing_remote_manifest_check_stops_the_walk(tmp_path, src, monkeypatch):
    """An incremental checks the remote manifest beside the walk; its failure (a wrong
    passphrase, exit 31) stops the walk at once, not at the first upload."""
    pipeline.backup(_target(tmp_path), _opts(src))
    time.sleep(1.05)
    error = CryptoError("injected: the remote manifest cannot be decrypted")
    walk = _walk_failing_at(10_000, None, slow_after=0)
    monkeypatch.setattr(pipeline, "Selection", walk)

    def inject(sess):
        sess.crypto = FaultyCrypto(sess.crypto, "-", None, decode_pattern="*.manifest", decode_error=error)
    failed, tmps, threads = _run_failing(tmp_path, src, inject, _opts(src, mode="incremental"))
    assert failed is error and failed.exit_code == 31
    assert threads[0] == threads[1] and tmps[0] == tmps[1]
    assert walk.yielded < 40
    assert not [n for n in os.listdir(tmp_path / "target") if n.startswith("duplicity-inc")]


# --- the stages themselves ---------------------------------------------------------------------

def test_a_stage_holds_at_most_its_capacity():
    release = threading.Event()
    started = []
    stage = Stage("t", lambda item: (started.append(item), release.wait(5)), workers=2)
    stage.put(1)
    stage.put(2)
    blocked = threading.Thread(target=stage.put, args=(3,), daemon=True)
    blocked.start()
    blocked.join(0.2)
    assert blocked.is_alive(), "a third item must wait while two are being worked on"
    release.set()
    blocked.join(5)
    stage.join()
    assert sorted(started) == [1, 2, 3] and not stage.alive


def test_a_stage_failure_fails_the_abort_and_drops_what_is_queued():
    abort = Abort()
    dropped = []
    error = ValueError("first")
    gate = threading.Event()

    def work(item):
        gate.wait(5)
        if item == 1:
            raise error
    stage = Stage("t", work, workers=1, capacity=4, abort=abort, discard=dropped.append)
    for i in (1, 2, 3):
        stage.put(i)
    gate.set()
    stage.join()
    assert abort.error is error and dropped == [2, 3]
    with pytest.raises(Aborted):
        stage.put(4)


def test_a_stage_starts_a_worker_only_when_none_is_idle():
    """Uploads one after another run on one thread, as in a ThreadPoolExecutor (every thread
    that copies 1 MiB buffers keeps its own malloc arena: more threads, more memory)."""
    names = []
    stage = Stage("t", lambda item: names.append(threading.current_thread().name), workers=4)
    for i in range(5):
        stage.put(i)
        stage.drain()
    stage.join()
    assert len(names) == 5 and len(set(names)) == 1


class _Interrupted(BaseException):
    """What the CLI's SIGTERM handler raises in the main thread, at any point."""


def test_a_signal_cutting_a_workers_start_short_leaves_a_stage_that_joins(monkeypatch):
    """SIGTERM raised inside Thread.start (before the thread runs): the run's cleanup joins the
    stage without 'cannot join thread before it is started' (exit 30 instead of 4)."""
    stage = Stage("t", lambda item: None, workers=2)
    real_start = threading.Thread.start

    def interrupted_start(thread):
        monkeypatch.setattr(threading.Thread, "start", real_start)
        raise _Interrupted()
    monkeypatch.setattr(threading.Thread, "start", interrupted_start)
    with pytest.raises(_Interrupted):
        stage.put(1)
    stage.abort.fail(Aborted("the run was interrupted"))
    stage.join()            # raised RuntimeError before
