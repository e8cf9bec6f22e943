# SPDX-License-Identifier: GPL-3.0-or-later
"""remove-* and cleanup (list without --force, delete with it, never the newest chain); verify."""
import json
import os
import time

import pytest

from treeutil import cairn, duplicity, write


def _status(common, url):
    return json.loads(cairn("collection-status", "--json", *common, url).stdout)


def _chains(common, url):
    return [[s["type"] for s in c["sets"]] for c in _status(common, url)["chains"]]


@pytest.fixture
def three_chains(tmp_path):
    """full+inc, full+inc, full+inc: three chains, with a second between every set."""
    src = tmp_path / "src"
    write(str(src / "a.txt"), b"a")
    url = f"file://{tmp_path}/target"
    common = ["--no-encryption", "--archive-dir", tmp_path / "cache"]
    times = []
    for i in range(6):
        if i:
            time.sleep(1.1)
            write(str(src / f"f{i}.txt"), b"%d" % i)
        cairn("full" if i % 2 == 0 else "incremental", *common, src, url)
        times.append(int(time.time()))
    assert _chains(common, url) == [["full", "incremental"]] * 3
    return src, url, common, times, tmp_path / "target"


def test_remove_all_but_n_full(three_chains):
    src, url, common, times, target = three_chains
    before = sorted(os.listdir(target))
    dry = json.loads(cairn("remove-all-but-n-full", "2", "--json", *common, url).stdout)
    assert dry["would_delete"] and not dry["deleted"] and len(dry["sets"]) == 2
    assert sorted(os.listdir(target)) == before            # nothing without --force
    out = cairn("remove-all-but-n-full", "2", *common, url).stdout
    assert b"--force" in out
    cairn("remove-all-but-n-full", "2", "--force", *common, url)
    assert _chains(common, url) == [["full", "incremental"]] * 2
    assert set(os.listdir(target)) == set(before) - set(dry["files"])


def test_remove_all_inc_of_but_n_full(three_chains):
    src, url, common, times, target = three_chains
    cairn("remove-all-inc-of-but-n-full", "1", "--force", *common, url)
    assert _chains(common, url) == [["full"], ["full"], ["full", "incremental"]]
    # what is left of incrementals belongs to the newest chain (it starts at its full)
    last_full = _status(common, url)["chains"][-1]["sets"][0]["timestamp"]
    last_full = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(last_full))
    incs = [n for n in os.listdir(target) if n.startswith(("duplicity-inc.", "duplicity-new-signatures."))]
    assert len(incs) == 3 and all(n.split(".")[1] == last_full for n in incs)


def test_remove_older_than_never_removes_the_newest_chain(three_chains, duplicity_bin):
    src, url, common, times, target = three_chains
    cairn("remove-older-than", times[2], "--force", *common, url)     # chain 1 ended before
    assert _chains(common, url) == [["full", "incremental"]] * 2
    cairn("remove-older-than", "now", "--force", *common, url)
    assert _chains(common, url) == [["full", "incremental"]]
    # duplicity sees the same
    status = duplicity(duplicity_bin, "collection-status", "--no-encryption", "--archive-dir",
                       target.parent / "dupcache", "--name", "x", url).stdout
    assert b"Found 0 secondary backup chain(s)" in status
    assert b"Number of contained backup sets: 2" in status


def test_cleanup_lists_then_deletes_leftovers(three_chains):
    src, url, common, times, target = three_chains
    stray = ["duplicity-inc.20200101T000000Z.to.20200102T000000Z.vol1.difftar.gz",
             ".cairn-tmp.duplicity-full.20200101T000000Z.vol1.difftar.gz"]
    for n in stray:
        (target / n).write_bytes(b"junk")
    r = json.loads(cairn("cleanup", "--json", *common, url).stdout)
    assert sorted(r["files"]) == sorted(stray) and not r["deleted"]
    assert all((target / n).exists() for n in stray)
    cairn("cleanup", "--force", *common, url)
    assert not any((target / n).exists() for n in stray)
    assert _chains(common, url) == [["full", "incremental"]] * 3


def test_verify_checks_volumes_and_compare_data_finds_changes(tmp_path, gnupghome):
    src = tmp_path / "src"
    write(str(src / "a.txt"), b"original", mtime=1_700_000_000)
    write(str(src / "sub" / "b.txt"), b"b")
    url = f"file://{tmp_path}/target"
    common = ["--archive-dir", tmp_path / "cache"]
    cairn("full", *common, src, url)
    ok = cairn("verify", "--compare-data", *common, url, src)
    assert b"Verify complete: 4 file(s) compared of 4 in the backup, 0 difference(s) found." in ok.stdout
    # same size and mtime, other content: only --compare-data sees it
    write(str(src / "a.txt"), b"tampered", mtime=1_700_000_000)
    (src / "new.txt").write_bytes(b"n")
    plain = cairn("verify", *common, url, src)
    assert b"0 difference(s) found" in plain.stdout
    r = cairn("verify", "--compare-data", *common, url, src, check=False)
    assert r.returncode == 1
    assert b"Data for file a.txt is different" in r.stdout and b"New file new.txt" in r.stdout
    js = json.loads(cairn("verify", "--compare-data", "--json", *common, url, src, check=False).stdout)
    assert js["exit_code"] == 1
    assert {(d["what"], d["path"]) for d in js["differences"]} >= {("data", "a.txt"), ("new", "new.txt")}
