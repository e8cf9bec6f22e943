# SPDX-License-Identifier: GPL-3.0-or-later
"""Manifests (duplicity-format.md §2): written byte-exact, read tolerantly."""
import io
import re
from dataclasses import dataclass, field

from .errors import ManifestError
from .naming import MAX_VOLUME

_NEEDS_QUOTE = re.compile(rb"[\s\\\"']")


def quote(b):
    """Paths with whitespace, backslash or quotes: those bytes as \\xNN, the whole in quotes."""
    if not _NEEDS_QUOTE.search(b):
        return b
    return b'"' + _NEEDS_QUOTE.sub(lambda m: b"\\x%02x" % m.group()[0], b) + b'"'


def unquote(b):
    if not b.startswith(b'"'):
        return b
    inner = b[1:-1] if b.endswith(b'"') and len(b) > 1 else b[1:]
    return re.sub(rb"\\x([0-9a-fA-F]{2})", lambda m: bytes([int(m.group(1), 16)]), inner)


def _index_to_path(index):
    return b"/".join(index) if index else b"."


def _path_to_index(path):
    if path in (b".", b""):
        return ()
    return tuple(path.split(b"/"))


@dataclass
class VolumeInfo:
    number: int
    start_index: tuple
    start_block: int
    end_index: tuple
    end_block: int
    hashes: dict = field(default_factory=dict)

    def to_bytes(self):
        def block(b):    # a blank block is one space, so such lines end in two spaces
            return b" " if b is None else str(b).encode()
        out = [b"Volume %d:\n" % self.number,
               b"    StartingPath   " + quote(_index_to_path(self.start_index)) + b" " + block(self.start_block) + b"\n",
               b"    EndingPath     " + quote(_index_to_path(self.end_index)) + b" " + block(self.end_block) + b"\n"]
        for algo, value in self.hashes.items():
            out.append(b"    Hash " + algo.encode() + b" " + value.encode() + b"\n")
        return b"".join(out)

    def may_contain(self, prefix):
        """Whether paths starting with ``prefix`` can lie in this volume."""
        n = len(prefix)
        return self.start_index[:n] <= prefix <= self.end_index[:n]


@dataclass
class Manifest:
    hostname: str = None
    localdir: bytes = None
    volumes: dict = field(default_factory=dict)
    files_changed: list = field(default_factory=list)

    def add_volume(self, vi):
        self.volumes[vi.number] = vi

    def to_bytes(self):
        out = []
        if self.hostname:
            out.append(b"Hostname " + self.hostname.encode() + b"\n")
        if self.localdir:
            out.append(b"Localdir " + quote(self.localdir) + b"\n")
        for n in sorted(self.volumes):
            out.append(self.volumes[n].to_bytes())
        if self.files_changed:
            out.append(b"Filelist %d\n" % len(self.files_changed))
            for kind, index in self.files_changed:
                out.append(b"    " + kind.ljust(7).encode() + b"  " + quote(_index_to_path(index)) + b"\n")
        return b"".join(out)

    @classmethod
    def from_bytes(cls, data):
        """Parse a manifest; anything that is not one raises ManifestError (exit 6)."""
        m = cls()
        # everything but the Filelist is small; the Filelist (one line per file changed: a
        # million for a full backup of a million files) is kept as text, never split
        listed = _FILELIST.search(data)
        head = data if listed is None else data[:listed.start()]
        if listed is not None and _VOLUME_START.search(data, listed.end()):
            raise ManifestError("manifest has a Volume after its Filelist")
        for line in head.split(b"\n"):
            words = line.split(None, 1)
            if not words:
                continue
            key = words[0].lower()
            if key == b"hostname" and m.hostname is None and len(words) > 1:
                m.hostname = words[1].strip().decode("utf-8", "replace")
            elif key == b"localdir" and m.localdir is None and len(words) > 1:
                m.localdir = unquote(words[1].strip())
        blocks = _VOLUME_START.split(head)[1:]
        last = None
        for blk in blocks:
            vi = _parse_volume(blk)
            if last is not None and vi.number <= last:
                # a restarted volume: the later entry wins, later numbers seen before are dropped
                for k in [k for k in m.volumes if k > vi.number]:
                    del m.volumes[k]
            m.volumes[vi.number] = vi
            last = vi.number
        if not m.volumes:
            # every backup writes at least one volume, even when nothing changed
            raise ManifestError("manifest lists no volume")
        m.files_changed = FileList(b"" if listed is None else data[listed.end():])
        return m

    def volumes_containing(self, prefix):
        return [n for n in sorted(self.volumes) if self.volumes[n].may_contain(prefix)]


_VOLUME_LINE = re.compile(rb"[0-9]{1,10}:?")
_BLOCK = re.compile(rb"[0-9]{1,18}")
_ALGO = re.compile(rb"[A-Za-z0-9_-]{1,32}")
_HEX = re.compile(rb"[0-9a-fA-F]+")
_HEX_LENGTH = {"SHA1": 40, "MD5": 32, "SHA256": 64, "SHA512": 128}


def _parse_volume(blk):
    head, _sep, rest = blk.partition(b"\n")
    text = head.strip()
    number = int(text.rstrip(b":")) if _VOLUME_LINE.fullmatch(text) else 0
    if not 1 <= number <= MAX_VOLUME:
        raise ManifestError(f"manifest has a bad volume line: {head[:60]!r}")
    start = end = None
    hashes = {}
    for line in rest.split(b"\n"):
        parts = line.split()
        if not parts:
            continue
        key = parts[0].lower()
        if key in (b"startingpath", b"endingpath"):
            name = "StartingPath" if key == b"startingpath" else "EndingPath"
            if len(parts) < 2:
                raise ManifestError(f"manifest volume {number}: empty {name}")
            path = unquote(parts[1])
            block = None
            if len(parts) > 2:
                if not _BLOCK.fullmatch(parts[2]):
                    raise ManifestError(f"manifest volume {number}: bad block number {parts[2][:40]!r} "
                                        f"in {name}")
                block = int(parts[2])
            if key == b"startingpath":
                start = (_path_to_index(path), block)
            else:
                end = (_path_to_index(path), block)
        elif key == b"hash":
            if len(parts) < 3 or not _ALGO.fullmatch(parts[1]) or not _HEX.fullmatch(parts[2]):
                raise ManifestError(f"manifest volume {number}: bad hash line {line.strip()[:100]!r}")
            algo, value = parts[1].decode("ascii").upper(), parts[2].decode("ascii").lower()
            if len(value) != _HEX_LENGTH.get(algo, len(value)):
                raise ManifestError(f"manifest volume {number}: {algo} hash of wrong length")
            hashes[algo] = value
        elif key == b"filelist":
            break
    if start is None or end is None:
        raise ManifestError(f"manifest volume {number} lacks StartingPath or EndingPath")
    return VolumeInfo(number, start[0], start[1], end[0], end[1], hashes)


_FILELIST = re.compile(rb"(?m)^Filelist (\d+)\n")
_VOLUME_START = re.compile(rb"(?m)^Volume ")


class FileList:
    """A manifest's Filelist as read: (kind, index) pairs, kept as the manifest's text and
    parsed each time it is walked. As a list of tuples, the Filelist of a full backup of a
    million files took about 500 MiB in every run that read the manifest (an incremental, a
    restore, a listing); as text it is its size (about 40 MB there)."""

    __slots__ = ("_text",)

    def __init__(self, text):
        self._text = text

    def __iter__(self):
        for line in io.BytesIO(self._text):
            parts = line.split()
            if len(parts) >= 2 and parts[0] in (b"new", b"changed", b"deleted"):
                yield parts[0].decode(), _path_to_index(unquote(parts[1]))

    def __len__(self):
        return sum(1 for _entry in self)

    def __bool__(self):
        return next(iter(self), None) is not None

    def __eq__(self, other):
        try:
            return list(self) == list(other)
        except TypeError:
            return NotImplemented

    __hash__ = None

    def __repr__(self):
        return f"FileList({list(self)!r})"
