# SPDX-License-Identifier: GPL-3.0-or-later
"""SIGKILL at random points of a backup; peak memory on 200,000 files."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from treeutil import ROOT, PASSPHRASE, cairn, diff_snapshots, duplicity, snapshot, write

from cairn import naming


def _grow(src, rnd, n, tag):
    for i in range(n):
        write(os.path.join(src, f"d{i % 7}", f"{tag}-{i}.bin"), rnd.randbytes(rnd.randint(1, 400_000)))


def _inside_a_commit(target):
    """Whether a set has its manifest and unfinished volumes and no signatures: a run killed
    between writing the manifest and renaming its volumes."""
    names = os.listdir(target)
    for n in names:
        p = naming.parse(n)
        if p is not None and p.manifest:
            sig = [m for m in names if (q := naming.parse(m)) is not None
                   and q.type in ("full-sig", "new-sig") and (q.time, q.end_time) == (p.time, p.end_time)]
            if not sig and any(naming.UNFINISHED_MARK in m for m in names):
                return True
    return False


def _popen_cairn(*args):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "plugins", "module_utils"), PASSPHRASE=PASSPHRASE)
    return subprocess.Popen([sys.executable, "-m", "cairn.cli", *map(str, args)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.duplicity
def test_sigkill_at_random_points(tmp_path, gnupghome, duplicity_bin):
    seed = int(os.environ.get("CAIRN_CRASH_SEED", time.time()))
    print(f"crash seed {seed} (set CAIRN_CRASH_SEED to replay)")
    rnd = random.Random(seed)
    src = tmp_path / "src"
    _grow(src, rnd, 40, "base")
    target = tmp_path / "target"
    url = f"file://{target}"
    common = ["--archive-dir", tmp_path / "cache", "--volsize", "1"]
    started = time.time()
    cairn("full", *common, src, url)
    duration = time.time() - started
    good_state, good_time = snapshot(src), int(time.time())
    for attempt in range(4):
        time.sleep(1.1)
        _grow(src, rnd, 15, f"a{attempt}")
        new_state = snapshot(src)
        action = "full" if attempt % 2 else "incremental"
        proc = _popen_cairn(action, *common, src, url)
        time.sleep(rnd.uniform(0.05, 1.0) * duration)
        finished = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # the previous backup restores with both tools
        d = tmp_path / f"cairn-{attempt}"
        cairn("restore", "--archive-dir", tmp_path / f"c{attempt}", "--time", good_time, url, d)
        assert diff_snapshots(good_state, snapshot(d)) == []
        d = tmp_path / f"dup-{attempt}"
        duplicity(duplicity_bin, "restore", "--archive-dir", tmp_path / "dupcache", "--name", f"n{attempt}",
                  "--time", good_time, url, d)
        assert diff_snapshots(good_state, snapshot(d)) == []
        # the latest point is a consistent one: the old state, or the new one if the run got far
        d = tmp_path / f"latest-{attempt}"
        cairn("restore", "--archive-dir", tmp_path / f"c{attempt}", url, d)
        assert snapshot(d) in (good_state, new_state)
        # duplicity too, without --time, unless the kill fell inside the commit (a manifest
        # written, the volumes not yet renamed, no signatures): that set it reports and skips
        d = tmp_path / f"dup-latest-{attempt}"
        r = duplicity(duplicity_bin, "restore", "--archive-dir", tmp_path / "dupcache", "--name", f"l{attempt}",
                      url, d, check=False)
        if r.returncode == 0:
            assert snapshot(d) in (good_state, new_state)
        else:
            assert _inside_a_commit(target), r.stderr
        if finished:
            good_state, good_time = new_state, int(time.time())
        # the next run succeeds
        time.sleep(1.1)
        cairn(action, *common, src, url)
        good_state, good_time = snapshot(src), int(time.time())
    # one more kill, then cleanup --force leaves only complete sets
    time.sleep(1.1)
    _grow(src, rnd, 15, "last")
    last_state = snapshot(src)
    proc = _popen_cairn("full", *common, src, url)
    time.sleep(rnd.uniform(0.2, 0.8) * duration)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    cairn("cleanup", "--force", *common, url)
    st = json.loads(cairn("collection-status", "--json", *common, url).stdout)
    assert st["incomplete_sets"] == [] and st["orphaned_sets"] == []
    assert not [n for n in os.listdir(target) if n.startswith(".") or naming.UNFINISHED_MARK in n]
    d = tmp_path / "final"
    cairn("restore", "--archive-dir", tmp_path / "cfinal", url, d)
    # the killed full may have got as far as its signatures: then it is the latest point
    assert snapshot(d) in (good_state, last_state)


def peak_rss_kib(argv, **kwargs):
    """(completed process, peak RSS in KiB) of one cairn command line."""
    code = (
        "import resource, subprocess, sys\n"
        "r = subprocess.run(sys.argv[1:], check=False)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(r.returncode)\n")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "plugins", "module_utils"), PASSPHRASE=PASSPHRASE)
    r = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "cairn.cli", *map(str, argv)], env=env,
                       capture_output=True, check=False, **kwargs)
    assert r.returncode == 0, r.stderr
    return r, int(r.stderr.split()[-1])


@pytest.mark.slow
def test_memory_of_200k_files(tmp_path):
    """Peak RSS of a backup of 200,000 small files, and of listing them, stays under 200 MB
    (gpg children included). Files of a few hundred bytes of text, as the bench's: the backup
    has more than one volume, and its first checkpoint's resume segment carries about 200 MB of
    signatures (that took 530 MB once)."""
    src = tmp_path / "src"
    rnd = random.Random(5)
    for d in range(400):
        dd = src / f"dir{d:03d}"
        dd.mkdir(parents=True)
        for i in range(500):
            size = rnd.randint(100, 700)
            (dd / f"f{i:03d}").write_bytes(rnd.randbytes(size // 2 + 1).hex()[:size].encode())
    url = f"file://{tmp_path}/target"
    _r, peak_kib = peak_rss_kib(["full", "--no-print-statistics", "--archive-dir", tmp_path / "cache", src, url])
    print(f"peak RSS of the backup of 200,000 files: {peak_kib / 1024:.1f} MiB")
    assert peak_kib < 200 * 1024
    assert len([n for n in os.listdir(tmp_path / "target") if ".vol" in n]) > 1   # checkpoints were made
    r, peak_kib = peak_rss_kib(["list-current-files", "--archive-dir", tmp_path / "cache", url])
    print(f"peak RSS of listing them: {peak_kib / 1024:.1f} MiB")
    assert r.stdout.count(b"\n") == 200_000 + 400 + 1
    assert peak_kib < 100 * 1024
