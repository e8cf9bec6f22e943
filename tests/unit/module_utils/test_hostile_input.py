# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 9: hostile archives, manifests, names, time strings and selections end in a
documented error (tests/unit/fuzz/ searches wider; these pin the cases found)."""
import io
import os
import tarfile
import tracemalloc

import pytest

from cairn import archive, naming, timespec
from cairn.errors import CorruptArchive, ExitCode, ManifestError, SelectionError, SourceError, TimeStringError
from cairn.manifest import Manifest
from cairn.selection import Selection


def _tar(*entries):
    """A PAX tar of (TarInfo, data) as tarfile writes it, with whatever pax_headers they carry."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return raw.getvalue()


def _entry(name="snapshot/a", data=b"abc", type_=tarfile.REGTYPE, pax=None, **fields):
    ti = tarfile.TarInfo(name)
    ti.type, ti.size, ti.mode, ti.mtime = type_, len(data), 0o644, 1_700_000_000
    for k, v in fields.items():
        setattr(ti, k, v)
    ti.pax_headers = dict(pax or {})
    return ti, data


def _read(stream):
    out = []
    for m, read in archive.read_members(io.BytesIO(stream)):
        out.append((m, read()))
    return out


def _header(name, typeflag, size=0, **raw_fields):
    """A ustar header with raw field bytes (tarfile refuses the values these tests need)."""
    buf = bytearray(archive.BLOCK)
    buf[0:len(name)] = name
    offsets = {"mode": (100, 8), "uid": (108, 8), "gid": (116, 8), "size": (124, 12), "mtime": (136, 12),
               "devmajor": (329, 8), "devminor": (337, 8)}
    values = {"mode": b"0000644\0", "uid": b"0000000\0", "gid": b"0000000\0",
              "size": size if isinstance(size, bytes) else b"%011o\0" % size,
              "mtime": b"%011o\0" % 1_700_000_000, "devmajor": b"0000000\0", "devminor": b"0000000\0"}
    values.update(raw_fields)
    for key, (off, width) in offsets.items():
        buf[off:off + width] = values[key]
    buf[156:157] = typeflag
    buf[257:265] = b"ustar\x0000"
    buf[148:156] = b" " * 8
    buf[148:156] = b"%06o\0 " % sum(buf)
    return bytes(buf)


def _base256(n, width):
    return (n % 256 ** width).to_bytes(width, "big") if n < 0 else b"\x80" + n.to_bytes(width - 1, "big")


# --- the tar reader --------------------------------------------------------------------------

@pytest.mark.parametrize("key, value", [("size", "abc"), ("uid", "root"), ("mtime", "nan"),
                                        ("mtime", "1e20"), ("uid", str(2**40)), ("gid", "-1"),
                                        ("size", "-3"), ("mtime", "inf"), ("uid", "\u00b2"),
                                        ("size", "1_0"), ("uid", " 1"), ("mtime", str(2**63)),
                                        ("mtime", "9" * 5000), ("uname", "a\0b"), ("linkpath", "")])
def test_pax_values_no_file_can_have_are_corrupt(key, value):
    ti, data = _entry(pax={key: value}, type_=tarfile.SYMTYPE if key == "linkpath" else tarfile.REGTYPE,
                      linkname="t")
    with pytest.raises(CorruptArchive) as e:
        _read(_tar((ti, data)))
    assert e.value.exit_code == ExitCode.CORRUPT_ARCHIVE


@pytest.mark.parametrize("value, mtime", [("1700000000.5", 1_700_000_000), ("-5", 0), ("-1.5", 0),
                                          ("0", 0), (str(2**63 - 1), 2**63 - 1), ("00017", 17)])
def test_pax_mtimes_that_are_fine(value, mtime):
    [(m, _data)] = _read(_tar(_entry(pax={"mtime": value})))
    assert m.info.mtime == mtime


def test_base256_fields():
    data = b"abc"
    neg_mtime = _header(b"snapshot/a", b"0", len(data), mtime=_base256(-100, 12)) + data.ljust(512, b"\0")
    [(m, got)] = _read(neg_mtime + bytes(1024))
    assert m.info.mtime == 0 and got == data                   # negative -> 0, as the format says
    big_uid = _header(b"snapshot/a", b"0", uid=_base256(2**40, 8))
    with pytest.raises(CorruptArchive, match="uid"):
        _read(big_uid + bytes(1024))
    neg_gid = _header(b"snapshot/a", b"0", gid=_base256(-1, 8))
    with pytest.raises(CorruptArchive, match="gid"):
        _read(neg_gid + bytes(1024))
    neg_size = _header(b"snapshot/a", b"0", size=_base256(-5, 12))
    with pytest.raises(CorruptArchive, match="size"):
        _read(neg_size + bytes(1024))
    bad_lead = _header(b"snapshot/a", b"0", uid=b"\xc0" + bytes(7))
    with pytest.raises(CorruptArchive, match="base-256"):
        _read(bad_lead + bytes(1024))
    device = _header(b"snapshot/dev", b"3", devmajor=_base256(2**40, 8))
    with pytest.raises(CorruptArchive, match="device"):
        _read(device + bytes(1024))
    garbage = _header(b"snapshot/a", b"0", mode=b"07\x0055xyz")   # text after the NUL is ignored
    assert _read(garbage + bytes(1024))[0][0].info.mode == 0o7
    with pytest.raises(CorruptArchive, match="mode"):
        _read(_header(b"snapshot/a", b"0", mode=b"0o17\0\0\0\0") + bytes(1024))


@pytest.mark.parametrize("typeflag", [b"x", b"L", b"K", b"g"])
def test_a_meta_header_claiming_huge_data_allocates_nothing(typeflag):
    stream = _header(b"././@PaxHeader", typeflag, size=2**40 - 1) + b"12 path=abc\n".ljust(512, b"\0")
    tracemalloc.start()
    try:
        with pytest.raises(CorruptArchive, match="claims"):
            _read(stream)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_member_claiming_more_than_a_file_holds(tmp_path):
    """On a plain file the reader seeks; a size past what any file offset can be is corrupt."""
    path = tmp_path / "vol.tar"
    path.write_bytes(_header(b"snapshot/a", b"0", size=_base256(2**62, 12)) + bytes(2048))
    with open(path, "rb") as f, pytest.raises(CorruptArchive):
        for _m, _read_data in archive.read_members(f):
            pass
    path.write_bytes(_header(b"snapshot/a", b"0", size=_base256(2**70, 12)) + bytes(2048))
    with open(path, "rb") as f, pytest.raises(CorruptArchive, match="size"):
        for _m, _read_data in archive.read_members(f):
            pass


@pytest.mark.parametrize("records", [b"30 path=snapshot/a\n",            # runs past the data
                                     b"5 path=snapshot/a\n",             # shorter than itself
                                     b"x path=snapshot/a\n", b"0 \n", b"7 path\n",
                                     b"19 path=snapshot/a\0"])           # no newline
def test_malformed_pax_records(records):
    stream = (_header(b"././@PaxHeader", b"x", size=len(records)) + records.ljust(512, b"\0")
              + _header(b"snapshot/b", b"0") + bytes(1024))
    with pytest.raises(CorruptArchive, match="PAX"):
        _read(stream)


def test_pax_records_padded_with_nuls_are_fine():
    records = b"20 path=snapshot/aa\n" + b"\0" * 12
    stream = (_header(b"././@PaxHeader", b"x", size=len(records)) + records.ljust(512, b"\0")
              + _header(b"snapshot/b", b"0") + bytes(1024))
    assert _read(stream)[0][0].index == (b"aa",)


def test_absurd_chunk_numbers_and_names():
    with pytest.raises(CorruptArchive, match="chunk"):
        archive.parse_name(b"multivol_snapshot/a/" + b"9" * 5000)
    long_name = b"snapshot/" + b"x" * 100_000 + b"/.."
    with pytest.raises(archive.UnsafeArchive) as e:
        archive.parse_name(long_name)
    assert len(str(e.value)) < 1000                            # a crafted name does not flood the log


# --- manifests -------------------------------------------------------------------------------

GOOD_VOLUME = (b"Volume 1:\n    StartingPath   .  \n    EndingPath     a  \n"
               b"    Hash SHA1 d31531ffd9e5b186df6e45528629ccee2001dd99\n")


@pytest.mark.parametrize("data", [
    GOOD_VOLUME.replace(b"SHA1 d3", b"SHA1 \xff\xfe"),                       # issue 9: not UTF-8
    GOOD_VOLUME.replace(b"SHA1 d3", b"SHA1 zz"),                             # not hex
    GOOD_VOLUME.replace(b"Hash SHA1", b"Hash \xff"),
    GOOD_VOLUME.replace(b"ccee2001dd99", b"cc"),                             # SHA1 of the wrong length
    GOOD_VOLUME.replace(b" d31531ffd9e5b186df6e45528629ccee2001dd99", b""),  # no value
    GOOD_VOLUME.replace(b"Volume 1:", b"Volume x:"),
    GOOD_VOLUME.replace(b"Volume 1:", b"Volume 0:"),
    GOOD_VOLUME.replace(b"Volume 1:", b"Volume 99999999999:"),
    GOOD_VOLUME.replace(b"Volume 1:", b"Volume " + b"9" * 5000 + b":"),
    GOOD_VOLUME.replace(b"Volume 1:", b"Volume 1_0:"),
    GOOD_VOLUME.replace(b"a  \n", b"a 99999999999999999999999\n"),           # absurd block number
    GOOD_VOLUME.replace(b"a  \n", b"a " + b"9" * 5000 + b"\n"),
    GOOD_VOLUME.replace(b"a  \n", b"a x\n"),
    GOOD_VOLUME.replace(b"    EndingPath     a  \n", b""),
    b"Hostname vm\nLocaldir /src\n",                                          # no volume at all
    b"",
    b"\xff\xfe\0garbage",
])
def test_bad_manifests(data):
    with pytest.raises(ManifestError) as e:
        Manifest.from_bytes(data)
    assert e.value.exit_code == ExitCode.BAD_MANIFEST


def test_manifest_oddities_that_still_read():
    m = Manifest.from_bytes(b"Hostname h\xffst\nLocaldir \"/a\\x20b\n" + GOOD_VOLUME.replace(b"a  \n", b"a 7\n")
                            + b"    Hash MD5 " + b"0" * 32 + b"\n    Unknown field\n")
    assert m.hostname == "h\ufffdst" and m.localdir == b"/a b"
    assert m.volumes[1].end_block == 7 and set(m.volumes[1].hashes) == {"SHA1", "MD5"}
    upper = Manifest.from_bytes(GOOD_VOLUME.replace(b"d31531ffd9", b"D31531FFD9"))
    assert upper.volumes[1].hashes["SHA1"].startswith("d31531ffd9")


# --- file names and time strings -------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "duplicity-full.20261125T012922Z.vol" + "9" * 5000 + ".difftar.gpg",
    "duplicity-full.20261125T012922Z.vol99999999999.difftar.gpg",
    "duplicity-full.20261125T012922Z.vol\u0661.difftar.gpg",
    "df.zzzzzzzzzzzzzzzzzzzz.1.dt.g",
    "df.zzzzzzzzz.1.dt.g",                           # a base-36 time past year 9999
    "df.ts2vuq." + "z" * 5000 + ".dt.g",
    "dns.ts2vuq." + "1" * 5000 + ".st",
])
def test_absurd_names_are_foreign(name):
    assert naming.parse(name) is None


@pytest.mark.parametrize("s", ["\u00b2", "\u0661\u0662", "\uff11", "9" * 5000, "253402300800", str(2**63),
                               "\u0662\u0660\u0662\u0666-\u0661\u0661-\u0662\u0665", "3\u0661D", "1e9"])
def test_bad_time_strings(s):
    with pytest.raises(TimeStringError) as e:
        timespec.parse(s)
    assert e.value.exit_code == ExitCode.USER_ERROR


def test_time_limits():
    now = 1_795_573_409
    assert timespec.parse("253402300799", now=now) == timespec.MAX_TIME
    assert timespec.parse("99999999999Y", now=now) == timespec.MIN_TIME
    assert timespec.parse("9" * 5000 + "s", now=now) == timespec.MIN_TIME
    assert timespec.parse("3D", now=now) == now - 3 * 86400
    for t in (2**63 - 1, 2**40, -2**63, timespec.MIN_TIME, timespec.MAX_TIME):
        timespec.to_iso(t), timespec.asctime(t), timespec.to_timestr(t)
    assert timespec.to_iso(2**40) == "9999-12-31T23:59:59Z"


# --- selection -------------------------------------------------------------------------------

def test_selection_inputs_that_cannot_work(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    with pytest.raises(SelectionError) as e:
        Selection(str(src), [("include-filelist", str(tmp_path) + "/a\0b")])
    assert e.value.exit_code == ExitCode.USER_ERROR
    with pytest.raises(SelectionError) as e:
        Selection(str(src), [("exclude-regexp", "(?:" * 5000 + ")" * 5000)])
    assert e.value.exit_code == ExitCode.GLOB_ERROR
    with pytest.raises(SourceError):
        list(Selection(str(src) + "\0x").walk())
    with pytest.raises(TimeStringError):
        Selection(str(src), [("exclude-older-than", "\u00b2")])


def test_binary_filelists(tmp_path):
    src = tmp_path / "src"
    (src / "keep").mkdir(parents=True)
    (src / "drop.tmp").write_bytes(b"x")
    (src / b"\xff-raw".decode("utf-8", "surrogateescape")).write_bytes(b"x")
    listing = tmp_path / "list"
    listing.write_bytes(b"- **\xff\xfe junk\0- **.tmp\0\0#c\0- **/" + b"x/" * 50_000 + b"\0- "
                        + os.fsencode(src) + b"/\xff-raw\0")
    sel = Selection(str(src), [("include-filelist", str(listing))], null_separator=True)
    assert [e.index for e in sel.walk()] == [(), (b"keep",)]
