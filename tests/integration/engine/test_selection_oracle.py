# SPDX-License-Identifier: GPL-3.0-or-later
"""Selection against the oracle: what stock duplicity 3.2.1 backs up for a rule set is exactly,
and in the same order, what Selection.walk() yields.

Each case runs ``duplicity full --no-encryption <rules> SRC file://DST`` and
``duplicity list-current-files``; the listed paths are compared with
``[b'/'.join(e.index) or b'.' for e in Selection(SRC, rules).walk()]``.
"""
import os
import re
import shutil
import socket
import stat
import subprocess

import pytest

from cairn.errors import SelectionError
from cairn.selection import Selection

pytestmark = pytest.mark.duplicity

_LINE = re.compile(rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4} ")


def _make_tree(root):
    """Awkward names, every file type duplicity keeps, and things it drops (sockets)."""
    root = os.fsencode(str(root))
    files = [b"a/b/x.txt", b"a/b/y.tmp", b"a/c.txt", b"a/C.TXT", b"sub/big.bin", b"sub/deep/z",
             b"sub/deep/er/leaf.txt", b"top.tmp", b"name with spaces.txt", b"latin1-\xe9\xff.bin",
             b"caf\xc3\xa9.txt", b"q[x]", b"star*name", b"back\\slash", b"marked/.nobackup",
             b"marked/inner/f", b"dmarked/.nobackup/f", b"old/ancient.txt", b"old/new.txt",
             b"sockdir/keep.txt", b"sub-x/f", b"sub.txt"]
    for f in files:
        p = os.path.join(root, f)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as fh:
            fh.write(b"x" * (len(f) % 7))
    for d in (b"empty", b"a/b/emptier"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.symlink(b"a/c.txt", os.path.join(root, b"link"))
    os.symlink(b"does/not/exist", os.path.join(root, b"sub", b"dangling"))
    os.mkfifo(os.path.join(root, b"fifo"))
    os.utime(os.path.join(root, b"old", b"ancient.txt"), (1_000_000_000, 1_000_000_000))
    os.utime(os.path.join(root, b"old"), (1_000_000_000, 1_000_000_000))
    if os.geteuid() == 0:
        os.mknod(os.path.join(root, b"sub", b"null"), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    socks = []
    for p in (b"sock", b"sockdir/s", b"onlysock/s"):
        os.makedirs(os.path.dirname(os.path.join(root, p)), exist_ok=True)
        s = socket.socket(socket.AF_UNIX)
        s.bind(os.path.join(root, p))
        socks.append(s)
    for s in socks:
        s.close()             # the socket files stay behind
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("seloracle")
    _make_tree(base / "src")
    return str(base)


def _duplicity(bin_, args, cwd, tmp):
    return subprocess.run([bin_, *args, "--archive-dir", os.path.join(tmp, "cache"), "--name", "sel"],
                          cwd=cwd, capture_output=True, env=dict(os.environ, PASSPHRASE=""), check=False)


def _oracle(bin_, source, rules, cwd, tmp, options=()):
    """(exit code, listed paths in archive order) from a duplicity full backup."""
    dst = "file://" + os.path.join(tmp, "dst")
    args = ["full", "--no-encryption", *options]
    for kind, value in rules:
        args += ["--" + kind] + ([] if value is None else [os.fsdecode(value) if isinstance(value, bytes)
                                                           else str(value)])
    r = _duplicity(bin_, [*args, source, dst], cwd, tmp)
    if r.returncode:
        return r.returncode, (r.stdout + r.stderr).decode(errors="replace")
    r = _duplicity(bin_, ["list-current-files", "--no-encryption", dst], cwd, tmp)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return 0, [line[25:] for line in r.stdout.split(b"\n") if _LINE.match(line)]


def _ours(source, rules, cwd, **kw):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return 0, [b"/".join(e.index) or b"." for e in Selection(source, rules, **kw).walk()]
    except SelectionError as e:
        return e.exit_code, str(e)
    finally:
        os.chdir(old)


def _compare(duplicity_bin, tree, tmp_path, source, rules, options=(), **kw):
    rules = [(k, v.format(src=os.path.join(tree, "src"), tree=tree) if isinstance(v, str) else v)
             for k, v in rules]
    want = _oracle(duplicity_bin, source, rules, tree, str(tmp_path), options)
    got = _ours(source, rules, tree, **kw)
    if want[0]:
        assert got[0] == want[0], f"duplicity exited {want[0]}:\n{want[1]}\ncairn: {got}"
    else:
        assert got == want
    return want


CASES = {
    "no rules": [],
    "exclude dir": [("exclude", "{src}/a")],
    "include dir, exclude rest (scan)": [("include", "{src}/a/b"), ("exclude", "**")],
    "first match wins": [("exclude", "**.tmp"), ("include", "{src}/a/b"), ("exclude", "**")],
    "include **.txt": [("include", "**.txt"), ("exclude", "**")],
    "wildcards and classes": [("exclude", "{src}/*/c.tx?"), ("exclude", "{src}/[!a-s]*"),
                              ("exclude", "{src}/q[[]x]")],
    "trailing slash": [("exclude", "**/b/"), ("exclude", "**/c.txt/")],
    "scan then exclude": [("include", "{src}/sub/deep/er/leaf.txt"), ("exclude", "{src}/sub"),
                          ("exclude", "**")],
    "scan then include": [("include", "{src}/empty/none"), ("include", "{src}/empty"),
                          ("include", "{src}/a/b/emptier/none"), ("exclude", "**")],
    "ignorecase": [("include", "ignorecase:{src}/A/C.txt"), ("exclude", "**")],
    "regexps": [("exclude-regexp", r"\.tmp$"), ("include-regexp", "deep"), ("exclude-regexp", "^{src}/sub")],
    "non-utf-8 names": [("exclude", "{src}/latin1-??.bin"), ("exclude", "{src}/caf?.txt")],
    "exclude-if-present": [("include", "{src}/marked"), ("exclude-if-present", ".nobackup")],
    "older-than, device files": [("exclude-older-than", 1_500_000_000), ("exclude-device-files", None)],
    "sockets never count": [("include", "{src}/onlysock/s"), ("include", "{src}/sockdir/s"),
                            ("exclude", "**")],
    "root excluded": [("exclude", "{src}")],
    "pattern outside the source (14)": [("exclude", "/nowhere/else")],
    "trailing include (16)": [("exclude", "**.tmp"), ("include", "{src}/a")],
    "include before exclude-if-present (16)": [("include", "{src}/a"), ("exclude-if-present", ".nb")],
    "consecutive slashes (15)": [("exclude", "{src}//a")],
}


@pytest.mark.parametrize("rules", CASES.values(), ids=list(CASES))
def test_walk_matches_duplicity(duplicity_bin, tree, tmp_path, rules):
    _compare(duplicity_bin, tree, tmp_path, os.path.join(tree, "src"), rules)


def test_ignorecase_option(duplicity_bin, tree, tmp_path):
    _compare(duplicity_bin, tree, tmp_path, os.path.join(tree, "src"),
             [("exclude", "{src}/A/C.TXT"), ("exclude-regexp", "SUB/DEEP")],
             options=["--filter-ignorecase"], ignorecase=True)


@pytest.mark.parametrize("source,rules", [
    ("src", [("exclude", "src/a"), ("exclude-regexp", "^src/sub/")]),
    ("./src/", [("exclude", "src/a"), ("exclude-regexp", "^src/sub/")]),
    ("src", [("include", "*/sub"), ("exclude", "**")]),
    ("src", [("exclude", "{src}/a")]),                             # absolute glob, relative source: 14
])
def test_relative_sources(duplicity_bin, tree, tmp_path, source, rules):
    _compare(duplicity_bin, tree, tmp_path, source, rules)


def test_filelists(duplicity_bin, tree, tmp_path):
    with open(os.path.join(tree, "list"), "wb") as f:
        f.write(b"# the spec's example, plus the parsing rules\n\n"
                b"+ src/a/b\n- src/a\n  - **.tmp  \r\n"
                b'+ "src/sub/deep"\n'
                b"'src/sub'\n"
                b"ignorecase:SRC/NAME*\n")
    for kind in ("exclude-filelist", "include-filelist"):
        _compare(duplicity_bin, tree, tmp_path, "src", [(kind, "list")])
    with open(os.path.join(tree, "nlist"), "wb") as f:
        f.write(b"- src/a\0  + src/sub/deep \0# - src/top.tmp\0- src/sub\0")
    _compare(duplicity_bin, tree, tmp_path, "src", [("exclude-filelist", "nlist")],
             options=["--null-separator"], null_separator=True)
    with open(os.path.join(tree, "tlist"), "wb") as f:
        f.write(b"- src/a\n+ src/sub\n")
    assert _compare(duplicity_bin, tree, tmp_path, "src", [("exclude-filelist", "tlist")])[0] == 16


def test_other_filesystems(duplicity_bin, tmp_path):
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root to mount a tmpfs")
    src = tmp_path / "src"
    for p in ("a/f", "z/f"):
        os.makedirs(src / os.path.dirname(p), exist_ok=True)
        (src / p).write_bytes(b"x")
    mnt = src / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "none", str(mnt)], capture_output=True, check=False).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (mnt / "inner").mkdir()
        (mnt / "inner" / "g").write_bytes(b"x")
        work = tmp_path / "w"
        for i, rules in enumerate([[("exclude-other-filesystems", None)],
                                   [("include", f"{src}/mnt/inner/g"), ("exclude-other-filesystems", None),
                                    ("exclude", "**")],
                                   [("include", f"{src}/mnt"), ("exclude-other-filesystems", None)]]):
            want = _oracle(duplicity_bin, str(src), rules, str(tmp_path), str(work / str(i)))
            assert _ours(str(src), rules, str(tmp_path)) == want
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, check=False)


def test_unreadable_directory_deliberate_difference(duplicity_bin, tmp_path, monkeypatch):
    """duplicity leaves an unreadable directory out ("Error accessing possibly locked file");
    cairn keeps the directory entry itself and warns, so a restore recreates it."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to drop the DAC override capabilities")
    src = tmp_path / "src"
    for p in ("a/f", "locked/g", "z/f"):
        os.makedirs(src / os.path.dirname(p), exist_ok=True)
        (src / p).write_bytes(b"x")
    os.chmod(src / "locked", 0)
    try:
        drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                "--inh-caps=-dac_override,-dac_read_search", duplicity_bin]
        r = subprocess.run([*drop, "full", "--no-encryption", "--archive-dir", str(tmp_path / "cache"),
                            "--name", "sel", str(src), "file://" + str(tmp_path / "dst")],
                           capture_output=True, check=False)
        if r.returncode:
            pytest.skip(f"setpriv did not work here: {r.stderr.decode(errors='replace')[-300:]}")
        r = _duplicity(duplicity_bin, ["list-current-files", "--no-encryption", "file://" + str(tmp_path / "dst")],
                       str(tmp_path), str(tmp_path))
        want = [line[25:] for line in r.stdout.split(b"\n") if _LINE.match(line)]
    finally:
        os.chmod(src / "locked", 0o755)
    real = os.listdir

    def listdir(p):
        if os.fsdecode(p).endswith("/locked"):
            raise PermissionError(13, "Permission denied")
        return real(p)
    monkeypatch.setattr(os, "listdir", listdir)
    warnings = []
    got = [b"/".join(e.index) or b"." for e in Selection(str(src), on_warning=warnings.append).walk()]
    assert want == [b".", b"a", b"a/f", b"z", b"z/f"]
    assert got == [b".", b"a", b"a/f", b"locked", b"z", b"z/f"]
    assert len(warnings) == 1 and "locked" in warnings[0]


# --filter-* switch how the patterns after them are read, in command-line order (duplicity 3.x)
FILTER_CASES = {
    "literal: wildcards are characters": [("filter-literal", None), ("exclude", "{src}/q[x]"),
                                          ("exclude", "{src}/star*name"), ("filter-globbing", None),
                                          ("exclude", "{src}/a/?.txt")],
    "literal include scans its parents": [("filter-literal", None), ("include", "{src}/sub/deep/er/leaf.txt"),
                                          ("filter-globbing", None), ("exclude", "**")],
    "literal: trailing slash is dropped": [("filter-literal", None), ("exclude", "{src}/a/c.txt/")],
    "literal: ignorecase: is part of it (14)": [("filter-literal", None), ("exclude", "ignorecase:{src}/a")],
    "literal: ** is two stars (14)": [("filter-literal", None), ("exclude", "**")],
    "regexp mode": [("filter-regexp", None), ("exclude", r"\.tmp$"), ("include", "deep"),
                    ("exclude", "^{src}/sub")],
    "regexp mode: trailing include (16)": [("filter-regexp", None), ("include", "deep")],
    "ignorecase then strictcase": [("filter-ignorecase", None), ("exclude", "{src}/A/B"),
                                   ("exclude-regexp", "TOP"), ("filter-strictcase", None),
                                   ("exclude", "{src}/SUB"), ("exclude-regexp", "NAME")],
    "ignorecase literal": [("filter-ignorecase", None), ("filter-literal", None), ("exclude", "{src}/A/C.TXT")],
    "regexp mode leaves --include-regexp alone under literal": [("filter-literal", None),
                                                                ("exclude-regexp", "x.t")],
}


@pytest.mark.parametrize("rules", FILTER_CASES.values(), ids=list(FILTER_CASES))
def test_filter_modes_match_duplicity(duplicity_bin, tree, tmp_path, rules):
    _compare(duplicity_bin, tree, tmp_path, os.path.join(tree, "src"), rules)


def test_filter_modes_reach_filelists(duplicity_bin, tree, tmp_path):
    with open(os.path.join(tree, "flist"), "wb") as f:
        f.write(b"src/star*name\n- src/q[x]\n+ src/a/b\n")
    _compare(duplicity_bin, tree, tmp_path, "src", [("filter-literal", None), ("exclude-filelist", "flist")])
    with open(os.path.join(tree, "rlist"), "wb") as f:
        f.write(b"\\.tmp$\n- ^src/sub/\n")
    _compare(duplicity_bin, tree, tmp_path, "src", [("filter-regexp", None), ("exclude-filelist", "rlist")])


def _files_from(tree, name, data):
    with open(os.path.join(tree, name), "wb") as f:
        f.write(data)
    return name


@pytest.mark.parametrize("data,rules,null", [
    (b"a/b/x.txt\nsub/deep\nnot/there\nsub-x/f\n", [], False),           # parents implied, dirs not expanded
    (b"a/b/x.txt\nsub/deep/z\ntop.tmp\n", [("exclude", "**.tmp")], False),  # the rules still apply
    (b"a/b/x.txt\nsub/deep/z\ntop.tmp\n", [("include", "{src}/sub"), ("exclude", "**")], False),
    # every character counts (a non-UTF-8 name crashes duplicity 3.2.1 with exit 30; cairn takes it)
    (b"a/c.txt\0name with spaces.txt\0 sub.txt\0", [], True),
    (b"link\nsub/dangling\nfifo\nempty\n", [], False),
])
def test_files_from_matches_duplicity(duplicity_bin, tree, tmp_path, data, rules, null):
    name = _files_from(tree, "ff", data)
    opts = ["--files-from", name] + (["--null-separator"] if null else [])
    _compare(duplicity_bin, tree, tmp_path, "src", rules, options=opts, files_from=os.path.join(tree, name),
             null_separator=null)


def test_files_from_absolute_path_is_72(duplicity_bin, tree, tmp_path):
    name = _files_from(tree, "ffabs", os.fsencode(os.path.join(tree, "src", "top.tmp")) + b"\n")
    want = _compare(duplicity_bin, tree, tmp_path, "src", [], options=["--files-from", name],
                    files_from=os.path.join(tree, name))
    assert want[0] == 72


def test_copy_links_matches_duplicity(duplicity_bin, tmp_path):
    src = tmp_path / "src"
    for p in ("d/f", "real/g", "z"):
        os.makedirs(src / os.path.dirname(p), exist_ok=True)
        (src / p).write_bytes(b"x")
    os.symlink("z", src / "to-file")
    os.symlink("real", src / "to-dir")
    os.symlink("nowhere", src / "dangling")
    want = _oracle(duplicity_bin, str(src), [], str(tmp_path), str(tmp_path / "w"), options=["--copy-links"])
    got = _ours(str(src), [], str(tmp_path), copy_links=True)
    assert got == want
    assert b"to-dir/g" in got[1] and b"dangling" not in got[1]
