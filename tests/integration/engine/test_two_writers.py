# SPDX-License-Identifier: GPL-3.0-or-later
"""Two writers on one target (issue 9, finding 3): the target lock.

Two `cairn` processes with their own archive dirs back up to the same target with random start
offsets: each either completes a restorable set or refuses with exit 23 naming the other, and
neither deletes the other's files. Also: a SIGKILLed writer's lock is taken over at once by the
next run on this host; another host's lock refuses until it is stale (or --break-lock); cleanup
removes only stale lock objects; read-only commands ignore the lock; a set that lost a volume is
never committed; duplicity does not mind lock objects.
"""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import pytest

from treeutil import ROOT, cairn, diff_snapshots, duplicity, snapshot, write

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "backends"))
from servers import Sshd  # noqa: E402

from cairn import api  # noqa: E402
from cairn.backends import BackendOptions, open_raw, register, unregister  # noqa: E402
from cairn.backends.base import Backend  # noqa: E402
from cairn.collection import Collection  # noqa: E402
from cairn.crypto import CryptoOptions  # noqa: E402
from cairn.errors import BackendError  # noqa: E402
from cairn.lock import is_lock_name  # noqa: E402

HOST = socket.gethostname()
PLAIN = ["--no-encryption", "--volsize", "1", "--no-print-statistics"]
FILES = 8                   # of 1 MiB each: about ten volumes
# uploads at this rate make a full backup of the source take over a second, with little CPU
SLOW = ["--max-upload-rate", "6M"]


def _popen(*args):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "plugins", "module_utils"))
    return subprocess.Popen([sys.executable, "-m", "cairn.cli", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _make_source(src, rnd, round_no, rewrite):
    """Rewrite ``rewrite`` of the big files (a distinct mtime per round, so a change is seen)."""
    mtime = 1_700_000_000 + round_no * 100
    for i in rnd.sample(range(FILES), rewrite):
        write(os.path.join(src, f"big{i}.bin"), rnd.randbytes(1 << 20), mtime=mtime)
    write(os.path.join(src, "sub", "round.txt"), b"round %d\n" % round_no, mtime=mtime)


def _run_pair(args_a, args_b, offset, b_first):
    """Start two writers ``offset`` seconds apart; [(returncode, stdout, stderr, pid)] as A, B."""
    order = [(0, args_a), (1, args_b)]
    if b_first:
        order.reverse()
    procs = [None, None]
    procs[order[0][0]] = _popen(*order[0][1])
    time.sleep(offset)
    procs[order[1][0]] = _popen(*order[1][1])
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        out.append((p.returncode, stdout, stderr.decode(errors="replace"), p.pid))
    return out


def _check_pair(results):
    """Each run exits 0 or 23; a 23 names the other run's host and pid. Returns the sets made."""
    made = []
    for me, other in ((0, 1), (1, 0)):
        rc, stdout, stderr, _pid = results[me]
        assert rc in (0, 23), f"writer {me} exited {rc}:\n{stderr}"
        if rc == 23:
            assert f"host {HOST}, pid {results[other][3]}, started " in stderr, stderr
        else:
            made.append(json.loads(stdout))
    return made


def _target_names(target_dir):
    return os.listdir(target_dir) if os.path.isdir(target_dir) else []


def _assert_clean(names):
    """Only complete sets: no incomplete or orphaned set, no unfinished volume, no lock object,
    no temp file."""
    col = Collection(names)
    assert not col.incomplete and not col.orphaned and not col.orphaned_signatures, names
    assert not col.unfinished, names
    assert not [n for n in names if is_lock_name(n) or n.startswith(".")], names
    return col


def _assert_sets_restore(tmp_path, url, made, states, target_names, **restore_kw):
    """Every reported set is complete, with the volumes it reported, and restores its state."""
    col = _assert_clean(target_names)
    by_time = {s.end_time: s for c in col.chains for s in c.sets}
    target = api.TargetOptions(url=url, crypto=CryptoOptions(mode="none"),
                               archive_dir=str(tmp_path / "verify-cache"), **restore_kw)
    for i, (result, round_no) in enumerate(made):
        s = by_time.get(result["timestamp"])
        assert s is not None and s.complete, f"set {result['time']} is gone or incomplete"
        assert len(s.volumes) == result["volumes"], (result, sorted(s.volumes))
        dest = tmp_path / f"restored-{i}"
        api.restore(target, str(dest), time=result["timestamp"])
        assert diff_snapshots(states[round_no], snapshot(dest)) == [], result["time"]


def test_two_writers_twenty_rounds(tmp_path):
    rnd = random.Random(20261201)
    src = tmp_path / "src"
    target_dir = tmp_path / "target"
    url = f"file://{target_dir}"
    _make_source(src, rnd, 0, FILES)
    states, made, refused = {}, [], 0
    started = time.time()
    for round_no in range(20):
        if round_no:
            _make_source(src, rnd, round_no, 4)
        states[round_no] = snapshot(src)
        command = "full" if round_no % 3 == 0 else "incremental" if made else "full"
        writers = [[command, *PLAIN, *SLOW, "--json", "--archive-dir", tmp_path / f"cache-{w}", src, url]
                   for w in "ab"]
        results = _run_pair(*writers, offset=rnd.uniform(0, 1.0), b_first=rnd.random() < 0.5)
        round_made = _check_pair(results)
        refused += 2 - len(round_made)
        made += [(r, round_no) for r in round_made]
        # after each round: only complete sets, no lock left behind
        _assert_clean(_target_names(target_dir))
    assert made, "no run completed"
    assert refused, "the writers never met: the test did not test contention"
    print(f"{len(made)} sets made, {refused} runs refused, rounds took {time.time() - started:.1f} s")
    _assert_sets_restore(tmp_path, url, made, states, _target_names(target_dir))


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = Sshd(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


def test_two_writers_on_sftp(tmp_path, sshd):
    rnd = random.Random(9)
    src = tmp_path / "src"
    remote = tmp_path / "remote"
    url = sshd.url(remote)
    ssh = [f"--ssh-options={sshd.ssh_options}"]
    _make_source(src, rnd, 0, FILES)
    states = {0: snapshot(src)}
    writers = [["full", *PLAIN, *SLOW, *ssh, "--json", "--archive-dir", tmp_path / f"cache-{w}", src, url]
               for w in "ab"]
    results = _run_pair(*writers, offset=0.2, b_first=False)
    made = [(r, 0) for r in _check_pair(results)]
    assert len(made) >= 1
    names = _target_names(remote)
    _assert_sets_restore(tmp_path, url, made, states, names,
                         backend=BackendOptions(ssh_options=sshd.ssh_options))


def test_a_killed_writers_lock_is_taken_over_at_once(tmp_path):
    rnd = random.Random(3)
    src = tmp_path / "src"
    target_dir = tmp_path / "target"
    url = f"file://{target_dir}"
    _make_source(src, rnd, 0, FILES)
    # slowed down, so that it is surely killed in the middle
    proc = _popen("full", *PLAIN, "--max-upload-rate", "2M", "--archive-dir", tmp_path / "cache", src, url)
    deadline = time.time() + 60
    while time.time() < deadline:
        names = _target_names(target_dir)
        if any(is_lock_name(n) for n in names) and any(".vol" in n for n in names):
            break
        time.sleep(0.01)
    else:
        proc.kill()
        raise AssertionError("the writer never started uploading")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    left = _target_names(target_dir)
    assert any(is_lock_name(n) for n in left)
    r = cairn("full", *PLAIN, "--archive-dir", tmp_path / "cache", src, url, check=False)
    stderr = r.stderr.decode()
    assert r.returncode == 0, stderr
    assert "taking over the target lock" in stderr and f"pid {proc.pid}" in stderr and "no longer runs" in stderr
    names = [n for n in _target_names(target_dir) if not n.startswith(".cairn-tmp.")]
    _assert_clean(names)                 # the killed run's volumes went with its lock
    cairn("restore", "--no-encryption", "--archive-dir", tmp_path / "c2", url, tmp_path / "out")
    assert diff_snapshots(snapshot(src), snapshot(tmp_path / "out")) == []


def test_a_writer_whose_lock_is_broken_stops_without_committing(tmp_path):
    rnd = random.Random(4)
    src = tmp_path / "src"
    target_dir = tmp_path / "target"
    url = f"file://{target_dir}"
    _make_source(src, rnd, 0, FILES)
    # a short stale age makes the holder refresh (and look for a takeover) every second
    slow = _popen("full", *PLAIN, "--max-upload-rate", "1M", "--lock-stale-after", "5",
                  "--archive-dir", tmp_path / "cache-a", src, url)
    deadline = time.time() + 60
    while not any(".vol" in n for n in _target_names(target_dir)) and time.time() < deadline:
        time.sleep(0.02)
    r = cairn("full", *PLAIN, "--break-lock", "--archive-dir", tmp_path / "cache-b", src, url, check=False)
    stderr = r.stderr.decode()
    assert r.returncode == 0, stderr
    assert "--break-lock" in stderr and f"pid {slow.pid}" in stderr
    _stdout, slow_err = slow.communicate(timeout=60)
    assert slow.returncode == 23, slow_err
    assert b"lost the lock on the target" in slow_err, slow_err
    assert b"taken over by host" in slow_err or b"took the lock over" in slow_err, slow_err
    # its files were left alone while it might still write; cleanup removes them now
    left = _target_names(target_dir)
    assert Collection(left).unfinished or [n for n in left if n.startswith(".cairn-tmp.")], left
    cairn("cleanup", "--force", *PLAIN, "--archive-dir", tmp_path / "cache-b", url)
    col = _assert_clean(_target_names(target_dir))
    assert sum(len(c.sets) for c in col.chains) == 1
    cairn("restore", "--no-encryption", "--archive-dir", tmp_path / "c2", url, tmp_path / "out")
    assert diff_snapshots(snapshot(src), snapshot(tmp_path / "out")) == []


def _plant_lock(target_dir, *, age, host="peer.backup.invalid", pid=31337, run_id="ab" * 16, prefix=""):
    """A lock object as a cairn on another host writes it, last refreshed ``age`` seconds ago."""
    now = time.time()
    name = f"{prefix}cairn-lock.{run_id}.json"
    os.makedirs(target_dir, exist_ok=True)
    with open(os.path.join(target_dir, name), "w") as f:
        json.dump({"cairn_lock": 1, "run_id": run_id, "host": host, "pid": pid,
                   "boot_id": "0123456789abcdef0123456789abcdef", "pid_ns": "pid:[4026531836]",
                   "proc_start": 1234, "started": now - age - 30, "refreshed": now - age,
                   "command": "backup: cairn full /srv/data sftp://backup@nas/b", "took_over": []}, f)
    return name


def test_another_hosts_lock_refuses_until_stale_or_broken(tmp_path):
    src = tmp_path / "src"
    write(str(src / "a.txt"), b"a")
    target_dir = tmp_path / "target"
    url = f"file://{target_dir}"
    common = [*PLAIN, "--archive-dir", tmp_path / "cache"]
    lock = _plant_lock(target_dir, age=60)
    r = cairn("full", *common, src, url, check=False)
    assert r.returncode == 23
    assert b"host peer.backup.invalid, pid 31337, started " in r.stderr and b"/srv/data" in r.stderr
    assert _target_names(target_dir) == [lock]          # nothing written, our lock object gone
    # the writers: cleanup and the remove-* commands too (when they would delete)
    for cmd in (["cleanup", "--force"], ["remove-all-but-n-full", "1", "--force"],
                ["remove-older-than", "1D", "--force"], ["remove-all-inc-of-but-n-full", "1", "--force"]):
        r = cairn(*cmd, *common, url, check=False)
        assert r.returncode == 23 and b"peer.backup.invalid" in r.stderr, cmd
    # older than the stale age (default 30 min): taken over with a warning naming it
    os.unlink(target_dir / lock)
    lock = _plant_lock(target_dir, age=2 * 3600)
    r = cairn("full", *common, src, url, check=False)
    assert r.returncode == 0, r.stderr
    assert b"taking over the target lock" in r.stderr and b"peer.backup.invalid, pid 31337" in r.stderr
    assert lock not in _target_names(target_dir)
    # a shorter stale age
    lock = _plant_lock(target_dir, age=120)
    assert cairn("incremental", *common, src, url, check=False).returncode == 23
    r = cairn("incremental", *common, "--lock-stale-after", "1m", src, url, check=False)
    assert r.returncode == 0 and b"taking over" in r.stderr, r.stderr
    # a fresh lock with --break-lock
    time.sleep(1.1)
    lock = _plant_lock(target_dir, age=5)
    r = cairn("incremental", *common, "--break-lock", src, url, check=False)
    assert r.returncode == 0, r.stderr
    assert b"--break-lock" in r.stderr and b"peer.backup.invalid, pid 31337" in r.stderr
    st = json.loads(cairn("collection-status", "--json", *common, url).stdout)
    assert [s["type"] for s in st["primary_chain"]["sets"]] == ["full", "incremental", "incremental"]
    _assert_clean(_target_names(target_dir))
    assert cairn("full", *common, "--lock-stale-after", "0", src, url, check=False).returncode == 23


def test_readers_ignore_the_lock_and_cleanup_removes_only_stale_locks(tmp_path):
    src = tmp_path / "src"
    write(str(src / "a.txt"), b"a" * 1000)
    target_dir = tmp_path / "target"
    url = f"file://{target_dir}"
    common = [*PLAIN, "--archive-dir", tmp_path / "cache"]
    cairn("full", *common, src, url)
    live = _plant_lock(target_dir, age=10, run_id="11" * 16)
    stale = _plant_lock(target_dir, age=7200, run_id="22" * 16)
    other_prefix = _plant_lock(target_dir, age=7200, run_id="33" * 16, prefix="web2-")
    # restore, verify, collection-status and list-current-files do not take the lock
    cairn("restore", *common, url, tmp_path / "out")
    cairn("verify", *common, url, src)
    cairn("collection-status", *common, url)
    assert b"a.txt" in cairn("list-current-files", *common, url).stdout
    # a dry run lists only the stale lock object (of this prefix)
    r = json.loads(cairn("cleanup", "--json", *common, url).stdout)
    assert r["files"] == [stale]
    # with --force cleanup is a writer: the live lock refuses it
    assert cairn("cleanup", "--force", *common, url, check=False).returncode == 23
    os.unlink(target_dir / live)
    r = cairn("cleanup", "--force", *common, url, check=False)
    assert r.returncode == 0 and b"taking over" in r.stderr
    names = _target_names(target_dir)
    assert [n for n in names if "cairn-lock." in n] == [other_prefix]      # another prefix's


def test_cleanup_leaves_another_prefixes_uploads_in_flight(tmp_path):
    src = tmp_path / "src"
    write(str(src / "a.txt"), b"a")
    target_dir = tmp_path / "target"
    url = f"file://{target_dir}"
    common = [*PLAIN, "--archive-dir", tmp_path / "cache"]
    cairn("full", *common, src, url)
    ours = ".cairn-tmp.duplicity-full.20200101T000000Z.vol1.difftar.gz"
    theirs = ".cairn-tmp.web2-duplicity-full.20200101T000000Z.vol1.difftar.gz"
    for n in (ours, theirs):
        (target_dir / n).write_bytes(b"partial")
    cairn("cleanup", "--force", *common, url)
    names = _target_names(target_dir)
    assert ours not in names and theirs in names


class _LosingBackend(Backend):
    """Acknowledges the upload of volume 2, then the file is gone (as if another run deleted it)."""

    def __init__(self, inner):
        self.inner = inner
        self.url = "losing+" + inner.url

    def list(self):
        return self.inner.list()

    def get(self, name, local_path):
        return self.inner.get(name, local_path)

    def put(self, local_path, name):
        self.inner.put(local_path, name)
        if ".vol2." in name:
            self.inner.delete([name])

    def delete(self, names):
        return self.inner.delete(names)

    def rename(self, old, new):
        return self.inner.rename(old, new)

    def size(self, name):
        return self.inner.size(name)


def test_a_set_that_lost_a_volume_is_never_committed(tmp_path):
    src = tmp_path / "src"
    _make_source(src, random.Random(1), 0, 3)
    target_dir = tmp_path / "target"
    register("losing+file", lambda url, options: _LosingBackend(open_raw(url[len("losing+"):], options)))
    try:
        target = api.TargetOptions(url=f"losing+file://{target_dir}", crypto=CryptoOptions(mode="none"),
                                   archive_dir=str(tmp_path / "cache"))
        with pytest.raises(BackendError) as e:
            api.backup(target, api.BackupOptions(source=str(src), mode="full", volsize=1))
    finally:
        unregister("losing+file")
    assert ".vol2.difftar.gz (missing)" in str(e.value) and "not committed" in str(e.value)
    names = _target_names(target_dir)
    assert not [n for n in names if ".manifest" in n or "signatures" in n], names
    assert not [n for n in names if is_lock_name(n)], names


@pytest.mark.duplicity
def test_duplicity_ignores_lock_objects(tmp_path, duplicity_bin):
    src = tmp_path / "src"
    _make_source(src, random.Random(2), 0, 2)
    target_dir = tmp_path / "target"
    url = f"file://{target_dir}"
    cairn("full", *PLAIN, "--archive-dir", tmp_path / "cache", src, url)
    _plant_lock(target_dir, age=10, run_id="11" * 16)
    _plant_lock(target_dir, age=7200, run_id="22" * 16)
    status = duplicity(duplicity_bin, "collection-status", "--no-encryption", "--archive-dir",
                       tmp_path / "dupcache", "--name", "x", url).stdout
    assert b"No orphaned or incomplete backup sets found." in status
    assert b"Total number of contained volumes: 3" in status
    duplicity(duplicity_bin, "restore", "--no-encryption", "--archive-dir", tmp_path / "dupcache",
              "--name", "x", url, tmp_path / "out")
    assert diff_snapshots(snapshot(src), snapshot(tmp_path / "out")) == []
    # and with a file prefix
    url2 = f"file://{tmp_path / 'target2'}"
    cairn("full", *PLAIN, "--file-prefix", "web1-", "--archive-dir", tmp_path / "cache", src, url2)
    _plant_lock(tmp_path / "target2", age=10, prefix="web1-")
    status = duplicity(duplicity_bin, "collection-status", "--no-encryption", "--file-prefix", "web1-",
                       "--archive-dir", tmp_path / "dupcache", "--name", "y", url2).stdout
    assert b"No orphaned or incomplete backup sets found." in status
