# SPDX-License-Identifier: GPL-3.0-or-later
"""Restore past a damaged volume (issue 11, item 5).

A volume deleted, truncated or bit-flipped does not stop a restore: every file that does not
need it comes back equal to the source, the ones that do are listed exactly (path and volume)
and the run exits 63. What each volume held is worked out here from the volumes themselves,
decoded with gpg or gzip and read with Python's tarfile before the damage, never from cairn.
verify still fails on such a volume, an archive that tries to escape still ends with exit 60,
and an interrupted restore run again keeps the files it had completed.
"""
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time

import pytest

from treeutil import PASSPHRASE, ROOT, cairn, diff_snapshots, snapshot, write
from test_hostile_restore import Sealer, _tar, _ti, _state

from cairn import naming
from cairn.manifest import Manifest, VolumeInfo

MTIME = 1_650_000_000


# --- a chain whose volumes are worth damaging ----------------------------------------------------

def _make_source(src):
    """Small files before and after a file that spans four 1 MiB volumes, so that one volume
    holds only that file's chunks and the next holds its end and many small files."""
    for i in range(12):
        write(os.path.join(src, "a-dir", f"f{i:02d}"), os.urandom(40_000), MTIME + i)
    write(os.path.join(src, "b-big.bin"), os.urandom(3 * (1 << 20) + 12345), MTIME)
    for i in range(30):
        write(os.path.join(src, "c-dir", f"f{i:02d}"), os.urandom(40_000), MTIME + i)
    os.symlink("f00", os.path.join(src, "c-dir", "link"))
    os.makedirs(os.path.join(src, "c-dir", "sub"))
    os.chmod(os.path.join(src, "c-dir", "sub"), 0o750)
    write(os.path.join(src, "d.txt"), b"last\n", MTIME)
    os.chmod(os.path.join(src, "a-dir", "f01"), 0o600)


def _change_source(src):
    """An incremental's worth of changes: deltas, a deletion, a type change, a new file."""
    for name in ("a-dir/f03", "c-dir/f05"):
        path = os.path.join(src, name)
        with open(path, "r+b") as f:
            f.seek(1000)
            f.write(b"changed in the incremental")
        os.utime(path, (MTIME + 500, MTIME + 500))
    os.unlink(os.path.join(src, "c-dir", "f06"))
    os.unlink(os.path.join(src, "c-dir", "f07"))
    os.symlink("f08", os.path.join(src, "c-dir", "f07"))
    write(os.path.join(src, "c-dir", "new.txt"), b"new in the incremental\n", MTIME + 600)
    os.utime(os.path.join(src, "c-dir"), (MTIME + 700, MTIME + 700))


class Chain:
    """A full (and optionally an incremental) of the same source on a file:// target."""

    def __init__(self, tmp_path, mode, incremental=True):
        self.tmp_path = tmp_path
        self.mode = mode
        self.src = tmp_path / "src"
        self.target = tmp_path / "target"
        self.url = f"file://{self.target}"
        self.enc = ["--no-encryption"] if mode == "none" else []
        _make_source(self.src)
        cairn("full", *self.enc, "--volsize", "1", "--archive-dir", tmp_path / "cache", self.src, self.url)
        if incremental:
            time.sleep(1.1)          # the incremental's time must differ from the full's
            _change_source(self.src)
            cairn("incremental", *self.enc, "--volsize", "1", "--archive-dir", tmp_path / "cache",
                  self.src, self.url)
        self.source = snapshot(self.src)
        self.members = {name: volume_members(self.target / name, mode) for name in self.volume_names()}

    def volume_names(self, kind=None):
        """Volume names in chain order: the full's by number, then the incremental's."""
        names = [n for n in os.listdir(self.target) if ".difftar" in n]
        if kind:
            names = [n for n in names if n.startswith(f"duplicity-{kind}.")]
        return sorted(names, key=lambda n: (not n.startswith("duplicity-full."), naming.parse(n).volume))

    def restore(self, dest, *args, check=False):
        return cairn("restore", *self.enc, "--json", "--archive-dir", self.tmp_path / "fresh-cache", *args,
                     self.url, dest, check=check)


def volume_members(path, mode):
    """[(kind, path bytes)] of a volume file, decoded by gpg or gzip and read by tarfile."""
    data = open(path, "rb").read()
    if mode == "none":
        data = gzip.decompress(data)
    else:
        pass_file = os.path.join(os.environ["GNUPGHOME"], "test-passphrase")
        with open(pass_file, "w") as f:
            f.write(PASSPHRASE + "\n")
        data = subprocess.run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase-file", pass_file,
                               "--decrypt"], input=data, capture_output=True, check=True).stdout
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:", encoding="utf-8", errors="surrogateescape") as tf:
        for ti in tf:
            parts = [p for p in os.fsencode(ti.name).split(b"/") if p not in (b"", b".")]
            kind = parts[0].decode()
            rel = parts[1:-1] if kind.startswith("multivol_") else parts[1:]
            out.append((kind.replace("multivol_", ""), b"/".join(rel) or b"."))
    return out


def expected_lost(chain, damaged):
    """The paths whose newest version needs the ``damaged`` volume: every path it holds,
    unless a later set of the chain has a snapshot or deletion of it (what restore uses)."""
    names = chain.volume_names()
    later_sets = [n for n in names if _set_of(n) != _set_of(damaged) and names.index(n) > names.index(damaged)]
    rebased = {p for n in later_sets for kind, p in chain.members[n] if kind in ("snapshot", "deleted")}
    return {p for _kind, p in chain.members[damaged]} - rebased


def _set_of(name):
    return name.split(".vol")[0]


def damage(path, how):
    if how == "deleted":
        os.unlink(path)
    elif how == "truncated":
        os.truncate(path, os.path.getsize(path) // 2)
    else:
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) // 2)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 0x10]))


def check_partial_restore(chain, dest, r, damaged, expected):
    """Exit 63; ``lost`` is exactly ``expected`` (each needing ``damaged``); every other path
    equals the source; no lost file was written in any version."""
    assert r.returncode == 63, r.stderr
    result = json.loads(r.stdout)
    assert result["exit_code"] == 63 and result["incomplete"] is True
    lost = {os.fsencode(x["path"]): x for x in result["lost"]}
    assert set(lost) == expected, (sorted(set(lost) - expected), sorted(expected - set(lost)))
    assert result["lost_count"] == len(expected)
    assert {x["volume"] for x in result["lost"]} == {damaged}
    assert [v["volume"] for v in result["lost_volumes"]] == [damaged]
    restored = snapshot(dest)
    kept_source = {k: v for k, v in chain.source.items() if k not in expected}
    kept_restored = {k: v for k, v in restored.items() if k not in expected}
    assert diff_snapshots(kept_source, kept_restored) == []
    for p, x in lost.items():
        if x["what"] == "metadata":       # a directory: what survived below it is restored
            assert restored.get(p, (("dir",),))[0][0] == "dir"
        else:
            assert p not in restored, f"{p!r} was lost but something was written there"
    return result


def _outside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_bytes(b"not the restore's\n")
    return lambda: (_state(outside), sorted(os.listdir(tmp_path)))


# --- a damaged volume of the full set -------------------------------------------------------------

@pytest.mark.parametrize("mode", ["symmetric", "none"])
@pytest.mark.parametrize("how", ["deleted", "truncated", "flipped"])
def test_a_damaged_volume_loses_only_the_files_that_need_it(tmp_path, gnupghome, mode, how):
    """The full's volume holding the end of a multivolume file and the start of a directory,
    under an incremental that changed, deleted and replaced some of its files."""
    chain = Chain(tmp_path, mode)
    full = chain.volume_names("full")
    damaged = next(n for n in full[1:] if chain.members[n][0][1] == b"b-big.bin"
                   and len({p for _k, p in chain.members[n]}) > 5)
    expected = expected_lost(chain, damaged)
    # the multivolume file, a delta over a lost snapshot, a directory; not what the
    # incremental deleted or replaced
    assert {b"b-big.bin", b"c-dir/f05", b"c-dir/f00"} <= expected
    assert not {b"c-dir", b"c-dir/f06", b"c-dir/f07"} & expected
    assert {b"c-dir/f06", b"c-dir/f07"} <= {p for _k, p in chain.members[damaged]}
    state = _outside(tmp_path)
    before = state()
    damage(chain.target / damaged, how)

    dest = tmp_path / "restore"
    r = chain.restore(dest)
    check_partial_restore(chain, dest, r, damaged, expected)
    assert state() == before[:1] + (sorted(before[1] + ["fresh-cache", "restore"]),)

    # text mode says the same on stderr
    r = cairn("restore", *chain.enc, "--archive-dir", tmp_path / "fresh-cache", chain.url, tmp_path / "again",
              check=False)
    assert r.returncode == 63, r.stderr
    for p in expected:
        assert f"lost: {os.fsdecode(p)} (".encode() in r.stderr, r.stderr
    assert damaged.encode() in r.stderr and b"restore incomplete" in r.stderr and b"Traceback" not in r.stderr

    # verify is not lenient
    r = cairn("verify", *chain.enc, "--archive-dir", tmp_path / "fresh-cache", chain.url, chain.src, check=False)
    assert r.returncode == (51 if how == "deleted" else 21), r.stderr
    assert damaged.encode() in r.stderr


@pytest.mark.parametrize("how", ["deleted", "flipped"])
def test_a_volume_inside_a_multivolume_file_loses_only_that_file(tmp_path, gnupghome, how):
    """The next volume starts with the rest of the lost file's chunks: skipped, not read as
    a new entry (or as a damaged archive)."""
    chain = Chain(tmp_path, "symmetric", incremental=False)
    damaged = next(n for n in chain.volume_names("full") if {p for _k, p in chain.members[n]} == {b"b-big.bin"})
    after = chain.volume_names("full")[chain.volume_names("full").index(damaged) + 1]
    assert chain.members[after][0][1] == b"b-big.bin"      # its first entries continue the file
    damage(chain.target / damaged, how)
    dest = tmp_path / "restore"
    check_partial_restore(chain, dest, chain.restore(dest), damaged, {b"b-big.bin"})


@pytest.mark.parametrize("mode", ["symmetric", "none"])
def test_a_lost_incremental_volume_never_restores_the_older_versions(tmp_path, gnupghome, mode):
    """Deltas, a deletion, a type change and a new file in the lost volume: all listed, and
    none of their full-set versions is written as if it were current."""
    chain = Chain(tmp_path, mode)
    incs = chain.volume_names("inc")
    assert len(incs) == 1
    damaged = incs[0]
    expected = expected_lost(chain, damaged)
    assert {b"a-dir/f03", b"c-dir/f05", b"c-dir/f06", b"c-dir/f07", b"c-dir/new.txt", b"c-dir"} <= expected
    damage(chain.target / damaged, "flipped")
    dest = tmp_path / "restore"
    result = check_partial_restore(chain, dest, chain.restore(dest), damaged, expected)
    what = {x["path"]: x["what"] for x in result["lost"]}
    assert what["c-dir/f06"] == "deleted" and what["c-dir/f05"] == "data" and what["c-dir"] == "metadata"
    assert what["c-dir/f07"] == "entry"
    # the surviving files of the lost directory are restored all the same
    assert (dest / "c-dir" / "f00").read_bytes() == (chain.src / "c-dir" / "f00").read_bytes()


def test_restoring_one_path_past_a_damaged_volume(tmp_path, gnupghome):
    chain = Chain(tmp_path, "none", incremental=False)
    full = chain.volume_names("full")
    damaged = next(n for n in full[1:] if chain.members[n][0][1] == b"b-big.bin"
                   and len({p for _k, p in chain.members[n]}) > 5)
    below = {p for p in expected_lost(chain, damaged) if p.startswith(b"c-dir")}
    damage(chain.target / damaged, "deleted")
    r = chain.restore(tmp_path / "c", "--path-to-restore", "c-dir")
    assert r.returncode == 63, r.stderr
    result = json.loads(r.stdout)
    assert {os.fsencode(x["path"]) for x in result["lost"]} == below
    for p in below - {b"c-dir"}:
        assert not os.path.lexists(tmp_path / "c" / os.fsdecode(p)[len("c-dir/"):])
    assert (tmp_path / "c" / "f29").read_bytes() == (chain.src / "c-dir" / "f29").read_bytes()


# --- hostile input stays hostile ------------------------------------------------------------------

def _two_volume_set(target, first, second):
    """An unencrypted full set of two volumes; the first's SHA1 in the manifest is wrong, so
    the restore goes past it to the second."""
    os.makedirs(target)
    t = 1_700_000_000
    m = Manifest(hostname="crafted", localdir=b"/src")
    for n, (entries, start, end) in enumerate((first, second), 1):
        vol = Sealer("none").volume(_tar(entries))
        (target / naming.volume_name(n, time=t, suffix=".gz")).write_bytes(vol)
        m.add_volume(VolumeInfo(n, start, None, end, None, {"SHA1": "0" * 40 if n == 1 else _sha1(vol)}))
    (target / naming.manifest_name(time=t)).write_bytes(m.to_bytes())
    sig = io.BytesIO()
    with tarfile.open(fileobj=sig, mode="w", format=tarfile.PAX_FORMAT):
        pass
    (target / naming.signature_name(time=t, suffix=".gz")).write_bytes(gzip.compress(sig.getvalue()))


def _sha1(data):
    import hashlib
    return hashlib.sha1(data).hexdigest()


@pytest.mark.parametrize("case", ["dotdot", "symlink-then-child", "out-of-order"])
def test_an_escape_after_a_damaged_volume_is_still_refused(tmp_path, case):
    outside = tmp_path / "outside"
    outside.mkdir()
    payload = b"owned\n"
    first = ([(_ti("snapshot/.", tarfile.DIRTYPE, mode=0o755), None), (_ti("snapshot/a", size=2), b"a\n")],
             (), (b"a",))
    if case == "dotdot":
        second = [(_ti("snapshot/b/../../outside/pwned", size=len(payload)), payload)]
    elif case == "symlink-then-child":
        second = [(_ti("snapshot/b", tarfile.SYMTYPE, linkname=str(outside)), None),
                  (_ti("snapshot/b/pwned", size=len(payload)), payload)]
    else:
        second = [(_ti("snapshot/c", tarfile.SYMTYPE, linkname=str(outside)), None),
                  (_ti("snapshot/b", size=len(payload)), payload)]
    target = tmp_path / "target"
    _two_volume_set(target, first, (second, (b"b",), (b"c",)))
    before = _state(outside)
    r = cairn("restore", "--no-encryption", "--archive-dir", tmp_path / "cache", f"file://{target}",
              tmp_path / "restore", check=False)
    assert r.returncode == 60, r.stderr
    assert b"refus" in r.stderr.lower() and b"Traceback" not in r.stderr
    assert _state(outside) == before


# --- an interrupted restore, run again --------------------------------------------------------------

def _complete_files(dest):
    """Regular files under their final names (a restore renames a file into place once its
    data and metadata are written): relpath -> inode."""
    out = {}
    for dirpath, _dirs, files in os.walk(dest):
        for name in files:
            p = os.path.join(dirpath, name)
            if not name.startswith(".cairn-restore-") and os.path.isfile(p) and not os.path.islink(p):
                out[os.path.relpath(p, dest)] = os.lstat(p).st_ino
    return out


def test_an_interrupted_restore_run_again_keeps_what_it_completed(tmp_path, gnupghome):
    src = tmp_path / "src"
    for d in range(30):
        for i in range(60):
            write(os.path.join(src, f"d{d:02d}", f"f{i:02d}"), os.urandom(3000 + 97 * i), MTIME + i)
    write(os.path.join(src, "big.bin"), os.urandom(2 << 20), MTIME)
    url = f"file://{tmp_path / 'target'}"
    cairn("full", "--volsize", "1", "--archive-dir", tmp_path / "cache", src, url)
    dest = tmp_path / "restore"
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "plugins", "module_utils"), PASSPHRASE=PASSPHRASE)
    proc = subprocess.Popen([sys.executable, "-m", "cairn.cli", "restore", "--archive-dir", tmp_path / "cache",
                             url, dest], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(_complete_files(dest) if dest.exists() else ()) < 100:
            assert proc.poll() is None, "the restore ended before it could be interrupted"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done = _complete_files(dest)
    assert 100 <= len(done) < 1801, len(done)
    assert diff_snapshots(snapshot(src), snapshot(dest)) != []
    # one completed file damaged behind the metadata's back: same size, mode and mtime
    damaged = sorted(done)[len(done) // 2]
    path = dest / damaged
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 1]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    # what a kill during a file's write leaves: its temp file, removed by the next run
    write(os.path.join(os.path.dirname(path), ".cairn-restore-0123456789ab"), b"half a file")

    r = cairn("restore", "--json", "--force", "--archive-dir", tmp_path / "cache", url, dest)
    result = json.loads(r.stdout)
    assert result["skipped"] == len(done) - 1, (result["skipped"], len(done))
    assert result["files"] == len(snapshot(src)) + 1        # and the root
    assert diff_snapshots(snapshot(src), snapshot(dest)) == []
    after = _complete_files(dest)
    assert {p: after[p] for p in done if p != damaged} == {p: i for p, i in done.items() if p != damaged}
    assert after[damaged] != done[damaged]                  # rewritten, not kept on its metadata
