# SPDX-License-Identifier: GPL-3.0-or-later
"""End to end: crafted --no-encryption volumes restored by the real CLI end in a documented
exit code (never 30, "a bug") and never print a traceback."""
import gzip
import hashlib
import os
import shutil
import subprocess
import sys

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from hostile import DOCUMENTED, damaged, fuzz_settings, member, octal, tar_header

from cairn import archive, naming
from cairn.manifest import Manifest, VolumeInfo

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
T = 1_700_000_000


def write_target(target, volume_tar):
    """A one-set target: the volume (gzipped), its manifest and an empty signature file."""
    os.makedirs(target)
    vol = gzip.compress(volume_tar, compresslevel=1)
    with open(os.path.join(target, naming.volume_name(1, time=T, suffix=".gz")), "wb") as f:
        f.write(vol)
    m = Manifest(hostname="fuzz", localdir=b"/src")
    m.add_volume(VolumeInfo(1, (), None, (b"zzz",), None, {"SHA1": hashlib.sha1(vol).hexdigest()}))
    with open(os.path.join(target, naming.manifest_name(time=T)), "wb") as f:
        f.write(m.to_bytes())
    sig = archive.end_of_archive(0)
    with open(os.path.join(target, naming.signature_name(time=T, suffix=".gz")), "wb") as f:
        f.write(gzip.compress(sig))


@st.composite
def volumes(draw):
    """The root directory, then crafted members (mostly in the order restore requires, so that
    their fields reach the writer), then the end; maybe damaged after."""
    root = tar_header(b"snapshot/./", b"5", {"mode": octal(0o755, 8), "size": octal(0, 12)})
    names = sorted(set(draw(st.lists(st.sampled_from([b"a", b"b", b"c", b"d", b"e\xff", b"f g"]),
                                     min_size=1, max_size=4))))
    members = [draw(member(b"snapshot/" + n if draw(st.integers(0, 4)) else None)) for n in names]
    body = root + b"".join(members)
    body += archive.end_of_archive(len(body))
    return draw(damaged(body))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("restore-fuzz")


def run_restore(workdir, volume_tar):
    target, dest, cache = (os.path.join(workdir, n) for n in ("target", "dest", "cache"))
    for d in (target, dest, cache):
        shutil.rmtree(d, ignore_errors=True)
    write_target(target, volume_tar)
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "plugins", "module_utils"))
    env.pop("PASSPHRASE", None)
    try:
        return subprocess.run([sys.executable, "-m", "cairn.cli", "restore", "--no-encryption",
                               "--archive-dir", cache, f"file://{target}", dest],
                              env=env, capture_output=True, check=False, timeout=120)
    finally:
        # a crafted archive may make device nodes, setuid files, unwritable directories
        for d in (target, dest, cache):
            if os.path.isdir(d):
                for path, dirs, _files in os.walk(d):
                    for name in dirs:
                        try:
                            os.chmod(os.path.join(path, name), 0o700, follow_symlinks=False)
                        except OSError:
                            pass
            shutil.rmtree(d, ignore_errors=True)


def check(r):
    assert r.returncode == 0 or r.returncode in DOCUMENTED, (r.returncode, r.stderr[-2000:])
    assert b"Traceback" not in r.stderr, r.stderr[-2000:]


@fuzz_settings(40)
@given(volumes())
def test_crafted_volumes_restore_or_fail_documented(workdir, volume_tar):
    r = run_restore(workdir, volume_tar)
    event(f"exit {r.returncode}")
    check(r)
