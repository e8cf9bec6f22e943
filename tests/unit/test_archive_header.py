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


# --- reading: the numeric fields in one pass ----------------------------------------------------

_FIELDS = ((100, 8), (108, 8), (116, 8), (124, 12), (136, 12), (148, 8))
_octal_field = st.tuples(st.booleans(), st.integers(0, 8 ** 7 - 1), st.sampled_from([b"\0", b" ", b"\0 ", b""])).map(
    lambda t: b" " * t[0] + b"%o" % t[1] + t[2])
_odd_field = st.one_of(
    st.binary(min_size=1, max_size=12),
    st.sampled_from([b"", b"\0" * 8, b" " * 8, b"0644\0 12", b"\x00644", b"06 44", b"0o644", b"0_644",
                     b"+644", b"-644", b"\x80\0\0\0\0\0\0\x01", b"\xff" * 8, b"0644\t", b"0644\n"]))


@settings(max_examples=3000, deadline=None)
@given(st.lists(_octal_field, min_size=6, max_size=6),
       st.one_of(st.none(), st.tuples(st.integers(0, 5), _odd_field)))
def test_the_one_pass_numbers_are_what_num_reads(fields, odd):
    """_numbers gives exactly what _num gives for each field, or None (then _num reads them);
    never a value where _num refuses the field."""
    if odd is not None:
        fields[odd[0]] = odd[1]
    hdr = bytearray(512)
    for (start, width), raw in zip(_FIELDS, fields):
        raw = raw[:width]
        hdr[start:start + len(raw)] = raw
    hdr = bytes(hdr)
    fast = archive._numbers(hdr)
    if odd is None and all(len(f) <= w for f, (_s, w) in zip(fields, _FIELDS)):
        assert fast is not None, "plain octal fields take the one pass"
    if fast is None:
        return
    expected = [archive._num(hdr[start:start + width], "test", "field") for start, width in _FIELDS]
    assert list(fast) == expected


@given(st.binary(min_size=512, max_size=512))
def test_block_sum_is_the_sum_of_the_bytes(block):
    assert archive.block_sum(block) == sum(block)


def test_block_sum_at_its_limits():
    for block in (bytes(512), b"\xff" * 512, b"\xff" * 256 + bytes(256), bytes(256) + b"\xff" * 256):
        assert archive.block_sum(block) == sum(block)
