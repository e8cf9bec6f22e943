# SPDX-License-Identifier: GPL-3.0-or-later
"""Remote file names -> backup sets -> chains (duplicity-format.md §6), and the status view."""
from dataclasses import dataclass, field

from . import naming


@dataclass
class BackupSet:
    type: str                      # 'full' or 'inc'
    start_time: int                # for a full: its time
    end_time: int
    volumes: dict = field(default_factory=dict)   # number -> remote name
    manifest: str = None           # remote manifest name
    partial_manifest: bool = False
    encrypted: bool = False
    compressed: bool = False
    signature: str = None          # remote signature file name for this set, if any
    missing_volumes: tuple = ()    # set by Collection.check_volumes when the manifest says more

    @property
    def time(self):
        return self.end_time

    @property
    def complete(self):
        return self.manifest is not None and not self.partial_manifest

    @property
    def names(self):
        """Every remote file of this set (volumes, manifest, signature)."""
        out = list(self.volumes.values())
        if self.manifest:
            out.append(self.manifest)
        if self.signature:
            out.append(self.signature)
        return out


@dataclass
class Chain:
    full: BackupSet
    incs: list = field(default_factory=list)

    @property
    def sets(self):
        return [self.full] + self.incs

    @property
    def start_time(self):
        return self.full.start_time

    @property
    def end_time(self):
        return self.incs[-1].end_time if self.incs else self.full.end_time

    @property
    def has_signatures(self):
        return all(s.signature for s in self.sets)

    def sets_until(self, t):
        """The full plus the incrementals ending at or before ``t``."""
        return [self.full] + [s for s in self.incs if s.end_time <= t]


class Collection:
    """The archive as seen from a list of remote names.

    ``chains``: complete chains, oldest first. ``orphaned``: complete incrementals that fit no
    chain. ``incomplete``: sets with no manifest (an interrupted run), whose signature never
    arrived (an incremental), or whose commit stopped (a full). ``orphaned_signatures``:
    signature files whose set is gone. ``unfinished``: the files of a set still being written
    (see naming.UNFINISHED_MARK), by their final names.
    """

    def __init__(self, names, prefix=""):
        self.names = list(names)
        self._prefix = prefix
        sets = {}
        sigs = []
        self.foreign = []
        self.unfinished = {}          # final name -> unfinished name: files of a set being written
        for name in self.names:
            final = naming.finished_name(name, prefix)
            if final is not None:
                if naming.unfinished_of(name, prefix) is None:
                    self.foreign.append(name)       # another archive's, with other per-kind prefixes
                else:
                    self.unfinished[final] = name
                continue
            p = naming.parse(name, prefix)
            if p is None:
                self.foreign.append(name)
                continue
            if p.type in ("full-sig", "new-sig"):
                sigs.append((name, p))
                continue
            if p.type not in ("full", "inc"):
                continue
            start = p.time if p.type == "full" else p.start_time
            end = p.time if p.type == "full" else p.end_time
            key = (p.type, start, end)
            s = sets.get(key)
            if s is None:
                s = sets[key] = BackupSet(p.type, start, end)
            if p.manifest:
                if p.partial and s.manifest and not s.partial_manifest:
                    continue
                s.manifest, s.partial_manifest = name, p.partial
            elif p.volume is not None:
                s.volumes[p.volume] = name
            s.encrypted = s.encrypted or p.encrypted
            s.compressed = s.compressed or p.compressed
        self.orphaned_signatures = []
        for name, p in sigs:
            if p.partial:
                self.orphaned_signatures.append(name)
                continue
            key = ("full", p.time, p.time) if p.type == "full-sig" else ("inc", p.start_time, p.end_time)
            s = sets.get(key)
            if s is None or (s.signature and not s.signature.endswith((".gpg", ".gz"))):
                self.orphaned_signatures.append(name)
            elif s.signature is None:
                s.signature = name
            else:   # the same signature in two suffix variants: keep one, the other is stray
                self.orphaned_signatures.append(name)
        self.sets = sorted(sets.values(), key=lambda s: (s.end_time, s.type != "full"))
        self._build_chains()

    def _build_chains(self):
        self.chains, self.orphaned, self.incomplete = [], [], []
        complete = [s for s in self.sets if s.complete]
        self.incomplete = [s for s in self.sets if not s.complete]
        for s in complete:
            if s.type == "full":
                self.chains.append(Chain(s))
        self.chains.sort(key=lambda c: c.start_time)
        for s in (s for s in complete if s.type == "inc"):
            for c in self.chains:
                if c.end_time == s.start_time:
                    c.incs.append(s)
                    break
                if c.incs and c.incs[-1].start_time == s.start_time and s.end_time > c.incs[-1].end_time:
                    # an inc with the same start but a later end replaces the last one
                    self.orphaned.append(c.incs.pop())
                    c.incs.append(s)
                    break
            else:
                self.orphaned.append(s)
        # A set whose signatures never arrived (interrupted after its manifest) cannot be the
        # base of the next incremental: treat it as incomplete, as duplicity does.
        for c in self.chains:
            while c.incs and not c.incs[-1].signature:
                self.incomplete.append(c.incs.pop())
        # A full whose commit stopped (its manifest written, its signatures not, and some of its
        # volumes or resume records still under unfinished names) lacks volumes: it is no backup
        # but the remains of a run, which the next one resumes or removes. A full that only lost
        # its signature file, with nothing of it unfinished, stays a chain: its volumes are whole.
        for c in [c for c in self.chains if not c.incs and not c.full.signature and self._commit_stopped(c.full)]:
            self.chains.remove(c)
            self.incomplete.append(c.full)

    def _commit_stopped(self, s):
        base = naming.set_base(time=s.end_time, prefix=self._prefix) + "."
        return any(final.startswith(base) for final in self.unfinished)

    # --- queries -------------------------------------------------------------------------

    @property
    def last_chain(self):
        return self.chains[-1] if self.chains else None

    @property
    def signature_chain(self):
        """The newest chain whose every set has signatures (the base for an incremental)."""
        for c in reversed(self.chains):
            if c.has_signatures:
                return c
        return None

    def chain_for_time(self, t):
        """Chain holding time t: start <= t <= end, else the newest ending before t, else the oldest."""
        if not self.chains:
            return None
        for c in reversed(self.chains):
            if c.start_time <= t <= c.end_time:
                return c
        before = [c for c in self.chains if c.end_time <= t]
        return before[-1] if before else self.chains[0]

    def last_full_time(self):
        return self.chains[-1].start_time if self.chains else None

    def last_backup_time(self):
        return self.chains[-1].end_time if self.chains else None
