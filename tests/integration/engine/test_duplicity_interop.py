# SPDX-License-Identifier: GPL-3.0-or-later
"""Both directions with stock duplicity 3.2.1: what one writes, the other restores and lists.
Encrypted with a passphrase, to a public key, signed (duply's usual GPG_KEY + GPG_KEY_SIGN, and
a passphrase with a signing key) and not encrypted; a signed archive is read with --sign-key, so
a file that is not signed by that key fails the restore."""
import os
import random
import time

import pytest

from treeutil import PASSPHRASE, cairn, diff_snapshots, duplicity, make_hard_tree, snapshot, write

pytestmark = pytest.mark.duplicity

MODES = ["symmetric", "pubkey", "pubkey-signed", "symmetric-signed", "none"]


def _enc(mode, keys):
    return {"symmetric": [], "pubkey": ["--encrypt-key", keys["enc"]],
            "pubkey-signed": ["--encrypt-key", keys["enc"], "--sign-key", keys["sign"]],
            "symmetric-signed": ["--sign-key", keys["sign"]],
            "none": ["--no-encryption"]}[mode]


def _mutate(src, n):
    write(os.path.join(src, b"plain.txt"), b"change %d\n" % n)
    with open(os.path.join(src, b"sub", b"big.bin"), "r+b") as f:
        f.seek(200_000 * n)
        f.write(os.urandom(4096))
    write(os.path.join(src, b"added-%d" % n, b"f.txt"), b"x" * (n * 1000))
    if n == 1:
        os.remove(os.path.join(src, b"name with spaces.txt"))


def _listing(out):
    return sorted(line[25:] for line in out.splitlines() if len(line) > 25 and line[24:25] == b" "
                  and line[:3] in (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"))


def _dup_common(tmp_path, name):
    return ["--archive-dir", tmp_path / "dupcache", "--name", name, "--volsize", "1"]


def _chain(tmp_path, writers, mode, keys, duplicity_bin):
    """Back up three points, each written by the tool named in ``writers``; returns states, times."""
    src = make_hard_tree(tmp_path / "src")
    url = f"file://{tmp_path}/target"
    enc = _enc(mode, keys)
    states, times = [], []
    for i, who in enumerate(writers):
        if i:
            time.sleep(1.1)
            _mutate(src, i)
        states.append(snapshot(src))
        action = "full" if i == 0 else "incremental"
        if who == "cairn":
            cairn(action, *enc, "--archive-dir", tmp_path / "cache", "--volsize", "1", src, url)
        else:
            # duplicity asks for a signing key's passphrase unless SIGN_PASSPHRASE is set, and
            # with symmetric encryption wants it equal to PASSPHRASE (these keys have none)
            duplicity(duplicity_bin, action, *enc, *_dup_common(tmp_path, "w"), src, url,
                      env={"SIGN_PASSPHRASE": PASSPHRASE})
        times.append(int(time.time()))
    return src, url, enc, states, times


@pytest.mark.parametrize("mode", MODES)
def test_duplicity_restores_cairn_chain(tmp_path, gnupghome, duplicity_bin, mode):
    src, url, enc, states, times = _chain(tmp_path, ["cairn"] * 3, mode, gnupghome, duplicity_bin)
    status = duplicity(duplicity_bin, "collection-status", *enc, *_dup_common(tmp_path, "r"), url)
    assert b"Number of contained backup sets: 3" in status.stdout
    for i, state in enumerate(states):
        # restore at each point: the times between sets are at least a second apart
        dest = tmp_path / f"dup-restore-{i}"
        duplicity(duplicity_bin, "restore", *enc, *_dup_common(tmp_path, "r"), "--time", times[i], url, dest)
        assert diff_snapshots(state, snapshot(dest)) == [], f"point {i}"
    dup_list = _listing(duplicity(duplicity_bin, "list-current-files", *enc, *_dup_common(tmp_path, "r"), url).stdout)
    our_list = _listing(cairn("list-current-files", *enc, "--archive-dir", tmp_path / "cache", url).stdout)
    assert dup_list == our_list and len(our_list) > 10
    verify = duplicity(duplicity_bin, "verify", "--compare-data", *enc, *_dup_common(tmp_path, "r"), url, src)
    assert b"0 difference(s) found" in verify.stdout


@pytest.mark.parametrize("mode", MODES)
def test_cairn_restores_duplicity_chain(tmp_path, gnupghome, duplicity_bin, mode):
    src, url, enc, states, times = _chain(tmp_path, ["duplicity"] * 3, mode, gnupghome, duplicity_bin)
    for i, state in enumerate(states):
        dest = tmp_path / f"cairn-restore-{i}"
        cairn("restore", *enc, "--archive-dir", tmp_path / "cache", "--time", times[i], url, dest)
        assert diff_snapshots(state, snapshot(dest)) == [], f"point {i}"
    dup_list = _listing(duplicity(duplicity_bin, "list-current-files", *enc, *_dup_common(tmp_path, "r"), url).stdout)
    our_list = _listing(cairn("list-current-files", *enc, "--archive-dir", tmp_path / "cache", url).stdout)
    assert dup_list == our_list and len(our_list) > 10
    r = cairn("verify", "--compare-data", *enc, "--archive-dir", tmp_path / "cache", url, src)
    assert b"0 difference(s) found" in r.stdout


@pytest.mark.parametrize("mode", ["symmetric", "pubkey-signed", "none"])
def test_mixed_chain_restores_with_both(tmp_path, gnupghome, duplicity_bin, mode):
    src, url, enc, states, times = _chain(tmp_path, ["duplicity", "cairn", "duplicity"], mode,
                                          gnupghome, duplicity_bin)
    for i, state in enumerate(states):
        d1 = tmp_path / f"dup-{i}"
        duplicity(duplicity_bin, "restore", *enc, *_dup_common(tmp_path, "r"), "--time", times[i], url, d1)
        assert diff_snapshots(state, snapshot(d1)) == [], f"duplicity, point {i}"
        d2 = tmp_path / f"cairn-{i}"
        cairn("restore", *enc, "--archive-dir", tmp_path / "cache2", "--time", times[i], url, d2)
        assert diff_snapshots(state, snapshot(d2)) == [], f"cairn, point {i}"


@pytest.mark.parametrize("writer", ["cairn", "duplicity"])
def test_sign_key_refuses_unsigned_archive_in_both(tmp_path, gnupghome, duplicity_bin, writer):
    """The signed modes above prove something only if --sign-key really checks: an archive
    written without signing is refused by both tools, whoever wrote it."""
    _src, url, enc, _states, _times = _chain(tmp_path, [writer], "pubkey", gnupghome, duplicity_bin)
    signed = [*enc, "--sign-key", gnupghome["sign"]]
    r = duplicity(duplicity_bin, "restore", *signed, *_dup_common(tmp_path, "r"), url, tmp_path / "d", check=False)
    assert r.returncode != 0 and b"Volume was signed by key None" in r.stderr
    r = cairn("restore", *signed, "--archive-dir", tmp_path / "cache2", url, tmp_path / "c", check=False)
    assert r.returncode != 0 and b"not signed by" in r.stderr


def test_duplicity_continues_from_cairns_archive_dir(tmp_path, duplicity_bin):
    # the archive dir's signature file (ISA-L's gzip, where installed) is read by duplicity
    # itself: its incremental on cairn's chain uses cairn's cache, and its restore is whole
    src, url = tmp_path / "src", f"file://{tmp_path / 'remote'}"
    common = ["--no-encryption", "--archive-dir", tmp_path / "shared", "--name", "n"]
    write(str(src / "a"), b"first\n" * 5000)
    cairn("full", *common, src, url)
    cached = [n for n in os.listdir(tmp_path / "shared" / "n") if n.endswith(".sigtar.gz")]
    assert cached, "cairn keeps the signature file in the archive dir"
    write(str(src / "b"), b"second\n" * 5000)
    duplicity(duplicity_bin, "incremental", *common, src, url)
    duplicity(duplicity_bin, "restore", *common, url, tmp_path / "out")
    assert (tmp_path / "out" / "a").read_bytes() == b"first\n" * 5000
    assert (tmp_path / "out" / "b").read_bytes() == b"second\n" * 5000


def test_duplicity_reads_cairns_big_file_deltas_and_signatures(tmp_path, duplicity_bin):
    """A file big enough for cairn's delta in windows and its signature from the delta:
    duplicity restores every point, and its own incremental on cairn's signatures too."""
    src, url = tmp_path / "src", f"file://{tmp_path / 'remote'}"
    common = ["--no-encryption", "--archive-dir", tmp_path / "shared", "--name", "n"]
    rnd = random.Random(12)
    data = bytearray(rnd.randbytes(9 * (1 << 20) + 4321))
    write(str(src / "big.bin"), bytes(data))
    states = []

    def point(tool, action):
        time.sleep(1.1)
        write(str(src / "big.bin"), bytes(data))
        if tool == "cairn":
            cairn(action, *common, "--volsize", "2", src, url)
        else:
            duplicity(duplicity_bin, action, *common, "--volsize", "2", src, url)
        states.append((int(time.time()), bytes(data)))

    point("cairn", "full")
    data[5 << 20:(5 << 20) + 3000] = rnd.randbytes(3000)        # in place
    point("cairn", "incremental")
    data[1 << 20:1 << 20] = rnd.randbytes(777)                  # shifted after 1 MiB
    data += rnd.randbytes(50000)
    point("cairn", "incremental")
    data[7 << 20:(7 << 20) + 10] = b"duplicity!"                # against cairn's signature
    point("duplicity", "incremental")
    for i, (when, content) in enumerate(states):
        out = tmp_path / f"out-{i}"
        duplicity(duplicity_bin, "restore", *common, "--time", when, url, out)
        assert (out / "big.bin").read_bytes() == content, f"point {i}"


@pytest.mark.parametrize("writer", ["duplicity", "cairn"])
def test_in_place_change_of_a_file_with_repeated_blocks(tmp_path, duplicity_bin, writer):
    """A big file of runs of zeros and repeated records, changed in place (a database file, a
    disk image): librsync's delta copies repeated blocks from where it first saw them, and
    cairn applies it over the restored basis. Restore and verify --compare-data agree with the
    source, for duplicity's own deltas and for cairn's; duplicity restores cairn's."""
    src, url = tmp_path / "src", f"file://{tmp_path / 'remote'}"
    common = ["--archive-dir", tmp_path / "cache", "--name", "n"]
    rnd = random.Random(21)
    records = [bytes(4096), rnd.randbytes(4096)]
    data = bytearray(b"".join(records[0] if rnd.random() < 0.6 else
                              (records[1] if rnd.random() < 0.5 else rnd.randbytes(4096)) for _i in range(1500)))
    write(str(src / "disk.img"), bytes(data))

    def run(*args):
        return cairn(*args) if writer == "cairn" else duplicity(duplicity_bin, *args)

    run("full", *common, src, url)
    time.sleep(1.1)
    data[(1 << 20) + 100:(1 << 20) + 70_000] = rnd.randbytes(69_900)
    data[4 << 20:(4 << 20) + 8] = b"changed!"
    write(str(src / "disk.img"), bytes(data))
    run("incremental", *common, src, url)
    cairn("restore", *common, url, tmp_path / "out")
    assert (tmp_path / "out" / "disk.img").read_bytes() == bytes(data)
    verify = cairn("verify", "--compare-data", *common, url, src)
    assert b"0 difference(s) found" in verify.stdout, verify.stdout
    if writer == "cairn":
        duplicity(duplicity_bin, "restore", *common, url, tmp_path / "dup-out")
        assert (tmp_path / "dup-out" / "disk.img").read_bytes() == bytes(data)
