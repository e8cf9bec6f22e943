# SPDX-License-Identifier: GPL-3.0-or-later
"""duplicity's per-kind file prefixes (--file-prefix-archive/-manifest/-signature) and its
--time-separator, both ways with stock duplicity 3.2.1."""
import json
import os
import random
import re
import time

import pytest

from dying import Died, dying_scheme
from treeutil import cairn, diff_snapshots, duplicity, snapshot, write

from cairn import api, naming
from cairn.crypto import CryptoOptions

pytestmark = pytest.mark.duplicity

PREFIXES = ["--file-prefix", "P-", "--file-prefix-archive", "a-", "--file-prefix-manifest", "m-",
            "--file-prefix-signature", "s-"]
ENC = ["--no-encryption"]


def _tree(src, n):
    write(os.path.join(src, "a.txt"), b"alpha %d\n" % n)
    write(os.path.join(src, "sub", f"b{n}.bin"), os.urandom(20_000))


def _two_sets(src, backup):
    """A full and, a second later over a changed tree, an incremental: ``backup(action)`` makes
    each set. Returns the tree's snapshot at each."""
    states = []
    for i, action in enumerate(("full", "incremental")):
        if i:
            time.sleep(1.1)
        _tree(src, i)
        states.append(snapshot(src))
        backup(action)
    return states


def _shape(names):
    """File names with their times blanked: what the two tools write must look the same."""
    return sorted(re.sub(r"\d{8}T\d{6}Z", "T", n) for n in names)


def _status(*args):
    return json.loads(cairn("collection-status", "--json", *args).stdout)


def _sets(status):
    return [(s["type"], s["timestamp"]) for c in status["chains"] for s in c["sets"]]


def test_cairn_reads_and_continues_duplicitys_prefixed_chain(tmp_path, duplicity_bin):
    src, url, target = tmp_path / "src", f"file://{tmp_path}/target", tmp_path / "target"
    dup = ["--archive-dir", tmp_path / "dupcache", "--name", "d", *PREFIXES, *ENC]
    states = _two_sets(src, lambda action: duplicity(duplicity_bin, action, *dup, src, url))
    written = sorted(os.listdir(target))
    assert all(n.startswith(("P-a-", "P-m-", "P-s-")) for n in written), written
    # files cairn must leave alone: an unrelated one, and duplicity names under the wrong prefixes
    full_manifest = next(n for n in written if n.startswith("P-m-duplicity-full."))
    foreign = ["README.txt", full_manifest.replace("P-m-", "P-"), full_manifest.replace("P-m-", "P-a-"),
               "P-s-duplicity-full.20300101T000000Z.vol1.difftar.gz",
               "P-m-duplicity-full-signatures.20300101T000000Z.sigtar.gz",
               "a-duplicity-full.20300101T000000Z.vol1.difftar.gz"]
    for name in foreign:
        write(target / name, b"not a part of this archive\n")

    ours = ["--archive-dir", tmp_path / "cache", *PREFIXES, *ENC]
    status = _status(*ours, url)
    assert [t for t, _s in _sets(status)] == ["full", "incremental"]
    assert not status["orphaned_sets"] and not status["incomplete_sets"]
    dest = tmp_path / "restored"
    cairn("restore", *ours, url, dest)
    assert diff_snapshots(states[1], snapshot(dest)) == []
    # the cache names its copies (the manifests, for a restore) as duplicity's cache does
    cache = tmp_path / "cache" / os.listdir(tmp_path / "cache")[0]
    assert _shape(n for n in os.listdir(cache) if n.startswith("P-")) == \
        _shape(n for n in os.listdir(tmp_path / "dupcache" / "d") if n.startswith("P-m-"))

    # cairn's incremental continues duplicity's chain, under the same prefixes
    time.sleep(1.1)
    _tree(src, 2)
    states.append(snapshot(src))
    r = cairn("incremental", *ours, src, url)
    assert r.returncode == 0
    new = sorted(set(os.listdir(target)) - set(written) - set(foreign))
    assert _shape(new) == ["P-a-duplicity-inc.T.to.T.vol1.difftar.gz", "P-m-duplicity-inc.T.to.T.manifest",
                           "P-s-duplicity-new-signatures.T.to.T.sigtar.gz"]
    out = duplicity(duplicity_bin, "collection-status", *dup, url).stdout
    assert b"Number of contained backup sets: 3" in out and b"orphaned" not in out.lower().replace(
        b"no orphaned or incomplete backup sets found", b"")
    dest = tmp_path / "dup-restored"
    duplicity(duplicity_bin, "restore", *dup, url, dest)
    assert diff_snapshots(states[2], snapshot(dest)) == []
    # cleanup keeps every file that is not this archive's
    cairn("cleanup", "--force", *ours, url)
    assert set(foreign) <= set(os.listdir(target))
    # with --file-prefix alone, no volume, manifest or signature of the archive is read: only the
    # decoy manifest named so shows, as a full without volumes
    plain = _status("--archive-dir", tmp_path / "cache2", "--file-prefix", "P-", *ENC, url)
    seen = [s for c in plain["chains"] for s in c["sets"]] + plain["incomplete_sets"] + plain["orphaned_sets"]
    assert [(s["type"], s["volumes"]) for s in seen] == [("full", 0)]


def test_duplicity_reads_cairns_prefixed_chain_named_as_its_own(tmp_path, duplicity_bin):
    src = tmp_path / "src"
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"

    def both(action):
        cairn(action, "--archive-dir", tmp_path / "cache", "--name", "c", *PREFIXES, *ENC, src, f"file://{ours}")
        duplicity(duplicity_bin, action, "--archive-dir", tmp_path / "dupcache", "--name", "d", *PREFIXES, *ENC,
                  src, f"file://{theirs}")
    states = _two_sets(src, both)
    assert _shape(os.listdir(ours)) == _shape(os.listdir(theirs))
    assert len(os.listdir(ours)) == 6
    assert _shape(n for n in os.listdir(tmp_path / "cache" / "c") if n.startswith("P-")) == \
        _shape(n for n in os.listdir(tmp_path / "dupcache" / "d") if n != "lockfile")
    dup = ["--archive-dir", tmp_path / "dupread", "--name", "r", *PREFIXES, *ENC]
    out = duplicity(duplicity_bin, "collection-status", *dup, f"file://{ours}").stdout
    assert b"Number of contained backup sets: 2" in out
    dest = tmp_path / "restored"
    duplicity(duplicity_bin, "restore", *dup, f"file://{ours}", dest)
    assert diff_snapshots(states[1], snapshot(dest)) == []


def _zoned(t, sep):
    """``t`` as 2024-01-02T04:04:05+01:00 (the time of day and zone with ``sep`` for ':')."""
    s = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t + 3600)) + "+01:00"
    date, day = s.split("T")
    return f"{date}T{day.replace(':', sep)}"


def test_time_separator_in_restore_times(tmp_path):
    src, url = tmp_path / "src", f"file://{tmp_path}/target"
    common = ["--archive-dir", tmp_path / "cache", *ENC]
    times = []

    def backup(action):
        cairn(action, *common, src, url)
        times.append(int(time.time()))
    states = _two_sets(src, backup)
    for sep, extra in ((":", []), ("_", ["--time-separator", "_"]), ("-", ["--time-separator", "-"])):
        dest = tmp_path / f"restored-{len(extra)}-{ord(sep)}"
        cairn("restore", *common, *extra, "-t", _zoned(times[0], sep), url, dest)
        assert diff_snapshots(states[0], snapshot(dest)) == [], sep
    # without the option, the '_' form is no time
    r = cairn("restore", *common, "-t", _zoned(times[0], "_"), url, tmp_path / "no", check=False)
    assert r.returncode == 23 and b"Bad time string" in r.stderr


@pytest.mark.parametrize("value", ["", "ab", "5", "T", "\x01"])
def test_nonsense_time_separators_are_usage_errors(tmp_path, value):
    r = cairn("collection-status", "--time-separator", value, *ENC, f"file://{tmp_path}/t", check=False)
    assert r.returncode == 23, r.stderr
    assert b"Traceback" not in r.stderr
    assert b"time_separator (--time-separator)" in r.stderr
    assert b"is one character" in r.stderr or b"cannot stand for ':'" in r.stderr


def test_long_names_with_a_time_separator_are_listed(tmp_path, duplicity_bin):
    """A 0.6-era archive: long times in the names, '_' for ':' (renamed from duplicity's output)."""
    src, target = tmp_path / "src", tmp_path / "target"
    url = f"file://{target}"
    states = _two_sets(src, lambda action: duplicity(duplicity_bin, action, "--archive-dir", tmp_path / "dupcache",
                                                     "--name", "d", *ENC, src, url))
    times = set()
    for name in os.listdir(target):
        def long(m):
            t = time.mktime(time.strptime(m.group(0), "%Y%m%dT%H%M%SZ")) - time.timezone
            times.add(int(t))
            return _zoned(int(t), "_")
        os.rename(target / name, target / re.sub(r"\d{8}T\d{6}Z", long, name))
    assert all("_" in n for n in os.listdir(target))
    sets = _sets(_status("--archive-dir", tmp_path / "cache", "--time-separator", "_", *ENC, url))
    assert sets == [("full", min(times)), ("incremental", max(times))]
    # duplicity reads those names so too: they are well formed
    out = duplicity(duplicity_bin, "collection-status", "--time-separator", "_", "--archive-dir",
                    tmp_path / "dupread", "--name", "r", *ENC, url).stdout
    assert b"Number of contained backup sets: 2" in out
    dest = tmp_path / "restored"
    cairn("restore", "--archive-dir", tmp_path / "cache", "--time-separator", "_", *ENC, url, dest)
    assert diff_snapshots(states[1], snapshot(dest)) == []
    # without the option those are not backup files
    assert _sets(_status("--archive-dir", tmp_path / "cache3", *ENC, url)) == []


def _big_tree(src, seed):
    rnd = random.Random(seed)
    for i in range(4):
        write(os.path.join(src, f"f{seed}-{i}.bin"), rnd.randbytes(700_000))


def _unfinished(target):
    return sorted(n for n in os.listdir(target) if naming.UNFINISHED_MARK in n)


def test_a_dead_run_under_per_kind_prefixes_is_resumed_and_cleaned(tmp_path, duplicity_bin):
    src, target = tmp_path / "src", tmp_path / "target"
    url = f"file://{target}"
    ours = ["--archive-dir", tmp_path / "cache", "--volsize", "1", *PREFIXES, *ENC]
    _big_tree(src, 1)
    cairn("full", *ours, src, url)
    for round_, then in ((2, "resume"), (3, "cleanup")):
        time.sleep(1.1)
        _big_tree(src, round_)
        with dying_scheme(lambda method, name: method == "put" and ".vol3." in name):
            t = api.TargetOptions(url=f"dying+file://{target}", crypto=CryptoOptions(mode="none"),
                                  archive_dir=str(tmp_path / "cache-dead"), file_prefix="P-", file_prefix_archive="a-",
                                  file_prefix_manifest="m-", file_prefix_signature="s-")
            with pytest.raises(Died):
                api.backup(t, api.BackupOptions(source=str(src), mode="incremental", volsize=1))
        left = _unfinished(target)
        assert left and all(n.startswith("P-cairn-unfinished.a-duplicity-inc.") for n in left), left
        st = json.loads(cairn("collection-status", "--json", *ours, url).stdout)
        assert st["unfinished_files"] == left
        # an archive with the same file prefix but other per-kind prefixes leaves them alone
        other = ["--archive-dir", tmp_path / "cache-other", "--file-prefix", "P-", "--file-prefix-archive", "x-",
                 "--file-prefix-manifest", "y-", "--file-prefix-signature", "z-", *ENC]
        assert json.loads(cairn("collection-status", "--json", *other, url).stdout)["unfinished_files"] == []
        cairn("cleanup", "--force", *other, url)
        assert _unfinished(target) == left
        if then == "resume":
            r = cairn("incremental", *ours, src, url)
            assert b"resumed at volume " in r.stderr, r.stderr
        else:
            cairn("cleanup", "--force", *ours, url)
        assert _unfinished(target) == []
    out = duplicity(duplicity_bin, "collection-status", "--archive-dir", tmp_path / "dupcache", "--name", "d",
                    *PREFIXES, *ENC, url).stdout
    assert b"Number of contained backup sets: 2" in out, out
    dest = tmp_path / "restored"
    cairn("restore", *ours, "-t", "now", url, dest)
    assert sorted(os.listdir(dest)) == sorted(f"f{s}-{i}.bin" for s in (1, 2) for i in range(4))
