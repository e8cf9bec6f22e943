# SPDX-License-Identifier: GPL-3.0-or-later
"""Encryption and other options with real gpg: hidden recipients, signing, passphrase files,
--gpg-options, the lock, device files."""
import fcntl
import hashlib
import os
import stat

import pytest

from treeutil import cairn, diff_snapshots, make_hard_tree, snapshot, write


def test_hidden_recipient_and_signature_checked(tmp_path, gnupghome):
    src = make_hard_tree(tmp_path / "src")
    url = f"file://{tmp_path}/target"
    common = ["--archive-dir", tmp_path / "cache"]
    cairn("full", *common, "--hidden-encrypt-key", gnupghome["enc"], "--sign-key", gnupghome["sign"],
          src, url, passphrase=None)
    dest = tmp_path / "ok"
    cairn("restore", *common, "--sign-key", gnupghome["sign"], url, dest, passphrase=None)
    assert diff_snapshots(snapshot(src), snapshot(dest)) == []
    # demanding another signer fails with duplicity's code, and writes nothing
    r = cairn("restore", "--archive-dir", tmp_path / "cache2", "--sign-key", gnupghome["enc"], url,
              tmp_path / "bad", check=False, passphrase=None)
    assert r.returncode == 22, r.stderr
    assert b"not signed by" in r.stderr and b"Traceback" not in r.stderr
    assert not (tmp_path / "bad").exists() or os.listdir(tmp_path / "bad") == []


def test_unsigned_archive_fails_signature_check(tmp_path, gnupghome):
    src = tmp_path / "src"
    write(str(src / "a"), b"a")
    url = f"file://{tmp_path}/target"
    cairn("full", "--archive-dir", tmp_path / "c", "--encrypt-key", gnupghome["enc"], src, url, passphrase=None)
    r = cairn("restore", "--archive-dir", tmp_path / "c2", "--sign-key", gnupghome["sign"], url,
              tmp_path / "out", check=False, passphrase=None)
    assert r.returncode == 22


def test_passphrase_file_and_gpg_options(tmp_path, gnupghome):
    src = tmp_path / "src"
    write(str(src / "a"), b"a" * 1000)
    pf = tmp_path / "pass"
    pf.write_text("from a file\n")
    os.chmod(pf, 0o600)
    url = f"file://{tmp_path}/target"
    common = ["--archive-dir", tmp_path / "c", "--passphrase-file", pf]
    cairn("full", *common, "--gpg-options", "--cipher-algo AES128", src, url, passphrase=None)
    vol = next(p for p in os.listdir(tmp_path / "target") if ".vol1." in p)
    # the first packet is the symmetric-key packet (tag 3, old or new format, one length
    # byte): version 4, then the cipher, 7 = AES128 (gpg's default would be 9, AES256)
    with open(tmp_path / "target" / vol, "rb") as f:
        head = f.read(4)
    assert head[0] in (0x8C, 0xC3), head
    assert (head[2], head[3]) == (4, 7), head
    cairn("restore", *common, url, tmp_path / "out", passphrase=None)
    assert (tmp_path / "out" / "a").read_bytes() == b"a" * 1000
    r = cairn("restore", "--archive-dir", tmp_path / "c", url, tmp_path / "out2", check=False,
              passphrase="wrong")
    assert r.returncode == 31


def test_second_run_is_refused_while_the_lock_is_held(tmp_path):
    src = tmp_path / "src"
    write(str(src / "a"), b"a")
    url = f"file://{tmp_path}/target"
    cache = tmp_path / "cache"
    cairn("full", "--no-encryption", "--archive-dir", cache, src, url)
    name = hashlib.md5(url.encode()).hexdigest()
    with open(cache / name / "lockfile", "r+") as f:
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)      # as a running duplicity would hold it
        r = cairn("incremental", "--no-encryption", "--archive-dir", cache, src, url, check=False)
        assert r.returncode == 23 and b"another backup is running" in r.stderr
    cairn("incremental", "--no-encryption", "--archive-dir", cache, src, url)


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_device_files_stored_and_excludable(tmp_path):
    src = tmp_path / "src"
    write(str(src / "a"), b"a")
    os.mknod(src / "null-like", stat.S_IFCHR | 0o644, os.makedev(1, 3))
    url = f"file://{tmp_path}/t1"
    cairn("full", "--no-encryption", "--archive-dir", tmp_path / "c", src, url)
    cairn("restore", "--no-encryption", "--archive-dir", tmp_path / "c", url, tmp_path / "out")
    st = os.lstat(tmp_path / "out" / "null-like")
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
    url2 = f"file://{tmp_path}/t2"
    cairn("full", "--no-encryption", "--exclude-device-files", "--archive-dir", tmp_path / "c", src, url2)
    listed = cairn("list-current-files", "--no-encryption", "--archive-dir", tmp_path / "c", url2).stdout
    assert b"null-like" not in listed and b" a\n" in listed
