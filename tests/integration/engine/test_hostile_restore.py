# SPDX-License-Identifier: GPL-3.0-or-later
"""Crafted archives cannot steer a restore outside its target (issue 9, finding 1).

Each archive is written here by hand, as an attacker with only the public key (or the
passphrase) and write access to the target could: symmetric, public-key and unencrypted, on a
file:// and an sftp target, restored whole and with --path-to-restore. Whatever the archive
says, nothing outside the restore target may change, and the run ends with exit 60.
"""
import gzip
import hashlib
import io
import os
import resource
import subprocess
import sys
import tarfile
import zlib

import pytest

from treeutil import PASSPHRASE, ROOT, cairn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "backends"))
from servers import Sshd  # noqa: E402

from cairn import naming  # noqa: E402
from cairn.manifest import Manifest, VolumeInfo  # noqa: E402

T_FULL = 1_700_000_000
T_INC = 1_700_000_600


# --- writing an archive by hand ----------------------------------------------------------------

def _ti(name, type_=tarfile.REGTYPE, size=0, linkname="", mode=0o644):
    ti = tarfile.TarInfo(name)
    ti.type, ti.size, ti.linkname, ti.mode, ti.mtime = type_, size, linkname, mode, T_FULL
    return ti


def _tar(entries):
    """Tar bytes of [(TarInfo, data)] in exactly the order given, duplicates included."""
    out = io.BytesIO()
    for ti, data in entries:
        out.write(ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        if data:
            out.write(data)
            out.write(b"\0" * (-len(data) % 512))
    out.write(b"\0" * 1024)
    return out.getvalue()


class Sealer:
    """Encrypts (or gzips) archive files as cairn and duplicity would for one mode."""

    def __init__(self, mode, keys=None):
        self.mode = mode
        self.keys = keys

    @property
    def suffix(self):
        return ".gz" if self.mode == "none" else ".gpg"

    def _gpg(self, data, *args):
        home = self.keys["home"]
        base = ["gpg", "--homedir", home, "--batch", "--no-tty", "--trust-model", "always", "-o", "-"]
        if self.mode == "symmetric":
            pass_file = os.path.join(home, "crafted-passphrase")
            with open(pass_file, "w") as f:
                f.write(PASSPHRASE + "\n")
            args = ("--pinentry-mode", "loopback", "--passphrase-file", pass_file, "--symmetric", *args)
        else:
            args = ("--encrypt", "-r", self.keys["enc"], *args)
        return subprocess.run([*base, *args], input=data, capture_output=True, check=True).stdout

    def volume(self, data):
        return gzip.compress(data, 1) if self.mode == "none" else self._gpg(data)

    def manifest(self, data):
        return data if self.mode == "none" else self._gpg(data)

    def sigtar(self, data):
        return gzip.compress(data) if self.mode == "none" else self._gpg(data)


def write_set(target_dir, sealer, entries, *, inc=False, raw_volume=None):
    """One backup set (a single volume, its manifest, an empty sigtar) on the target dir."""
    os.makedirs(target_dir, exist_ok=True)
    names = dict(start_time=T_FULL, end_time=T_INC) if inc else dict(time=T_FULL)
    vol = raw_volume if raw_volume is not None else sealer.volume(_tar(entries))
    vname = naming.volume_name(1, suffix=sealer.suffix, **names)
    with open(os.path.join(target_dir, vname), "wb") as f:
        f.write(vol)
    m = Manifest(hostname="crafted", localdir=b"/src")
    m.add_volume(VolumeInfo(1, (), None, (b"zzz",), None, {"SHA1": hashlib.sha1(vol).hexdigest()}))
    man_suffix = "" if sealer.mode == "none" else ".gpg"
    with open(os.path.join(target_dir, naming.manifest_name(suffix=man_suffix, **names)), "wb") as f:
        f.write(sealer.manifest(m.to_bytes()))
    with open(os.path.join(target_dir, naming.signature_name(suffix=sealer.suffix, **names)), "wb") as f:
        f.write(sealer.sigtar(_tar([])))


# --- the attacks -------------------------------------------------------------------------------

PAYLOAD = b"owned\n"


def _attack(case, outside):
    """[[entries of the full set], [entries of an incremental]?] for each attack."""
    root = (_ti("snapshot/.", tarfile.DIRTYPE, mode=0o755), None)
    out = str(outside)
    if case == "root-is-symlink":
        return [[(_ti("snapshot/.", tarfile.SYMTYPE, linkname=out), None),
                 (_ti("snapshot/pwned", size=len(PAYLOAD)), PAYLOAD)]]
    if case == "dir-then-symlink":
        return [[root, (_ti("snapshot/a", tarfile.DIRTYPE, mode=0o777), None),
                 (_ti("snapshot/a", tarfile.SYMTYPE, linkname=out), None),
                 (_ti("snapshot/a/victim", size=len(PAYLOAD)), PAYLOAD)]]
    if case == "symlink-in-later-set":
        return [[root, (_ti("snapshot/a", tarfile.DIRTYPE, mode=0o777), None),
                 (_ti("snapshot/a/victim", size=len(PAYLOAD)), PAYLOAD)],
                [(_ti("snapshot/a", tarfile.SYMTYPE, linkname=out), None)]]
    if case == "symlink-then-child":
        return [[root, (_ti("snapshot/sub", tarfile.SYMTYPE, linkname=out), None),
                 (_ti("snapshot/sub/pwned", size=len(PAYLOAD)), PAYLOAD)]]
    raise AssertionError(case)


def _state(path):
    """Everything about a directory an escape could change: names, modes, contents."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [".", *dirnames, *filenames]:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            data = open(p, "rb").read() if os.path.isfile(p) and not os.path.islink(p) else None
            out[os.path.relpath(p, path)] = (st.st_mode, st.st_uid, st.st_mtime_ns, data)
    return out


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = Sshd(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@pytest.fixture(params=["file", "sftp"])
def where(request, tmp_path):
    """(directory the archive files go into, URL to restore from, extra CLI options)."""
    target = tmp_path / "target"
    if request.param == "file":
        return target, f"file://{target}", []
    server = request.getfixturevalue("sshd")
    return target, server.url(target), ["--ssh-options", server.ssh_options]


def _crypto_args(mode, keys):
    if mode == "none":
        return ["--no-encryption"]
    if mode == "pubkey":
        return ["--encrypt-key", keys["enc"]]
    return []


@pytest.mark.parametrize("mode", ["none", "symmetric", "pubkey"])
@pytest.mark.parametrize("case", ["root-is-symlink", "dir-then-symlink", "symlink-in-later-set",
                                  "symlink-then-child"])
def test_crafted_archive_cannot_write_outside(tmp_path, gnupghome, where, mode, case):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.chmod(outside, 0o755)
    (outside / "keep.txt").write_bytes(b"precious\n")
    before = _state(outside)
    target_dir, url, extra = where
    sealer = Sealer(mode, gnupghome)
    sets = _attack(case, outside)
    for i, entries in enumerate(sets):
        write_set(target_dir, sealer, entries, inc=i > 0)
    common = [*_crypto_args(mode, gnupghome), "--archive-dir", tmp_path / "cache", *extra]
    runs = [("whole", [])]
    if case == "symlink-then-child":
        runs.append(("path", ["--path-to-restore", "sub"]))
    for label, args in runs:
        dest = tmp_path / f"restore-{label}"
        r = cairn("restore", *common, *args, url, dest, check=False)
        assert r.returncode == 60, (label, r.stderr)
        assert b"Traceback" not in r.stderr and b"refus" in r.stderr.lower(), r.stderr
        assert _state(outside) == before, label
        assert not (tmp_path / "pwned").exists()
        assert not os.path.islink(dest) or label == "path"


def test_restore_replaces_a_symlink_it_did_not_make_rather_than_follow_it(tmp_path):
    """--force onto a tree holding a symlink where the archive has a directory: the symlink is
    replaced by the directory, and nothing is written where it pointed."""
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "target"
    sealer = Sealer("none")
    write_set(target, sealer, [(_ti("snapshot/.", tarfile.DIRTYPE, mode=0o755), None),
                               (_ti("snapshot/a", tarfile.DIRTYPE, mode=0o777), None),
                               (_ti("snapshot/a/f", size=len(PAYLOAD)), PAYLOAD)])
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside, dest / "a")
    cairn("restore", "--no-encryption", "--force", "--archive-dir", tmp_path / "cache",
          f"file://{target}", dest)
    assert os.listdir(outside) == [] and oct(os.stat(outside).st_mode & 0o777) != oct(0o777)
    assert not os.path.islink(dest / "a") and (dest / "a" / "f").read_bytes() == PAYLOAD
    assert os.stat(dest / "a").st_mode & 0o777 == 0o777


def test_a_restored_symlink_is_never_written_through(tmp_path):
    """A legitimate archive with a symlink to a directory restores the link, not through it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(b"inside\n")
    os.symlink(outside, src / "link")
    url = f"file://{tmp_path / 'target'}"
    cairn("full", "--no-encryption", "--archive-dir", tmp_path / "cache", src, url)
    dest = tmp_path / "dest"
    cairn("restore", "--no-encryption", "--archive-dir", tmp_path / "cache", url, dest)
    assert os.readlink(dest / "link") == str(outside) and os.listdir(outside) == []
    assert (dest / "d" / "f").read_bytes() == b"inside\n"


# --- sizes the headers claim -------------------------------------------------------------------

def _peak_rss_of(args):
    """Exit status, stderr and peak RSS (KiB) of ``cairn args`` run in a fresh process."""
    code = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True); "
            "sys.stderr.buffer.write(r.stderr); "
            "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "plugins", "module_utils"))
    r = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "cairn.cli", *map(str, args)],
                       env=env, capture_output=True, check=False)
    rc, rss = r.stdout.split()
    return int(rc), r.stderr, int(rss)


def _zeros_member_volume(size):
    """A gzipped difftar with one member of ``size`` zero bytes, built without holding it."""
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)
    parts = [comp.compress(_ti("snapshot/.", tarfile.DIRTYPE).tobuf(tarfile.PAX_FORMAT)),
             comp.compress(_ti("snapshot/big", size=size).tobuf(tarfile.PAX_FORMAT))]
    block = bytes(1 << 20)
    for _mib in range(size >> 20):
        parts.append(comp.compress(block))
    parts.append(comp.compress(bytes(1024)))
    parts.append(comp.flush())
    return b"".join(parts)


def test_a_huge_member_streams_in_bounded_memory(tmp_path):
    """1 GiB in one member, a few MB on the target: restored in bounded memory, not read whole
    (duplicity takes 40 MB for it; the member was read into memory before, 2.1 GB)."""
    size = 1 << 30
    target = tmp_path / "target"
    write_set(target, Sealer("none"), None, raw_volume=_zeros_member_volume(size))
    dest = tmp_path / "dest"
    rc, err, rss_kib = _peak_rss_of(["restore", "--no-encryption", "--archive-dir", tmp_path / "cache",
                                     f"file://{target}", dest])
    assert rc == 0, err
    assert os.path.getsize(dest / "big") == size
    assert rss_kib < 150 * 1024, f"peak RSS {rss_kib} KiB"


def test_a_size_past_the_end_of_the_volume_is_corrupt_not_memory(tmp_path):
    """A header claiming 10**15 bytes: the volume is corrupt (the restore goes past it and ends
    incomplete, exit 63, naming the file), no MemoryError, no allocation."""
    target = tmp_path / "target"
    write_set(target, Sealer("none"), [(_ti("snapshot/.", tarfile.DIRTYPE), None),
                                       (_ti("snapshot/f", size=10 ** 15), b"only this")])
    rc, err, rss_kib = _peak_rss_of(["restore", "--no-encryption", "--archive-dir", tmp_path / "cache",
                                     f"file://{target}", tmp_path / "dest"])
    assert rc == 63, err
    assert b"truncated" in err and b"Traceback" not in err and b"MemoryError" not in err
    assert b"lost: f (" in err
    assert rss_kib < 150 * 1024
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < 2 << 20
