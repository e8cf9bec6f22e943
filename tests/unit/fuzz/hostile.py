# SPDX-License-Identifier: GPL-3.0-or-later
"""Hostile inputs for the fuzz tests: hypothesis strategies and the one property they share.

The property: a parser given anything returns data, or raises a CairnError whose exit code is
one the documentation names for that parser. Any other exception (ValueError, MemoryError,
UnicodeDecodeError, OverflowError, ...) would end the CLI in exit 30, "a bug", and fails the test.

Runs are reproducible and bounded: ``derandomize`` fixes the examples, ``database=None`` keeps
no state between runs. ``CAIRN_FUZZ_SCALE=N`` multiplies the number of examples for a longer
hunt by hand; ``make test`` uses the default.
"""
import contextlib
import io
import os

from hypothesis import HealthCheck, event, settings
from hypothesis.control import currently_in_test_context
from hypothesis import strategies as st

from cairn import archive
from cairn.errors import CairnError, ExitCode

SCALE = max(1, int(os.environ.get("CAIRN_FUZZ_SCALE", "1")))

# docs/cli.md, "Exit codes": every code but 0 (success) and 30 (a bug)
DOCUMENTED = frozenset({1, 3, 4, 5, 6, 9, 11, 12, 13, 14, 15, 16, 17, 19, 20, 21, 22, 23, 31, 42,
                        50, 51, 52, 53, 60, 61, 62, 63})
ARCHIVE_CODES = frozenset({ExitCode.UNSAFE_ARCHIVE, ExitCode.CORRUPT_ARCHIVE})
MANIFEST_CODES = frozenset({ExitCode.BAD_MANIFEST})
TIME_CODES = frozenset({ExitCode.USER_ERROR})
SELECTION_CODES = frozenset({ExitCode.PATTERN_OUTSIDE_SOURCE, ExitCode.GLOB_ERROR,
                             ExitCode.TRAILING_INCLUDE, ExitCode.USER_ERROR})

# what restore can use: an off_t, a uid_t/gid_t, a time_t, what os.makedev takes
MAX_SIZE = 2**63 - 1
MAX_ID = 2**32 - 1
MAX_MTIME = 2**63 - 1
MAX_DEVICE = 2**31 - 1


def fuzz_settings(examples):
    return settings(max_examples=examples * SCALE, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


@contextlib.contextmanager
def documented(codes):
    """The block may raise only a CairnError with one of ``codes``."""
    try:
        yield
    except CairnError as e:
        assert e.exit_code in codes, f"{type(e).__name__} with exit code {e.exit_code}: {e}"
        assert e.exit_code in DOCUMENTED
        _event(f"exit {e.exit_code}")
    else:
        _event("parsed")


def _event(what):
    """How the examples ended, shown by pytest --hypothesis-show-statistics."""
    if currently_in_test_context():
        event(what)


# --- values ----------------------------------------------------------------------------------

# numbers as text, the way a crafted header or record spells them
NUMBER_TEXT = st.one_of(
    st.integers(min_value=0, max_value=5000).map(lambda n: str(n).encode()),
    st.integers(min_value=0, max_value=2**70).map(lambda n: str(n).encode()),
    st.integers(min_value=-2**70, max_value=-1).map(lambda n: str(n).encode()),
    st.sampled_from([b"", b"abc", b"root", b"nan", b"-nan", b"inf", b"-inf", b"1e20", b"1e-5",
                     b"1.5", b"-1.5", b"0x10", b"0o17", b"1_000", b" 12", b"12 ", b"+3",
                     "\u00b2".encode(), "\u0661\u0662".encode(), b"\xff\xfe", b"1\x002",
                     str(2**40).encode(), str(2**63).encode(), str(2**63 - 1).encode(),
                     str(2**32).encode(), str(2**32 - 1).encode(), b"9" * 5000,
                     b"1700000000.123456789", b"-1700000000", b"." , b"1.", b"-0"]),
    st.binary(max_size=24),
)

NAME_COMPONENT = st.one_of(
    st.sampled_from([b"a", b"b.txt", b"..", b".", b"", b"sub", b"\xff\xfe", b"x\0y", b"new\nline",
                     b"c" * 300, b"1", b"99999999999999999999999", "caf\u00e9".encode()]),
    st.binary(min_size=1, max_size=12).filter(lambda b: b"/" not in b),
)

PREFIX = st.sampled_from([b"snapshot"] * 4
                         + [b"diff", b"deleted", b"multivol_snapshot", b"multivol_diff", b"signature",
                            b"bogus", b"", b"/snapshot", b"snapshot/.."])
GOOD_COMPONENT = st.sampled_from([b"a", b"b.txt", b"sub", b"1", b"2", b"\xff\xfe", "caf\u00e9".encode()])


@st.composite
def entry_names(draw):
    """Mostly names the format allows (so that parsing goes on to the fields), some hostile."""
    component = NAME_COMPONENT if draw(st.integers(0, 3)) == 0 else GOOD_COMPONENT
    parts = [draw(PREFIX)] + draw(st.lists(component, max_size=4))
    if parts[0].startswith(b"multivol_") and draw(st.integers(0, 5)):
        parts.append(draw(st.sampled_from([b"1", b"2", b"3", b"0", b"9" * 30])))
    name = b"/".join(parts)
    if draw(st.booleans()):
        name += b"/"
    return name


# --- tar headers built field by field (tarfile refuses the values we want to send) --------

def octal(n, width):
    """A well-formed octal field, or None when ``n`` does not fit (base-256 is used then)."""
    if n < 0 or n >= 8 ** (width - 1):
        return None
    return b"%0*o\0" % (width - 1, n)


def base256(n, width):
    if n >= 0:
        return b"\x80" + (n % 256 ** (width - 1)).to_bytes(width - 1, "big")
    return (n % 256 ** width).to_bytes(width, "big", signed=False).rjust(width, b"\xff")


@st.composite
def numeric_field(draw, width, plausible):
    """A header numeric field: mostly well formed around ``plausible``, sometimes hostile."""
    how = draw(st.sampled_from(["plausible"] * 24
                               + ["octal", "base256", "base256", "garbage", "spaces", "empty"]))
    if how == "plausible":
        return octal(plausible, width) or base256(plausible, width)
    if how in ("octal", "base256"):
        n = draw(st.one_of(st.just(plausible), st.integers(min_value=-2**70, max_value=2**90),
                           st.sampled_from([0, 1, 2**21 - 1, 2**31, 2**32, 2**33, 2**63, 2**64,
                                            -1, -2**63])))
        field = octal(n, width) if how == "octal" else None
        return field if field is not None else base256(n, width)
    if how == "spaces":
        return b"%*o \0" % (width - 2, max(plausible, 0) % 8 ** (width - 3))
    if how == "empty":
        return b"\0" * width
    return draw(st.binary(min_size=width, max_size=width))


def _put(buf, offset, value, width):
    value = value[:width]
    buf[offset:offset + len(value)] = value


def tar_header(name, typeflag, fields, *, linkname=b"", prefix=b"", magic=b"ustar\x0000",
               checksum="good"):
    """512 bytes; ``fields`` holds the encoded numeric fields by name."""
    buf = bytearray(archive.BLOCK)
    _put(buf, 0, name, 100)
    _put(buf, 100, fields.get("mode", octal(0o644, 8)), 8)
    _put(buf, 108, fields.get("uid", octal(0, 8)), 8)
    _put(buf, 116, fields.get("gid", octal(0, 8)), 8)
    _put(buf, 124, fields.get("size", octal(0, 12)), 12)
    _put(buf, 136, fields.get("mtime", octal(1_700_000_000, 12)), 12)
    buf[156:157] = typeflag
    _put(buf, 157, linkname, 100)
    _put(buf, 257, magic, 8)
    _put(buf, 265, fields.get("uname", b"root"), 32)
    _put(buf, 297, fields.get("gname", b"root"), 32)
    _put(buf, 329, fields.get("devmajor", octal(0, 8)), 8)
    _put(buf, 337, fields.get("devminor", octal(0, 8)), 8)
    _put(buf, 345, prefix, 155)
    buf[148:156] = b" " * 8
    total = sum(buf)
    if checksum == "good":
        _put(buf, 148, b"%06o\0 " % total, 8)
    elif checksum == "signed":
        signed = sum(b - 256 if b > 127 else b for b in buf)
        _put(buf, 148, base256(signed, 8) if signed < 0 else b"%06o\0 " % signed, 8)
    else:
        _put(buf, 148, checksum, 8)
    return bytes(buf)


def pad(data):
    return data + archive.padding(len(data))


PAX_KEYS = st.sampled_from([b"path", b"linkpath", b"size", b"uid", b"gid", b"mtime", b"uname",
                            b"gname", b"hdrcharset", b"atime", b"comment", b"", b"SCHILY.xattr.x"])


@st.composite
def pax_value(draw, key):
    if key in (b"size", b"uid", b"gid", b"mtime", b"atime"):
        return draw(NUMBER_TEXT)
    if key in (b"path", b"linkpath"):
        return draw(st.one_of(entry_names(), st.binary(max_size=40)))
    return draw(st.binary(max_size=40))


@st.composite
def pax_record(draw):
    key = draw(PAX_KEYS)
    value = draw(pax_value(key))
    body = b" " + key + b"=" + value + b"\n"
    n = len(body)
    length = n + len(str(n))
    if len(str(length)) != len(str(n)):
        length += 1
    how = draw(st.sampled_from(["good"] * 20
                               + ["short", "long", "zero", "huge", "nonnumeric", "no-newline",
                                  "no-equals", "negative"]))
    if how == "short":
        return b"%d" % max(length - draw(st.integers(1, 10)), 0) + body
    if how == "long":
        return b"%d" % (length + draw(st.integers(1, 10_000))) + body
    if how == "zero":
        return b"0" + body
    if how == "huge":
        return b"99999999999999999999" + body
    if how == "nonnumeric":
        return b"x1" + body
    if how == "negative":
        return b"-%d" % length + body
    if how == "no-newline":
        return b"%d" % (length - 1) + body[:-1]
    if how == "no-equals":
        return b"%d" % (length - 1) + body.replace(b"=", b"", 1)
    return b"%d" % length + body


@st.composite
def pax_header(draw):
    """An ``x`` (sometimes ``g``) header with its data, records good and bad."""
    data = b"".join(draw(st.lists(pax_record(), min_size=1, max_size=4)))
    if draw(st.integers(0, 9)) == 0:
        data += draw(st.sampled_from([b"\0" * 7, b"junk", b"12"]))
    size = len(data)
    claimed = draw(st.sampled_from([size] * 20 + [size + 1, max(size - 1, 0), 2**20 + 1, 2**40, 2**62]))
    typeflag = draw(st.sampled_from([b"x"] * 5 + [b"g"]))
    hdr = tar_header(b"././@PaxHeader", typeflag, {"size": octal(claimed, 12) or base256(claimed, 12)})
    return hdr + pad(data)


@st.composite
def gnu_long_header(draw, typeflag):
    data = draw(st.one_of(entry_names(), st.binary(max_size=200))) + b"\0"
    size = len(data)
    claimed = draw(st.sampled_from([size] * 16 + [size + 7, 2**20 + 1, 2**33, 2**62]))
    hdr = tar_header(b"././@LongLink", typeflag, {"size": octal(claimed, 12) or base256(claimed, 12)},
                     magic=b"ustar  \0")
    return hdr + pad(data)


TYPEFLAGS = st.sampled_from([b"0"] * 8
                            + [b"\0", b"5", b"5", b"2", b"2", b"6", b"3", b"4", b"1", b"7", b"S", b"Z"])


@st.composite
def member(draw, name=None):
    """One member: optional PAX / GNU long-name headers, the header, its data. ``name``: the
    entry name, else a drawn one."""
    out = b""
    if draw(st.integers(0, 3)) == 0:
        out += draw(pax_header())
    if draw(st.integers(0, 7)) == 0:
        out += draw(gnu_long_header(b"L"))
    if draw(st.integers(0, 9)) == 0:
        out += draw(gnu_long_header(b"K"))
    name = draw(entry_names()) if name is None else name
    typeflag = draw(TYPEFLAGS)
    data = draw(st.binary(max_size=64))
    fields = {
        "mode": draw(numeric_field(8, 0o644)),
        "uid": draw(numeric_field(8, 1000)),
        "gid": draw(numeric_field(8, 1000)),
        "size": draw(numeric_field(12, len(data))),
        "mtime": draw(numeric_field(12, 1_700_000_000)),
        "devmajor": draw(numeric_field(8, 8)),
        "devminor": draw(numeric_field(8, 1)),
        "uname": draw(st.sampled_from([b"root", b"", b"\xff\xfe", b"user name", b"\x80" * 32])),
        "gname": draw(st.sampled_from([b"root", b"", b"\xff", b"staff"])),
    }
    linkname = draw(st.sampled_from([b"target"] * 4 + [b"", b"/etc/passwd", b"../../x", b"\xff"]))
    prefix = draw(st.sampled_from([b""] * 12 + [b"snapshot", b"x" * 155, b"\xff"]))
    checksum = draw(st.sampled_from(["good"] * 30 + ["signed", b"0000000\0", b"garbage!", b"\x80" * 8]))
    return out + tar_header(name, typeflag, fields, linkname=linkname, prefix=prefix,
                            checksum=checksum) + pad(data)


@st.composite
def tar_streams(draw):
    """A tar stream of crafted members, then maybe damaged: cut, bits flipped, bytes added."""
    body = b"".join(draw(st.lists(member(), min_size=1, max_size=5)))
    if draw(st.booleans()):
        body += archive.end_of_archive(len(body))
    return draw(damaged(body))


@st.composite
def damaged(draw, data):
    how = draw(st.sampled_from(["none"] * 4 + ["cut", "flip", "flip", "append", "insert"]))
    if how == "cut" and data:
        return data[:draw(st.integers(0, len(data) - 1))]
    if how == "flip" and data:
        buf = bytearray(data)
        for _flip in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(buf) - 1))
            buf[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(buf)
    if how == "append":
        return data + draw(st.binary(max_size=600))
    if how == "insert" and data:
        i = draw(st.integers(0, len(data)))
        return data[:i] + draw(st.binary(min_size=1, max_size=40)) + data[i:]
    return data


def consume(stream, what="fuzz"):
    """Read every member the way restore and the signature reader do; check what comes out."""
    members = []
    for i, (m, read) in enumerate(archive.read_members(io.BytesIO(stream), what=what)):
        check_member(m)
        if i % 3 == 0:
            data = read()
            assert len(data) == m.size
        elif i % 3 == 1:
            got = sum(len(p) for p in read.pieces(7))
            assert got == m.size
        members.append(m)
    return members


def check_member(m):
    """What read_members returns must be usable by the restore that follows."""
    assert 0 <= m.size <= MAX_SIZE
    for comp in m.index:
        assert comp and comp not in (b".", b"..") and b"\0" not in comp and b"/" not in comp
    if m.chunk is not None:
        assert m.chunk >= 0
    info = m.info
    if info is None:
        return
    assert isinstance(info.mtime, int) and 0 <= info.mtime <= MAX_MTIME
    assert 0 <= info.uid <= MAX_ID and 0 <= info.gid <= MAX_ID
    assert 0 <= info.mode <= 0o7777
    assert "\0" not in info.uname and "\0" not in info.gname
    if info.type == archive.SYM:
        assert info.linkname and b"\0" not in info.linkname
    if info.type in (archive.CHR, archive.BLK):
        assert 0 <= info.devmajor <= MAX_DEVICE and 0 <= info.devminor <= MAX_DEVICE
        os.makedev(info.devmajor, info.devminor)
