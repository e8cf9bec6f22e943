# SPDX-License-Identifier: GPL-3.0-or-later
"""Retention: which sets and files a policy removes, as one plan that prune, run-job and the
prune module share (and check mode shows exactly).

duplicity's commands are single rules of a policy: ``remove-older-than T`` is
``RetentionPolicy(older_than=T)``, ``remove-all-but-n-full N`` is ``keep_full=N``,
``remove-all-inc-of-but-n-full N`` is ``keep_full_with_incrementals=N`` and ``cleanup`` is
``cleanup=True``. Each rule selects sets of the collection as it is; together they remove the
union, which is what running them one after the other removes (each rule cuts at a time, and
removing older chains never moves where the next rule cuts). The chain of the newest backup is
never removed.
"""
import logging
from dataclasses import dataclass, field

from .backends.base import TEMP_PREFIX
from .errors import BackendError, ExitCode, UserError
from .lock import is_lock_name, stale_lock_names
from . import naming, timespec

log = logging.getLogger("cairn")


@dataclass(frozen=True)
class RetentionPolicy:
    older_than: int = None                     # epoch seconds: remove chains that ended before
    keep_full: int = None                      # keep this many newest chains
    keep_full_with_incrementals: int = None    # older chains keep only their full
    cleanup: bool = False                      # incomplete and orphaned sets, stray files

    def __post_init__(self):
        for name in ("keep_full", "keep_full_with_incrementals"):
            n = getattr(self, name)
            if n is not None and n < 1:
                raise UserError(f"{name.replace('_', ' ')}: the number of full backups to keep must be at least 1")

    @property
    def empty(self):
        return (self.older_than is None and self.keep_full is None and self.keep_full_with_incrementals is None
                and not self.cleanup)

    @property
    def action(self):
        """duplicity's command name when the policy is one of its commands, else "prune"."""
        rules = [name for name, on in (("remove-older-than", self.older_than is not None),
                                       ("remove-all-but-n-full", self.keep_full is not None),
                                       ("remove-all-inc-of-but-n-full", self.keep_full_with_incrementals is not None),
                                       ("cleanup", self.cleanup)) if on]
        return rules[0] if len(rules) == 1 else "prune"


@dataclass
class PrunePlan:
    sets: list = field(default_factory=list)       # BackupSets to remove
    files: list = field(default_factory=list)      # every remote name to delete, sorted
    before: list = field(default_factory=list)     # chains as [sets] before
    after: list = field(default_factory=list)      # and after
    # what the target keeps (S3 Object Lock: retention or a legal hold), filled by hold_back or
    # apply: [{name, reason, mode, retain_until}] by name, and the sets kept whole because of it
    skipped: list = field(default_factory=list)
    kept_sets: list = field(default_factory=list)


def _nth_newest_full(col, n):
    """The start of the n-th newest chain, or None when there are not more than n chains."""
    fulls = [c.start_time for c in col.chains]
    return fulls[-n] if len(fulls) > n else None


def _select(col, policy, prefix):
    sets, extra = [], []
    if policy.older_than is not None:
        t = policy.older_than
        sets += [s for c in col.chains if c.end_time < t for s in c.sets]
        sets += [s for s in col.orphaned if s.end_time < t]
    if policy.keep_full is not None:
        t = _nth_newest_full(col, policy.keep_full)
        if t is not None:
            sets += [s for c in col.chains if c.end_time < t for s in c.sets]
    if policy.keep_full_with_incrementals is not None:
        t = _nth_newest_full(col, policy.keep_full_with_incrementals)
        if t is not None:
            sets += [s for c in col.chains if c.end_time < t for s in c.incs]
    if policy.cleanup:
        sets += list(col.incomplete) + list(col.orphaned)
        extra += list(col.orphaned_signatures)
        # temp names of this prefix's archive only: another prefix's writer holds its own lock
        extra += [n for n in col.foreign if n.startswith(TEMP_PREFIX) and _ours(n[len(TEMP_PREFIX):], prefix)]
        extra += list(col.unfinished.values())      # volumes of a set that never reached its commit
    unique = list({id(s): s for s in sets}.values())
    return unique, extra


def _ours(name, prefix):
    return (naming.parse(name, prefix) is not None or naming.unfinished_of(name, prefix) is not None
            or is_lock_name(name, naming.scheme(prefix).file))


def plan(sess, col, policy):
    """The PrunePlan of ``policy`` on the collection ``col`` of the session's target."""
    target = sess.opts
    sets, extra = _select(col, policy, getattr(target, "names", target.file_prefix))
    if policy.cleanup:
        own = sess.target_lock.own if sess.target_lock else ()
        extra += stale_lock_names(sess.backend, col.foreign, target.file_prefix, sess.tmpdir,
                                  target.lock_stale_after, own=own)
    if sess.target_lock is not None and not sess.target_lock.previous_writer_gone:
        # this run took over a lock whose writer may be stalled rather than dead: its files stay
        in_flight = {id(s) for s in col.incomplete}
        if any(id(s) in in_flight for s in sets):
            log.warning("leaving incomplete sets and temporary files: the writer whose lock was "
                        "taken over may still run; run cleanup again later")
        sets = [s for s in sets if id(s) not in in_flight]
        unfinished = set(col.unfinished.values())
        extra = [n for n in extra if not n.startswith(TEMP_PREFIX) and n not in unfinished]
    newest = col.last_chain
    if newest is not None:
        protected = {id(s) for s in newest.sets}
        sets = [s for s in sets if id(s) not in protected]
    gone = {id(s) for s in sets}
    after = [[s for s in c.sets if id(s) not in gone] for c in col.chains]
    return PrunePlan(sets=sets, files=sorted({n for s in sets for n in s.names} | set(extra)),
                     before=[list(c.sets) for c in col.chains],
                     after=[c for c in after if c and c[0].type == "full"])


def hold_back(sess, prune_plan):
    """Take out of the plan what the target will not let go yet (S3 Object Lock): a set with a
    file under retention stays whole, with the sets of its chain that it builds on, so no set
    and no chain is left half-deleted. Fills ``skipped`` and ``kept_sets``; reads only."""
    if not prune_plan.files:
        return prune_plan
    held = sess.backend.held(prune_plan.files)
    if not held:
        return prune_plan
    planned = {id(s) for s in prune_plan.sets}
    keep = {id(s) for s in prune_plan.sets if any(n in held for n in s.names)}
    for chain in prune_plan.before:             # an incremental needs what comes before it
        last = max((i for i, s in enumerate(chain) if id(s) in keep), default=None)
        if last is not None:
            keep |= {id(s) for s in chain[:last + 1] if id(s) in planned}
    kept_sets = [s for s in prune_plan.sets if id(s) in keep]
    skipped = dict(held)
    for s in kept_sets:
        for n in s.names:
            skipped.setdefault(n, {"name": n, "reason": "set-kept", "mode": None, "retain_until": None})
    _keep(prune_plan, skipped, kept_sets)
    return prune_plan


def _keep(prune_plan, skipped, kept_sets):
    prune_plan.skipped = [skipped[n] for n in sorted(skipped)]
    prune_plan.kept_sets = list(kept_sets)
    kept_ids = {id(s) for s in kept_sets}
    prune_plan.sets = [s for s in prune_plan.sets if id(s) not in kept_ids]
    prune_plan.files = [n for n in prune_plan.files if n not in skipped]
    gone = {id(s) for s in prune_plan.sets}
    after = [[s for s in c if id(s) not in gone] for c in prune_plan.before]
    prune_plan.after = [c for c in after if c and c[0].type == "full"]


def _say_kept(prune_plan):
    held = [k for k in prune_plan.skipped if k["reason"] in ("retention", "legal-hold")]
    if held:
        log.warning("kept %d file(s) under S3 Object Lock (retention or legal hold), not deleted: %s",
                    len(held), ", ".join(f"{k['name']} (until {k['retain_until'] or 'the legal hold is lifted'})"
                                         for k in held))
    for s in prune_plan.kept_sets:
        log.warning("kept the whole backup set %s %s: some of its files, or of a later set of its chain, "
                    "are under S3 Object Lock; a later prune removes it when the retention has passed",
                    s.type, timespec.to_iso(s.end_time))


def apply(sess, prune_plan):
    """Delete what the plan names (the caller holds the target lock), but what the target keeps
    (S3 Object Lock, see hold_back): that is reported in ``prune_plan.skipped``, never deleted."""
    if not prune_plan.files:
        return prune_plan
    sess.require_target_lock()
    hold_back(sess, prune_plan)
    kept = sess.backend.delete(prune_plan.files) if prune_plan.files else None
    if kept:
        # retention set between the check and the delete, or deletes these credentials may not do
        skipped = {k["name"]: k for k in prune_plan.skipped}
        skipped.update({k["name"]: k for k in kept})
        partly = [s for s in prune_plan.sets if any(n in skipped for n in s.names)]
        for s in partly:
            log.warning("the backup set %s %s was only partly deleted: %s stayed", s.type, timespec.to_iso(s.end_time),
                        ", ".join(n for n in s.names if n in skipped))
        gone = [s for s in prune_plan.sets if s not in partly]
        _keep(prune_plan, skipped, list(prune_plan.kept_sets) + partly)
        prune_plan.sets = gone
    sess.cache.forget(prune_plan.sets)
    _say_kept(prune_plan)
    denied = [k["name"] for k in prune_plan.skipped if k["reason"] == "denied"]
    if denied:
        raise BackendError(f"not allowed to delete {len(denied)} file(s) ({', '.join(denied[:5])}"
                           f"{', ...' if len(denied) > 5 else ''}): these credentials may not delete (write-only "
                           "host credentials?); prune from a place with delete rights, such as the Ansible "
                           "controller", ExitCode.BACKEND_PERMISSION)
    return prune_plan
