# SPDX-License-Identifier: GPL-3.0-or-later
"""Archive file names (duplicity-format.md §1): parse any variant, write the long form."""
import re
from dataclasses import dataclass

from .errors import TimeStringError
from .timespec import MAX_TIME, from_timestr, to_timestr

MAX_VOLUME = 10**9     # volumes of 1 MiB would make a petabyte: a larger number is not ours


@dataclass(frozen=True)
class NameScheme:
    """How one archive's file names are formed and read, as duplicity's options say:
    ``file`` (--file-prefix) comes first in every name, then ``archive`` (--file-prefix-archive)
    in volumes, ``manifest`` (--file-prefix-manifest) in manifests, ``signature``
    (--file-prefix-signature) in signatures; names without them are another archive's.
    ``time_separator`` (--time-separator) stands for ':' in the times of 0.6-era long names
    (duplicity writes the 16-character form only). cairn's own files (locks, the unfinished
    mark, resume records) carry ``file`` alone before their own word. The cache (archive dir)
    holds manifests and signatures under these names too, as duplicity's does."""

    file: str = ""
    archive: str = ""
    manifest: str = ""
    signature: str = ""
    time_separator: str = ":"

    def of(self, kind, manifest=False):
        """The whole prefix of a name of ``kind`` ('full'/'inc' volume or manifest, a signature)."""
        if kind in ("full-sig", "new-sig"):
            return self.file + self.signature
        if kind in ("full", "inc"):
            return self.file + (self.manifest if manifest else self.archive)
        return self.file

    def owns(self, name):
        """Whether a (final) name starts as one of this archive's volumes, manifests or signatures
        does: cairn's resume records are named after the volumes."""
        return any(name.startswith(self.file + k) for k in (self.archive, self.manifest, self.signature))


def scheme(prefix):
    """A NameScheme from a NameScheme, or from a plain file prefix (str; None is "")."""
    return prefix if isinstance(prefix, NameScheme) else NameScheme(file=prefix or "")


@dataclass(frozen=True)
class ParsedName:
    type: str                 # 'full' | 'inc' | 'full-sig' | 'new-sig' | 'jsonstat'
    manifest: bool = False
    volume: int = None
    time: int = None          # full, full-sig
    start_time: int = None    # inc, new-sig
    end_time: int = None
    encrypted: bool = False
    compressed: bool = False
    partial: bool = False


_T = r"(?P<time>.+?)"
_S = r"(?P<start>.+?)\.to\.(?P<end>.+?)"
_P = r"(?P<partial>\.part)?"
_LONG = [
    ("full-sig", False, re.compile(r"duplicity-full-signatures\." + _T + r"\.sigtar" + _P + r"(?:\.|$)")),
    ("new-sig", False, re.compile(r"duplicity-new-signatures\." + _S + r"\.sigtar" + _P + r"(?:\.|$)")),
    ("full", True, re.compile(r"duplicity-full\." + _T + r"\.manifest" + _P + r"(?:\.|$)")),
    ("inc", True, re.compile(r"duplicity-inc\." + _S + r"\.manifest" + _P + r"(?:\.|$)")),
    ("full", False, re.compile(r"duplicity-full\." + _T + r"\.vol(?P<vol>[0-9]+)\.difftar(?:\.|$)")),
    ("inc", False, re.compile(r"duplicity-inc\." + _S + r"\.vol(?P<vol>[0-9]+)\.difftar(?:\.|$)")),
    ("jsonstat", False, re.compile(r"duplicity-full\." + _T + r"\.jsonstat(?:\.|$)")),
    ("jsonstat", False, re.compile(r"duplicity-inc\." + _S + r"\.jsonstat(?:\.|$)")),
]
_B36 = r"[0-9a-z]+"
_SP = r"(?P<partial>\.p)?"
_SHORT = [
    ("full-sig", False, re.compile(r"dfs\.(?P<time>" + _B36 + r")\.st" + _SP + r"(?:\.|$)")),
    ("new-sig", False, re.compile(r"dns\.(?P<start>" + _B36 + r")\.(?P<end>" + _B36 + r")\.st" + _SP + r"(?:\.|$)")),
    ("full", True, re.compile(r"df\.(?P<time>" + _B36 + r")\.m" + _SP + r"(?:\.|$)")),
    ("inc", True, re.compile(r"di\.(?P<start>" + _B36 + r")\.(?P<end>" + _B36 + r")\.m" + _SP + r"(?:\.|$)")),
    ("full", False, re.compile(r"df\.(?P<time>" + _B36 + r")\.(?P<vol>" + _B36 + r")\.dt(?:\.|$)")),
    ("inc", False, re.compile(r"di\.(?P<start>" + _B36 + r")\.(?P<end>" + _B36 + r")\.(?P<vol>" + _B36 + r")\.dt(?:\.|$)")),
]


# The files of a set still being written (its volumes, its resume record) carry this mark after
# the file prefix. duplicity matches its names from the start, after its own prefix, so it reads
# none of them: an archive interrupted at any moment is, to duplicity, its last complete backup.
# The commit writes the manifest, then renames the volumes (pipeline.py says why in that order).
UNFINISHED_MARK = "cairn-unfinished."


def unfinished_name(name, prefix=""):
    """The name under which ``name`` is written until its set commits: the mark goes after the
    file prefix (``prefix``: a str or a NameScheme), before any per-kind prefix."""
    prefix = scheme(prefix).file
    return prefix + UNFINISHED_MARK + name[len(prefix):]


def finished_name(name, prefix=""):
    """The final name of an unfinished file, or None when ``name`` is not one."""
    prefix = scheme(prefix).file
    mark = prefix + UNFINISHED_MARK
    return prefix + name[len(mark):] if name.startswith(mark) else None


def unfinished_of(name, prefix=""):
    """The final name of an unfinished file of this archive (``prefix``: its NameScheme or file
    prefix), or None: another archive's (other per-kind prefixes) is not ours to finish or delete."""
    final = finished_name(name, prefix)
    return final if final is not None and scheme(prefix).owns(final) else None


def _flags(name):
    return (name.endswith((".gpg", ".g", ".p7m")), name.endswith((".gz", ".z")))


def encoding(name):
    """How a file at the target is stored, by its suffix: "gpg", "gpgsm" (.p7m, duplicity's
    --use-gpgsm), "gzip" or None (plain). The one suffix test: long and short names."""
    encrypted, compressed = _flags(name)
    if encrypted:
        return "gpgsm" if name.endswith(".p7m") else "gpg"
    return "gzip" if compressed else None


def parse(name, prefix=""):
    """ParsedName for a duplicity file name, or None for anything else (times or volume
    numbers out of range included). ``prefix``: the archive's NameScheme, or its file prefix
    (str): each kind of name is recognised with its own prefixes only, as duplicity does."""
    sc = scheme(prefix)

    def long_time(s):
        return from_timestr(s, sc.time_separator)
    for rules, conv, vconv in ((_LONG, long_time, _decimal), (_SHORT, _b36_time, _b36)):
        for kind, is_manifest, rx in rules:
            head = sc.of(kind, is_manifest)
            if not name.startswith(head):
                continue
            m = rx.match(name, len(head))
            if not m:
                continue
            g = m.groupdict()
            try:
                times = {}
                if g.get("time"):
                    times["time"] = conv(g["time"])
                else:
                    times["start_time"] = conv(g["start"])
                    times["end_time"] = conv(g["end"])
                volume = vconv(g["vol"]) if g.get("vol") else None
            except (TimeStringError, ValueError):
                return None
            if volume is not None and volume > MAX_VOLUME:
                return None
            enc, comp = _flags(name)
            return ParsedName(kind, is_manifest, volume, encrypted=enc, compressed=comp,
                              partial=bool(g.get("partial")), **times)
    return None


def _decimal(s):
    if len(s) > 12:           # checked before int(): a long digit string costs time
        raise ValueError(s)
    return int(s)


def _b36(s):
    if len(s) > 12:
        raise ValueError(s)
    return int(s, 36)


def _b36_time(s):
    t = _b36(s)
    if t > MAX_TIME:
        raise ValueError(s)
    return t


def _times(time, start_time, end_time):
    if time is not None:
        return "full", to_timestr(time)
    if start_time is None or end_time is None:
        raise ValueError("need time, or start_time and end_time")
    return "inc", f"{to_timestr(start_time)}.to.{to_timestr(end_time)}"


# ``prefix`` of the writers: the archive's NameScheme, or its file prefix (str)

def volume_name(n, *, time=None, start_time=None, end_time=None, suffix="", prefix=""):
    return f"{set_base(time=time, start_time=start_time, end_time=end_time, prefix=prefix)}.vol{n}.difftar{suffix}"


def set_base(*, time=None, start_time=None, end_time=None, prefix=""):
    """What a set's volume names start with, before ``.vol``: its resume records are named by it."""
    kind, t = _times(time, start_time, end_time)
    return f"{scheme(prefix).of(kind)}duplicity-{kind}.{t}"


def manifest_name(*, time=None, start_time=None, end_time=None, suffix="", partial=False, prefix=""):
    kind, t = _times(time, start_time, end_time)
    return f"{scheme(prefix).of(kind, manifest=True)}duplicity-{kind}.{t}.manifest{'.part' if partial else ''}{suffix}"


def signature_name(*, time=None, start_time=None, end_time=None, suffix="", partial=False, prefix=""):
    kind, t = _times(time, start_time, end_time)
    base = "full-signatures" if kind == "full" else "new-signatures"
    return f"{scheme(prefix).of('full-sig')}duplicity-{base}.{t}.sigtar{'.part' if partial else ''}{suffix}"
