# SPDX-License-Identifier: GPL-3.0-or-later
"""Sets and chains from remote names (duplicity-format.md §6)."""
from cairn import naming
from cairn.collection import Collection

T0, T1, T2, T3 = 1_700_000_000, 1_700_000_100, 1_700_000_200, 1_700_000_300


def full(t, vols=1, manifest=True, sig=True):
    names = [naming.volume_name(n, time=t, suffix=".gpg") for n in range(1, vols + 1)]
    if manifest:
        names.append(naming.manifest_name(time=t, suffix=".gpg"))
    if sig:
        names.append(naming.signature_name(time=t, suffix=".gpg"))
    return names


def inc(a, b, vols=1, manifest=True, sig=True):
    names = [naming.volume_name(n, start_time=a, end_time=b, suffix=".gpg") for n in range(1, vols + 1)]
    if manifest:
        names.append(naming.manifest_name(start_time=a, end_time=b, suffix=".gpg"))
    if sig:
        names.append(naming.signature_name(start_time=a, end_time=b, suffix=".gpg"))
    return names


def test_one_chain_with_incrementals():
    col = Collection(full(T0, 3) + inc(T0, T1) + inc(T1, T2, 2))
    assert len(col.chains) == 1
    c = col.chains[0]
    assert [s.type for s in c.sets] == ["full", "inc", "inc"]
    assert (c.start_time, c.end_time) == (T0, T2)
    assert sum(len(s.volumes) for s in c.sets) == 6
    assert col.signature_chain is c
    assert col.incomplete == [] and col.orphaned == []


def test_interrupted_set_is_incomplete_not_in_chain():
    col = Collection(full(T0) + inc(T0, T1, 2, manifest=False, sig=False))
    assert col.chains[0].end_time == T0
    assert [s.end_time for s in col.incomplete] == [T1]


def test_set_without_signature_is_demoted():
    col = Collection(full(T0) + inc(T0, T1) + inc(T1, T2, sig=False))
    assert col.chains[0].end_time == T1
    assert [s.end_time for s in col.incomplete] == [T2]


def _unfinished(names, prefix=""):
    return [naming.unfinished_name(n, prefix) for n in names]


def test_full_whose_commit_stopped_is_incomplete_not_a_chain():
    """Killed while renaming: the manifest and volume 1 under final names, volume 2 not yet."""
    stopped = full(T1, 2, sig=False)
    col = Collection(full(T0) + [stopped[0], stopped[2]] + _unfinished([stopped[1]]))
    assert [c.start_time for c in col.chains] == [T0]
    assert [s.end_time for s in col.incomplete] == [T1]
    assert col.last_backup_time() == T0


def test_full_whose_commit_stopped_before_its_signatures_is_incomplete():
    """Every volume renamed, the signatures not written: the resume records are still unfinished."""
    base = naming.set_base(time=T1, prefix="pre-")
    names = [f"pre-{n}" for n in full(T1, 2, sig=False)]
    col = Collection(names + _unfinished([f"{base}.resume.1.gpg"], "pre-"), prefix="pre-")
    assert col.chains == [] and [s.end_time for s in col.incomplete] == [T1]


def test_full_that_only_lost_its_signatures_stays_a_chain():
    """Nothing of it is unfinished (another set's files are): its volumes are whole."""
    other = _unfinished(full(T2, 1, manifest=False, sig=False))
    col = Collection(full(T1, 2, sig=False) + other)
    assert [c.start_time for c in col.chains] == [T1] and col.incomplete == []
    assert col.last_backup_time() == T1


def test_orphaned_incremental_and_signatures():
    names = full(T2) + inc(T0, T1) + [naming.signature_name(time=T3, suffix=".gpg")]
    col = Collection(names)
    assert [s.end_time for s in col.orphaned] == [T1]
    assert col.orphaned_signatures == [naming.signature_name(time=T3, suffix=".gpg")]


def test_chain_for_time():
    col = Collection(full(T0) + inc(T0, T1) + full(T2) + inc(T2, T3))
    assert col.chain_for_time(T1).start_time == T0
    assert col.chain_for_time(T1 + 50).start_time == T0      # newest ending before t
    assert col.chain_for_time(T3 + 999).start_time == T2
    assert col.chain_for_time(T0 - 999).start_time == T0     # else the oldest
    assert [s.end_time for s in col.chain_for_time(T3).sets_until(T2 + 1)] == [T2]


def test_foreign_files_ignored():
    col = Collection(full(T0) + ["lockfile", ".cairn-tmp.whatever", "README"])
    assert len(col.chains) == 1
    assert set(col.foreign) == {"lockfile", ".cairn-tmp.whatever", "README"}
