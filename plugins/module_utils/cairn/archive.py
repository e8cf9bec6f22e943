# SPDX-License-Identifier: GPL-3.0-or-later
"""The archive layer: tar entries of difftars and sigtars, written and read.

Entry names are ``<prefix>/<relative path>`` with the prefixes of duplicity-format.md §3/§4.
Headers are POSIX/PAX, as duplicity writes them on Python >= 3.8; readers accept GNU too.
"""
import grp
import os
import pwd
import stat
import tarfile
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


_uname_cache = {}
_gname_cache = {}


def _uname(uid):
    try:
        return _uname_cache[uid]
    except KeyError:
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = ""
        _uname_cache[uid] = name
        return name


def _gname(gid):
    try:
        return _gname_cache[gid]
    except KeyError:
        try:
            name = grp.getgrgid(gid).gr_name
        except KeyError:
            name = ""
        _gname_cache[gid] = name
        return name


def path_info(index, path, st):
    """PathInfo from an lstat result; None for types duplicity does not store (sockets)."""
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
    info = PathInfo(index, kind, stat.S_IMODE(m), st.st_uid, st.st_gid, _uname(st.st_uid),
                    _gname(st.st_gid), max(int(st.st_mtime), 0), st.st_size if kind == REG else 0)
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


def header(name, info, size, *, as_deleted=False):
    """One tar header (with PAX records when needed) for an entry of ``size`` data bytes."""
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

@dataclass
class Member:
    """One parsed difftar/sigtar entry."""

    prefix: str           # snapshot, diff, deleted, multivol_snapshot, multivol_diff, signature
    index: tuple
    chunk: int = None     # multivol chunk number
    info: PathInfo = None
    tarinfo: tarfile.TarInfo = None


_PREFIXES = ("snapshot", "diff", "deleted", "multivol_snapshot", "multivol_diff", "signature")


def parse_name(name):
    """Split an entry name into (prefix, index, chunk); refuse names that could escape a target."""
    raw = os.fsencode(name)
    if raw.startswith(b"/"):
        raise UnsafeArchive(f"archive entry {name!r} has an absolute path; refusing it")
    parts = [p for p in raw.split(b"/") if p not in (b"", b".")]
    if not parts:
        raise CorruptArchive(f"archive entry with empty name {name!r}")
    prefix = parts[0].decode("ascii", "replace")
    if prefix not in _PREFIXES:
        raise CorruptArchive(f"archive entry {name!r} has unknown type {prefix!r}")
    rest = parts[1:]
    chunk = None
    if prefix.startswith("multivol_"):
        if not rest or not rest[-1].isdigit():
            raise CorruptArchive(f"multivolume entry {name!r} lacks a chunk number")
        chunk = int(rest[-1])
        rest = rest[:-1]
    for comp in rest:
        if comp == b"..":
            raise UnsafeArchive(f"archive entry {name!r} contains '..'; refusing it")
        if b"\0" in comp:
            raise UnsafeArchive(f"archive entry {name!r} contains a NUL byte; refusing it")
    return prefix, tuple(rest), chunk


def info_from_tar(index, ti):
    if ti.type in (tarfile.LNKTYPE,):
        raise CorruptArchive(f"hard link entry {ti.name!r} is not part of the duplicity format")
    kind = _FROM_TAR.get(ti.type)
    if kind is None:
        raise CorruptArchive(f"entry {ti.name!r} has unsupported tar type {ti.type!r}")
    info = PathInfo(index, kind, ti.mode & 0o7777, ti.uid, ti.gid, ti.uname or "", ti.gname or "",
                    max(int(ti.mtime), 0), ti.size if kind == REG else 0)
    if kind == SYM:
        info.linkname = os.fsencode(ti.linkname)
    elif kind in (CHR, BLK):
        info.devmajor, info.devminor = ti.devmajor, ti.devminor
    return info


def read_members(fileobj, what="archive"):
    """Iterate (Member, data_reader) over an uncompressed tar stream.

    Stops at the first zero block (gpg top-off bytes may follow it). ``data_reader()`` returns
    the member's data and must be called before advancing, if the data is wanted.
    """
    try:
        tf = tarfile.open(fileobj=fileobj, mode="r|", encoding=FS_ENCODING, errors="surrogateescape")
    except tarfile.ReadError as e:
        raise CorruptArchive(f"{what} is not a readable tar stream: {e}") from None
    try:
        while True:
            try:
                ti = tf.next()
            except (tarfile.TarError, EOFError) as e:
                raise CorruptArchive(f"{what} is damaged: {e}") from None
            if ti is None:
                return
            prefix, index, chunk = parse_name(ti.name)
            m = Member(prefix, index, chunk, tarinfo=ti)
            if prefix != "deleted":
                m.info = info_from_tar(index, ti)
            yield m, _reader(tf, ti, what)
    finally:
        tf.close()


def _reader(tf, ti, what):
    def read():
        if not ti.isreg() or ti.size == 0:
            return b""
        f = tf.extractfile(ti)
        try:
            data = f.read()
        except (tarfile.TarError, EOFError, OSError) as e:
            raise CorruptArchive(f"{what} is damaged inside {ti.name!r}: {e}") from None
        if len(data) != ti.size:
            raise CorruptArchive(f"{what} is truncated inside {ti.name!r}")
        return data
    return read
