# SPDX-License-Identifier: GPL-3.0-or-later
"""duplicity's --rename (restore) and --current-time, with stock duplicity as the oracle."""
import os

import pytest

from treeutil import cairn, duplicity, snapshot, write

T1 = 1_700_000_000
T2 = T1 + 3600


def _tree(src):
    write(src / "a.txt", b"alpha\n", mtime=T1 - 100)
    write(src / "d" / "b.txt", b"bravo\n", mtime=T1 - 90)
    write(src / "d" / "sub" / "c.txt", b"charlie\n", mtime=T1 - 80)
    write(src / "m" / "e.txt", b"echo\n", mtime=T1 - 70)
    write(src / "z.txt", b"zulu\n", mtime=T1 - 60)
    return src


def _files(root):
    """What a restore wrote, as a user checks it: each path's type, and each file's content,
    mode and mtime (the parents a rename made have no entry of their own to take these from)."""
    return {p: (v[0], v[1:4] if v[0][0] == "reg" else None) for p, v in snapshot(root, owners=False).items()}


@pytest.fixture(scope="module")
def duplicity_archive(tmp_path_factory, duplicity_bin):
    base = tmp_path_factory.mktemp("rename")
    src = _tree(base / "src")
    url = f"file://{base / 'target'}"
    duplicity(duplicity_bin, "full", "--no-encryption", src, url)
    return url


@pytest.mark.parametrize("renames, path", [
    ([("a.txt", "renamed.txt")], None),
    ([("d", "new/deeper/d2")], None),                        # a directory, under parents that do not exist
    ([("d/sub/c.txt", "0-first.txt"), ("m", "d/m")], None),  # out of the archive's order, into another dir
    ([("sub/c.txt", "c2.txt")], "d"),                        # relative to --path-to-restore
    ([("a.txt", "z.txt")], None),                            # onto a path the archive also has
])
def test_rename_restores_what_duplicity_restores(tmp_path, duplicity_bin, duplicity_archive, renames, path):
    args = [a for old, new in renames for a in ("--rename", old, new)]
    if path:
        args += ["--path-to-restore", path]
    duplicity(duplicity_bin, "restore", "--no-encryption", *args, duplicity_archive, tmp_path / "dup")
    r = cairn("restore", "--no-encryption", "-v5", *args, duplicity_archive, tmp_path / "cairn")
    assert _files(tmp_path / "cairn") == _files(tmp_path / "dup")
    # the -v5 lines name the paths as written
    for old, new in renames:
        if path is None and old == "a.txt":
            assert f"Writing {new} of type reg".encode() in r.stdout


def test_rename_makes_the_parents_it_needs(tmp_path, duplicity_archive):
    """duplicity 3.2.1 drops the file here ("No such file or directory ... processing b.txt",
    exit 0) when TO's parent is neither in the archive nor made by an earlier entry; cairn
    makes the parent (0700, as for any parent no entry describes)."""
    cairn("restore", "--no-encryption", "--path-to-restore", "d", "--rename", "b.txt", "x/y/b.txt",
          duplicity_archive, tmp_path / "dest")
    assert (tmp_path / "dest" / "x" / "y" / "b.txt").read_bytes() == b"bravo\n"
    assert not (tmp_path / "dest" / "b.txt").exists()
    # a parent made for a renamed entry that the archive then describes itself: written once, in place
    cairn("restore", "--no-encryption", "--path-to-restore", "d", "--rename", "b.txt", "sub/b2.txt",
          duplicity_archive, tmp_path / "dest2")
    assert sorted(os.listdir(tmp_path / "dest2" / "sub")) == ["b2.txt", "c.txt"]


@pytest.mark.parametrize("new", ["../../escaped", "/tmp/escaped-abs", "ok/../../escaped", "", "."])
def test_rename_never_leaves_the_restore_target(tmp_path, duplicity_archive, new):
    dest = tmp_path / "deep" / "dest"
    r = cairn("restore", "--no-encryption", "--rename", "d", new, duplicity_archive, dest, check=False)
    assert r.returncode == 23, r.stderr
    assert b"TO must be a relative path inside the restore target" in r.stderr and b"Traceback" not in r.stderr
    assert not dest.exists() and not (tmp_path / "escaped").exists() and not os.path.lexists("/tmp/escaped-abs")


def test_rename_through_a_symlink_of_the_archive_is_refused(tmp_path, duplicity_bin):
    """The archive's own symlink is no way out: a rename into it is written through descriptors
    opened without following symlinks, as every other path."""
    outside = tmp_path / "outside"
    outside.mkdir()
    src = tmp_path / "src"
    write(src / "d" / "b.txt", b"bravo\n")
    os.symlink(outside, src / "a-link")      # before "d" in the archive
    url = f"file://{tmp_path / 'target'}"
    duplicity(duplicity_bin, "full", "--no-encryption", src, url)
    r = cairn("restore", "--no-encryption", "--rename", "d", "a-link/d", url, tmp_path / "dest", check=False)
    assert r.returncode != 0 and b"symlink" in r.stderr and b"Traceback" not in r.stderr
    assert os.listdir(outside) == []


def test_rename_is_ignored_with_a_notice_outside_restore(tmp_path):
    src = _tree(tmp_path / "src")
    url = f"file://{tmp_path / 'target'}"
    r = cairn("full", "--no-encryption", "--rename", "a.txt", "other.txt", src, url)
    assert b"cairn: notice: --rename applies to restore only; full ignores it" in r.stderr
    listed = cairn("list-current-files", "--no-encryption", url).stdout
    assert b" a.txt\n" in listed and b"other.txt" not in listed


# --- --current-time ----------------------------------------------------------------------------

def _names(target):
    return sorted(os.listdir(target))


def test_current_time_names_the_sets_as_duplicity_does(tmp_path, duplicity_bin):
    src = _tree(tmp_path / "src")
    for tool in ("dup", "cairn"):
        url = f"file://{tmp_path / tool}"
        run = (lambda *a: duplicity(duplicity_bin, *a)) if tool == "dup" else cairn
        run("full", "--no-encryption", "--current-time", T1, src, url)
        write(src / f"new-{tool}.txt", b"new\n", mtime=T1 + 10)
        run("incremental", "--no-encryption", "--current-time", T2, src, url)
    assert _names(tmp_path / "cairn") == _names(tmp_path / "dup")
    assert any("20231114T221320Z.to.20231114T231320Z" in n for n in _names(tmp_path / "cairn"))
    # stock duplicity reads cairn's sets at those times
    out = duplicity(duplicity_bin, "collection-status", "--no-encryption", f"file://{tmp_path / 'cairn'}").stdout
    assert b"Tue Nov 14 22:13:20 2023" in out and b"Tue Nov 14 23:13:20 2023" in out


def test_relative_times_count_back_from_the_current_time(tmp_path):
    src = _tree(tmp_path / "src")
    url = f"file://{tmp_path / 'target'}"
    cairn("full", "--no-encryption", "--current-time", T1, src, url)
    write(src / "new.txt", b"new\n")
    cairn("incremental", "--no-encryption", "--current-time", T2, src, url)
    # "now" is T2 + 10 min: 30 min back is before the incremental, so the full is restored
    cairn("restore", "--no-encryption", "--current-time", T2 + 600, "-t", "30m", url, tmp_path / "at-full")
    assert not (tmp_path / "at-full" / "new.txt").exists() and (tmp_path / "at-full" / "a.txt").exists()
    # no -t: the restore is as of the current time, which is before the incremental too
    cairn("restore", "--no-encryption", "--current-time", T2 - 1, url, tmp_path / "before-inc")
    assert not (tmp_path / "before-inc" / "new.txt").exists()
    # --full-if-older-than counts from the current time as well: two days on, a full is due
    r = cairn("backup", "--no-encryption", "--current-time", T2 + 2 * 86400, "--full-if-older-than", "1D",
              src, url)
    assert b"full backup" in r.stderr and b"is older than" in r.stderr


def test_a_current_time_not_after_the_last_set_is_refused(tmp_path):
    src = _tree(tmp_path / "src")
    url = f"file://{tmp_path / 'target'}"
    cairn("full", "--no-encryption", "--current-time", T2, src, url)
    before = _names(tmp_path / "target")
    for t in (T1, T2):
        r = cairn("incremental", "--no-encryption", "--current-time", t, src, url, check=False)
        assert r.returncode == 23 and b"is not after the last backup" in r.stderr, r.stderr
        assert b"Traceback" not in r.stderr
    assert _names(tmp_path / "target") == before
    r = cairn("full", "--no-encryption", "--current-time", "soon", src, url, check=False)
    assert r.returncode == 23 and b"whole seconds since the epoch" in r.stderr
