# SPDX-License-Identifier: GPL-3.0-or-later
"""full -> change -> inc -> change -> inc; a restore at each point equals the tree as it was."""
import json
import os
import shutil
import time

import pytest

from treeutil import cairn, diff_snapshots, make_hard_tree, snapshot, write


def _change_1(src):
    write(os.path.join(src, b"plain.txt"), b"hello, changed\n")
    with open(os.path.join(src, b"sub", b"big.bin"), "r+b") as f:   # patched in place: a delta
        f.seek(100_000)
        f.write(os.urandom(5000))
    os.remove(os.path.join(src, b"name with spaces.txt"))
    write(os.path.join(src, b"added", b"new file.txt"), b"new\n")
    os.unlink(os.path.join(src, b"link-to-plain"))
    os.symlink(b"empty", os.path.join(src, b"link-to-plain"))
    os.chmod(os.path.join(src, b"empty"), 0o600)


def _change_2(src):
    shutil.rmtree(os.path.join(src, b"added"))
    with open(os.path.join(src, b"sub", b"big.bin"), "ab") as f:
        f.write(os.urandom(70_000))
    write(os.path.join(src, b"name with spaces.txt"), b"back again\n")
    os.remove(os.path.join(src, b"fifo"))
    os.makedirs(os.path.join(src, b"fifo"))      # a path changing type


@pytest.mark.parametrize("mode", ["symmetric", "pubkey", "none"])
def test_three_points_in_time(tmp_path, gnupghome, mode):
    src = make_hard_tree(tmp_path / "src")
    url = f"file://{tmp_path}/target"
    enc = {"symmetric": [], "pubkey": ["--encrypt-key", gnupghome["enc"]],
           "none": ["--no-encryption"]}[mode]
    common = [*enc, "--archive-dir", tmp_path / "cache", "--volsize", "1"]
    states, times = [], []
    for i, change in enumerate([None, _change_1, _change_2]):
        if change:
            time.sleep(1.1)
            change(src)
        states.append(snapshot(src))
        r = cairn("full" if i == 0 else "incremental", *common, "--json", src, url)
        res = json.loads(r.stdout)
        assert res["type"] == ("full" if i == 0 else "incremental")
        times.append(res["timestamp"])
    assert states[0] != states[1] != states[2]
    for t, state in zip(times, states):
        dest = tmp_path / f"restore-{t}"
        cairn("restore", *common, "--time", t, url, dest)
        assert diff_snapshots(state, snapshot(dest)) == []
    # a fresh cache (a new machine) restores the same
    dest = tmp_path / "restore-fresh"
    cairn("restore", *enc, "--archive-dir", tmp_path / "cache2", url, dest)
    assert diff_snapshots(states[-1], snapshot(dest)) == []


def test_restore_one_path_and_list(tmp_path, gnupghome):
    src = make_hard_tree(tmp_path / "src")
    url = f"file://{tmp_path}/target"
    common = ["--archive-dir", tmp_path / "cache", "--volsize", "1"]
    cairn("full", *common, src, url)
    dest = tmp_path / "one"
    cairn("restore", *common, "--path-to-restore", "sub", url, dest)
    assert sorted(os.listdir(dest)) == ["big.bin", "exact64k.bin"]
    with open(os.path.join(src, b"sub", b"big.bin"), "rb") as a, open(dest / "big.bin", "rb") as b:
        assert a.read() == b.read()
    single = tmp_path / "single.txt"
    cairn("restore", *common, "--file-to-restore", "/plain.txt", url, single)
    assert single.read_bytes() == b"hello\n"
    missing = cairn("restore", *common, "-r", "no/such/path", url, tmp_path / "x", check=False)
    assert missing.returncode == 19
    listed = cairn("list-current-files", *common, url).stdout.splitlines()
    paths = {line[25:] for line in listed}
    assert b"." in paths and b"sub/big.bin" in paths and b"latin1-\xe9\xff.bin" in paths
    assert b"sub" in paths and b"empty-dir" in paths


def test_sparse_file_restores_sparse(tmp_path, gnupghome):
    src = make_hard_tree(tmp_path / "src")
    url = f"file://{tmp_path}/target"
    cairn("full", "--archive-dir", tmp_path / "cache", src, url)
    dest = tmp_path / "r"
    cairn("restore", "--archive-dir", tmp_path / "cache", url, dest)
    st = os.stat(dest / "sparse.img")
    assert st.st_size == 20 << 20
    assert st.st_blocks * 512 < 2 << 20    # holes stayed holes


def test_restore_refuses_non_empty_target(tmp_path, gnupghome):
    src = make_hard_tree(tmp_path / "src")
    url = f"file://{tmp_path}/target"
    cairn("full", "--archive-dir", tmp_path / "cache", src, url)
    dest = tmp_path / "busy"
    dest.mkdir()
    (dest / "keep-me").write_text("precious")
    r = cairn("restore", "--archive-dir", tmp_path / "cache", url, dest, check=False)
    assert r.returncode == 11
    assert (dest / "keep-me").read_text() == "precious"
    assert os.listdir(dest) == ["keep-me"]
