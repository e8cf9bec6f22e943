# SPDX-License-Identifier: GPL-3.0-or-later
"""The temp dir and the archive dir hold plaintext: ours alone, and never left behind
(issue 9, findings 7 and 8, and the unwritable archive dir of finding 9)."""
import os
import pwd
import signal
import subprocess
import sys
import time

import pytest

from treeutil import PASSPHRASE, ROOT, cairn

NOBODY = pwd.getpwnam("nobody")


def _needs_root():
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("needs root (to own files as another user, to mount)")
        pytest.skip("needs root (to own files as another user, to mount)")


def _source(tmp_path, mib=1):
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "a.txt").write_bytes(b"a" * 100)
    (src / "big.bin").write_bytes(os.urandom(mib << 20))
    return src


def _tree(path):
    return sorted(os.path.relpath(os.path.join(d, n), path) for d, dirs, files in os.walk(path)
                  for n in dirs + files)


@pytest.mark.parametrize("how", ["other-owner", "world-writable", "symlink"])
def test_an_archive_dir_another_user_controls_is_refused(tmp_path, how):
    _needs_root()
    src = _source(tmp_path)
    victim = tmp_path / "victim"
    victim.write_bytes(b"root's file\n")
    base = tmp_path / "shared"
    base.mkdir()
    leaf = base / "job"
    if how == "other-owner":
        leaf.mkdir()
        os.chown(leaf, NOBODY.pw_uid, NOBODY.pw_gid)
    elif how == "world-writable":
        leaf.mkdir()
        os.chmod(leaf, 0o777)
    else:
        # a parent others may write to, where another user planted the cache dir as a symlink
        os.chmod(base, 0o777)
        os.symlink(victim, leaf)
    before = _tree(base)
    r = cairn("full", "--no-encryption", "--archive-dir", base, "--name", "job", src,
              f"file://{tmp_path / 'target'}", check=False)
    assert r.returncode == 23, r.stderr
    assert b"refusing" in r.stderr and b"the archive dir" in r.stderr and b"Traceback" not in r.stderr
    assert _tree(base) == before and victim.read_bytes() == b"root's file\n"
    assert not (tmp_path / "target").exists()


def test_a_parent_others_may_write_is_refused_unless_sticky(tmp_path):
    src = _source(tmp_path)
    url = f"file://{tmp_path / 'target'}"
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o777)
    r = cairn("full", "--no-encryption", "--archive-dir", tmp_path / "cache", "--tempdir", loose, src, url,
              check=False)
    assert r.returncode == 23 and b"refusing" in r.stderr and b"the temp dir" in r.stderr, r.stderr
    assert os.listdir(loose) == []
    os.chmod(loose, 0o1777)          # as /tmp: others may write, but not replace what is ours
    cairn("full", "--no-encryption", "--archive-dir", tmp_path / "cache", "--tempdir", loose, src, url)
    assert os.listdir(loose) == []


def test_dirs_are_created_private(tmp_path):
    src = _source(tmp_path)
    cairn("full", "--no-encryption", "--archive-dir", tmp_path / "cache", "--name", "n", src,
          f"file://{tmp_path / 'target'}")
    assert os.stat(tmp_path / "cache" / "n").st_mode & 0o777 == 0o700


def test_an_unwritable_archive_dir_is_exit_62(tmp_path):
    _needs_root()
    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], check=True)
    try:
        r = cairn("full", "--no-encryption", "--archive-dir", ro, _source(tmp_path),
                  f"file://{tmp_path / 'target'}", check=False)
    finally:
        subprocess.run(["umount", str(ro)], check=False)
    assert r.returncode == 62, r.stderr
    assert str(ro).encode() in r.stderr and b"Traceback" not in r.stderr


# --- temp dirs of runs that end early ----------------------------------------------------------

def _start_backup(tmp_path, tempdir):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "plugins", "module_utils"), PASSPHRASE=PASSPHRASE)
    src = _source(tmp_path, mib=48)
    return subprocess.Popen([sys.executable, "-m", "cairn.cli", "full", "--archive-dir", str(tmp_path / "cache"),
                             "--tempdir", str(tempdir), "--volsize", "4", "--jobs", "1",
                             "--max-upload-rate", "4M", str(src), f"file://{tmp_path / 'target'}"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_as_started_by_a_user)


def _as_started_by_a_user():
    """SIGINT as a shell leaves it for a command it runs: a test runner started in the background
    (or by nohup) ignores it, and cairn, like any program, keeps an inherited "ignore"."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _has_plaintext(d):
    """Whether a volume being built (plaintext .tar) is anywhere under ``d``."""
    return any(n.endswith(".tar") for _d, _dirs, names in os.walk(d) for n in names)


def _wait_for_plaintext(proc, tempdir, timeout=60):
    """Until a volume being built (plaintext) is in the run's temp dir."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        if _has_plaintext(tempdir):
            return
        time.sleep(0.05)
    raise AssertionError("no volume was built in time")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_remove_the_temp_dir(tmp_path, sig, gnupghome):
    tempdir = tmp_path / "tmp"
    tempdir.mkdir()
    proc = _start_backup(tmp_path, tempdir)
    try:
        _wait_for_plaintext(proc, tempdir)
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 4, err
    assert b"interrupted" in err and b"Traceback" not in err
    assert os.listdir(tempdir) == []


def test_the_next_run_removes_a_killed_runs_temp_dir(tmp_path, gnupghome):
    tempdir = tmp_path / "tmp"
    tempdir.mkdir()
    proc = _start_backup(tmp_path, tempdir)
    try:
        _wait_for_plaintext(proc, tempdir)
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    left = os.listdir(tempdir)
    assert len(left) == 1 and _has_plaintext(tempdir / left[0])
    # beside it, a temp dir of a live run (this test's process) and one that is not a run's
    from cairn.localdirs import make_tempdir
    live = make_tempdir(str(tempdir))
    (tempdir / "cairn-not-a-run").mkdir()
    cairn("collection-status", "--archive-dir", tmp_path / "cache", "--tempdir", tempdir,
          f"file://{tmp_path / 'target'}")
    assert sorted(os.listdir(tempdir)) == sorted([os.path.basename(live), "cairn-not-a-run"])
