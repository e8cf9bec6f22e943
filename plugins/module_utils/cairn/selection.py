# SPDX-License-Identifier: GPL-3.0-or-later
"""The selection and scan layers: a sorted, streaming walk filtered with duplicity's rules (§9).

Every path below the source is tested as the string ``<source>/<relative path>`` (the source with
empty and ``.`` components dropped, as duplicity normalises it; ``..`` is kept) against the rules
in command-line order. A rule answers INCLUDE, EXCLUDE, SCAN or nothing:

* the first INCLUDE or EXCLUDE ends the search, except that an EXCLUDE after a SCAN leaves SCAN;
* a SCAN (an include glob that could match something below a directory) is remembered and the
  search goes on, so a later INCLUDE still includes the directory itself;
* no answer at all includes the path.

A SCAN directory is emitted only once something below it is emitted, which the walk handles by
keeping its not-yet-emitted ancestors on the directory stack. ``exclude-if-present`` and
``exclude-device-files`` are moved in front of all other rules, as duplicity does. The root
itself is never tested: it is always emitted and always descended into.

Behaviour observed with duplicity 3.2.1 and honoured here (see the oracle tests):

* a glob matches the path or any ancestor of it; a trailing ``/`` restricts the match of the path
  itself to directories; ``\\`` is a literal character, not an escape; ``[...]`` classes may match
  ``/``; ``//`` in a glob is an error (exit 15);
* a glob that cannot match the source, an ancestor of it or anything below it -> exit 14;
* the last rule, after the moves above and after filelists are expanded, being an include glob or
  regexp -> exit 16;
* ``exclude-older-than`` and ``exclude-other-filesystems`` keep their place in the order;
* sockets are skipped before any rule sees them (they never make a SCAN directory appear).

Deliberate differences: an unreadable directory is emitted (duplicity leaves it out) and reported
through ``on_warning``; a bad character range such as ``[z-a]`` or a bad regular expression is a
SelectionError with exit 15 (duplicity crashes with exit 30).
"""
import logging
import os
import re
import stat as _stat
import warnings
from dataclasses import dataclass

from .errors import ExitCode, SelectionError, SourceError

EXCLUDE, INCLUDE, SCAN = 0, 1, 2
_log = logging.getLogger("cairn")
_IGNORECASE = "ignorecase:"


@dataclass
class Entry:
    index: tuple
    path: bytes
    stat: os.stat_result


class _UnknownStat:
    """Stands in for the stat of a path that is not on disk (``selected`` without a stat)."""

    def __init__(self, mode=0):
        self.st_mode = mode
        self.st_mtime = None
        self.st_dev = None


# ---------------------------------------------------------------------------------------- globs

def _class_to_regex(glob, i):
    """The character class starting at ``glob[i] == '['`` -> (regex, next index), or None when the
    class is not terminated (then the ``[`` is a literal character)."""
    n = len(glob)
    j = i + 1
    negate = j < n and glob[j] in "!^"
    if negate:
        j += 1
    start = j
    if j < n and glob[j] == "]":          # a leading ']' is a member, not the end
        j += 1
    while j < n and glob[j] != "]":
        j += 1
    if j >= n:
        return None
    body = glob[start:j].replace("\\", "\\\\").replace("[", "\\[")
    if body.startswith("^"):             # a literal ^ that is not a negation
        body = "\\" + body
    return ("[^" if negate else "[") + body + "]", j + 1


def _glob_to_regex(glob):
    """``**`` any characters, ``*`` any but ``/``, ``?`` one character but ``/``, ``[..]`` a class
    (``!``/``^`` negate; unterminated ``[`` is literal); everything else literal, ``\\`` included."""
    out = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            cls = _class_to_regex(glob, i)
            if cls is None:
                out.append(re.escape(c))
                i += 1
            else:
                out.append(cls[0])
                i = cls[1]
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def _compile(rx, flags, text):
    try:
        with warnings.catch_warnings():
            # re's FutureWarnings about classes such as [a--b] speak of regex syntax the user
            # never wrote: the class means what the glob rules say
            warnings.simplefilter("ignore", FutureWarning)
            return re.compile(rx, flags)
    except (re.error, RecursionError, OverflowError) as e:   # the last two: absurdly large ones
        shown = text if len(text) <= 200 else text[:200] + "..."
        raise SelectionError(f"bad pattern {shown!r}: {e}", ExitCode.GLOB_ERROR) from None


class _Glob:
    """A glob, or with ``literal`` (--filter-literal) a path matched exactly: the same path
    logic (ancestors, scanned parents), no wildcards, no ``ignorecase:`` prefix, no "//" error,
    and a trailing "/" is dropped rather than meaning directories only (duplicity 3.2.1)."""

    def __init__(self, text, include, ignorecase, literal=False):
        self.text = text
        self.include = include
        pattern = text
        to_rx = re.escape if literal else _glob_to_regex
        self.to_rx = to_rx
        if pattern.startswith(_IGNORECASE) and not literal:
            pattern = pattern[len(_IGNORECASE):]
            ignorecase = True
        if "//" in pattern and not literal:
            raise SelectionError(f"consecutive '/'s in the glob {text!r}", ExitCode.GLOB_ERROR)
        self.flags = re.S | (re.I if ignorecase else 0)
        self.dirs_only = pattern.endswith("/") and not literal
        pattern = pattern[:-1] if pattern.endswith("/") else pattern     # "/" becomes "": the root dir
        self.pattern = pattern
        body = to_rx(pattern)
        # the path itself, or an ancestor of it (a prefix ending just before a '/')
        self.self_rx = _compile(body + r"\Z", self.flags, text)
        self.ancestor_rx = _compile(body + "/", self.flags, text)
        self.scan_rx = None          # one regex for all scan prefixes (patterns with classes)
        self.scan_cut = None         # the pattern cut after its first '**', when it has one
        self.scan_prefixes = ()      # leading component-prefixes, matched by depth
        self.scan_by_depth = {}
        if include:
            # directories matching a leading component-prefix of the pattern cut after its
            # first '**' may hold matches: they are scanned
            k = -1 if literal else pattern.find("**")
            cut = pattern if k < 0 else pattern[:k + 2]
            comps = cut.split("/")
            if k >= 0:
                self.scan_cut = _compile(_glob_to_regex(cut) + r"\Z", self.flags, text)
            if "[" in cut and not literal:
                # a class may match '/', so a prefix may match paths of any depth
                alts = ["/".join(comps[:m]) for m in range(1, len(comps))]
                if alts:
                    self.scan_rx = _compile("(?:" + "|".join(_glob_to_regex(a) + r"\Z" for a in alts) + ")",
                                            self.flags, text)
            else:
                # without classes only '/' matches '/': the prefix of m components can only match
                # a path of m components, so one regex per depth is compiled, when first needed
                # (a single alternation of all prefixes grows with the square of the pattern)
                self.scan_prefixes = comps[:-1]

    def _scans(self, path):
        if self.scan_cut is not None and self.scan_cut.match(path):
            return True
        if self.scan_rx is not None:
            return self.scan_rx.match(path) is not None
        depth = path.count("/") + 1
        if depth > len(self.scan_prefixes):
            return False
        rx = self.scan_by_depth.get(depth)
        if rx is None:
            rx = self.scan_by_depth[depth] = _compile(
                self.to_rx("/".join(self.scan_prefixes[:depth])) + r"\Z", self.flags, self.text)
        return rx.match(path) is not None

    def __call__(self, path, st):
        if self.ancestor_rx.match(path):
            return INCLUDE if self.include else EXCLUDE
        is_dir = _stat.S_ISDIR(st.st_mode)
        if self.self_rx.match(path) and (is_dir or not self.dirs_only):
            return INCLUDE if self.include else EXCLUDE
        if is_dir and self.include and self._scans(path):
            return SCAN
        return None

    def can_match_under(self, root):
        """False when the glob can match neither the root, an ancestor of it, nor anything below."""
        rcomps = [""] if root == "/" else root.split("/")
        for pc, rc in zip(self.pattern.split("/"), rcomps):
            if "**" in pc and self.to_rx is _glob_to_regex:
                return True
            if not _compile(self.to_rx(pc) + r"\Z", self.flags, self.text).match(rc):
                return False
        return True


class _Regexp:
    def __init__(self, rx, include, ignorecase):
        self.text = rx
        self.include = include
        self.rx = _compile(rx, re.I if ignorecase else 0, rx)

    def __call__(self, path, st):
        if self.rx.search(path):
            return INCLUDE if self.include else EXCLUDE
        return None


class _OlderThan:
    include = False

    def __init__(self, limit):
        self.limit = limit

    def __call__(self, path, st):
        if _stat.S_ISREG(st.st_mode) and st.st_mtime is not None and st.st_mtime < self.limit:
            return EXCLUDE
        return None


class _OtherFilesystems:
    include = False

    def __init__(self, root_dev):
        self.root_dev = root_dev

    def __call__(self, path, st):
        if self.root_dev is not None and st.st_dev is not None and st.st_dev != self.root_dev:
            return EXCLUDE
        return None


class _DeviceFiles:
    include = False

    def __call__(self, path, st):
        if _stat.S_ISCHR(st.st_mode) or _stat.S_ISBLK(st.st_mode):
            return EXCLUDE
        return None


class _IfPresent:
    include = False

    def __init__(self, name):
        self.name = name

    def __call__(self, path, st):
        if _stat.S_ISDIR(st.st_mode) and os.path.lexists(os.path.join(os.fsencode(path), self.name)):
            return EXCLUDE
        return None


def _older_than_limit(value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    from . import timespec
    return timespec.parse(os.fsdecode(value) if isinstance(value, bytes) else value)


# ------------------------------------------------------------------------------------ filelists

def read_filelist(path, default_include, null_separator=False):
    """[(glob, include)] from a filelist: one glob per line (per NUL-terminated item with
    ``null_separator``), whitespace-stripped, blank and ``#`` lines skipped, ``+ ``/``- ``
    choosing include/exclude (else ``default_include``), then one pair of surrounding quotes
    removed. Only one space after the sign is consumed, as duplicity does."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except (OSError, ValueError) as e:     # ValueError: a NUL in the name
        reason = getattr(e, "strerror", None) or e
        raise SelectionError(f"cannot read filelist {os.fsdecode(path)}: {reason}", ExitCode.USER_ERROR) from None
    items = data.split(b"\0") if null_separator else data.splitlines()
    out = []
    for raw in items:
        line = os.fsdecode(raw).strip()
        if not line or line.startswith("#"):
            continue
        include = default_include
        if line.startswith("+ "):
            include, line = True, line[2:]
        elif line.startswith("- "):
            include, line = False, line[2:]
        if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'":
            line = line[1:-1]
        out.append((line, include))
    return out


def normalize_source(source):
    """The source as duplicity spells it in selection paths: empty and '.' components dropped
    (``./t1/`` -> ``t1``, ``/a//b`` -> ``/a/b``), ``..`` kept, ``.`` for the current directory."""
    src = os.fsdecode(source)
    absolute = src.startswith("/")
    comps = [c for c in src.split("/") if c not in ("", ".")]
    if absolute:
        return "/" + "/".join(comps)
    return "/".join(comps) or "."


# ------------------------------------------------------------------------------------ selection

# --filter-* switch how the include/exclude patterns after them are read, in command-line order
FILTER_MODES = {"filter-globbing": "globbing", "filter-literal": "literal", "filter-regexp": "regexp"}
FILTER_CASES = {"filter-ignorecase": True, "filter-strictcase": False}
_FLAG_KINDS = ("exclude-device-files", "exclude-other-filesystems", *FILTER_MODES, *FILTER_CASES)


def read_files_from(path, null_separator=False):
    """The set of indexes a --files-from list allows: each listed path relative to the source
    (every character of a line counts, blank lines are skipped) and, implied, its ancestors.
    An absolute path is refused (exit 72, as duplicity); so is '..', which duplicity follows
    out of the listed tree (a deliberate difference); '' and '.' components are dropped."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except (OSError, ValueError) as e:
        reason = getattr(e, "strerror", None) or e
        raise SelectionError(f"cannot read the --files-from list {os.fsdecode(path)}: {reason}",
                             ExitCode.USER_ERROR) from None
    allowed = {()}
    for line in data.split(b"\0") if null_separator else data.split(b"\n"):
        if not line:
            continue
        if line.startswith(b"/") or b".." in line.split(b"/"):
            raise SelectionError(f"every path in a --files-from list must be relative to the source "
                                 f"directory and stay inside it, not {os.fsdecode(line)!r}",
                                 ExitCode.FILES_FROM_ERROR)
        index = tuple(c for c in line.split(b"/") if c not in (b"", b"."))
        for depth in range(1, len(index) + 1):
            allowed.add(index[:depth])
    return allowed


class Selection:
    def __init__(self, source, rules=(), *, null_separator=False, ignorecase=False, on_warning=None,
                 files_from=None, copy_links=False):
        self.source = normalize_source(source)
        self.root = os.fsencode(source)
        self.on_warning = on_warning or (lambda msg: _log.warning("%s", msg))
        # --files-from: only these indexes are visited at all; the rules then apply to them
        self.allowed = None if files_from is None else read_files_from(files_from, null_separator)
        self.copy_links = copy_links
        front = []           # exclude-if-present and exclude-device-files act before everything
        rest = []
        self.other_fs = []   # exclude-other-filesystems rules: they learn the root's st_dev
        mode = "globbing"
        for kind, value in rules:
            if kind in FILTER_MODES:
                mode = FILTER_MODES[kind]
                continue
            if kind in FILTER_CASES:
                ignorecase = FILTER_CASES[kind]
                continue
            if isinstance(value, bytes) and kind not in ("exclude-if-present", "include-filelist",
                                                         "exclude-filelist"):
                value = os.fsdecode(value)
            if value in ("", b"") and kind not in _FLAG_KINDS:
                raise SelectionError(f"the selection option --{kind} cannot be empty", ExitCode.USER_ERROR)
            if kind in ("include", "exclude"):
                rest.append(self._pattern(value, kind == "include", ignorecase, mode))
            elif kind in ("include-filelist", "exclude-filelist"):
                for line, include in read_filelist(value, kind == "include-filelist", null_separator):
                    rest.append(self._pattern(line, include, ignorecase, mode))
            elif kind in ("include-regexp", "exclude-regexp"):
                rest.append(_Regexp(value, kind == "include-regexp", ignorecase))
            elif kind == "exclude-if-present":
                front.append(_IfPresent(os.fsencode(value)))
            elif kind == "exclude-device-files":
                front.append(_DeviceFiles())
            elif kind == "exclude-older-than":
                rest.append(_OlderThan(_older_than_limit(value)))
            elif kind == "exclude-other-filesystems":
                self.other_fs.append(_OtherFilesystems(None))
                rest.append(self.other_fs[-1])
            else:
                raise SelectionError(f"unknown selection option {kind!r}", ExitCode.USER_ERROR)
        self.rules = front + rest
        if self.rules and self.rules[-1].include:
            last = self.rules[-1]
            raise SelectionError(
                f"the last selection rule ({'include' if isinstance(last, _Glob) else 'include-regexp'} "
                f"{last.text!r}) only includes, and everything is included by default, so it has no "
                "effect; add an exclude after it (e.g. --exclude '**')", ExitCode.TRAILING_INCLUDE)
        if self.other_fs:
            try:
                self._set_root_dev(os.lstat(os.fsencode(self.source)).st_dev)
            except (OSError, ValueError):
                pass         # walk() reports the missing source

    def _set_root_dev(self, dev):
        for rule in self.other_fs:
            rule.root_dev = dev

    def _pattern(self, text, include, ignorecase, mode):
        if mode == "regexp":
            return _Regexp(text, include, ignorecase)
        return self._glob(text, include, ignorecase, literal=mode == "literal")

    def _glob(self, text, include, ignorecase, literal=False):
        g = _Glob(text, include, ignorecase, literal)
        if not g.can_match_under(self.source):
            raise SelectionError(f"the pattern {text!r} cannot match any file in the source "
                                 f"directory {self.source}: patterns begin with the source "
                                 "directory or with a wildcard such as '**'",
                                 ExitCode.PATTERN_OUTSIDE_SOURCE)
        return g

    def decide(self, path_str, st):
        """INCLUDE, EXCLUDE or SCAN for the path string ``path_str`` with lstat result ``st``."""
        scan = False
        for rule in self.rules:
            r = rule(path_str, st)
            if r is None:
                continue
            if r == SCAN:
                scan = True
            elif r == INCLUDE:
                return INCLUDE
            else:
                return SCAN if scan else EXCLUDE
        return SCAN if scan else INCLUDE

    def _join(self, parent_str, name):
        name = os.fsdecode(name)
        return "/" + name if parent_str == "/" else parent_str + "/" + name

    def selected(self, index, stat=None):
        """Whether ``index`` is selected: every ancestor is included or scanned and the path
        itself is included (for a directory: included or scanned). ``stat`` is an lstat result or
        anything with ``st_mode`` (and ``st_mtime``/``st_dev`` where those rules are used);
        without it the path is looked up on disk, and a path that is not there is judged on its
        name only (ancestors count as directories)."""
        index = tuple(os.fsencode(c) for c in index)
        if not index:
            return True
        path_str = self.source
        for depth in range(1, len(index) + 1):
            path_str = self._join(path_str, index[depth - 1])
            last = depth == len(index)
            st = stat if last and stat is not None else None
            if st is None:
                try:
                    st = os.lstat(os.path.join(self.root, *index[:depth]))
                except (OSError, ValueError):
                    st = _UnknownStat(0 if last else _stat.S_IFDIR)
            if self.decide(path_str, st) == EXCLUDE:   # SCAN only ever answers for directories
                return False
        return True

    def _listdir(self, path, path_str):
        try:
            names = os.listdir(path)
        except OSError as e:
            self.on_warning(f"cannot read directory {path_str}: {e.strerror or e}; its contents are "
                            "not backed up")
            return iter(())
        names.sort()
        return iter(names)

    def walk(self):
        """Entries in duplicity's order (depth-first, names sorted by bytes), root first.

        Streaming: the only state is one stack frame per directory level on the current path,
        each holding that directory's sorted name list."""
        try:
            # the normalised spelling: like duplicity, a symlink given as "link/" is not followed
            st = os.lstat(os.fsencode(self.source))
        except (OSError, ValueError) as e:     # ValueError: a NUL in the name
            raise SourceError(f"cannot read source {os.fsdecode(self.root)}: "
                              f"{getattr(e, 'strerror', None) or e}") from None
        root = Entry((), self.root, st)
        yield root
        if not _stat.S_ISDIR(st.st_mode):
            return
        self._set_root_dev(st.st_dev)
        frames = [_Frame(root, _prefix(self.root, b"/"), _prefix(self.source, "/"),
                         self._listdir(self.root, self.source), True)]
        decide = self.decide if self.rules else None
        while frames:
            frame = frames[-1]
            name = next(frame.names, None)
            if name is None:
                frames.pop()
                continue
            path = frame.path_prefix + name
            path_str = frame.str_prefix + os.fsdecode(name)
            index = frame.entry.index + (name,)
            if self.allowed is not None and index not in self.allowed:
                continue
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                self.on_warning(f"{path_str} vanished during the backup; skipped")
                continue
            except OSError as e:
                self.on_warning(f"cannot stat {path_str}: {e.strerror or e}; skipped")
                continue
            if self.copy_links and _stat.S_ISLNK(st.st_mode):
                followed = self._follow(path, path_str, frames)
                if followed is None:
                    continue
                path, st = followed
            mode = st.st_mode
            if _stat.S_ISSOCK(mode):
                continue
            d = INCLUDE if decide is None else decide(path_str, st)
            if d == EXCLUDE:
                continue
            is_dir = _stat.S_ISDIR(mode)
            if d == SCAN and not is_dir:
                continue
            entry = Entry(index, path, st)
            if d == INCLUDE:
                for f in frames:          # scanned ancestors appear before their first content
                    if not f.emitted:
                        yield f.entry
                        f.emitted = True
                yield entry
            if is_dir:
                frames.append(_Frame(entry, path + b"/", path_str + "/", self._listdir(path, path_str),
                                     d == INCLUDE))

    def _follow(self, path, path_str, frames):
        """--copy-links: (resolved path, stat) of what the symlink ``path`` points to, stored as
        that file or directory under the link's name; None for a dangling link (left out, as
        duplicity does) or a link to a directory being walked (duplicity descends until ELOOP;
        cairn warns and leaves the link out)."""
        try:
            real = os.path.realpath(path)
            st = os.stat(real)
        except (OSError, ValueError):
            _log.info("%s: the symlink points nowhere; left out (--copy-links)", path_str)
            return None
        if _stat.S_ISDIR(st.st_mode) and any(
                (f.entry.stat.st_dev, f.entry.stat.st_ino) == (st.st_dev, st.st_ino) for f in frames):
            self.on_warning(f"{path_str} is a symlink to a directory it is inside of; left out (--copy-links)")
            return None
        return real, st


class _Frame:
    """One directory level of the walk: its entry, the prefixes of its children's paths, its
    sorted child names still to visit, and whether the entry itself was yielded (a directory
    only scanned for includes below it is yielded before its first included content)."""

    __slots__ = ("entry", "path_prefix", "str_prefix", "names", "emitted")

    def __init__(self, entry, path_prefix, str_prefix, names, emitted):
        self.entry, self.path_prefix, self.str_prefix, self.names, self.emitted = (
            entry, path_prefix, str_prefix, names, emitted)


def _prefix(path, sep):
    return path if path.endswith(sep) else path + sep
