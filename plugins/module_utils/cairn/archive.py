# SPDX-License-Identifier: GPL-3.0-or-later
"""The archive layer: tar entries of difftars and sigtars, written and read.

Entry names are ``<prefix>/<relative path>`` with the prefixes of duplicity-format.md §3/§4.
Headers are POSIX/PAX, as duplicity writes them on Python >= 3.8; readers accept GNU too.
"""
import grp
import io
import os
import pwd
import re
import stat
import tarfile
import zlib
from dataclasses import dataclass, field

from .errors import CorruptArchive, UnsafeArchive

CHUNK = 65536          # duplicity reads content in pieces of this size; see multivol_* below
BLOCK = 512
RECORD = 10240
FS_ENCODING = "utf-8"  # names are raw bytes, carried through tarfile with surrogateescape

REG, DIR, SYM, FIFO, CHR, BLK = "reg", "dir", "sym", "fifo", "chr", "blk"
_TAR_TYPE = {REG: tarfile.REGTYPE, DIR: tarfile.DIRTYPE, SYM: tarfile.SYMTYPE,
             FIFO: tarfile.FIFOTYPE, CHR: tarfile.CHRTYPE, BLK: tarfile.BLKTYPE}
_FROM_TAR = {tarfile.REGTYPE: REG, tarfile.AREGTYPE: REG, tarfile.DIRTYPE: DIR,
             tarfile.SYMTYPE: SYM, tarfile.FIFOTYPE: FIFO, tarfile.CHRTYPE: CHR,
             tarfile.BLKTYPE: BLK}


@dataclass
class PathInfo:
    """Metadata of one path as an archive stores it. ``type`` None means deleted."""

    index: tuple
    type: str = None
    mode: int = 0          # permission bits (incl. setuid/setgid/sticky)
    uid: int = 0
    gid: int = 0
    uname: str = ""
    gname: str = ""
    mtime: int = 0
    size: int = 0
    linkname: bytes = b""
    devmajor: int = 0
    devminor: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def relpath(self):
        return b"/".join(self.index) if self.index else b"."

    def same_as(self, other):
        """duplicity's change test (§4): size is deliberately not compared."""
        if other is None or self.type != other.type:
            return False
        if self.type == SYM:
            return self.linkname == other.linkname
        if (self.mode, self.uid, self.gid) != (other.mode, other.uid, other.gid):
            return False
        if self.type in (CHR, BLK):
            return (self.devmajor, self.devminor) == (other.devmajor, other.devminor)
        if self.type in (REG, DIR, FIFO):
            return max(self.mtime, 0) == max(other.mtime, 0)
        return True


class OwnerNames:
    """User and group names of ids, looked up once each (a run's own cache: the passwd and group
    databases are read once per id, not per file)."""

    def __init__(self):
        self.users = {}
        self.groups = {}

    def user(self, uid):
        if uid not in self.users:
            try:
                self.users[uid] = pwd.getpwuid(uid).pw_name
            except KeyError:
                self.users[uid] = ""
        return self.users[uid]

    def group(self, gid):
        if gid not in self.groups:
            try:
                self.groups[gid] = grp.getgrgid(gid).gr_name
            except KeyError:
                self.groups[gid] = ""
        return self.groups[gid]


def path_info(index, path, st, names=None):
    """PathInfo from an lstat result; None for types duplicity does not store (sockets).
    ``names``: the run's OwnerNames (a fresh one looks the names up for this call only)."""
    names = names or OwnerNames()
    m = st.st_mode
    if stat.S_ISREG(m):
        kind = REG
    elif stat.S_ISDIR(m):
        kind = DIR
    elif stat.S_ISLNK(m):
        kind = SYM
    elif stat.S_ISFIFO(m):
        kind = FIFO
    elif stat.S_ISCHR(m):
        kind = CHR
    elif stat.S_ISBLK(m):
        kind = BLK
    else:
        return None
    info = PathInfo(index, kind, stat.S_IMODE(m), st.st_uid, st.st_gid, names.user(st.st_uid),
                    names.group(st.st_gid), max(int(st.st_mtime), 0), st.st_size if kind == REG else 0)
    if kind == SYM:
        info.linkname = os.readlink(path)
    elif kind in (CHR, BLK):
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    return info


def entry_name(prefix, index, chunk=None, *, root_dot=True):
    """``snapshot/a/b``; the root is ``snapshot/.`` in difftars and ``snapshot`` in sigtars."""
    parts = [prefix]
    if index:
        parts.extend(os.fsdecode(c) for c in index)
    elif root_dot:
        parts.append(".")
    if chunk is not None:
        parts.append(str(chunk))
    return "/".join(parts)


# The ustar header of the common entry (ASCII names that fit, numbers within the octal fields),
# written directly: tarfile's TarInfo.tobuf took about a fifth of a backup of small files (two
# headers per file: volume and sigtar). The bytes are tarfile's (PAX_FORMAT with no PAX record
# needed); anything else goes through tarfile below (tests/unit/test_archive_header.py).
_USTAR_MAGIC = b"ustar\x0000"
_NO_DEVICE = bytes(16)
_MAX_ID = 8 ** 7 - 1            # what 7 octal digits hold (uid, gid, device numbers)
_MAX_NUMBER = 8 ** 11 - 1       # size, mtime


def block_sum(block):
    """The sum of a 512-byte block's bytes (a tar checksum), in C: adler32's low half is
    1 + the sum mod 65521, exact for 256 bytes (at most 65280)."""
    return (zlib.adler32(block[:256]) & 0xFFFF) + (zlib.adler32(block[256:]) & 0xFFFF) - 2


def _ustar(name, mode, uid, gid, size, mtime, typeflag, linkname, uname, gname, devices):
    fields = b"".join((
        name.ljust(100, b"\0"), b"%07o\0" % (mode & 0o7777), b"%07o\0" % uid, b"%07o\0" % gid,
        b"%011o\0" % size, b"%011o\0" % mtime, b"        ", typeflag, linkname.ljust(100, b"\0"),
        _USTAR_MAGIC, uname.ljust(32, b"\0"), gname.ljust(32, b"\0"), devices, bytes(167)))
    # the checksum counts its own field as eight spaces; six octal digits, NUL, one space stay
    return b"%s%06o\0%s" % (fields[:148], block_sum(fields), fields[155:])


def _whole(n):
    return isinstance(n, int) and not isinstance(n, bool)


def _fits(text, length):
    return text.isascii() and len(text) <= length


def _plain_header(name, info, size, as_deleted):
    """The ustar header of the entry when no PAX record is needed, else None."""
    if as_deleted:
        info_type, mode, uid, gid, mtime, uname, gname, linkname = REG, 0, 0, 0, 0, "", "", ""
    else:
        info_type, mode, uid, gid, mtime = info.type, info.mode, info.uid, info.gid, info.mtime
        uname, gname = info.uname or "", info.gname or ""
        linkname = info.linkname if info_type == SYM else ""
        if isinstance(linkname, bytes):
            if not linkname.isascii():
                return None
            linkname = linkname.decode("ascii")
    if info_type == DIR and not name.endswith("/"):
        name += "/"
    if not (_fits(name, 100) and _fits(linkname, 100) and _fits(uname, 32) and _fits(gname, 32)):
        return None
    numbers = (uid, gid, size, mtime, mode)
    if not all(map(_whole, numbers)):      # bool and float go to tarfile
        return None
    if not (0 <= uid <= _MAX_ID and 0 <= gid <= _MAX_ID and 0 <= size <= _MAX_NUMBER and 0 <= mtime <= _MAX_NUMBER):
        return None
    devices = _NO_DEVICE
    if info_type in (CHR, BLK):
        major, minor = info.devmajor, info.devminor
        if not (_whole(major) and _whole(minor) and 0 <= major <= _MAX_ID and 0 <= minor <= _MAX_ID):
            return None
        devices = b"%07o\0%07o\0" % (major, minor)
    return _ustar(name.encode("ascii"), mode, uid, gid, size, mtime, _TAR_TYPE[info_type], linkname.encode("ascii"),
                  uname.encode("ascii"), gname.encode("ascii"), devices)


def header(name, info, size, *, as_deleted=False):
    """One tar header (with PAX records when needed) for an entry of ``size`` data bytes."""
    plain = _plain_header(name, info, size, as_deleted)
    if plain is not None:
        return plain
    ti = tarfile.TarInfo(name)
    if as_deleted:
        ti.type = tarfile.REGTYPE
        ti.mode = 0
        ti.mtime = 0
        ti.uname = ti.gname = ""
    else:
        ti.type = _TAR_TYPE[info.type]
        ti.mode = info.mode
        ti.uid, ti.gid = info.uid, info.gid
        ti.uname, ti.gname = info.uname, info.gname
        ti.mtime = info.mtime
        if info.type == SYM:
            ti.linkname = os.fsdecode(info.linkname)
        elif info.type in (CHR, BLK):
            ti.devmajor, ti.devminor = info.devmajor, info.devminor
    ti.size = size
    return ti.tobuf(tarfile.PAX_FORMAT, FS_ENCODING, "surrogateescape")


def padding(size):
    return b"\0" * (-size % BLOCK)


def end_of_archive(written):
    """Two zero blocks, then zeros up to a whole tar record."""
    total = written + 2 * BLOCK
    return b"\0" * (2 * BLOCK + (-total % RECORD))


# --- reading --------------------------------------------------------------------------------
#
# A small tar reader of our own: tarfile's is general but slow (it dominated the time of an
# incremental backup reading a 5,000-entry sigtar). This one reads ustar/PAX/GNU headers,
# keeps names as raw bytes, and stops at the first zero block (gpg top-off bytes may follow).

@dataclass
class Member:
    """One parsed difftar/sigtar entry."""

    prefix: str           # snapshot, diff, deleted, multivol_snapshot, multivol_diff, signature
    index: tuple
    chunk: int = None     # multivol chunk number
    info: PathInfo = None
    name: bytes = b""
    size: int = 0


_PREFIXES = {b"snapshot": "snapshot", b"diff": "diff", b"deleted": "deleted",
             b"multivol_snapshot": "multivol_snapshot", b"multivol_diff": "multivol_diff",
             b"signature": "signature"}
_TYPES = {b"0": REG, b"\0": REG, b"5": DIR, b"2": SYM, b"6": FIFO, b"3": CHR, b"4": BLK}
_ZERO_BLOCK = bytes(BLOCK)

# Limits on what a header may claim, so that every value read is one restore can use.
MAX_HEADER_DATA = 1 << 20      # payload of a PAX (x, g) or GNU long-name (L, K) header
MAX_SIZE = 2**63 - 1           # a file offset (off_t)
MAX_ID = 2**32 - 1             # uid_t, gid_t
MAX_MTIME = 2**63 - 1          # time_t; negative times read as 0 (duplicity-format.md §3)
MAX_DEVICE = 2**31 - 1         # what os.makedev takes for a major or minor number
MAX_CHUNK_DIGITS = 18          # a multivol chunk number: far past any file, short for int()
_OCTAL = re.compile(rb"[0-7]+")
_PAX_TIME = re.compile(rb"(-?)([0-9]+)(?:\.[0-9]*)?")


def _shown(raw, limit=200):
    """An entry name for a message: decoded, and cut when a crafted one is very long."""
    text = os.fsdecode(raw)
    return text if len(text) <= limit else text[:limit] + "..."


def parse_name(raw):
    """Split an entry name (bytes) into (prefix, index, chunk); refuse names that could escape."""
    if isinstance(raw, str):
        raw = os.fsencode(raw)
    if raw.startswith(b"/"):
        raise UnsafeArchive(f"archive entry {_shown(raw)!r} has an absolute path; refusing it")
    parts = [p for p in raw.split(b"/") if p not in (b"", b".")]
    if not parts:
        raise CorruptArchive(f"archive entry with empty name {_shown(raw)!r}")
    prefix = _PREFIXES.get(parts[0])
    if prefix is None:
        raise CorruptArchive(f"archive entry {_shown(raw)!r} has unknown type {_shown(parts[0])!r}")
    rest = parts[1:]
    chunk = None
    if prefix.startswith("multivol_"):
        if not rest or not rest[-1].isdigit() or len(rest[-1]) > MAX_CHUNK_DIGITS:
            raise CorruptArchive(f"multivolume entry {_shown(raw)!r} lacks a chunk number")
        chunk = int(rest[-1])
        rest = rest[:-1]
    if b".." in rest:
        raise UnsafeArchive(f"archive entry {_shown(raw)!r} contains '..'; refusing it")
    if b"\0" in raw:
        raise UnsafeArchive(f"archive entry {_shown(raw)!r} contains a NUL byte; refusing it")
    return prefix, tuple(rest), chunk


def _num(field, what, label):
    """A numeric header field: octal text, or GNU base-256 (lead byte 0x80 positive, 0xff
    negative, two's complement)."""
    if field and field[0] & 0x80:
        if field[0] == 0x80:
            return int.from_bytes(field[1:], "big")
        if field[0] == 0xFF:
            return int.from_bytes(field, "big", signed=True)
        raise CorruptArchive(f"{what}: bad base-256 {label} {field!r} in a tar header")
    text = field.split(b"\0", 1)[0].strip()
    if not text:
        return 0
    if not _OCTAL.fullmatch(text):
        raise CorruptArchive(f"{what}: bad {label} {field!r} in a tar header")
    return int(text, 8)


_NUMBER_BYTES = b"01234567 \0"


def _numbers(hdr):
    """(mode, uid, gid, size, mtime, checksum) of a header whose six numeric fields are plain
    octal text, digits padded with spaces and NULs: what _num gives for each, in one pass
    instead of six calls. None for anything else (base-256, other bytes, a NUL between
    digits, a field of padding only), which then goes through _num."""
    if hdr[100:156].translate(None, _NUMBER_BYTES):
        return None
    try:
        return (int(hdr[100:108].rstrip(b"\0 "), 8), int(hdr[108:116].rstrip(b"\0 "), 8),
                int(hdr[116:124].rstrip(b"\0 "), 8), int(hdr[124:136].rstrip(b"\0 "), 8),
                int(hdr[136:148].rstrip(b"\0 "), 8), int(hdr[148:156].rstrip(b"\0 "), 8))
    except ValueError:
        return None


def _in_range(n, lo, hi, what, label, name):
    if not lo <= n <= hi:
        raise CorruptArchive(f"{what}: entry {_shown(name)!r} has an impossible {label} ({n})")
    return n


def _pax_int(value, lo, hi, what, label, name):
    """A decimal PAX value (size, uid, gid) within [lo, hi]."""
    if not value.isdigit() or len(value) > 24:      # bytes.isdigit: ASCII digits only
        raise CorruptArchive(f"{what}: entry {_shown(name)!r} has a bad PAX {label} {value[:40]!r}")
    return _in_range(int(value), lo, hi, what, label, name)


def _pax_mtime(value, what, name):
    """PAX mtime: decimal seconds with an optional fraction (kept whole, as duplicity does);
    negative reads as 0. No exponents, no nan or inf."""
    m = _PAX_TIME.fullmatch(value)
    if m is None:
        raise CorruptArchive(f"{what}: entry {_shown(name)!r} has a bad PAX mtime {value[:40]!r}")
    if m.group(1):
        return 0
    digits = m.group(2).lstrip(b"0")
    if len(digits) > 19:
        raise CorruptArchive(f"{what}: entry {_shown(name)!r} has an impossible mtime {value[:40]!r}")
    return _in_range(int(digits or b"0"), 0, MAX_MTIME, what, "mtime", name)


def _str(field):
    return field.split(b"\0", 1)[0]


def _pax_records(data, what):
    """The records of a PAX header, ``<length> <key>=<value>\\n`` each; trailing NULs are
    tolerated, anything else that does not parse is a corrupt archive."""
    out = {}
    pos, end = 0, len(data)
    while pos < end:
        sp = data.find(b" ", pos, pos + 8)        # MAX_HEADER_DATA has 7 digits
        digits = data[pos:sp] if sp > pos else b""
        if not digits.isdigit():
            if not data[pos:].strip(b"\0"):
                break
            raise CorruptArchive(f"{what}: a PAX header record has no valid length")
        stop = pos + int(digits)
        if stop > end:
            raise CorruptArchive(f"{what}: a PAX header record runs past the header's data")
        if stop <= sp + 1 or data[stop - 1] != 0x0A:
            raise CorruptArchive(f"{what}: a PAX header record has a wrong length")
        key, sep, value = data[sp + 1:stop - 1].partition(b"=")
        if not sep or not key:
            raise CorruptArchive(f"{what}: a PAX header record lacks 'key='")
        out[key] = value
        pos = stop
    return out


def _header_data(fileobj, size, what, typeflag):
    """The payload of a PAX or GNU long-name header: small by nature, so capped, and never
    allocated from the size the header claims."""
    if not 0 <= size <= MAX_HEADER_DATA:
        raise CorruptArchive(f"{what}: a tar {typeflag.decode('latin-1')!r} header claims {size} bytes "
                             f"of data (at most {MAX_HEADER_DATA} are accepted)")
    data = _read_exact(fileobj, size, what)
    _skip(fileobj, -size % BLOCK, what)
    return data


def read_members(fileobj, what="archive"):
    """Iterate (Member, data_reader) over an uncompressed tar stream.

    ``data_reader()`` returns the member's data; it must be called before advancing, if the
    data is wanted (otherwise it is skipped). Anything that does not parse, or claims values
    no file can have, raises CorruptArchive; names that could escape raise UnsafeArchive.
    """
    pax = {}
    gnu_name = gnu_link = None
    while True:
        hdr = _read_upto(fileobj, BLOCK)
        if len(hdr) < BLOCK:
            if not hdr.strip(b"\0"):
                return                      # a stream that ends without zero blocks
            raise CorruptArchive(f"{what} is truncated (a partial tar header)")
        if hdr == _ZERO_BLOCK:
            return
        nums = _numbers(hdr)
        chk = _num(hdr[148:156], what, "checksum") if nums is None else nums[5]
        unsigned = block_sum(hdr) - sum(hdr[148:156]) + 256
        if chk != unsigned:
            # some old writers summed signed chars
            spaced = hdr[:148] + b"        " + hdr[156:]
            signed = sum(b - 256 if b > 127 else b for b in spaced)
            if chk != signed:
                raise CorruptArchive(f"{what} is damaged: a tar header checksum does not match")
        typeflag = hdr[156:157]
        size = _num(hdr[124:136], what, "size") if nums is None else nums[3]
        if typeflag in (b"x", b"g", b"L", b"K"):
            data = _header_data(fileobj, size, what, typeflag)
            if typeflag == b"x":
                pax = _pax_records(data, what)
            elif typeflag == b"g":
                _pax_records(data, what)    # checked, not applied: duplicity never writes one
            elif typeflag == b"L":
                gnu_name = _str(data)
            else:
                gnu_link = _str(data)
            continue
        if b"path" in pax:
            name = pax[b"path"]
        elif gnu_name is not None:
            name = gnu_name
        else:
            name = _str(hdr[0:100])
            if hdr[257:263] == b"ustar\0" and hdr[345] != 0:
                name = _str(hdr[345:500]) + b"/" + name
        if b"size" in pax:
            size = _pax_int(pax[b"size"], 0, MAX_SIZE, what, "size", name)
        else:
            _in_range(size, 0, MAX_SIZE, what, "size", name)
        prefix, index, chunk = parse_name(name)
        m = Member(prefix, index, chunk, name=name, size=size)
        if prefix != "deleted":
            kind = _TYPES.get(typeflag)
            if kind is None:
                if typeflag == b"1":
                    raise CorruptArchive(f"{what}: hard link entry {_shown(name)!r} is not part of "
                                         "the duplicity format")
                raise CorruptArchive(f"{what}: entry {_shown(name)!r} has unsupported tar type "
                                     f"{typeflag!r}")
            mode = _in_range(_num(hdr[100:108], what, "mode") if nums is None else nums[0], 0, MAX_SIZE, what,
                             "mode", name)
            if b"uid" in pax:
                uid = _pax_int(pax[b"uid"], 0, MAX_ID, what, "uid", name)
            else:
                uid = _in_range(_num(hdr[108:116], what, "uid") if nums is None else nums[1], 0, MAX_ID, what,
                                "uid", name)
            if b"gid" in pax:
                gid = _pax_int(pax[b"gid"], 0, MAX_ID, what, "gid", name)
            else:
                gid = _in_range(_num(hdr[116:124], what, "gid") if nums is None else nums[2], 0, MAX_ID, what,
                                "gid", name)
            if b"mtime" in pax:
                mtime = _pax_mtime(pax[b"mtime"], what, name)
            else:
                mtime = _in_range(max(_num(hdr[136:148], what, "mtime") if nums is None else nums[4], 0), 0,
                                  MAX_MTIME, what, "mtime", name)
            uname = _owner_name(pax.get(b"uname", _str(hdr[265:297])), what, "uname", name)
            gname = _owner_name(pax.get(b"gname", _str(hdr[297:329])), what, "gname", name)
            info = PathInfo(index, kind, mode & 0o7777, uid, gid, uname, gname, mtime,
                            size if kind == REG else 0)
            if kind == SYM:
                target = pax.get(b"linkpath", gnu_link if gnu_link is not None else _str(hdr[157:257]))
                if not target or b"\0" in target:
                    raise CorruptArchive(f"{what}: symlink {_shown(name)!r} has an impossible target "
                                         f"{_shown(target)!r}")
                info.linkname = target
            elif kind in (CHR, BLK):
                info.devmajor = _in_range(_num(hdr[329:337], what, "devmajor"), 0, MAX_DEVICE, what,
                                          "device major number", name)
                info.devminor = _in_range(_num(hdr[337:345], what, "devminor"), 0, MAX_DEVICE, what,
                                          "device minor number", name)
            m.info = info
        pax = {}
        gnu_name = gnu_link = None
        reader = _DataReader(fileobj, size, what)
        yield m, reader
        reader.skip_rest()               # what the consumer did not read, and the padding


class _DataReader:
    """One member's data, read once: whole (``reader()``) or in pieces (``reader.pieces()``).

    Nothing is allocated from the size a header claims: data is read as it comes, so a member
    that claims more than the stream holds ends in CorruptArchive at the end of the stream,
    and memory stays bounded by what is really there (or by one piece, when read in pieces).
    read_members skips whatever the consumer did not read.
    """

    def __init__(self, fileobj, size, what):
        self.fileobj, self.size, self.what = fileobj, size, what
        self.left = size          # data bytes not yet read or skipped
        self.started = False

    def pieces(self, piece=CHUNK):
        """Yield the data in pieces of at most ``piece`` bytes."""
        if self.started:
            raise CorruptArchive(f"{self.what}: member data read twice")
        self.started = True
        read = self.fileobj.read
        while self.left:
            data = read(min(self.left, piece))
            if not data:
                raise CorruptArchive(f"{self.what} is truncated inside an entry")
            self.left -= len(data)
            yield data

    def __call__(self):
        """The whole data (for members that are small by nature: signatures, symlinks)."""
        return b"".join(self.pieces(1 << 20))

    def skip_rest(self):
        n, self.left = self.left, 0
        _skip(self.fileobj, n + (-self.size % BLOCK), self.what)


def _owner_name(raw, what, label, name):
    if b"\0" in raw:       # only a PAX record can hold one; no user or group is named so
        raise CorruptArchive(f"{what}: entry {_shown(name)!r} has a {label} with a NUL byte")
    return raw.decode("utf-8", "replace")


def _read_upto(f, n):
    """Up to ``n`` bytes: fewer only at the end of the stream (a read may return less)."""
    data = f.read(n)
    if len(data) == n or not data:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = f.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _read_exact(f, n, what):
    data = _read_upto(f, n)
    if len(data) != n:
        raise CorruptArchive(f"{what} is truncated inside an entry")
    return data


def _skip(f, n, what):
    if n <= 0:
        return
    if isinstance(f, io.BufferedReader) and f.seekable():   # a plain file: seek, if it is there
        if f.tell() + n > os.fstat(f.fileno()).st_size:
            raise CorruptArchive(f"{what} is truncated inside an entry")
        f.seek(n, os.SEEK_CUR)
        return
    while n:
        data = f.read(min(n, 1 << 20))
        if not data:
            raise CorruptArchive(f"{what} is truncated inside an entry")
        n -= len(data)
