# SPDX-License-Identifier: GPL-3.0-or-later
"""An archive interrupted at any moment of a backup is, to stock duplicity, its last complete
backup (issue 11, item 2).

A run dies (a BaseException from the target, as abrupt for the target as SIGKILL) while its
volumes are uploaded, and inside the commit after the manifest is written. duplicity then lists
the archive and restores the last complete point; before the unfinished names it aborted with
"No remote manifest name" on the volumes of the unfinished set. cairn's next run removes what
the dead one left, and the archive stays readable by both tools.
"""
import json
import os
import random
import time

import pytest

from dying import Died, dying_scheme
from treeutil import cairn, diff_snapshots, duplicity, snapshot, write

from cairn import api, naming
from cairn.crypto import CryptoOptions

pytestmark = pytest.mark.duplicity

PLAIN = ["--no-encryption", "--volsize", "1"]


def _source(src, seed):
    rnd = random.Random(seed)
    for i in range(5):
        write(os.path.join(src, f"d{i % 2}", f"f{seed}-{i}.bin"), rnd.randbytes(700_000))
    write(os.path.join(src, "round.txt"), b"round %d\n" % seed)


def _dying_backup(tmp_path, src, target_dir, dies_at, mode="incremental"):
    """A backup of ``src`` that dies at the first target call ``dies_at`` picks."""
    with dying_scheme(dies_at):
        target = api.TargetOptions(url=f"dying+file://{target_dir}", crypto=CryptoOptions(mode="none"),
                                   archive_dir=str(tmp_path / "cache"))
        with pytest.raises(Died):
            api.backup(target, api.BackupOptions(source=str(src), mode=mode, volsize=1))


def _dup(duplicity_bin, tmp_path, *args):
    return duplicity(duplicity_bin, *args, "--archive-dir", tmp_path / "dupcache", "--name", "d",
                     "--no-encryption")


def _unfinished(target_dir):
    return [n for n in os.listdir(target_dir) if naming.UNFINISHED_MARK in n]


def _stored(target_dir, part, timeout=30):
    """Wait until a file of this run with ``part`` in its name is at the target under its
    unfinished name (whole: not under an upload's temp name): uploads run concurrently, so
    volume 2's upload may start before volume 1's has ended, and a run dying there would leave
    nothing of this set (what the test is not about)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(n.startswith(naming.UNFINISHED_MARK) and part in n for n in os.listdir(target_dir)):
            return True
        time.sleep(0.02)
    raise AssertionError(f"no {part} file reached the target in {timeout} s")


@pytest.mark.parametrize("moment", ["uploading volume 3", "renaming after the manifest"])
def test_duplicity_reads_an_archive_whose_backup_died(tmp_path, duplicity_bin, moment):
    src = tmp_path / "src"
    target_dir = tmp_path / "target"
    url = f"file://{target_dir}"
    _source(src, 1)
    cairn("full", *PLAIN, "--archive-dir", tmp_path / "cache", src, url)
    full_state, full_time = snapshot(src), int(time.time())
    time.sleep(1.1)
    _source(src, 2)
    if moment == "uploading volume 3":
        _dying_backup(tmp_path, src, target_dir, lambda method, name: method == "put" and ".vol3." in name)
        left = _unfinished(target_dir)
        assert left and all(".vol" in n or ".resume." in n for n in left), left
        assert not [n for n in os.listdir(target_dir) if "duplicity-inc." in n and naming.UNFINISHED_MARK not in n]
        # to duplicity the archive is exactly the full: listing and restoring the latest point work
        status = _dup(duplicity_bin, tmp_path, "collection-status", url)
        assert b"Number of contained backup sets: 1" in status.stdout, status.stdout
        dest = tmp_path / "dup-latest"
        _dup(duplicity_bin, tmp_path, "restore", url, dest)
        assert diff_snapshots(full_state, snapshot(dest)) == []
    else:
        # volume 1 renamed already, volume 2 not
        _dying_backup(tmp_path, src, target_dir, lambda method, name: method == "rename" and ".vol2." in name)
        names = os.listdir(target_dir)
        assert [n for n in names if ".manifest" in n and "duplicity-inc." in n], names
        assert [n for n in names if n.startswith("duplicity-inc.") and ".vol1." in n], names
        assert not [n for n in names if ".sigtar" in n and "duplicity-inc." in n], names
        # duplicity sees a set with missing volumes, says so, and restores the time before it
        dest = tmp_path / "dup-before"
        _dup(duplicity_bin, tmp_path, "restore", "--time", full_time, url, dest)
        assert diff_snapshots(full_state, snapshot(dest)) == []
    # cairn's latest point is the full: the dead run's files are no set to it
    dest = tmp_path / "cairn-latest"
    cairn("restore", "--no-encryption", "--archive-dir", tmp_path / "cache2", url, dest)
    assert diff_snapshots(full_state, snapshot(dest)) == []
    # the next run removes what the dead one left and commits its own set
    time.sleep(1.1)
    r = cairn("incremental", *PLAIN, "--archive-dir", tmp_path / "cache", src, url)
    if moment == "uploading volume 3":
        # the dead run's archive dir was another (its URL was dying+file://): the record comes
        # from the target, whose copy holds at least the first checkpoint
        assert b"record from the target" in r.stderr and b"resumed at volume " in r.stderr, r.stderr
    else:
        # every volume was stored; the last one has no checkpoint (nothing followed it), so it is
        # written again; volume 1 gets its unfinished name back before the old manifest goes
        assert b"resumed at volume " in r.stderr and b"left by an interrupted run" in r.stderr, r.stderr
    assert _unfinished(target_dir) == []
    new_state = snapshot(src)
    status = _dup(duplicity_bin, tmp_path, "collection-status", url)
    assert b"Number of contained backup sets: 2" in status.stdout, status.stdout
    dest = tmp_path / "dup-after"
    _dup(duplicity_bin, tmp_path, "restore", url, dest)
    assert diff_snapshots(new_state, snapshot(dest)) == []


def _full_then_full_dying_at(tmp_path, seed, method, part):
    """A full, then a full of a changed tree that dies in its commit, at the ``method`` call
    ("rename", "put") for the file with ``part`` in its name."""
    src, target_dir = tmp_path / "src", tmp_path / "target"
    _source(src, seed)
    cairn("full", *PLAIN, "--archive-dir", tmp_path / "cache", src, f"file://{target_dir}")
    first = sorted(os.listdir(target_dir))
    time.sleep(1.1)
    _source(src, seed + 1)
    _dying_backup(tmp_path, src, target_dir, lambda called, name: called == method and part in name,
                  mode="full")
    return src, target_dir, f"file://{target_dir}", first


@pytest.mark.parametrize("dies_at", [("rename", ".vol2."), ("put", "full-signatures")],
                         ids=["renaming volume 2", "writing the signatures"])
@pytest.mark.parametrize("next_run", ["resumes", "cannot resume"])
def test_a_full_that_died_in_its_commit_is_resumed_or_removed(tmp_path, duplicity_bin, next_run, dies_at):
    """A full killed inside its commit, its manifest written: renaming volume 2 (volume 1
    renamed), or writing the signatures (every volume renamed, its resume records still
    unfinished). It left a set of its own time with missing volumes or no signatures. The next
    full resumes it, keeping its volumes; one that cannot (other options) removes it. Before,
    that set counted as the newest backup: resuming was refused ("a newer backup has been made
    since") and it stayed at the target for good, a chain whose volumes were gone."""
    src, target_dir, url, _first = _full_then_full_dying_at(tmp_path, 5, *dies_at)
    names = os.listdir(target_dir)
    assert len([n for n in names if n.startswith("duplicity-full.") and ".manifest" in n]) == 2, names
    assert _unfinished(target_dir) and len([n for n in names if "full-signatures" in n]) == 1, names
    assert (".vol2." in " ".join(_unfinished(target_dir))) == (dies_at[0] == "rename"), names
    time.sleep(1.1)
    volsize = "1" if next_run == "resumes" else "2"
    r = cairn("full", "--no-encryption", "--volsize", volsize, "--archive-dir", tmp_path / "cache", src, url)
    if next_run == "resumes":
        assert b"resumed at volume " in r.stderr, r.stderr
    else:
        assert b"written with other options" in r.stderr, r.stderr
    assert b"left by an interrupted run" in r.stderr, r.stderr
    assert _unfinished(target_dir) == []
    # every set at the target is whole: two fulls, each with its signatures
    names = os.listdir(target_dir)
    manifests = [n for n in names if ".manifest" in n]
    assert len(manifests) == 2 and len([n for n in names if "full-signatures" in n]) == 2, names
    st = json.loads(cairn("collection-status", "--json", "--no-encryption", "--archive-dir", tmp_path / "cache",
                          url).stdout)
    assert st["incomplete_sets"] == [] and len(st["chains"]) == 2, st
    status = _dup(duplicity_bin, tmp_path, "collection-status", url)
    assert b"Number of contained backup sets: 1" in status.stdout and b"missing" not in status.stdout.lower(), \
        status.stdout
    dest = tmp_path / "dup-after"
    _dup(duplicity_bin, tmp_path, "restore", url, dest)
    assert diff_snapshots(snapshot(src), snapshot(dest)) == []


def test_cleanup_removes_a_full_that_died_renaming_its_volumes(tmp_path):
    _src, target_dir, url, first = _full_then_full_dying_at(tmp_path, 7, "rename", ".vol3.")
    assert _unfinished(target_dir)
    cairn("cleanup", "--force", "--no-encryption", "--archive-dir", tmp_path / "cache", url)
    assert sorted(os.listdir(target_dir)) == first


def test_cleanup_removes_unfinished_files(tmp_path):
    src = tmp_path / "src"
    target_dir = tmp_path / "target"
    url = f"file://{target_dir}"
    _source(src, 3)
    cairn("full", *PLAIN, "--archive-dir", tmp_path / "cache", src, url)
    time.sleep(1.1)
    _source(src, 4)
    _dying_backup(tmp_path, src, target_dir, lambda method, name: method == "put" and ".vol2." in name
                  and _stored(target_dir, ".vol1."))
    assert _unfinished(target_dir)
    st = json.loads(cairn("collection-status", "--json", "--no-encryption", "--archive-dir", tmp_path / "cache",
                          url).stdout)
    assert st["unfinished_files"] == sorted(_unfinished(target_dir))
    dry = cairn("cleanup", "--no-encryption", "--archive-dir", tmp_path / "cache", url)
    assert _unfinished(target_dir) and naming.UNFINISHED_MARK.encode() in dry.stdout
    cairn("cleanup", "--force", "--no-encryption", "--archive-dir", tmp_path / "cache", url)
    assert _unfinished(target_dir) == []
    assert len([n for n in os.listdir(target_dir) if ".manifest" in n]) == 1
