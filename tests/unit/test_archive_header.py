# SPDX-License-Identifier: GPL-3.0-or-later
"""archive.header writes the common ustar header itself: its bytes must be tarfile's, whatever
the entry (the fast path, or tarfile with PAX records when the entry needs them)."""
import tarfile

from hypothesis import given, settings
from hypothesis import strategies as st

from cairn import archive
from cairn.archive import BLK, CHR, DIR, FIFO, REG, SYM, PathInfo


def _tarfile_header(name, info, size, as_deleted=False):
    """What tarfile makes of the entry (archive.header's own slow path, spelled out)."""
    ti = tarfile.TarInfo(name)
    if as_deleted:
        ti.type, ti.mode, ti.mtime, ti.uname, ti.gname = tarfile.REGTYPE, 0, 0, "", ""
    else:
        ti.type = archive._TAR_TYPE[info.type]
        ti.mode, ti.uid, ti.gid, ti.mtime = info.mode, info.uid, info.gid, info.mtime
        ti.uname, ti.gname = info.uname, info.gname
        if info.type == SYM:
            ti.linkname = info.linkname.decode("utf-8", "surrogateescape")
        elif info.type in (CHR, BLK):
            ti.devmajor, ti.devminor = info.devmajor, info.devminor
    ti.size = size
    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


_TEXT = st.one_of(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=110),
                  st.text(max_size=40), st.sampled_from(["", "a" * 99, "a" * 100, "a" * 101, "é", "\udcff"]))
_NUMBER = st.one_of(st.integers(min_value=0, max_value=2 ** 40), st.sampled_from(
    [0, 8 ** 7 - 1, 8 ** 7, 8 ** 11 - 1, 8 ** 11, 2 ** 33]))
_ID = st.one_of(st.integers(min_value=0, max_value=70000), st.sampled_from([8 ** 7 - 1, 8 ** 7, 2 ** 32 - 1]))


@settings(max_examples=2000, derandomize=True, database=None, deadline=None)
@given(st.sampled_from([REG, DIR, SYM, FIFO, CHR, BLK]), _TEXT, _TEXT, _TEXT, _TEXT, _ID, _ID,
       st.integers(min_value=0, max_value=0o7777), _NUMBER, _NUMBER, _ID, _ID, st.booleans())
def test_a_header_is_tarfiles(kind, name, link, uname, gname, uid, gid, mode, size, mtime, major, minor, deleted):
    name = "snapshot/" + name
    info = PathInfo((name.encode("utf-8", "surrogateescape"),), kind, mode, uid, gid, uname, gname, mtime,
                    linkname=link.encode("utf-8", "surrogateescape"), devmajor=major, devminor=minor)
    try:
        expected = _tarfile_header(name, info, size, deleted)
    except ValueError:              # tarfile refuses device numbers past 7 octal digits: so do we
        expected = ValueError
    try:
        got = archive.header(name, info, size, as_deleted=deleted)
    except ValueError:
        got = ValueError
    assert got == expected


def test_the_common_entries_take_the_fast_path(monkeypatch):
    """A file, a directory and a symlink of an ordinary tree never reach tarfile."""
    def no_tarfile(*a, **k):
        raise AssertionError("tarfile was used")
    monkeypatch.setattr(tarfile.TarInfo, "tobuf", no_tarfile)
    for kind, link in ((REG, b""), (DIR, b""), (SYM, b"../target")):
        info = PathInfo((b"etc", b"x"), kind, 0o644, 0, 0, "root", "root", 1_700_000_000, linkname=link)
        assert len(archive.header("snapshot/etc/x", info, 1234)) == 512
    assert len(archive.header("deleted/etc/x", None, 0, as_deleted=True)) == 512
