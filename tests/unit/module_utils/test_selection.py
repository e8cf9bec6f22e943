# SPDX-License-Identifier: GPL-3.0-or-later
"""Selection semantics (duplicity-format.md §3 ordering, §9 selection) and the sorted walk.

Expected results were checked against duplicity 3.2.1; tests/integration/engine/
test_selection_oracle.py compares with the real binary directly.
"""
import os
import socket
import stat

import pytest

from cairn.errors import ExitCode, SelectionError, SourceError
from cairn.selection import Entry, Selection


def _tree(root, paths):
    root = os.fsencode(str(root))
    for p in paths:
        p = os.fsencode(p)
        full = os.path.join(root, p)
        if p.endswith(b"/"):
            os.makedirs(full, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(b"x")
    return os.fsdecode(root)


def _rel(e):
    return b"/".join(e.index).decode("utf-8", "surrogateescape") or "."


def _walk(src, rules=(), **kw):
    return [_rel(e) for e in Selection(src, rules, **kw).walk()]


ALL = [".", "a", "a/b", "a/b/x.txt", "a/b/y.tmp", "a/c.txt", "empty", "sub", "sub/big.bin", "sub/deep",
       "sub/deep/z", "top.tmp"]


@pytest.fixture
def src(tmp_path):
    return _tree(tmp_path / "src", ["a/b/x.txt", "a/b/y.tmp", "a/c.txt", "sub/big.bin", "sub/deep/z",
                                    "top.tmp", "empty/"])


@pytest.fixture
def chdir(monkeypatch):
    return monkeypatch.chdir


# ------------------------------------------------------------------------------------- ordering

def test_order_is_bytewise_preorder(tmp_path):
    root = _tree(tmp_path / "o", ["sub/deep/f", "sub/big.bin", "sub.txt", "Z", "a b", "sub-x/f",
                                  "new\nline", b"\xff-raw", "caf\u00e9", "B/"])
    got = _walk(root)
    assert got == [".", "B", "Z", "a b", "caf\u00e9", "new\nline", "sub", "sub/big.bin", "sub/deep",
                   "sub/deep/f", "sub-x", "sub-x/f", "sub.txt", "\udcff-raw"]
    entries = list(Selection(root).walk())
    idx = [e.index for e in entries]
    assert idx == sorted(idx)                        # = sorting paths as tuples of byte components
    assert idx.index((b"sub",)) < idx.index((b"sub", b"big.bin")) < idx.index((b"sub", b"deep"))
    assert (b"\xff-raw",) in idx and (b"new\nline",) in idx


def test_entries_carry_index_path_and_lstat(tmp_path):
    root = _tree(tmp_path / "e", ["d/f"])
    os.symlink("d/f", os.path.join(root, "link"))
    entries = list(Selection(root + "/").walk())
    assert all(isinstance(e, Entry) for e in entries)
    assert [e.index for e in entries] == [(), (b"d",), (b"d", b"f"), (b"link",)]
    for e in entries:
        assert e.path == os.path.join(os.fsencode(root + "/"), *e.index)
        assert e.stat == os.lstat(e.path)
    assert stat.S_ISLNK(entries[-1].stat.st_mode)


def test_missing_source(tmp_path):
    with pytest.raises(SourceError):
        list(Selection(str(tmp_path / "nope")).walk())


def test_walk_is_streaming(tmp_path, monkeypatch):
    root = _tree(tmp_path / "s", [f"d{i}/f{j}" for i in range(5) for j in range(3)])
    calls = []
    real = os.listdir

    def listdir(p):
        calls.append(p)
        return real(p)
    monkeypatch.setattr(os, "listdir", listdir)
    it = Selection(root).walk()
    assert [_rel(next(it)) for _i in range(3)] == [".", "d0", "d0/f0"]
    assert len(calls) == 2                           # the root and d0: nothing read ahead
    assert len(list(it)) == 1 + 5 * 4 - 3
    assert len(calls) == 6


# ------------------------------------------------------------------------------------ the root

def test_root_is_always_emitted_and_walked(src):
    assert _walk(src, [("exclude", "**")]) == ["."]
    assert _walk(src, [("exclude", src)]) == ["."]
    assert _walk(src, [("exclude", "/")]) == ["."]
    # the root is never tested: an exclude matching only the root's own path removes nothing
    assert _walk(src, [("exclude-regexp", "^" + src + "$")]) == ALL
    open(os.path.join(src, ".nobackup"), "w").close()
    assert _walk(src, [("exclude-if-present", ".nobackup")]) == [".", ".nobackup"] + ALL[1:]


def test_source_that_is_not_a_directory(tmp_path):
    f = tmp_path / "file"
    f.write_bytes(b"x")
    assert _walk(str(f)) == ["."]


# ---------------------------------------------------------------------------------------- globs

def test_exclude_glob_covers_subtree(src):
    assert _walk(src, [("exclude", f"{src}/a")]) == [".", "empty", "sub", "sub/big.bin", "sub/deep", "sub/deep/z",
                                                     "top.tmp"]


def test_first_match_wins(src):
    assert _walk(src, [("exclude", f"{src}/a"), ("include", f"{src}/a/b"), ("exclude", "**")]) == ["."]
    got = _walk(src, [("exclude", "**.tmp"), ("include", f"{src}/a/b"), ("exclude", "**")])
    assert got == [".", "a", "a/b", "a/b/x.txt"]
    got = _walk(src, [("include", f"{src}/a/b"), ("exclude", "**.tmp"), ("exclude", "**")])
    assert got == [".", "a", "a/b", "a/b/x.txt", "a/b/y.tmp"]


def test_unmatched_paths_are_included(src):
    assert _walk(src, [("exclude", f"{src}/nothing-here")]) == ALL


def test_star_question_and_classes(src):
    assert "a/c.txt" not in _walk(src, [("exclude", f"{src}/*/c.tx?")])
    assert "a/b/x.txt" in _walk(src, [("exclude", f"{src}/*/c.tx?")])     # * stops at /
    assert _walk(src, [("exclude", f"{src}/[!a]*")]) == ALL[:6]
    assert _walk(src, [("exclude", f"{src}/[^a]*")]) == ALL[:6]
    assert _walk(src, [("exclude", f"{src}/[st]*")]) == ALL[:7]
    assert _walk(src, [("exclude", f"{src}/a?b")]) == ALL                  # ? does not match /
    assert _walk(src, [("exclude", f"{src}/a**b")]) == [".", "a", "a/c.txt"] + ALL[6:]   # ** does
    assert _walk(src, [("exclude", f"{src}/a[/]b")]) == [".", "a", "a/c.txt"] + ALL[6:]  # so can [..]
    assert _walk(src, [("exclude", "**.tmp")]) == [p for p in ALL if not p.endswith(".tmp")]


def test_glob_special_characters(tmp_path):
    root = _tree(tmp_path / "g", ["a*b", "a?b", "axb", "[x]", "x", "a\\b", "ab", b"\xff.bin", "caf\u00e9",
                                  "new\nline"])

    def names(rules):
        return _walk(root, rules)[1:]

    everything = names([])
    assert everything == ["[x]", "a*b", "a?b", "a\\b", "ab", "axb", "caf\u00e9", "new\nline", "x",
                          "\udcff.bin"]

    def without(*gone):
        return [n for n in everything if n not in gone]

    assert names([("exclude", f"{root}/[[]x]")]) == without("[x]")
    assert names([("exclude", f"{root}/[]x]")]) == without("x")              # leading ] is a member
    assert names([("exclude", f"{root}/[x")]) == everything                  # unterminated: literal
    assert names([("exclude", f"{root}/a[")]) == everything
    assert names([("exclude", f"{root}/a\\*b")]) == without("a\\b")          # \ is literal, * a wildcard
    assert names([("exclude", f"{root}/a\\b")]) == without("a\\b")
    assert names([("exclude", f"{root}/[a\\]*")]) == without("a*b", "a?b", "a\\b", "ab", "axb")
    assert names([("exclude", f"{root}/?.bin")]) == without("\udcff.bin")     # one undecodable byte
    assert names([("exclude", f"{root}/\udcff.bin")]) == without("\udcff.bin")
    assert names([("exclude", f"{root}/caf?")]) == without("caf\u00e9")       # one character
    assert names([("exclude", f"{root}/new?line")]) == without("new\nline")
    assert names([("exclude", f"{root}/**line")]) == without("new\nline")


def test_trailing_slash_matches_directories_only(tmp_path):
    root = _tree(tmp_path / "t", ["cache/f", "x/cache"])
    assert _walk(root, [("exclude", "**/cache/")]) == [".", "x", "x/cache"]
    assert _walk(root, [("exclude", f"{root}/cache/")]) == [".", "x", "x/cache"]
    assert _walk(root, [("exclude", f"{root}/x/cache/")]) == [".", "cache", "cache/f", "x", "x/cache"]
    assert _walk(root, [("include", f"{root}/x/cache/"), ("exclude", "**")]) == ["."]


def test_ignorecase(src):
    assert "a/c.txt" not in _walk(src, [("exclude", f"ignorecase:{src}/A/C.TXT")])
    assert "a/c.txt" in _walk(src, [("exclude", f"{src}/A/C.TXT")])
    assert "a/c.txt" not in _walk(src, [("exclude", f"{src}/A/C.TXT")], ignorecase=True)
    assert "a/c.txt" not in _walk(src, [("exclude-regexp", "A/C")], ignorecase=True)
    assert "a/c.txt" in _walk(src, [("exclude-regexp", "A/C")])
    got = _walk(src, [("include", f"ignorecase:{src}/SUB/DEEP"), ("exclude", "**")])
    assert got == [".", "sub", "sub/deep", "sub/deep/z"]


def test_source_spelling_is_normalised(src, chdir):
    parent, name = os.path.split(src)
    chdir(parent)
    for spelling in (name, f"./{name}", f"{name}/", f".//{name}/./"):
        want = [".", "empty", "sub", "sub/big.bin", "sub/deep", "sub/deep/z", "top.tmp"]
        assert _walk(spelling, [("exclude-regexp", f"^{name}/a$")]) == want
        assert _walk(spelling, [("exclude", f"{name}/sub")]) == ALL[:7] + ["top.tmp"]
    assert _walk(f"{name}/../{name}", [("exclude-regexp", f"^{name}/\\.\\./{name}/a$")])[:2] == [".", "empty"]
    chdir(src)
    assert _walk(".", [("exclude-regexp", "^\\./a$")])[:2] == [".", "empty"]
    assert _walk(".", [("exclude", "./a")])[:2] == [".", "empty"]
    assert _walk(".", [("exclude", "*/a")])[:2] == [".", "empty"]


# ----------------------------------------------------------------------------------------- scan

def test_include_scans_parents(src):
    got = _walk(src, [("include", f"{src}/a/b"), ("exclude", "**")])
    assert got == [".", "a", "a/b", "a/b/x.txt", "a/b/y.tmp"]
    assert _walk(src, [("include", f"{src}/a/c.txt"), ("exclude", "**")]) == [".", "a", "a/c.txt"]
    want = [".", "sub", "sub/deep", "sub/deep/z"]
    assert _walk(src, [("include", f"{src}/*/deep"), ("exclude", "**")]) == want
    assert _walk(src, [("include", f"{src}/s*/d*/z"), ("exclude", "**")]) == want


def test_double_star_include_scans_everything(src):
    got = _walk(src, [("include", "**.txt"), ("exclude", "**")])
    assert got == [".", "a", "a/b", "a/b/x.txt", "a/c.txt"]
    got = _walk(src, [("include", f"{src}/**/z"), ("exclude", "**")])
    assert got == [".", "sub", "sub/deep", "sub/deep/z"]


def test_scanned_directory_without_content_is_not_emitted(src):
    assert _walk(src, [("include", f"{src}/a/b/nothing"), ("exclude", "**")]) == ["."]
    assert _walk(src, [("include", f"{src}/empty/nothing"), ("exclude", "**")]) == ["."]
    # ... and scanning does not stop at a later exclude (the subtree is still searched)
    got = _walk(src, [("include", f"{src}/sub/deep/z"), ("exclude", f"{src}/sub"), ("exclude", "**")])
    assert got == [".", "sub", "sub/deep", "sub/deep/z"]
    # ... while a later include does include the directory itself
    got = _walk(src, [("include", f"{src}/empty/nothing"), ("include", f"{src}/empty"), ("exclude", "**")])
    assert got == [".", "empty"]
    got = _walk(src, [("include", f"{src}/empty/nothing"), ("exclude", f"{src}/empty"),
                      ("include", f"{src}/empty"), ("exclude", "**")])
    assert got == ["."]
    # a scan that no later rule answers stays a scan
    assert "empty" not in _walk(src, [("include", f"{src}/empty/nothing"), ("exclude", f"{src}/a")])


def test_regexp_includes_do_not_scan(src):
    assert _walk(src, [("include-regexp", "deep"), ("exclude", "**")]) == ["."]
    got = _walk(src, [("include-regexp", "sub"), ("exclude", "**")])
    assert got == [".", "sub", "sub/big.bin", "sub/deep", "sub/deep/z"]


def test_deep_pending_chain(tmp_path):
    deep = "/".join(f"d{i}" for i in range(40))
    root = _tree(tmp_path / "deep", [deep + "/leaf", "other/x", deep[:11] + "/sib/y"])
    got = _walk(root, [("include", "**/leaf"), ("exclude", "**")])
    assert got == ["."] + ["/".join(f"d{i}" for i in range(n)) for n in range(1, 41)] + [deep + "/leaf"]
    assert _walk(root, [("include", "**/nothing"), ("exclude", "**")]) == ["."]


# ------------------------------------------------------------------------------------ filelists

def test_filelist_spec_example(tmp_path, chdir):
    chdir(tmp_path)
    _tree("s6", ["a/b/x.txt", "a/other", "c.tmp"])
    with open("list", "w") as f:
        f.write("+ s6/a/b\n- s6/a\n- **.tmp\n")
    for kind in ("exclude-filelist", "include-filelist"):
        assert _walk("s6", [(kind, "list")]) == [".", "a", "a/b", "a/b/x.txt"]
    # first match wins inside a list too: "+ s6/a/b" covers a/b/y.tmp before "- **.tmp" is tried
    # (duplicity 3.2.1 keeps it), and paths no line speaks of are included
    _tree("s6", ["a/b/y.tmp", "d"])
    for kind in ("exclude-filelist", "include-filelist"):
        assert _walk("s6", [(kind, "list")]) == [".", "a", "a/b", "a/b/x.txt", "a/b/y.tmp", "d"]


def _fl(tmp_path, data, name="fl"):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def test_filelist_parsing(src, tmp_path, chdir):
    chdir(os.path.dirname(src))
    nosub = [p for p in ALL if not p.startswith("sub")]
    noa = [p for p in ALL if not p.startswith("a")]
    cases = [
        (b"# comment\n\n   \n  - src/sub  \n", nosub),
        (b"\t- src/sub\t\r\n", nosub),                                     # CRLF, tabs stripped
        (b'"src/sub"\n', nosub), (b"'src/sub'\n", nosub),                  # quotes removed
        (b'+ "src/a"\n- **\n', [".", "a", "a/b", "a/b/x.txt", "a/b/y.tmp", "a/c.txt"]),
        (b"- src/a\n- src/sub\n", [".", "empty", "top.tmp"]),
        (b"ignorecase:SRC/A\n", noa),
        (b"src/a #not a comment\n", ALL),
        (b"src/top.tmp/\n", ALL),                                          # dir-only never matches a file
    ]
    for data, want in cases:
        assert _walk("src", [("exclude-filelist", _fl(tmp_path, data))]) == want, data
    # no default sign inside a list: the kind of list decides, "+ "/"- " override it
    assert _walk("src", [("include-filelist", _fl(tmp_path, b"src/a\n- **\n"))]) == ALL[:6]
    assert _walk("src", [("exclude-filelist", _fl(tmp_path, b"+ src/a\n- **\n"))]) == ALL[:6]


def test_filelist_oddities_are_literal(src, tmp_path, chdir):
    chdir(os.path.dirname(src))
    # only one space after the sign is consumed; "+x", '"+ x"' and a lone quote are globs
    for data in (b"-  src/a\n", b"- \tsrc/a\n", b"-src/a\n", b'"+ src/a"\n- **\n', b'"src/a\n', b"\"src/a'\n"):
        with pytest.raises(SelectionError) as e:
            Selection("src", [("exclude-filelist", _fl(tmp_path, data))])
        assert e.value.exit_code == ExitCode.PATTERN_OUTSIDE_SOURCE, data


def test_filelist_null_separator(src, tmp_path, chdir):
    chdir(os.path.dirname(src))
    fl = _fl(tmp_path, b"- src/a\0  - src/sub \0\0# - src/top.tmp\0")
    assert _walk("src", [("exclude-filelist", fl)], null_separator=True) == [".", "empty", "top.tmp"]
    # without the option the whole file is one line, which matches nothing
    fl = _fl(tmp_path, b"- src/a\n- src/sub\0")
    assert _walk("src", [("exclude-filelist", fl)], null_separator=True) == ALL
    fl = _fl(tmp_path, b"- src/a\0- src/sub\n\0")
    assert _walk("src", [("exclude-filelist", fl)], null_separator=True) == [".", "empty", "top.tmp"]


def test_filelist_unreadable(src, tmp_path):
    with pytest.raises(SelectionError) as e:
        Selection(src, [("exclude-filelist", str(tmp_path / "missing"))])
    assert "missing" in str(e.value)


# ------------------------------------------------------------------------------ the other rules

def test_regexps(src):
    assert _walk(src, [("exclude-regexp", r"\.tmp$")]) == [p for p in ALL if not p.endswith(".tmp")]
    assert _walk(src, [("exclude-regexp", f"^{src}/a")]) == [".", "empty"] + ALL[7:]
    assert _walk(src, [("exclude-regexp", f"^{src}/a/$")]) == ALL          # no trailing / on dirs
    assert _walk(src, [("exclude-regexp", f"^{src}/.*b")]) == [".", "a", "a/c.txt", "empty", "top.tmp"]
    got = _walk(src, [("include-regexp", r"c\.txt$"), ("include-regexp", f"^{src}/a$"), ("exclude", "**")])
    assert got == [".", "a", "a/c.txt"]


def test_exclude_if_present(tmp_path):
    root = _tree(tmp_path / "p", ["m1/.nb", "m1/sub/x", "m2/keep", "m3/.nb/", "m3/y", "m4/deeper/.nb",
                                  "m4/z", "f"])
    os.makedirs(os.path.join(root, "m5"))
    os.symlink("nowhere", os.path.join(root, "m5", ".nb"))
    got = _walk(root, [("exclude-if-present", ".nb")])
    assert got == [".", "f", "m2", "m2/keep", "m4", "m4/z"]
    # it acts before every other rule, wherever it was given
    assert _walk(root, [("include", f"{root}/m1"), ("exclude-if-present", ".nb"), ("exclude", "**")]) == ["."]


def test_exclude_older_than(tmp_path):
    root = _tree(tmp_path / "t", ["f1", "f2", "f3", "old/x", "d/"])
    os.utime(os.path.join(root, "f1"), (1_000_000_000, 1_000_000_000))
    os.utime(os.path.join(root, "f2"), (999_999_999.5, 999_999_999.5))
    os.utime(os.path.join(root, "f3"), (1_000_000_000.5, 1_000_000_000.5))
    os.utime(os.path.join(root, "old", "x"), (5, 5))
    os.utime(os.path.join(root, "old"), (5, 5))
    os.symlink("f1", os.path.join(root, "link"))
    os.utime(os.path.join(root, "link"), (5, 5), follow_symlinks=False)
    assert _walk(root, [("exclude-older-than", 1_000_000_000)]) == [".", "d", "f1", "f3", "link", "old"]
    assert _walk(root, [("exclude-older-than", "1000000001")]) == [".", "d", "link", "old"]
    assert "f1" not in _walk(root, [("exclude-older-than", "2002-01-01")])     # a duplicity time string
    # it keeps its place in the order
    assert "old/x" in _walk(root, [("include", f"{root}/old"), ("exclude-older-than", 1_000_000_000)])
    got = _walk(root, [("exclude-older-than", 1_000_000_000), ("include", f"{root}/old"), ("exclude", "**")])
    assert got == [".", "old"]


def test_exclude_device_files(tmp_path):
    root = _tree(tmp_path / "dev", ["f", "d/"])
    try:
        os.mknod(os.path.join(root, "d", "null"), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        os.mknod(os.path.join(root, "d", "blk"), 0o600 | stat.S_IFBLK, os.makedev(7, 0))
    except PermissionError:
        pytest.skip("mknod needs root")
    os.mkfifo(os.path.join(root, "fifo"))
    assert _walk(root) == [".", "d", "d/blk", "d/null", "f", "fifo"]
    assert _walk(root, [("exclude-device-files", None)]) == [".", "d", "f", "fifo"]
    # moved in front of the other rules
    got = _walk(root, [("include", f"{root}/d/null"), ("exclude-device-files", None), ("exclude", "**")])
    assert got == ["."]


def _fake_devices(monkeypatch, other):
    """Pretend the paths ending in ``other`` (and below) live on another filesystem."""
    real = os.lstat

    def lstat(p, *a, **kw):
        st = real(p, *a, **kw)
        if any(os.fsdecode(p).endswith(o) or f"{o}/" in os.fsdecode(p) for o in other):
            fields = list(st)
            fields[stat.ST_DEV] = st.st_dev + 1
            return os.stat_result(fields)
        return st
    monkeypatch.setattr(os, "lstat", lstat)


def test_exclude_other_filesystems(src, monkeypatch):
    _fake_devices(monkeypatch, ["/sub"])
    assert _walk(src) == ALL
    assert _walk(src, [("exclude-other-filesystems", None)]) == [p for p in ALL if not p.startswith("sub")]
    # an ordinary rule in its place: an earlier include wins
    assert _walk(src, [("include", f"{src}/sub"), ("exclude-other-filesystems", None)]) == ALL
    got = _walk(src, [("include", f"{src}/sub/deep/z"), ("exclude-other-filesystems", None), ("exclude", "**")])
    assert got == [".", "sub", "sub/deep", "sub/deep/z"]
    # no error: it is not an include, so it may come last
    Selection(src, [("include", f"{src}/a"), ("exclude-other-filesystems", None)])


def test_sockets_are_skipped(src):
    socks = []
    for p in ("sock", "a/b/sock", "onlysock/s"):
        os.makedirs(os.path.dirname(os.path.join(src, p)), exist_ok=True)
        s = socket.socket(socket.AF_UNIX)
        s.bind(os.path.join(src, p))
        socks.append(s)
    try:
        got = _walk(src)
        assert "sock" not in got and "a/b/sock" not in got and "onlysock/s" not in got
        assert "onlysock" in got
        # an included socket does not make its scanned directory appear
        assert _walk(src, [("include", f"{src}/onlysock/s"), ("exclude", "**")]) == ["."]
    finally:
        for s in socks:
            s.close()


# --------------------------------------------------------------------------------- problems

def test_unreadable_directory_warns_and_continues(src, monkeypatch):
    real = os.listdir
    warnings = []

    def listdir(p):
        if os.fsdecode(p).endswith("/sub"):
            raise PermissionError(13, "Permission denied")
        return real(p)
    monkeypatch.setattr(os, "listdir", listdir)
    got = _walk(src, on_warning=warnings.append)
    assert got == [p for p in ALL if not p.startswith("sub/")]     # the directory itself is kept
    assert len(warnings) == 1
    assert f"{src}/sub" in warnings[0] and "Permission denied" in warnings[0]


def test_default_warning_goes_to_logging(src, monkeypatch, caplog):
    real = os.listdir

    def listdir(p):
        if os.fsdecode(p).endswith("/a"):
            raise PermissionError(13, "Permission denied")
        return real(p)
    monkeypatch.setattr(os, "listdir", listdir)
    with caplog.at_level("WARNING"):
        assert "a/c.txt" not in _walk(src)
    assert "Permission denied" in caplog.text


def test_vanished_file_is_skipped_with_a_warning(src, monkeypatch):
    real = os.lstat
    warnings = []

    def lstat(p, *a, **kw):
        if os.fsdecode(p).endswith("/a/c.txt"):
            raise FileNotFoundError(2, "No such file or directory")
        return real(p, *a, **kw)
    monkeypatch.setattr(os, "lstat", lstat)
    got = _walk(src, on_warning=warnings.append)
    assert got == [p for p in ALL if p != "a/c.txt"]
    assert len(warnings) == 1 and "a/c.txt" in warnings[0] and "vanished" in warnings[0]


# ------------------------------------------------------------------------------------- errors

def _err(src, rules, **kw):
    with pytest.raises(SelectionError) as e:
        Selection(src, rules, **kw)
    return e.value.exit_code


def test_pattern_outside_source_is_exit_14(src, chdir):
    for pattern in ("/somewhere/else", f"{src}x", f"{src}x/a", "a", "*/a", "[", f"{os.path.dirname(src)}/b*"):
        assert _err(src, [("exclude", pattern)]) == ExitCode.PATTERN_OUTSIDE_SOURCE == 14, pattern
    assert _err(src, [("include", "/etc"), ("exclude", "**")]) == 14
    # the source, its ancestors, anything below and wildcards are fine
    for pattern in ("/", os.path.dirname(src), os.path.dirname(src) + "/", f"{src}/", "**/a", "*",
                    f"{os.path.dirname(src)}/s*/a", "/**/zz", f"{src}/a[/]b"):
        Selection(src, [("exclude", pattern)])
    chdir(os.path.dirname(src))
    assert _err("src", [("exclude", f"{src}/a")]) == 14          # no absolutising either way
    assert _err("src", [("exclude", "./src/a")]) == 14
    Selection("src", [("exclude", "*/a")])


def test_trailing_include_is_exit_16(src, tmp_path):
    assert _err(src, [("exclude", "**.tmp"), ("include", f"{src}/a")]) == ExitCode.TRAILING_INCLUDE == 16
    assert _err(src, [("include-regexp", "a")]) == 16
    # exclude-if-present and exclude-device-files move to the front, so they do not help
    assert _err(src, [("include", f"{src}/a"), ("exclude-if-present", ".nb")]) == 16
    assert _err(src, [("include", f"{src}/a"), ("exclude-device-files", None)]) == 16
    # filelists count line by line
    assert _err(src, [("exclude-filelist", _fl(tmp_path, f"- {src}/a\n+ {src}/sub\n".encode()))]) == 16
    assert _err(src, [("include-filelist", _fl(tmp_path, f"{src}/a\n".encode()))]) == 16
    Selection(src, [("include-filelist", _fl(tmp_path, f"{src}/a\n- **\n".encode()))])
    Selection(src, [("include", f"{src}/a"), ("exclude-older-than", 1)])
    Selection(src, [("include", f"{src}/a"), ("exclude-regexp", "zzz")])


def test_bad_globs_are_exit_15(src, tmp_path):
    assert _err(src, [("exclude", f"{src}//a")]) == ExitCode.GLOB_ERROR == 15
    assert _err(src, [("exclude-filelist", _fl(tmp_path, f"{src}/a//b\n".encode()))]) == 15
    assert _err(src, [("exclude", f"{src}/[z-a]")]) == 15
    assert _err(src, [("exclude-regexp", "(")]) == 15


def test_unknown_or_empty_rule(src):
    with pytest.raises(SelectionError):
        Selection(src, [("exclude-everything", None)])
    for kind in ("exclude", "include-regexp", "exclude-if-present"):
        assert _err(src, [(kind, "")]) == ExitCode.USER_ERROR


# ----------------------------------------------------------------------------------- selected()

RULESETS = [
    [],
    [("exclude", "{s}/a")],
    [("include", "{s}/a/b"), ("exclude", "**")],
    [("exclude", "**.tmp"), ("include", "{s}/a/b"), ("exclude", "**")],
    [("include", "**.txt"), ("exclude", "**")],
    [("include", "{s}/sub/deep/z"), ("exclude", "{s}/sub"), ("exclude", "**")],
    [("exclude-regexp", "^{s}/a$")],                   # the walk never enters a, so nothing under it
    [("include-regexp", "deep"), ("exclude", "**")],
    [("exclude", "**/b/")],
]


@pytest.mark.parametrize("rules", RULESETS)
def test_selected_agrees_with_walk(src, rules):
    rules = [(k, v.format(s=src)) for k, v in rules]
    sel = Selection(src, rules)
    walked = {e.index for e in sel.walk()}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(src)):
        for name in dirnames + filenames:
            index = tuple(os.path.relpath(os.path.join(dirpath, name), os.fsencode(src)).split(b"/"))
            st = os.lstat(os.path.join(dirpath, name))
            got = sel.selected(index, st)
            assert got == sel.selected(index), index
            if index in walked:
                assert got, index
            elif not stat.S_ISDIR(st.st_mode):
                assert not got, index
    assert sel.selected(())


def test_selected_without_the_file_on_disk(src):
    sel = Selection(src, [("include", f"{src}/a/b"), ("exclude", "**.tmp"), ("exclude", f"{src}/gone/")])
    assert sel.selected((b"a", b"b", b"new.tmp"))           # ancestors count as directories
    assert sel.selected(("a", "b"))                         # str components are accepted
    assert not sel.selected((b"x", b"new.tmp"))
    assert sel.selected((b"gone",))                         # unknown type: not a directory
    assert not sel.selected((b"gone", b"f"))                # ... but as an ancestor it is one
    fake_dir = os.stat_result((stat.S_IFDIR | 0o755,) + (0,) * 9)
    assert not sel.selected((b"gone",), fake_dir)
