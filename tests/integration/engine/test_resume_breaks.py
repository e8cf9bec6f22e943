# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 11's resume must-hold: a full of about 300 MB with --volsize 10 to sftp, broken 15
times (SIGKILL at 10 random points, sshd stopped at 5), each break followed by a run that
completes by resuming. Each break waits for a random number of volumes to be whole at the
target, then a random part of one volume's time, so it lands inside the run however fast the
machine is that day (a break timed against the first full's duration missed runs that went
faster than that full).

After each break stock duplicity restores the previous complete backup; each resuming run
uploads again at most one volume that was already whole at the target; at the end duplicity
restores the archive identical to the source. The bytes uploaded again and the time of each
resuming run are printed (and written to $CAIRN_RESUME_REPORT when set). The seed is printed;
CAIRN_CRASH_SEED replays it, CAIRN_BREAKS_MB shrinks the source for a quick run.
"""
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time

import pytest

from treeutil import PASSPHRASE, ROOT, cairn, diff_snapshots, duplicity, snapshot, write

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "backends"))
from servers import Sshd  # noqa: E402

from cairn import naming  # noqa: E402

pytestmark = [pytest.mark.duplicity, pytest.mark.slow]

MB = 1 << 20
VOLSIZE = 10


def _make_source(src, rnd, total):
    """Files of 4 KiB to 24 MiB, text-like (they compress about 2:1, as logs and configs do)."""
    block = bytes(97 + rnd.getrandbits(4) for _byte in range(1 << 20))
    made, i = 0, 0
    while made < total:
        size = min(rnd.choice([4096, 60_000, 700_000, 3 * MB, 9 * MB, 24 * MB]), total - made)
        off = rnd.randrange(1 << 20)
        data = (b"file %d\n" % i + (block[off:] + block[:off]) * (size // len(block) + 1))[:size]
        write(os.path.join(src, f"d{i % 5}", f"f{i:03d}.dat"), data)
        made += size
        i += 1


def _touch_some(src, round_no):
    """A small change per round, so every full differs from the one before."""
    write(os.path.join(src, "round.txt"), b"round %d\n" % round_no)


def _volumes_at(target):
    """{number: size} of the volumes whole at the target under their unfinished names."""
    out = {}
    for n in os.listdir(target):
        if n.startswith(naming.UNFINISHED_MARK) and ".vol" in n:
            out[int(n.split(".vol")[1].split(".")[0])] = os.path.getsize(os.path.join(target, n))
    return out


def _break_point(proc, target, rnd, n_volumes, seconds_per_volume):
    """Return once the run has left k volumes whole (k at random, 1 .. n-1) and then spent a
    random part of one volume's time on the next, or has ended."""
    k = rnd.randint(1, max(1, n_volumes - 1))
    share = rnd.uniform(0.0, 0.6)
    while proc.poll() is None and len(_volumes_at(target)) < k:
        time.sleep(0.02)
    time.sleep(share * seconds_per_volume)


def test_three_hundred_megabytes_broken_fifteen_times(tmp_path, duplicity_bin):
    seed = int(os.environ.get("CAIRN_CRASH_SEED", time.time()))
    print(f"crash seed {seed} (set CAIRN_CRASH_SEED to replay)")
    rnd = random.Random(seed)
    src, target = tmp_path / "src", tmp_path / "target"
    _make_source(src, rnd, int(os.environ.get("CAIRN_BREAKS_MB", 300)) * MB)
    sshd = Sshd(tmp_path / "sshd").start()
    try:
        url = sshd.url(target)
        common = ["--no-encryption", "--volsize", VOLSIZE, "--archive-dir", tmp_path / "cache",
                  "--ssh-options", sshd.ssh_options, "--num-retries", "1"]
        started = time.monotonic()
        cairn("full", *common, src, url)
        duration = time.monotonic() - started
        n_volumes = sum(".vol" in n for n in os.listdir(target))
        good_state, good_time = snapshot(src), int(time.time())
        breaks = ["kill"] * 10 + ["stop"] * 5
        rnd.shuffle(breaks)
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "plugins", "module_utils"), PASSPHRASE=PASSPHRASE)
        again, resume_times, broken = [], [], 0
        for round_no, how in enumerate(breaks, 1):
            time.sleep(1.1)
            _touch_some(src, round_no)
            proc = subprocess.Popen([sys.executable, "-m", "cairn.cli", "full", *map(str, common), str(src), url],
                                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _break_point(proc, target, rnd, n_volumes, duration / n_volumes)
            if how == "kill":
                proc.send_signal(signal.SIGKILL)
                _out, err = proc.communicate()
            else:
                sshd.stop()
                _out, err = proc.communicate(timeout=300)
                sshd.start()
            whole = _volumes_at(target)     # what the broken run left whole
            if proc.returncode == 0:        # it finished before the break: a plain good run
                good_state, good_time = snapshot(src), int(time.time())
                continue
            broken += 1
            assert proc.returncode in (-signal.SIGKILL, 50), err.decode(errors="replace")
            # the previous complete backup, by stock duplicity
            dest = tmp_path / f"dup-{round_no}"
            duplicity(duplicity_bin, "restore", "--no-encryption", "--archive-dir", tmp_path / "dupcache",
                      "--name", f"r{round_no}", "--time", good_time, f"file://{target}", dest)
            assert diff_snapshots(good_state, snapshot(dest)) == [], f"round {round_no} ({how})"
            # the next run completes, uploading again at most one volume that was whole
            t0 = time.monotonic()
            r = cairn("full", "--json", *common, src, url)
            resume_times.append(time.monotonic() - t0)
            result = json.loads(r.stdout)
            first_new = result["resumed_at_volume"] or 1
            redone = {n: size for n, size in whole.items() if n >= first_new}
            again.append(sum(redone.values()))
            assert len(redone) <= 1, (f"round {round_no} ({how}): volumes {sorted(redone)} were whole at the "
                                      f"target and uploaded again (resumed at {first_new})\n{r.stderr.decode()}")
            good_state, good_time = snapshot(src), int(time.time())
        assert broken >= 12, f"only {broken} of 15 runs were broken before they ended"
        # the final archive, by stock duplicity
        dest = tmp_path / "dup-final"
        duplicity(duplicity_bin, "restore", "--no-encryption", "--archive-dir", tmp_path / "dupcache",
                  "--name", "final", f"file://{target}", dest)
        assert diff_snapshots(snapshot(src), snapshot(dest)) == []
        report = {"seed": seed, "breaks": broken, "full_seconds": round(duration, 2),
                  "reuploaded_bytes_mean": round(statistics.mean(again)), "reuploaded_bytes_max": max(again),
                  "resume_seconds_mean": round(statistics.mean(resume_times), 2),
                  "resume_seconds_max": round(max(resume_times), 2)}
        print("resume report:", json.dumps(report))
        if os.environ.get("CAIRN_RESUME_REPORT"):
            with open(os.environ["CAIRN_RESUME_REPORT"], "w") as f:
                json.dump(report, f)
    finally:
        sshd.stop()
