# SPDX-License-Identifier: GPL-3.0-or-later
"""duplicity's run-behaviour options, each beside what stock duplicity 3.2.1 does with it:
--dry-run (backup and restore), --skip-if-no-change, --full-if-n-inc, --no-compression,
--concurrency, --ignore-errors."""
import json
import os
import re
import time

import pytest

from treeutil import cairn, diff_snapshots, duplicity, snapshot, write


def _tree(root):
    for rel, data in (("a/one.txt", b"one\n"), ("a/two.bin", os.urandom(300_000)), ("top.txt", b"top\n")):
        write(os.path.join(root, rel), data)
    return str(root)


def _listing(target):
    return sorted(os.listdir(target)) if os.path.isdir(target) else []


def _common(tmp_path, who):
    return ["--no-encryption", "--archive-dir", tmp_path / f"{who}-cache", "--name", "t"]


def test_dry_run_backup_writes_nothing_and_prints_statistics(tmp_path, duplicity_bin):
    src = _tree(tmp_path / "src")
    for who, run in (("dup", lambda *a: duplicity(duplicity_bin, *a)), ("cairn", cairn)):
        target = tmp_path / f"{who}-target"
        r = run("full", "--dry-run", *_common(tmp_path, who), src, f"file://{target}")
        out = r.stdout.decode()
        # (duplicity counts directories' sizes into SourceFileSize too)
        assert "NewFiles 5\n" in out and re.search(r"SourceFileSize 30\d{4} ", out), out
        assert _listing(target) == []
        cache = tmp_path / f"{who}-cache" / "t"
        assert _listing(cache) == []
    # and on an existing chain: the incremental it would be is counted, nothing is added
    target = tmp_path / "cairn-target"
    cairn("full", *_common(tmp_path, "cairn"), src, f"file://{target}")
    before, cached = _listing(target), _listing(tmp_path / "cairn-cache" / "t")
    write(os.path.join(src, "new.txt"), b"new\n")
    r = cairn("--dry-run", "--json", *_common(tmp_path, "cairn"), src, f"file://{target}")
    res = json.loads(r.stdout)
    assert (res["type"], res["new_files"], res["dry_run"], res["volumes"]) == ("incremental", 1, True, 0)
    assert _listing(target) == before and _listing(tmp_path / "cairn-cache" / "t") == cached


def test_dry_run_restore_writes_nothing(tmp_path, duplicity_bin):
    src = _tree(tmp_path / "src")
    url = f"file://{tmp_path}/target"
    cairn("full", *_common(tmp_path, "cairn"), src, url)
    for who, run in (("dup", lambda *a, **k: duplicity(duplicity_bin, *a, **k)), ("cairn", cairn)):
        dest = tmp_path / f"{who}-dest"
        run("restore", "--dry-run", *_common(tmp_path, who), url, dest)
        # duplicity makes the (empty) target directory; cairn leaves it absent
        assert _listing(dest) == [] and (who == "dup" or not os.path.exists(dest))
        # a target that is not empty is refused even so (exit 11), as by a real restore
        full = tmp_path / f"{who}-full"
        write(os.path.join(full, "x"), b"x")
        r = run("restore", "--dry-run", *_common(tmp_path, who), url, full, check=False)
        assert r.returncode == 11
        assert os.listdir(full) == ["x"]


def test_skip_if_no_change(tmp_path, duplicity_bin):
    src = _tree(tmp_path / "src")
    for who, run in (("dup", lambda *a: duplicity(duplicity_bin, *a)), ("cairn", cairn)):
        target = tmp_path / f"{who}-target"
        url = f"file://{target}"
        run("full", *_common(tmp_path, who), src, url)
        time.sleep(1.1)
        before = _listing(target)
        r = run("incremental", "--skip-if-no-change", *_common(tmp_path, who), src, url)
        assert _listing(target) == before, who
        assert "Skipped volume upload" in (r.stdout + r.stderr).decode(), who
    # a change is stored as usual
    write(os.path.join(src, "a", "one.txt"), b"changed\n")
    target = tmp_path / "cairn-target"
    r = cairn("incremental", "--skip-if-no-change", "--json", *_common(tmp_path, "cairn"), src, f"file://{target}")
    assert json.loads(r.stdout)["changed_files"] == 1
    assert len(_listing(target)) == len(before) + 3


def test_full_if_n_inc(tmp_path, duplicity_bin):
    """duplicity: a full once the last chain has N incrementals, even when `incremental` was asked
    for; with --full-if-older-than the first one that applies decides."""
    src = _tree(tmp_path / "src")
    target = tmp_path / "cairn-target"
    url = f"file://{target}"
    kinds = []
    for i, extra in enumerate([(), (), ("--full-if-n-inc", "2"), ("--full-if-n-inc", "2"), ("--full-if-n-inc", "2"),
                               ("--full-if-n-inc", "5", "--full-if-older-than", "1s")]):
        if i:
            time.sleep(1.1)
            write(os.path.join(src, "top.txt"), b"top %d\n" % i)
        r = cairn("incremental" if i else "full", *extra, "--json", *_common(tmp_path, "cairn"), src, url)
        kinds.append(json.loads(r.stdout)["type"])
    assert kinds == ["full", "incremental", "incremental", "full", "incremental", "full"]
    # duplicity forces its full at the same point
    dtarget = tmp_path / "dup-target"
    for i in range(4):
        if i:
            time.sleep(1.1)
            write(os.path.join(src, "top.txt"), b"dup %d\n" % i)
        duplicity(duplicity_bin, "incremental" if i else "full", *(("--full-if-n-inc", "2") if i else ()),
                  *_common(tmp_path, "dup"), src, f"file://{dtarget}")
    fulls = [n for n in _listing(dtarget) if n.startswith("duplicity-full.") and n.endswith(".manifest")]
    assert len(fulls) == 2
    r = cairn("--full-if-n-inc", "-1", *_common(tmp_path, "cairn"), src, url, check=False)
    assert r.returncode == 23 and b"full_if_n_inc" in r.stderr


def test_no_compression_archive_restores_with_duplicity(tmp_path, duplicity_bin):
    src = _tree(tmp_path / "src")
    target = tmp_path / "target"
    url = f"file://{target}"
    cairn("full", "--no-compression", "--concurrency", "2", *_common(tmp_path, "cairn"), src, url)
    time.sleep(1.1)
    write(os.path.join(src, "top.txt"), b"changed\n")
    cairn("incremental", "--no-compression", *_common(tmp_path, "cairn"), src, url)
    names = _listing(target)
    assert names and not [n for n in names if n.endswith(".gz")], names
    assert [n for n in names if n.endswith(".difftar")]
    dest = tmp_path / "dup-restore"
    duplicity(duplicity_bin, "restore", *_common(tmp_path, "dup"), url, dest)
    assert diff_snapshots(snapshot(src), snapshot(dest)) == []
    # with a passphrase: gpg is told not to compress (400 kB of zeros stay 400 kB)
    zeros = tmp_path / "zeros"
    write(os.path.join(zeros, "z"), bytes(400_000))
    for flag, small in (("--compression", True), ("--no-compression", False)):
        etarget = tmp_path / f"enc{flag}"
        cairn("full", flag, "--archive-dir", tmp_path / f"ec{flag}", zeros, f"file://{etarget}")
        vol = [n for n in _listing(etarget) if ".vol1." in n][0]
        assert (os.path.getsize(etarget / vol) < 100_000) == small, flag


def _corrupt_volume(target):
    vol = os.path.join(target, [n for n in os.listdir(target) if ".vol1." in n][0])
    with open(vol, "r+b") as f:
        f.seek(os.path.getsize(vol) // 2)
        f.write(b"\0" * 64)


def test_ignore_errors_restore_of_a_damaged_volume(tmp_path):
    src = _tree(tmp_path / "src")
    target = tmp_path / "target"
    cairn("full", *_common(tmp_path, "cairn"), src, f"file://{target}")
    _corrupt_volume(target)
    r = cairn("restore", *_common(tmp_path, "cairn"), f"file://{target}", tmp_path / "r1", check=False)
    assert r.returncode == 63
    r = cairn("restore", "--ignore-errors", *_common(tmp_path, "cairn"), f"file://{target}", tmp_path / "r2",
              check=False)
    assert r.returncode == 0, r.stderr
    assert b"IGNORED_ERROR" in r.stderr and b"could not be used" in r.stderr


@pytest.mark.parametrize("ignore", [False, True])
def test_ignore_errors_backup_of_unreadable_file(tmp_path, monkeypatch, ignore):
    from cairn import api, backup, options
    src = _tree(tmp_path / "src")
    real = backup._open_for_backup

    def refuse(path):
        if path.endswith(b"one.txt"):
            raise PermissionError(13, "Permission denied")
        return real(path)
    monkeypatch.setattr(backup, "_open_for_backup", refuse)
    m = {"target": f"file://{tmp_path}/target", "no_encryption": True, "archive_dir": str(tmp_path / "c"),
         "source": src, "ignore_errors": ignore}
    result = api.backup(options.target_options(m, {}), options.backup_options(m))
    assert result["warnings"]
    assert result["exit_code"] == (0 if ignore else 9)


def test_dry_run_wins_over_force_when_deleting(tmp_path, duplicity_bin):
    """duplicity 3.2.1: remove-* --force --dry-run lists what it would delete and deletes nothing."""
    src = _tree(tmp_path / "src")
    target = tmp_path / "target"
    url = f"file://{target}"
    for i in range(2):
        if i:
            time.sleep(1.1)
        cairn("full", *_common(tmp_path, "cairn"), src, url)
    before = _listing(target)
    duplicity(duplicity_bin, "remove-all-but-n-full", "1", "--force", "--dry-run", *_common(tmp_path, "dup"), url)
    assert _listing(target) == before
    r = cairn("remove-all-but-n-full", "1", "--force", "--dry-run", *_common(tmp_path, "cairn"), url)
    assert _listing(target) == before and b"Would delete" in r.stdout
    assert cairn("replicate", "--dry-run", url, f"file://{tmp_path}/copy", check=False).returncode == 23
    assert not os.path.exists(tmp_path / "copy")
    cairn("remove-all-but-n-full", "1", "--force", *_common(tmp_path, "cairn"), url)
    assert len(_listing(target)) == len(before) - 3
