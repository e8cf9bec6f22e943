# SPDX-License-Identifier: GPL-3.0-or-later
"""verify never passes on nothing (issue 9, finding 5): a manifest or signature file it cannot
read fails, and volumes holding fewer files than the backup lists fail."""
import gzip
import io
import json
import os
import subprocess
import tarfile

import pytest

from treeutil import PASSPHRASE, cairn
from test_hostile_restore import Sealer, _ti, write_set

from cairn import librsync, naming


def _backup(tmp_path, mode):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"alpha\n")
    (src / "d" / "b.txt").write_bytes(b"beta\n")
    url = f"file://{tmp_path / 'target'}"
    enc = ["--no-encryption"] if mode == "none" else []
    cairn("full", *enc, "--archive-dir", tmp_path / "cache", src, url)
    return src, url, enc


def _seal(mode, data, home):
    if mode == "none":
        return data
    pw = os.path.join(home, "pw")
    with open(pw, "w") as f:
        f.write(PASSPHRASE + "\n")
    return subprocess.run(["gpg", "--homedir", home, "--batch", "--pinentry-mode", "loopback",
                           "--passphrase-file", pw, "--symmetric", "-o", "-"], input=data,
                          capture_output=True, check=True).stdout


@pytest.mark.parametrize("mode", ["none", "symmetric"])
@pytest.mark.parametrize("content", [b"", b"not a manifest at all\n\x00\xff garbage"])
def test_an_unreadable_manifest_fails_verify(tmp_path, gnupghome, mode, content):
    src, url, enc = _backup(tmp_path, mode)
    target = tmp_path / "target"
    manifest = next(n for n in os.listdir(target) if ".manifest" in n)
    (target / manifest).write_bytes(_seal(mode, content, gnupghome["home"]))
    r = cairn("verify", *enc, "--archive-dir", tmp_path / "fresh-cache", url, src, check=False)
    assert r.returncode == 6, r.stderr
    assert b"manifest" in r.stderr.lower() and b"Traceback" not in r.stderr


@pytest.mark.parametrize("mode", ["none", "symmetric"])
def test_an_unreadable_signature_file_fails_verify(tmp_path, gnupghome, mode):
    src, url, enc = _backup(tmp_path, mode)
    target = tmp_path / "target"
    sig = next(n for n in os.listdir(target) if ".sigtar" in n)
    garbage = gzip.compress(b"\x01" * 2000) if mode == "none" else _seal(mode, b"\x01" * 2000, gnupghome["home"])
    (target / sig).write_bytes(garbage)
    r = cairn("verify", *enc, "--archive-dir", tmp_path / "fresh-cache", url, src, check=False)
    assert r.returncode == 6, r.stderr
    assert b"signature file" in r.stderr and b"Traceback" not in r.stderr


def test_volumes_holding_fewer_files_than_the_backup_fail_verify(tmp_path):
    """A set whose volume holds one file where its signatures list three: not a pass."""
    target = tmp_path / "target"
    sealer = Sealer("none")
    write_set(target, sealer, [(_ti("snapshot/.", tarfile.DIRTYPE, mode=0o755), None),
                               (_ti("snapshot/a", size=3), b"abc")])
    sig = io.BytesIO()
    with tarfile.open(fileobj=sig, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(_ti("snapshot/", tarfile.DIRTYPE, mode=0o755))
        for name in ("a", "b", "c"):
            data = librsync.signature(b"abc")
            tf.addfile(_ti(f"signature/{name}", size=len(data)), io.BytesIO(data))
    (target / naming.signature_name(time=1_700_000_000, suffix=".gz")).write_bytes(gzip.compress(sig.getvalue()))
    r = cairn("verify", "--no-encryption", "--archive-dir", tmp_path / "cache", f"file://{target}",
              tmp_path / "nowhere", check=False)
    assert r.returncode == 21, r.stderr
    assert b"hold 2 of the 4 files" in r.stderr and b"Traceback" not in r.stderr


def test_verify_says_how_many_files_the_backup_holds(tmp_path):
    src, url, enc = _backup(tmp_path, "none")
    r = cairn("verify", *enc, "--archive-dir", tmp_path / "cache", url, src)
    assert b"4 file(s) compared of 4 in the backup, 0 difference(s)" in r.stdout, r.stdout   # ., a.txt, d, d/b.txt
    r = cairn("verify", *enc, "--json", "--path-to-restore", "d", "--archive-dir", tmp_path / "cache", url, src)
    result = json.loads(r.stdout)
    assert (result["compared"], result["files_in_backup"]) == (2, 2)
