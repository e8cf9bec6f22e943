# SPDX-License-Identifier: GPL-3.0-or-later
"""Errors keep their cause (issue 10, item 6): a host that only encrypts skips the remote
manifest check for want of a secret key, and for nothing else."""
import os
import random
import re
import struct
import subprocess

import pytest

from treeutil import cairn


def _public_only_home(keys, tmp_path):
    """A GnuPG home holding only the public half of the test encryption key."""
    home = tmp_path / "public-only"
    home.mkdir(mode=0o700)
    public = subprocess.run(["gpg", "--homedir", keys["home"], "--batch", "--export", keys["enc"]],
                            capture_output=True, check=True).stdout
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--import"], input=public, capture_output=True,
                   check=True)
    return str(home)


def _literal_packet_named(name):
    """An OpenPGP literal data packet whose file name gpg echoes in its status output."""
    body = b"b" + bytes([len(name)]) + name + struct.pack(">I", 0) + b"hello\n"
    return bytes([0xC0 | 11, len(body)]) + body


NOT_A_MESSAGE = {
    "random bytes": random.Random(9).randbytes(300),
    # gpg echoes the name; bytes that are not UTF-8 once killed python-gnupg's status reader
    # and the run ended in "unexpected error" (exit 30)
    "a file name that is not UTF-8": _literal_packet_named(b"\xca\xfe\xff.txt") + b"\x8c\x05garbage",
}


@pytest.mark.parametrize("garbage", NOT_A_MESSAGE.values(), ids=NOT_A_MESSAGE.keys())
def test_a_corrupt_remote_manifest_is_not_taken_for_a_missing_secret_key(tmp_path, gnupghome, garbage):
    home = _public_only_home(gnupghome, tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"one\n")
    url = f"file://{tmp_path / 'target'}"
    common = ["--encrypt-key", gnupghome["enc"], "--archive-dir", tmp_path / "cache"]
    env = {"GNUPGHOME": home}
    try:
        cairn("full", *common, src, url, env=env, passphrase=None)
        (src / "a.txt").write_bytes(b"two\n")
        # no secret key here: the remote manifest cannot be read, the cache is relied on
        cairn("incremental", *common, src, url, env=env, passphrase=None)
        # a remote manifest that is not even an OpenPGP message is no such case
        target = tmp_path / "target"
        newest = sorted(n for n in os.listdir(target) if ".manifest" in n)[-1]
        (target / newest).write_bytes(garbage)
        (src / "a.txt").write_bytes(b"three\n")
        before = sorted(os.listdir(target))
        r = cairn("incremental", *common, src, url, env=env, passphrase=None, check=False)
        assert r.returncode == 31, r.stderr
        # the built-in reader's words (it reads manifests of public-key archives too), or gpg's
        assert re.search(rb"corrupt (or not an )?OpenPGP message", r.stderr), r.stderr
        assert b"Traceback" not in r.stderr and b"secret key" not in r.stderr
        assert sorted(n for n in os.listdir(target) if not n.startswith("cairn-lock")) == before
    finally:
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True, check=False)
