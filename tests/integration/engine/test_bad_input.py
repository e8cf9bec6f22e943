# SPDX-License-Identifier: GPL-3.0-or-later
"""Bad input: clear message, documented exit code, nothing lost, nothing written outside."""
import gzip
import io
import os
import subprocess
import tarfile

import pytest

from treeutil import cairn, make_hard_tree

from cairn import naming
from cairn.manifest import Manifest, VolumeInfo


def _listing(path):
    return sorted((n, os.path.getsize(os.path.join(path, n))) for n in os.listdir(path))


def test_wrong_passphrase(tmp_path, gnupghome):
    src = make_hard_tree(tmp_path / "src")
    target = tmp_path / "target"
    url = f"file://{target}"
    cache = ["--archive-dir", tmp_path / "cache"]
    cairn("full", *cache, src, url)
    before = _listing(target)
    bad = {"PASSPHRASE": "not the passphrase"}
    # restore: exit 31, a one-line reason, no traceback, nothing written
    r = cairn("restore", *cache, url, tmp_path / "out", env=bad, check=False)
    assert r.returncode == 31, r.stderr
    assert b"passphrase" in r.stderr.lower() and b"Traceback" not in r.stderr
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []
    # an incremental with the wrong passphrase is refused before anything is written
    with open(os.path.join(src, b"plain.txt"), "wb") as f:
        f.write(b"changed")
    r = cairn("incremental", *cache, src, url, env=bad, check=False)
    assert r.returncode == 31, r.stderr
    assert b"Traceback" not in r.stderr
    assert _listing(target) == before
    # and the right passphrase still works afterwards
    cairn("incremental", *cache, src, url)


def _flip_byte(path, offset=None):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(offset if offset is not None else size // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x40]))


@pytest.mark.parametrize("mode", ["symmetric", "none"])
def test_flipped_byte_is_named(tmp_path, gnupghome, mode):
    src = make_hard_tree(tmp_path / "src")
    target = tmp_path / "target"
    url = f"file://{target}"
    enc = ["--no-encryption"] if mode == "none" else []
    common = [*enc, "--archive-dir", tmp_path / "cache", "--volsize", "1"]
    cairn("full", *common, src, url)
    vol2 = next(n for n in os.listdir(target) if ".vol2.difftar" in n)
    _flip_byte(target / vol2)
    r = cairn("verify", *common, url, src, check=False)
    assert r.returncode == 21 and vol2.encode() in r.stderr, r.stderr
    # restore goes past it (issue 11): incomplete, the volume named with why
    r = cairn("restore", *common, url, tmp_path / "out", check=False)
    assert r.returncode == 63 and vol2.encode() in r.stderr and b"SHA1" in r.stderr, r.stderr
    assert b"Traceback" not in r.stderr


def _crafted_archive(target, entries):
    """A --no-encryption archive whose single volume holds ``entries`` [(TarInfo, data)]."""
    os.makedirs(target, exist_ok=True)
    t = 1_700_000_000
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    vol = gzip.compress(raw.getvalue())
    vname = naming.volume_name(1, time=t, suffix=".gz")
    with open(os.path.join(target, vname), "wb") as f:
        f.write(vol)
    import hashlib
    m = Manifest(hostname="evil", localdir=b"/src")
    m.add_volume(VolumeInfo(1, (), None, (b"zzz",), None, {"SHA1": hashlib.sha1(vol).hexdigest()}))
    with open(os.path.join(target, naming.manifest_name(time=t)), "wb") as f:
        f.write(m.to_bytes())
    sig = io.BytesIO()
    with tarfile.open(fileobj=sig, mode="w", format=tarfile.PAX_FORMAT):
        pass
    with open(os.path.join(target, naming.signature_name(time=t, suffix=".gz")), "wb") as f:
        f.write(gzip.compress(sig.getvalue()))


def _ti(name, type_=tarfile.REGTYPE, size=0, linkname=""):
    ti = tarfile.TarInfo(name)
    ti.type, ti.size, ti.linkname, ti.mode, ti.mtime = type_, size, linkname, 0o644, 1_700_000_000
    return ti


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink-out"])
def test_crafted_archive_cannot_escape(tmp_path, case):
    outside = tmp_path / "outside"
    outside.mkdir()
    payload = b"owned\n"
    root = _ti("snapshot/.", tarfile.DIRTYPE)
    if case == "dotdot":
        entries = [(root, None), (_ti("snapshot/../outside/pwned", size=len(payload)), payload)]
    elif case == "absolute":
        entries = [(root, None), (_ti(f"/{outside}/pwned", size=len(payload)), payload)]
    else:
        entries = [(root, None), (_ti("snapshot/link", tarfile.SYMTYPE, linkname=str(outside)), None),
                   (_ti("snapshot/link/pwned", size=len(payload)), payload)]
    target = tmp_path / "target"
    _crafted_archive(target, entries)
    dest = tmp_path / "restore"
    r = cairn("restore", "--no-encryption", "--archive-dir", tmp_path / "cache", f"file://{target}",
              dest, check=False)
    assert r.returncode != 0
    assert b"refus" in r.stderr.lower(), r.stderr
    assert b"Traceback" not in r.stderr
    assert os.listdir(outside) == []
    assert not (tmp_path / "pwned").exists()


def test_missing_source_and_bad_time(tmp_path):
    r = cairn("full", "--no-encryption", tmp_path / "nope", f"file://{tmp_path}/t", check=False)
    assert r.returncode == 13
    r = cairn("restore", "--no-encryption", "--time", "3d", f"file://{tmp_path}/t", tmp_path / "o",
              check=False)
    assert r.returncode == 23 and b"time string" in r.stderr.lower()
    r = cairn("restore", "--no-encryption", "--archive-dir", tmp_path / "c", f"file://{tmp_path}/empty",
              tmp_path / "o", check=False)
    assert r.returncode == 4
    r = cairn("frobnicate", "--no-encryption", check=False)
    assert r.returncode == 23


def test_unreadable_file_warns_and_goes_on(tmp_path):
    """Run as an unprivileged user: a file it cannot read is skipped, the rest is backed up."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    import pathlib
    import pwd
    import shutil
    import subprocess
    import sys
    import tempfile
    from treeutil import ROOT
    nobody = pwd.getpwnam("nobody")
    # pytest's tmp_path is private to root; nobody needs a path it can traverse
    base = pathlib.Path(tempfile.mkdtemp(prefix="cairn-unreadable-"))
    try:
        os.chmod(base, 0o755)
        src = base / "src"
        src.mkdir()
        (src / "ok.txt").write_text("readable")
        (src / "secret.txt").write_text("not for you")
        os.chmod(src / "secret.txt", 0o600)      # owned by root: nobody cannot read it
        work = base / "work"
        work.mkdir()
        os.chown(work, nobody.pw_uid, nobody.pw_gid)
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "plugins", "module_utils"), HOME=str(work))
        r = subprocess.run(["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                            "--clear-groups", sys.executable, "-m", "cairn.cli", "full", "--no-encryption",
                            "--archive-dir", str(work / "cache"), "--tempdir", str(work), str(src),
                            f"file://{work}/target"], env=env, capture_output=True, check=False)
        assert r.returncode == 9, r.stderr
        assert b"secret.txt" in r.stderr
        listed = cairn("list-current-files", "--no-encryption", "--archive-dir", tmp_path / "c2",
                       f"file://{work}/target").stdout
        assert b"ok.txt" in listed and b"secret.txt" not in listed
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs: a disk that fills up (needs root to mount)."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("needs root to mount a small tmpfs")
        pytest.skip("needs root to mount a small tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def _big_backup(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(3 << 20))
    (src / "b.txt").write_bytes(b"b" * 100)
    url = f"file://{tmp_path / 'target'}"
    cache = ["--archive-dir", tmp_path / "cache"]
    cairn("full", *cache, src, url)
    return url, cache


def test_full_restore_target_says_so_with_exit_62(tmp_path, small_disk):
    url, cache = _big_backup(tmp_path)
    r = cairn("restore", *cache, url, small_disk / "out", check=False)
    assert r.returncode == 62, r.stderr
    assert b"cannot restore " + str(small_disk / "out" / "a.bin").encode() + b": No space left on device" in r.stderr
    assert b"Traceback" not in r.stderr and b"gpg returned" not in r.stderr


def test_full_temp_dir_says_so_with_exit_62(tmp_path, small_disk):
    """gpg reports the decryption good but cannot write all of it: a truncated volume must not
    be restored as if it were whole."""
    url, cache = _big_backup(tmp_path)
    r = cairn("restore", "--openpgp-engine", "gpg", *cache, url, tmp_path / "out", env={"TMPDIR": str(small_disk)},
              check=False)
    assert r.returncode == 62, r.stderr
    assert b"No space left on device (the temp dir" in r.stderr and b"Traceback" not in r.stderr
    assert not (tmp_path / "out" / "a.bin").exists()


def test_the_built_in_decryption_needs_no_temp_space(tmp_path, small_disk):
    """Volumes the built-in OpenPGP path decrypts reach the parser through memory: a 3 MiB
    file restores with a 1 MiB temp dir."""
    url, cache = _big_backup(tmp_path)
    r = cairn("restore", *cache, url, tmp_path / "out", env={"TMPDIR": str(small_disk)}, check=False)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "a.bin").read_bytes() == (tmp_path / "src" / "a.bin").read_bytes()


@pytest.mark.parametrize("key, value", [("size", "abc"), ("uid", "root"), ("mtime", "nan"),
                                        ("mtime", "1e20"), ("uid", str(2**40))])
def test_crafted_pax_values_exit_61(tmp_path, key, value):
    """Issue 9: PAX values no file can have are a corrupt volume (verify: 61), not a crash (30);
    restore goes past such a volume (issue 11) and says it is incomplete (63)."""
    entry = _ti("snapshot/a", size=3)
    entry.pax_headers = {key: value}
    _crafted_archive(tmp_path / "target", [(_ti("snapshot/.", tarfile.DIRTYPE), None), (entry, b"abc")])
    url = f"file://{tmp_path / 'target'}"
    os.makedirs(tmp_path / "src", exist_ok=True)
    r = cairn("verify", "--no-encryption", "--archive-dir", tmp_path / "cache", url, tmp_path / "src", check=False)
    assert r.returncode == 61, r.stderr
    assert f"PAX {key}".encode() in r.stderr or key.encode() in r.stderr, r.stderr
    r = cairn("restore", "--no-encryption", "--archive-dir", tmp_path / "cache", url, tmp_path / "out", check=False)
    assert r.returncode == 63, r.stderr
    assert f"PAX {key}".encode() in r.stderr or key.encode() in r.stderr, r.stderr
    assert b"Traceback" not in r.stderr and b"unexpected error" not in r.stderr


def test_manifest_hash_line_not_utf8_exits_6(tmp_path):
    """Issue 9: a manifest hash line with bytes that are not UTF-8 is an unreadable manifest (6)."""
    target = tmp_path / "target"
    _crafted_archive(target, [(_ti("snapshot/.", tarfile.DIRTYPE), None)])
    manifest = target / naming.manifest_name(time=1_700_000_000)
    data = manifest.read_bytes()
    manifest.write_bytes(data.replace(b"Hash SHA1 ", b"Hash SHA1 \xff\xfe"))
    r = cairn("restore", "--no-encryption", "--archive-dir", tmp_path / "cache", f"file://{target}",
              tmp_path / "out", check=False)
    assert r.returncode == 6, r.stderr
    assert b"manifest" in r.stderr and b"Traceback" not in r.stderr
