# SPDX-License-Identifier: GPL-3.0-or-later
"""The selection and scan layers: a sorted, streaming walk filtered with duplicity's rules (§9).

Each path is tested as the string ``<source as given>/<relative path>`` against the rules in
command-line order; the first rule with an opinion wins; a path no rule speaks of is included.
A rule answers INCLUDE, EXCLUDE, or SCAN (a directory kept only if something below is kept).
"""
import logging
import os
import re
import stat
from dataclasses import dataclass

from .errors import ExitCode, SelectionError

EXCLUDE, INCLUDE, SCAN = 0, 1, 2
_log = logging.getLogger("cairn")


@dataclass
class Entry:
    index: tuple
    path: bytes
    stat: os.stat_result


def _glob_to_regex(glob):
    """duplicity's glob: ** any chars, * any but /, ? one non-/ char, [..] classes."""
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
            j = i + 1
            if j < n and glob[j] in "!^":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:                       # unterminated: a literal [
                out.append(re.escape(c))
                i += 1
                continue
            body = glob[i + 1:j]
            if body[:1] in ("!", "^"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


class _Glob:
    def __init__(self, pattern, include, ignorecase):
        self.text = pattern
        if pattern.startswith("ignorecase:"):
            pattern = pattern[len("ignorecase:"):]
            ignorecase = True
        flags = re.S | (re.I if ignorecase else 0)
        self.dirs_only = pattern.endswith("/") and len(pattern) > 1
        pattern = pattern.rstrip("/") or "/"
        self.pattern = pattern
        self.include = include
        body = _glob_to_regex(pattern)
        self.self_rx = re.compile(body + r"\Z", flags)
        self.below_rx = re.compile(body + r"/", flags)
        self.scan_rxs = []
        if include:
            cut = pattern
            k = cut.find("**")
            if k >= 0:
                cut = cut[:k + 2]
            comps = cut.split("/")
            for m in range(1, len(comps)):
                prefix = "/".join(comps[:m]) or "/"
                self.scan_rxs.append(re.compile(_glob_to_regex(prefix) + r"\Z", flags))
            if k >= 0:
                self.scan_rxs.append(re.compile(_glob_to_regex(cut) + r"\Z", flags))

    def __call__(self, path, st):
        is_dir = stat.S_ISDIR(st.st_mode)
        if self.self_rx.match(path) and (is_dir or not self.dirs_only):
            return INCLUDE if self.include else EXCLUDE
        if self.below_rx.match(path):
            return INCLUDE if self.include else EXCLUDE
        if self.include and is_dir:
            for rx in self.scan_rxs:
                if rx.match(path):
                    return SCAN
        return None

    def can_match_under(self, root):
        """False when the pattern can match nothing at or below ``root`` (duplicity exit 14)."""
        if self.pattern.startswith("**"):
            return True
        pcomps = self.pattern.split("/")
        rcomps = root.split("/") if root != "/" else [""]
        for pc, rc in zip(pcomps, rcomps):
            if "**" in pc:
                return True
            if not re.match(_glob_to_regex(pc) + r"\Z", rc, re.S | re.I if self.text.startswith("ignorecase:") else re.S):
                return False
        return True


class _Regexp:
    def __init__(self, rx, include, ignorecase):
        self.rx = re.compile(rx, re.I if ignorecase else 0)
        self.include = include

    def __call__(self, path, st):
        if self.rx.search(path):
            return INCLUDE if self.include else EXCLUDE
        return None


def _read_filelist(path, default_include, null_separator):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SelectionError(f"cannot read filelist {path}: {e.strerror}", ExitCode.USER_ERROR) from None
    items = data.split(b"\0") if null_separator else data.splitlines()
    out = []
    for raw in items:
        line = os.fsdecode(raw).strip()
        if not line or line.startswith("#"):
            continue
        include = default_include
        if line.startswith("+ "):
            include, line = True, line[2:].strip()
        elif line.startswith("- "):
            include, line = False, line[2:].strip()
        if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'":
            line = line[1:-1]
        out.append((line, include))
    return out


class Selection:
    def __init__(self, source, rules=(), *, null_separator=False, ignorecase=False, on_warning=None):
        src = os.fsdecode(source)
        self.source = src.rstrip("/") or "/"
        self.root = os.fsencode(self.source)
        self.on_warning = on_warning or (lambda msg: _log.warning("%s", msg))
        self.first = []        # exclude-if-present and device files act before everything
        self.rules = []
        self.other_fs = False
        last_kind = None
        for kind, value in rules:
            last_kind = kind
            if kind in ("include", "exclude"):
                g = _Glob(value, kind == "include", ignorecase)
                self._check(g)
                self.rules.append(g)
            elif kind in ("include-filelist", "exclude-filelist"):
                for line, include in _read_filelist(value, kind == "include-filelist", null_separator):
                    g = _Glob(line, include, ignorecase)
                    self._check(g)
                    self.rules.append(g)
            elif kind in ("include-regexp", "exclude-regexp"):
                try:
                    self.rules.append(_Regexp(value, kind == "include-regexp", ignorecase))
                except re.error as e:
                    raise SelectionError(f"bad regular expression {value!r}: {e}", ExitCode.GLOB_ERROR) from None
            elif kind == "exclude-if-present":
                name = os.fsencode(value)
                self.first.append(lambda path, st, name=name: self._if_present(path, st, name))
            elif kind == "exclude-device-files":
                self.first.append(lambda path, st: EXCLUDE if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else None)
            elif kind == "exclude-older-than":
                limit = int(value)
                self.rules.append(lambda path, st, limit=limit: EXCLUDE if stat.S_ISREG(st.st_mode) and st.st_mtime < limit else None)
            elif kind == "exclude-other-filesystems":
                self.other_fs = True
            else:
                raise SelectionError(f"unknown selection option {kind!r}", ExitCode.USER_ERROR)
        if last_kind in ("include", "include-regexp"):
            raise SelectionError("the last selection option is an include: everything is included by "
                                 "default, so it has no effect; add an --exclude after it (e.g. "
                                 "--exclude '**')", ExitCode.TRAILING_INCLUDE)

    def _check(self, g):
        if not g.can_match_under(self.source):
            raise SelectionError(f"the pattern {g.text!r} cannot match any file in the source "
                                 f"directory {self.source}", ExitCode.PATTERN_OUTSIDE_SOURCE)

    @staticmethod
    def _if_present(path, st, name):
        if stat.S_ISDIR(st.st_mode) and os.path.lexists(os.path.join(os.fsencode(path), name)):
            return EXCLUDE
        return None

    def decide(self, path_str, st):
        for rule in self.first:
            r = rule(path_str, st)
            if r is not None:
                return r
        for rule in self.rules:
            r = rule(path_str, st)
            if r is not None:
                return r
        return INCLUDE

    def _path_str(self, index):
        if not index:
            return self.source
        rel = os.fsdecode(b"/".join(index))
        return "/" + rel if self.source == "/" else self.source + "/" + rel

    def selected(self, index, st):
        return self.decide(self._path_str(index), st) != EXCLUDE

    def _listdir(self, path):
        try:
            return sorted(os.listdir(path))
        except OSError as e:
            self.on_warning(f"cannot read directory {os.fsdecode(path)}: {e.strerror}; its contents "
                            "are not backed up")
            return []

    def walk(self):
        """Entries in duplicity's order (depth-first, names sorted by bytes), root first."""
        try:
            st = os.lstat(self.root)
        except OSError as e:
            from .errors import SourceError
            raise SourceError(f"cannot read source {self.source}: {e.strerror}") from None
        root_dev = st.st_dev
        root = Entry((), self.root, st)
        d = self.decide(self.source, st)
        if d == EXCLUDE:
            return
        if d == INCLUDE:
            yield root
        if not stat.S_ISDIR(st.st_mode):
            return
        # frame: [entry, iterator over child names, emitted]
        frames = [[root, iter(self._listdir(self.root)), d == INCLUDE]]
        while frames:
            frame = frames[-1]
            name = next(frame[1], None)
            if name is None:
                frames.pop()
                continue
            parent = frame[0]
            index = parent.index + (name,)
            path = os.path.join(parent.path, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                self.on_warning(f"{os.fsdecode(path)} vanished during the backup; skipped")
                continue
            except OSError as e:
                self.on_warning(f"cannot stat {os.fsdecode(path)}: {e.strerror}; skipped")
                continue
            mode = st.st_mode
            if stat.S_ISSOCK(mode):
                continue
            if self.other_fs and st.st_dev != root_dev:
                continue
            d = self.decide(self._path_str(index), st)
            if d == EXCLUDE:
                continue
            is_dir = stat.S_ISDIR(mode)
            entry = Entry(index, path, st)
            if d == INCLUDE:
                for f in frames:
                    if not f[2]:
                        yield f[0]
                        f[2] = True
                yield entry
                if is_dir:
                    frames.append([entry, iter(self._listdir(path)), True])
            elif is_dir:          # SCAN: kept only if something below is
                frames.append([entry, iter(self._listdir(path)), False])
