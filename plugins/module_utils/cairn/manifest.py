# SPDX-License-Identifier: GPL-3.0-or-later
"""Manifests (duplicity-format.md §2): written byte-exact, read tolerantly."""
import re
from dataclasses import dataclass, field

from .errors import ManifestError

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
        m = cls()
        lines = data.split(b"\n")
        for line in lines:
            words = line.split(None, 1)
            if not words:
                continue
            key = words[0].lower()
            if key == b"hostname" and m.hostname is None and len(words) > 1:
                m.hostname = words[1].strip().decode("utf-8", "replace")
            elif key == b"localdir" and m.localdir is None and len(words) > 1:
                m.localdir = unquote(words[1].strip())
        blocks = re.split(rb"(?m)^Volume ", data)[1:]
        last = None
        for blk in blocks:
            vi = _parse_volume(blk)
            if last is not None and vi.number <= last:
                # a restarted volume: the later entry wins, later numbers seen before are dropped
                for k in [k for k in m.volumes if k > vi.number]:
                    del m.volumes[k]
            m.volumes[vi.number] = vi
            last = vi.number
        m.files_changed = _parse_filelist(data)
        return m

    def volumes_containing(self, prefix):
        return [n for n in sorted(self.volumes) if self.volumes[n].may_contain(prefix)]


def _parse_volume(blk):
    head, _sep, rest = blk.partition(b"\n")
    try:
        number = int(head.strip().rstrip(b":"))
    except ValueError:
        raise ManifestError(f"manifest has a bad volume line: {head[:60]!r}") from None
    start = end = None
    hashes = {}
    for line in rest.split(b"\n"):
        parts = line.split()
        if not parts:
            continue
        key = parts[0].lower()
        if key in (b"startingpath", b"endingpath"):
            if len(parts) < 2:
                raise ManifestError(f"manifest volume {number}: empty {parts[0].decode()}")
            path = unquote(parts[1])
            block = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else None
            if key == b"startingpath":
                start = (_path_to_index(path), block)
            else:
                end = (_path_to_index(path), block)
        elif key == b"hash" and len(parts) >= 3:
            hashes[parts[1].decode().upper()] = parts[2].decode().lower()
        elif key == b"filelist":
            break
    if start is None or end is None:
        raise ManifestError(f"manifest volume {number} lacks StartingPath or EndingPath")
    return VolumeInfo(number, start[0], start[1], end[0], end[1], hashes)


def _parse_filelist(data):
    m = re.search(rb"(?m)^Filelist (\d+)\n", data)
    if not m:
        return []
    out = []
    for line in data[m.end():].split(b"\n"):
        parts = line.split()
        if len(parts) >= 2 and parts[0] in (b"new", b"changed", b"deleted"):
            out.append((parts[0].decode(), _path_to_index(unquote(parts[1]))))
    return out
