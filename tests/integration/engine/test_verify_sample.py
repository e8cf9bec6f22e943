# SPDX-License-Identifier: GPL-3.0-or-later
"""verify --compare-data --compare-data-sample N: the content of N files picked at random, the
metadata of every file, every volume."""
import collections
import json
import os
import random

import pytest

from treeutil import cairn, write

MTIME = 1_700_000_000
FILES = 40


@pytest.fixture
def backed_up(tmp_path):
    """A backup of FILES files (and a subdir), then every file's content changed in place with
    its size and mtime kept: only a data comparison sees it."""
    src = tmp_path / "src"
    for i in range(FILES):
        write(src / ("sub" if i % 2 else "") / f"f{i:02}.txt", b"before %02d\n" % i, mtime=MTIME)
    url = f"file://{tmp_path / 'target'}"
    cairn("full", "--no-encryption", src, url)
    for i in range(FILES):
        write(src / ("sub" if i % 2 else "") / f"f{i:02}.txt", b"after  %02d\n" % i, mtime=MTIME)
    return src, url


def _verify(src, url, *args):
    r = cairn("verify", "--json", "--no-encryption", "--compare-data", *args, url, src, check=False)
    return r.returncode, json.loads(r.stdout)


def test_a_sample_compares_the_data_of_that_many_files(backed_up):
    src, url = backed_up
    rc, every = _verify(src, url)
    assert rc == 1 and every["data_compared"] == FILES and every["data_sample"] is None
    assert len(every["differences"]) == FILES
    rc, sampled = _verify(src, url, "--compare-data-sample", "5")
    assert rc == 1 and sampled["data_compared"] == 5 and sampled["data_sample"] == 5
    assert sampled["compared"] == every["compared"] == sampled["files_in_backup"]     # every path still
    assert len(sampled["differences"]) == 5 and {d["what"] for d in sampled["differences"]} == {"data"}


def test_the_metadata_of_every_file_is_still_compared(backed_up):
    src, url = backed_up
    for path in (src / "sub").iterdir():
        os.utime(path, (MTIME + 60, MTIME + 60))
    rc, result = _verify(src, url, "--compare-data-sample", "3")
    kinds = collections.Counter(d["what"] for d in result["differences"])
    assert rc == 1 and kinds["mtime"] == FILES // 2 and kinds["data"] == 3


def test_a_sample_larger_than_the_backup_is_all_of_it(backed_up):
    src, url = backed_up
    rc, result = _verify(src, url, "--compare-data-sample", "1000")
    assert rc == 1 and result["data_compared"] == FILES and len(result["differences"]) == FILES


def test_each_file_is_as_likely_to_be_picked(tmp_path):
    """The reservoir over the signatures, with a seeded generator (no chance in the test)."""
    from cairn import options
    from cairn.restore import chain_at
    from cairn.session import Session
    from cairn.verify import data_sample
    src = tmp_path / "src"
    for i in range(4):
        write(src / f"f{i}", b"x")
    os.mkdir(src / "dir")        # directories are never picked
    url = f"file://{tmp_path / 'target'}"
    cairn("full", "--no-encryption", src, url)
    target = options.target_options({"target": url, "no_encryption": True, "archive_dir": str(tmp_path / "cache")})
    rng = random.Random(4711)
    picks = collections.Counter()
    with Session(target) as sess:
        _chain, sets = chain_at(sess.collection(), 2**40)
        for _round in range(4000):
            picks.update(data_sample(sess, sets, (), 1, rng))
        assert data_sample(sess, sets, (), 10, rng) == {(b"f0",), (b"f1",), (b"f2",), (b"f3",)}
    assert set(picks) == {(b"f0",), (b"f1",), (b"f2",), (b"f3",)}
    assert all(900 <= n <= 1100 for n in picks.values()), picks


@pytest.mark.parametrize("args, message", [(["--compare-data-sample", "0"], b"a number of files (1 or more)"),
                                           (["--compare-data-sample", "x"], b"a number of files (1 or more)")])
def test_a_bad_sample_is_a_usage_error(backed_up, args, message):
    src, url = backed_up
    r = cairn("verify", "--no-encryption", "--compare-data", *args, url, src, check=False)
    assert r.returncode == 23 and message in r.stderr


def test_a_sample_without_compare_data_is_a_usage_error(backed_up):
    src, url = backed_up
    r = cairn("verify", "--no-encryption", "--compare-data-sample", "3", url, src, check=False)
    assert r.returncode == 23 and b"--compare-data-sample goes with --compare-data" in r.stderr
