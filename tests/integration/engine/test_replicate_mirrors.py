# SPDX-License-Identifier: GPL-3.0-or-later
"""`cairn replicate` and mirrors that fail alone (issue 11, items 4 and 3).

replicate copies the sets a target lacks, byte for byte, in an order that leaves the target
readable by stock duplicity at any interruption; a mirror that is down does not stop the backup
to the primary (exit 64, the mirror named, no secret shown), and the next backup copies to it
what it missed.
"""
import json
import os
import random
import sys
import time

import pytest

from dying import Died, dying_scheme
from treeutil import cairn, diff_snapshots, duplicity, snapshot, write

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "backends"))
from servers import Sshd, free_port  # noqa: E402

from cairn import api, naming  # noqa: E402
from cairn.crypto import CryptoOptions  # noqa: E402
from cairn.errors import ExitCode  # noqa: E402

pytestmark = pytest.mark.duplicity

PLAIN = ["--no-encryption", "--volsize", "1"]
MARKER = "Mirr0r-MARKER-pw"


def _source(src, seed):
    rnd = random.Random(seed)
    for i in range(3):
        write(os.path.join(src, f"d{i % 2}", f"f{seed}-{i}.bin"), rnd.randbytes(600_000))
    write(os.path.join(src, "round.txt"), b"round %d\n" % seed)


def _dup(duplicity_bin, tmp_path, *args, **kw):
    return duplicity(duplicity_bin, *args, "--archive-dir", tmp_path / "dupcache", "--name", "d",
                     "--no-encryption", **kw)


def _names(d):
    return sorted(n for n in os.listdir(d) if naming.parse(n))


def _two_sets(tmp_path, url):
    """A full and an incremental at ``url``: [(time, state)] of each."""
    src = tmp_path / "src"
    made = []
    for seed, kind in ((1, "full"), (2, "incremental")):
        _source(src, seed)
        r = cairn(kind, *PLAIN, "--json", "--archive-dir", tmp_path / "cache", src, url)
        made.append((json.loads(r.stdout)["timestamp"], snapshot(src)))
        time.sleep(1.1)
    return made


def _restores(tmp_path, duplicity_bin, url, state, tag, at=None):
    t = ["--time", str(at)] if at else []
    dest = tmp_path / f"cairn-{tag}"
    cairn("restore", "--no-encryption", *t, "--archive-dir", tmp_path / f"c-{tag}", url, dest)
    assert diff_snapshots(state, snapshot(dest)) == []
    dest = tmp_path / f"dup-{tag}"
    _dup(duplicity_bin, tmp_path, "restore", *t, url, dest)
    assert diff_snapshots(state, snapshot(dest)) == []


def test_replicate_file_to_file_full_and_incremental_and_time(tmp_path, duplicity_bin):
    src_dir, dst_dir = tmp_path / "a", tmp_path / "b"
    (full_t, full_state), (inc_t, inc_state) = _two_sets(tmp_path, f"file://{src_dir}")
    # --time as duplicity 0.8's replicate: the sets up to that time only
    r = json.loads(cairn("replicate", "--json", "--no-encryption", "--time", str(full_t),
                         f"file://{src_dir}", f"file://{dst_dir}").stdout)
    assert [s["type"] for s in r["sets_copied"]] == ["full"] and r["exit_code"] == 0
    st = _dup(duplicity_bin, tmp_path, "collection-status", f"file://{dst_dir}")
    assert b"Number of contained backup sets: 1" in st.stdout
    # the rest; --newer-than the full copies the incremental only
    r = json.loads(cairn("replicate", "--json", "--no-encryption", "--newer-than", str(full_t),
                         f"file://{src_dir}", f"file://{dst_dir}").stdout)
    assert [s["type"] for s in r["sets_copied"]] == ["incremental"]
    inc_files = [n for n in _names(src_dir) if "duplicity-inc." in n or "new-signatures" in n]
    assert r["files_copied"] == len(inc_files) and r["bytes_copied"] == sum(
        os.path.getsize(src_dir / n) for n in inc_files)
    assert _names(dst_dir) == _names(src_dir)
    for n in _names(src_dir):        # byte for byte
        assert (dst_dir / n).read_bytes() == (src_dir / n).read_bytes()
    # nothing left to copy; no lock or unfinished file stays behind
    r = json.loads(cairn("replicate", "--json", "--no-encryption", f"file://{src_dir}", f"file://{dst_dir}").stdout)
    assert r["sets_copied"] == [] and len(r["sets_skipped"]) == 2
    assert sorted(os.listdir(dst_dir)) == _names(dst_dir)
    _restores(tmp_path, duplicity_bin, f"file://{dst_dir}", inc_state, "latest")
    _restores(tmp_path, duplicity_bin, f"file://{dst_dir}", full_state, "full", at=full_t)


def test_replicate_refuses_re_encryption(tmp_path):
    r = cairn("replicate", "--encrypt-key", "ABCDEF", f"file://{tmp_path}/a", f"file://{tmp_path}/b", check=False)
    assert r.returncode == ExitCode.USER_ERROR and b"re-encrypting" in r.stderr


@pytest.mark.parametrize("moment", ["put", "rename"])
def test_interrupted_replicate_leaves_a_target_duplicity_reads(tmp_path, duplicity_bin, moment):
    src_dir, dst_dir = tmp_path / "a", tmp_path / "b"
    (full_t, full_state), (_inc_t, inc_state) = _two_sets(tmp_path, f"file://{src_dir}")
    cairn("replicate", "--no-encryption", "--time", str(full_t), f"file://{src_dir}", f"file://{dst_dir}")

    def dies_at(method, name):
        return method == moment and "duplicity-inc." in name and (moment == "rename" or ".vol2." in name)
    with dying_scheme(dies_at):
        none = CryptoOptions(mode="none")
        with pytest.raises(Died):
            api.replicate(api.TargetOptions(url=f"file://{src_dir}", crypto=none, archive_dir=str(tmp_path / "c1")),
                          api.TargetOptions(url=f"dying+file://{dst_dir}", crypto=none,
                                            archive_dir=str(tmp_path / "c2")))
    if moment == "put":      # volumes under unfinished names only: to duplicity, the full alone
        assert [n for n in os.listdir(dst_dir) if naming.UNFINISHED_MARK in n]
        _restores(tmp_path, duplicity_bin, f"file://{dst_dir}", full_state, "broken")
    else:                    # a manifest with volumes missing: duplicity restores the time before
        _restores(tmp_path, duplicity_bin, f"file://{dst_dir}", full_state, "broken", at=full_t)
    # the re-run completes the copy (the dead run's lock is taken over: same host, process gone)
    r = json.loads(cairn("replicate", "--json", "--no-encryption", f"file://{src_dir}", f"file://{dst_dir}").stdout)
    assert [s["type"] for s in r["sets_copied"]] == ["incremental"]
    assert _names(dst_dir) == _names(src_dir)
    assert not [n for n in os.listdir(dst_dir) if naming.UNFINISHED_MARK in n]
    _restores(tmp_path, duplicity_bin, f"file://{dst_dir}", inc_state, "done")


@pytest.fixture
def sshd(tmp_path):
    server = Sshd(tmp_path / "sshd").start()
    yield server
    server.stop()


def test_replicate_to_sftp_encrypted(tmp_path, sshd, duplicity_bin):
    src_dir = tmp_path / "a"
    remote = tmp_path / "remote"
    remote.mkdir()
    src = tmp_path / "src"
    _source(src, 5)
    cairn("full", "--volsize", "1", "--archive-dir", tmp_path / "cache", src, f"file://{src_dir}")
    ssh = ["--ssh-options", sshd.ssh_options]
    r = json.loads(cairn("replicate", "--json", *ssh, f"file://{src_dir}", sshd.url(remote)).stdout)
    assert [s["type"] for s in r["sets_copied"]] == ["full"]
    assert _names(remote) == _names(src_dir)
    dest = tmp_path / "restored"
    cairn("restore", *ssh, "--archive-dir", tmp_path / "c2", sshd.url(remote), dest)
    assert diff_snapshots(snapshot(src), snapshot(dest)) == []


def test_mirror_down_backup_completes_and_names_it_without_secrets(tmp_path):
    src, primary = tmp_path / "src", tmp_path / "primary"
    _source(src, 7)
    dead = f"sftp://backup:{MARKER}@127.0.0.1:{free_port()}/srv"
    r = cairn("full", *PLAIN, "--num-retries", "0", "--json", "--archive-dir", tmp_path / "cache",
              "--mirror", dead, src, f"file://{primary}", check=False)
    assert r.returncode == ExitCode.MIRROR_LAGGING, r.stderr
    out = json.loads(r.stdout)
    assert out["exit_code"] == ExitCode.MIRROR_LAGGING
    assert [t["url"] for t in out["lagging_targets"]] == [f"sftp://backup:***@127.0.0.1:{dead.rsplit(':', 1)[1]}"]
    assert b"is lagging" in r.stderr and b"127.0.0.1" in r.stderr
    assert MARKER.encode() not in r.stdout + r.stderr
    dest = tmp_path / "restored"
    cairn("restore", "--no-encryption", "--archive-dir", tmp_path / "c2", f"file://{primary}", dest)
    assert diff_snapshots(snapshot(src), snapshot(dest)) == []


def test_mirror_down_then_back_is_caught_up(tmp_path, sshd, duplicity_bin):
    src, primary, remote = tmp_path / "src", tmp_path / "primary", tmp_path / "remote"
    remote.mkdir()
    mirror = sshd.url(remote)
    base = [*PLAIN, "--json", "--num-retries", "0", "--archive-dir", tmp_path / "cache",
            "--ssh-options", sshd.ssh_options, "--mirror", mirror]
    _source(src, 1)
    cairn("full", *base, src, f"file://{primary}")
    assert _names(remote) == _names(primary)
    time.sleep(1.1)
    _source(src, 2)
    sshd.stop()
    r = cairn("incremental", *base, src, f"file://{primary}", check=False)
    assert r.returncode == ExitCode.MIRROR_LAGGING, r.stderr
    assert [t["index"] for t in json.loads(r.stdout)["lagging_targets"]] == [1]
    assert len(_names(primary)) > len(_names(remote))
    state2 = snapshot(src)
    time.sleep(1.1)
    sshd.start()
    _source(src, 3)
    r = cairn("incremental", *base, src, f"file://{primary}")
    out = json.loads(r.stdout)
    assert out["exit_code"] == 0 and out["lagging_targets"] == []
    assert [len(m["sets_copied"]) for m in out["mirrors_caught_up"]] == [1]
    assert _names(remote) == _names(primary)
    for n in _names(primary):
        assert (remote / n).read_bytes() == (primary / n).read_bytes()
    # the mirror restores what the primary does, by cairn and by duplicity (over a file:// view)
    _restores(tmp_path, duplicity_bin, f"file://{remote}", snapshot(src), "mirror")
    st = _dup(duplicity_bin, tmp_path, "collection-status", f"file://{remote}")
    assert b"Number of contained backup sets: 3" in st.stdout
    dest = tmp_path / "dup-mirror-2"
    inc2 = sorted(n for n in _names(remote) if n.startswith("duplicity-inc.") and ".manifest" in n)[0]
    t2 = naming.parse(inc2).end_time
    _dup(duplicity_bin, tmp_path, "restore", "--time", str(t2), f"file://{remote}", dest)
    assert diff_snapshots(state2, snapshot(dest)) == []


def test_run_job_records_a_lagging_target_in_state_and_metrics(tmp_path):
    from cairn.job import Job
    src = tmp_path / "src"
    _source(src, 9)
    port = free_port()
    dead = f"sftp://backup:{MARKER}@127.0.0.1:{port}/srv"
    config = {"name": "j", "source": str(src), "targets": [f"file://{tmp_path}/primary", dead],
              "archive_dir": str(tmp_path / "cache"), "args": [*PLAIN, "--num-retries", "0"],
              "retention": {"keep_full": 2},
              "state_file": str(tmp_path / "state.json"), "metrics_file": str(tmp_path / "m.prom"),
              "lock_file": str(tmp_path / "job.lock")}
    lines = []
    code = Job(config, env={"PATH": os.environ["PATH"]}, log=lines.append).run()
    assert code == ExitCode.MIRROR_LAGGING, lines
    state = json.loads((tmp_path / "state.json").read_text())
    redacted = f"sftp://backup:***@127.0.0.1:{port}/srv"
    assert state["targets"][redacted]["status"] == "lagging"
    assert state["targets"][f"file://{tmp_path}/primary"]["status"] == "ok"
    assert not state["failed"] and state["last_success"]
    metrics = (tmp_path / "m.prom").read_text()
    assert f'cairn_backup_target_lagging{{job="j",target="{redacted}"}} 1' in metrics
    assert f'cairn_backup_target_lagging{{job="j",target="file://{tmp_path}/primary"}} 0' in metrics
    assert MARKER not in metrics + json.dumps(state) + "\n".join(lines)
