# SPDX-License-Identifier: GPL-3.0-or-later
"""RetentionPolicy: the one plan of what prune, run-job and the prune module remove, exact
before and after."""
from types import SimpleNamespace

import pytest

from cairn import naming
from cairn.collection import Collection
from cairn.errors import UserError
from cairn.retention import RetentionPolicy, plan

DAY = 86400
T0 = 1_700_000_000


def _archive(chains, extra=()):
    """Remote names of chains given as [incrementals per chain], a day apart."""
    names, t = list(extra), T0
    for incs in chains:
        full = t
        names += [naming.volume_name(1, time=full, suffix=".gpg"), naming.manifest_name(time=full, suffix=".gpg"),
                  naming.signature_name(time=full, suffix=".gpg")]
        end = full
        for _inc in range(incs):
            t += DAY
            kw = dict(start_time=end, end_time=t)
            names += [naming.volume_name(1, suffix=".gpg", **kw), naming.manifest_name(suffix=".gpg", **kw),
                      naming.signature_name(suffix=".gpg", **kw)]
            end = t
        t += DAY
    return Collection(names)


def _session():
    return SimpleNamespace(opts=SimpleNamespace(file_prefix="", lock_stale_after=1800), target_lock=None,
                           backend=None, tmpdir=None)


def _shape(chains):
    return [[s.type for s in c] for c in chains]


def test_keep_full_removes_whole_old_chains_and_never_the_newest():
    col = _archive([1, 1, 2])
    p = plan(_session(), col, RetentionPolicy(keep_full=2))
    assert _shape(p.before) == [["full", "inc"], ["full", "inc"], ["full", "inc", "inc"]]
    assert _shape(p.after) == [["full", "inc"], ["full", "inc", "inc"]]
    assert p.files == sorted(n for s in col.chains[0].sets for n in s.names)
    assert _shape(plan(_session(), col, RetentionPolicy(keep_full=1, older_than=T0 + 100 * DAY)).after) == \
        [["full", "inc", "inc"]]


def test_keep_full_with_incrementals_keeps_the_old_fulls():
    p = plan(_session(), _archive([2, 1, 1]), RetentionPolicy(keep_full_with_incrementals=1))
    assert _shape(p.after) == [["full"], ["full"], ["full", "inc"]]
    col = _archive([2, 1, 1])
    assert p.files == sorted(n for c in col.chains[:2] for s in c.incs for n in s.names)


def test_rules_together_remove_the_union_of_what_each_removes():
    col = _archive([1, 1, 1, 1])
    older = plan(_session(), col, RetentionPolicy(older_than=T0 + 3 * DAY)).files
    keep = plan(_session(), col, RetentionPolicy(keep_full=2)).files
    incs = plan(_session(), col, RetentionPolicy(keep_full_with_incrementals=3)).files
    both = plan(_session(), col, RetentionPolicy(older_than=T0 + 3 * DAY, keep_full=2, keep_full_with_incrementals=3))
    assert both.files == sorted(set(older) | set(keep) | set(incs))


def test_cleanup_takes_incomplete_and_orphaned_sets_and_stray_signatures():
    stray = ["duplicity-inc.20200101T000000Z.to.20200102T000000Z.vol1.difftar.gpg",
             naming.signature_name(time=T0 - 5 * DAY, suffix=".gpg")]
    col = _archive([1], extra=stray)
    p = plan(_session(), col, RetentionPolicy(cleanup=True))
    assert p.files == sorted(stray) and _shape(p.after) == _shape(p.before)


def test_nothing_to_remove_is_an_empty_plan():
    p = plan(_session(), _archive([1]), RetentionPolicy(keep_full=3, older_than=T0 - DAY))
    assert p.files == [] and p.sets == [] and _shape(p.after) == [["full", "inc"]]


@pytest.mark.parametrize("policy, action", [
    (RetentionPolicy(older_than=1), "remove-older-than"), (RetentionPolicy(keep_full=1), "remove-all-but-n-full"),
    (RetentionPolicy(keep_full_with_incrementals=1), "remove-all-inc-of-but-n-full"),
    (RetentionPolicy(cleanup=True), "cleanup"), (RetentionPolicy(keep_full=1, cleanup=True), "prune")])
def test_the_action_is_duplicitys_command_name_for_one_rule(policy, action):
    assert policy.action == action


@pytest.mark.parametrize("field", ["keep_full", "keep_full_with_incrementals"])
def test_keeping_no_full_is_refused(field):
    with pytest.raises(UserError, match="at least 1"):
        RetentionPolicy(**{field: 0})
