# SPDX-License-Identifier: GPL-3.0-or-later
"""Resume of an interrupted backup (issue 11, item 1).

A backup is SIGKILLed once some of its volumes are at the target; the next run with the same
options continues the set after the last volume recorded whole, uploading at most the volume
that was in flight again, and the set restores exactly with cairn and with stock duplicity. The
record survives a lost archive dir (it is also at the target); other options, or a change to the
file the last volume stopped in, start a new set and say why; files changed between the break
and the resume are taken as they are then, consistently with the set's signatures.
"""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from treeutil import PASSPHRASE, ROOT, cairn, diff_snapshots, duplicity, snapshot, write

from cairn import naming

pytestmark = pytest.mark.duplicity

SLOW = ["--volsize", "1", "--max-upload-rate", "3M"]


def _source(src, seed, files=10, size=900_000):
    rnd = random.Random(seed)
    for i in range(files):
        write(os.path.join(src, f"d{i % 3}", f"f{i:02d}.bin"), rnd.randbytes(size))
    write(os.path.join(src, "z-last.txt"), b"the last file\n")


def _stored_volumes(target):
    """Unfinished volumes at the target (each complete: the file target renames into place)."""
    return sorted(n for n in os.listdir(target) if n.startswith(naming.UNFINISHED_MARK) and ".vol" in n)


def _recorded(cache):
    """Whether the archive dir holds a resume record (a checkpoint was taken)."""
    return any("record.json" in files for _d, _s, files in os.walk(cache))


def _kill_when_stored(args, target, volumes, env_extra=None, recorded_in=None):
    """Run ``cairn *args`` and SIGKILL it once ``volumes`` unfinished volumes are at the target
    (and, with ``recorded_in``, a checkpoint is in that archive dir: uploads finish in any order,
    and a busy machine may record the first one late); returns the volumes stored by then
    (name -> inode)."""
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "plugins", "module_utils"), PASSPHRASE=PASSPHRASE,
               **(env_extra or {}))
    proc = subprocess.Popen([sys.executable, "-m", "cairn.cli", *map(str, args)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while (len(_stored_volumes(target) if os.path.isdir(target) else ()) < volumes
               or (recorded_in is not None and not _recorded(recorded_in))):
            assert proc.poll() is None, f"the backup ended before it could be killed: {proc.stderr.read()}"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    return {n: os.stat(os.path.join(target, n)).st_ino for n in _stored_volumes(target)}


def _result(r):
    return json.loads(r.stdout)


def _restores_exactly(tmp_path, url, state, enc, tag):
    dest = tmp_path / f"cairn-{tag}"
    cairn("restore", *enc, "--archive-dir", tmp_path / f"rc-{tag}", url, dest)
    assert diff_snapshots(state, snapshot(dest)) == []
    return dest


def _duplicity_restores_exactly(duplicity_bin, tmp_path, url, state, enc, tag):
    dest = tmp_path / f"dup-{tag}"
    duplicity(duplicity_bin, "restore", *enc, "--archive-dir", tmp_path / "dupcache", "--name", tag, url, dest)
    assert diff_snapshots(state, snapshot(dest)) == []


@pytest.mark.parametrize("mode", ["symmetric", "none"])
def test_a_killed_full_resumes_where_it_stopped(tmp_path, gnupghome, duplicity_bin, mode):
    enc = [] if mode == "symmetric" else ["--no-encryption"]
    src, target = tmp_path / "src", tmp_path / "target"
    url = f"file://{target}"
    _source(src, 1)
    common = [*enc, "--archive-dir", tmp_path / "cache"]
    stored = _kill_when_stored(["full", *common, *SLOW, src, url], target, 4)
    # to duplicity the archive is empty meanwhile, not broken
    status = duplicity(duplicity_bin, "collection-status", *enc, "--archive-dir", tmp_path / "dupcache",
                       "--name", "s", url, check=False)
    assert b"No remote manifest name" not in status.stdout + status.stderr

    r = cairn("full", "--json", *common, "--volsize", "1", src, url)
    result = _result(r)
    resumed = result["resumed_at_volume"]
    # of the volumes whole at the target, at most the last one is uploaded again (its upload had
    # just ended, its checkpoint not yet written); the partial one in flight is, of course
    assert resumed is not None and resumed >= len(stored), (resumed, sorted(stored))
    assert f"resumed at volume {resumed}".encode() in r.stderr
    finals = {naming.finished_name(n): ino for n, ino in stored.items()}
    for n in range(1, resumed):
        name = next(f for f in finals if f".vol{n}." in f)
        assert os.stat(target / name).st_ino == finals[name], f"volume {n} was uploaded again"
    total = sum(os.path.getsize(target / n) for n in os.listdir(target) if ".difftar" in n)
    kept = sum(os.path.getsize(target / f) for f in finals if int(f.split(".vol")[1].split(".")[0]) < resumed)
    assert result["volume_bytes_uploaded"] == total - kept
    assert not [n for n in os.listdir(target) if naming.UNFINISHED_MARK in n]
    # the record is gone from the archive dir once the set is committed
    assert not [d for d, _s, files in os.walk(tmp_path / "cache") if os.path.basename(d) == "resume" and files]
    state = snapshot(src)
    _restores_exactly(tmp_path, url, state, enc, "full")
    _duplicity_restores_exactly(duplicity_bin, tmp_path, url, state, enc, "full")
    cairn("verify", "--compare-data", *common, url, src)


def test_a_resume_without_the_archive_dir_reads_the_record_at_the_target(tmp_path, duplicity_bin):
    enc = ["--no-encryption"]
    src, target = tmp_path / "src", tmp_path / "target"
    url = f"file://{target}"
    _source(src, 2)
    cairn("full", *enc, "--archive-dir", tmp_path / "cache", "--volsize", "1", src, url)
    time.sleep(1.1)
    _source(src, 3)          # every file changed: an incremental of many volumes
    stored = _kill_when_stored(["incremental", *enc, "--archive-dir", tmp_path / "cache", *SLOW, src, url],
                               target, 4)
    r = cairn("incremental", "--json", *enc, "--archive-dir", tmp_path / "new-cache", "--volsize", "1", src, url)
    result = _result(r)
    # the target's copy of the record is written after the archive dir's and may lag a volume
    # or two behind it: some volumes are kept all the same
    assert result["type"] == "incremental" and result["resumed_at_volume"] >= 2, r.stderr
    assert result["resumed_at_volume"] <= len(stored) + 1
    assert b"record from the target" in r.stderr
    state = snapshot(src)
    _restores_exactly(tmp_path, url, state, enc, "inc")
    _duplicity_restores_exactly(duplicity_bin, tmp_path, url, state, enc, "inc")


def test_other_options_start_a_new_set_and_say_why(tmp_path):
    enc = ["--no-encryption"]
    src, target = tmp_path / "src", tmp_path / "target"
    url = f"file://{target}"
    _source(src, 4)
    _kill_when_stored(["full", *enc, "--archive-dir", tmp_path / "cache", *SLOW, src, url], target, 2,
                      recorded_in=tmp_path / "cache")
    r = cairn("full", "--json", *enc, "--archive-dir", tmp_path / "cache", "--volsize", "2", src, url)
    assert _result(r)["resumed_at_volume"] is None
    assert b"not resuming" in r.stderr and b"other options" in r.stderr, r.stderr
    assert not [n for n in os.listdir(target) if naming.UNFINISHED_MARK in n]
    _restores_exactly(tmp_path, url, snapshot(src), enc, "new")


def test_a_changed_file_the_last_volume_stopped_in_starts_a_new_set(tmp_path):
    """One big file spans every volume: the kill falls inside it; it changes before the re-run."""
    enc = ["--no-encryption"]
    src, target = tmp_path / "src", tmp_path / "target"
    url = f"file://{target}"
    write(os.path.join(src, "big.bin"), random.Random(5).randbytes(9_000_000))
    _kill_when_stored(["full", *enc, "--archive-dir", tmp_path / "cache", *SLOW, src, url], target, 3)
    with open(src / "big.bin", "r+b") as f:
        f.seek(8_000_000)
        f.write(b"changed after the break")
    r = cairn("full", "--json", *enc, "--archive-dir", tmp_path / "cache", "--volsize", "1", src, url)
    assert _result(r)["resumed_at_volume"] is None
    assert b"big.bin, which the last volume stopped in, has changed" in r.stderr, r.stderr
    _restores_exactly(tmp_path, url, snapshot(src), enc, "changed")


def test_files_changed_after_the_break_are_taken_as_they_are_then(tmp_path, duplicity_bin):
    """A file in the kept volumes changed after the break stays as stored there (the set's
    signatures say so too: the next incremental picks the change up); a later file is taken
    as it is at the resume."""
    enc = ["--no-encryption"]
    src, target = tmp_path / "src", tmp_path / "target"
    url = f"file://{target}"
    _source(src, 6)
    before = snapshot(src)
    stored = _kill_when_stored(["full", *enc, "--archive-dir", tmp_path / "cache", *SLOW, src, url], target, 3)
    assert stored
    early, late = os.path.join(src, "d0", "f00.bin"), os.path.join(src, "z-last.txt")
    write(early, b"changed after the break\n")
    write(late, b"the last file, changed after the break\n")
    r = cairn("full", "--json", *enc, "--archive-dir", tmp_path / "cache", "--volsize", "1", src, url)
    assert _result(r)["resumed_at_volume"], r.stderr
    expected = snapshot(src)
    expected[b"d0/f00.bin"] = before[b"d0/f00.bin"]
    dest = tmp_path / "cairn-mixed"
    cairn("restore", *enc, "--archive-dir", tmp_path / "rc", url, dest)
    assert diff_snapshots(expected, snapshot(dest)) == []
    _duplicity_restores_exactly(duplicity_bin, tmp_path, url, expected, enc, "mixed")
    time.sleep(1.1)
    r = cairn("incremental", "--json", *enc, "--archive-dir", tmp_path / "cache", src, url)
    assert _result(r)["changed_files"] == 1
    _restores_exactly(tmp_path, url, snapshot(src), enc, "after")


def test_a_dropped_sftp_connection_resumes_on_the_next_run(tmp_path, duplicity_bin):
    """sshd goes away in the middle of an incremental (exit 50); duplicity restores the full
    meanwhile; with sshd back the next run continues the set and both tools restore it."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "backends"))
    from servers import Sshd
    sshd = Sshd(tmp_path / "sshd").start()
    try:
        enc = ["--no-encryption"]
        src, target = tmp_path / "src", tmp_path / "target"
        url = sshd.url(target)
        common = [*enc, "--archive-dir", tmp_path / "cache", "--ssh-options", sshd.ssh_options,
                  "--num-retries", "1"]
        _source(src, 7, files=3)
        cairn("full", *common, "--volsize", "1", src, url)
        full_state, full_time = snapshot(src), int(time.time())
        time.sleep(1.1)
        _source(src, 8)
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "plugins", "module_utils"), PASSPHRASE=PASSPHRASE)
        proc = subprocess.Popen([sys.executable, "-m", "cairn.cli", "incremental", *map(str, common), *SLOW,
                                 str(src), url], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 120
            while len(_stored_volumes(target)) < 3:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.01)
            stored = len(_stored_volumes(target))
            sshd.stop()                     # the connection drops
            _out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 50, err
        dest = tmp_path / "dup-full"
        duplicity(duplicity_bin, "restore", *enc, "--archive-dir", tmp_path / "dupcache", "--name", "a",
                  "--time", full_time, f"file://{target}", dest)
        assert diff_snapshots(full_state, snapshot(dest)) == []
        sshd.start()
        r = cairn("incremental", "--json", *common, "--volsize", "1", src, url)
        assert _result(r)["resumed_at_volume"] >= stored, r.stderr
        state = snapshot(src)
        _restores_exactly(tmp_path, f"file://{target}", state, enc, "sftp")
        _duplicity_restores_exactly(duplicity_bin, tmp_path, f"file://{target}", state, enc, "sftp")
    finally:
        sshd.stop()
