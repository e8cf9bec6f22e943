# SPDX-License-Identifier: GPL-3.0-or-later
"""Fuzz selection: any pattern, regexp or filelist gives a working Selection or a selection
error with a documented code (14, 15, 16, 23), and the walk never fails on its account."""
import contextlib
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hostile import SELECTION_CODES, documented, fuzz_settings

from cairn.selection import Selection

TREE = ["a/b/x.txt", "a/b/y.tmp", "a/c.txt", "sub/deep/z", "top.tmp", "empty/", b"\xff-raw",
        "name with space", "[br]acket"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """The source tree, and a directory for filelists. The source is used by a relative name
    (short paths keep even a pathological regexp quick)."""
    base = tmp_path_factory.mktemp("selection")
    for p in TREE:
        p = os.path.join(os.fsencode(base), b"src", os.fsencode(p))
        if p.endswith(b"/"):
            os.makedirs(p, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(b"x")
    return str(base)


@contextlib.contextmanager
def _cwd(path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


GLOB_TOKENS = st.sampled_from(["src", "src/", "/", "//", "**", "*", "?", "[", "]", "!", "^", "-", "a", "b",
                               "x.txt", ".tmp", "\\", "ignorecase:", "z-a", "[z-a]", "[!/]", "[a/b]",
                               "\udcff", "\0", " ", "\n", "..", ".", "sub", "deep", "+ ", "- ", '"', "'"])
REGEXP_TOKENS = st.sampled_from(["a", "b", ".", "^", "$", "[a-c]", "[", "]", "(", ")", "|", "\\", "\\d",
                                 "x*", "{", "}", "{2}", "(?i)", "(?P<n>", "(?<=a)", "\\1", "src", "/",
                                 "[z-a]", "(?", "\udcff", "\0"])
FILELIST_LINES = st.one_of(
    st.lists(GLOB_TOKENS, max_size=5).map(lambda t: "".join(t).encode("utf-8", "surrogateescape")),
    st.sampled_from([b"", b"#comment", b"+ src/a", b"- src/a/**", b"- **.tmp", b'"src/a"', b"'src'",
                     b"  src/sub  ", b"+ ", b"- ", b"src/\xff-raw", b"\xff\xfe", b"src/" + b"a/" * 2000,
                     b"src/" + b"x" * 100_000, b"**" * 50]),
    st.binary(max_size=30),
)


@st.composite
def filelists(draw):
    sep = draw(st.sampled_from([b"\n", b"\0", b"\r\n"]))
    return sep.join(draw(st.lists(FILELIST_LINES, max_size=6)))


@st.composite
def rules(draw, listdir):
    out = []
    for _rule in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["include", "exclude", "include", "exclude", "include-regexp",
                                     "exclude-regexp", "include-filelist", "exclude-filelist",
                                     "exclude-if-present", "exclude-older-than", "exclude-device-files",
                                     "exclude-other-filesystems", "frobnicate"]))
        if kind in ("include", "exclude"):
            value = "".join(draw(st.lists(GLOB_TOKENS, max_size=6)))
        elif kind.endswith("-regexp"):
            value = "".join(draw(st.lists(REGEXP_TOKENS, max_size=6)))
        elif kind.endswith("-filelist"):
            value = os.path.join(listdir, f"list{len(out)}")
            with open(value, "wb") as f:
                f.write(draw(filelists()))
            if draw(st.integers(0, 9)) == 0:
                value = draw(st.sampled_from([os.path.join(listdir, "missing"), listdir, "bad\0name"]))
        elif kind == "exclude-if-present":
            value = draw(st.sampled_from([".nobackup", "x.txt", "deep", "a\0b", "\udcff", b"\xff-raw"]))
        elif kind == "exclude-older-than":
            value = draw(st.sampled_from(["3D", "now", "0", "9" * 5000, "\u00b2", "2026-11-25", "bogus"]))
        else:
            value = ""
        out.append((kind, value))
    if draw(st.booleans()):
        out.append(("exclude", "**"))      # so that more rule lists end in an exclude and do work
    return out


@fuzz_settings(250)
@given(st.data())
def test_selection_rules(tree, data):
    listdir = os.path.join(tree, "lists")
    os.makedirs(listdir, exist_ok=True)
    rule_list = data.draw(rules(listdir))
    with _cwd(tree), documented(SELECTION_CODES):
        sel = Selection("src", rule_list, null_separator=data.draw(st.booleans()),
                        ignorecase=data.draw(st.booleans()))
        walked = [e.index for e in sel.walk()]
        assert walked[0] == ()
        assert walked == sorted(walked)
        for index in walked[1:4] + [(b"nope",), (b"a", b"nope", b"deeper")]:
            sel.selected(index)


@fuzz_settings(100)
@given(st.lists(GLOB_TOKENS, max_size=8).map("".join), st.booleans())
def test_single_globs_on_an_absolute_source(tree, glob, include):
    src = os.path.join(tree, "src")
    with documented(SELECTION_CODES):
        sel = Selection(src, [("include" if include else "exclude", src + "/" + glob), ("exclude", "**")])
        list(sel.walk())


def test_huge_filelist_lines_stay_quick(tree):
    """A filelist line of thousands of components: linear work, not a square of it."""
    listdir = os.path.join(tree, "lists")
    os.makedirs(listdir, exist_ok=True)
    path = os.path.join(listdir, "huge")
    with open(path, "wb") as f:
        f.write(b"+ src/" + b"d/" * 200_000 + b"x\n- **\n")
    with _cwd(tree):
        sel = Selection("src", [("include-filelist", path)])
        assert [e.index for e in sel.walk()] == [()]
