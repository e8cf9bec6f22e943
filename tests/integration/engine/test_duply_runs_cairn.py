# SPDX-License-Identifier: GPL-3.0-or-later
"""Real duply (Debian's package) runs a profile through cairn installed as `duplicity`.

duply reads `duplicity --version`, chooses the options it passes from that version, and calls
duplicity with its own command lines (aliases, implied backup/restore, --file-to-restore, ...).
Every duply command and a chain run here; then stock duplicity restores what cairn wrote.
"""
import os
import shutil
import subprocess
import sys
import time

import pytest

from treeutil import PASSPHRASE, ROOT, duplicity, snapshot, write

from cairn.crypto import stop_agent

DUPLY = shutil.which("duply")
# Debian's duplicity, installed with duply: the 0.8 oracle (absent where duply is not installed)
DEBIAN_DUPLICITY = "/usr/bin/duplicity"

pytestmark = [pytest.mark.duplicity,
              pytest.mark.skipif(DUPLY is None, reason="duply is not installed (scripts/setup-system.sh)")]


def _cairn_as_duplicity(tmp_path):
    """A bin dir whose `duplicity` is a symlink to a cairn entry point (argv[0] stays `duplicity`)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    entry = bindir / "cairn"
    entry.write_text(f"#!{sys.executable}\nimport sys\n"
                     f"sys.path.insert(0, {os.path.join(ROOT, 'plugins', 'module_utils')!r})\n"
                     "from cairn.cli import main\nmain()\n")
    entry.chmod(0o755)
    (bindir / "duplicity").symlink_to(entry)
    return bindir


def _profile(tmp_path, source, target_url, gpg=f"GPG_PW='{PASSPHRASE}'\n"):
    profile = tmp_path / "profiles" / "nightly"
    profile.mkdir(parents=True)
    profile.chmod(0o700)
    (profile / "conf").write_text(
        f"{gpg}"
        f"TARGET='{target_url}'\n"
        f"SOURCE='{source}'\n"
        "MAX_AGE=1M\n"
        "MAX_FULL_BACKUPS=1\n"
        "MAX_FULLS_WITH_INCRS=1\n"
        "VOLSIZE=1\n"
        f"ARCH_DIR='{tmp_path / 'cache'}'\n"
        f"TEMP_DIR='{tmp_path}'\n"
        # duply 2.5+ takes the binary from here; 2.4 takes `duplicity` from PATH
        f"DPBINARY='{tmp_path / 'bin' / 'duplicity'}'\n"
        'DUPL_PARAMS="$DUPL_PARAMS --volsize $VOLSIZE "\n')
    (profile / "exclude").write_text(f"- {source}/skipped\n- **/*.tmp\n")
    return profile


@pytest.fixture(autouse=True)
def _agent_stopped(tmp_path):
    """duply's gpg starts an agent in the test's HOME (tmp_path/.gnupg): the test's to end."""
    yield
    stop_agent(str(tmp_path / ".gnupg"))


def _duply(bindir, profile, *args, check=True):
    env = dict(os.environ)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PASSPHRASE", None)      # duply hands over GPG_PW itself
    env.pop("GNUPGHOME", None)
    env["HOME"] = str(bindir.parent)  # duply and gpg keep their own files there
    r = subprocess.run([DUPLY, str(profile), *args], env=env, capture_output=True, text=True, check=False,
                       timeout=300)
    if check and r.returncode != 0:
        raise AssertionError(f"duply {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def _tree(root):
    write(root / "docs" / "a.txt", b"alpha\n" * 100)
    write(root / "docs" / "b.bin", os.urandom(300_000))
    write(root / "notes.md", b"# notes\n")
    write(root / "skipped" / "big.dat", b"x" * 1000)
    write(root / "cache.tmp", b"scratch")


def _without_excluded(snap):
    return {p: v for p, v in snap.items()
            if not (p == b"skipped" or p.startswith(b"skipped/") or p.endswith(b".tmp"))}


def test_duply_runs_every_command_through_cairn_as_duplicity(tmp_path, duplicity_bin):
    src = tmp_path / "src"
    _tree(src)
    target = tmp_path / "target"
    url = f"file://{target}"
    bindir = _cairn_as_duplicity(tmp_path)
    profile = _profile(tmp_path, src, url)

    # duply takes the 2nd word of the line starting with "duplicity " as the version
    info = _duply(bindir, profile, "version")
    assert "duplicity version 3.2.1" in info.stdout or "duplicity 3.2.1" in info.stdout, info.stdout

    _duply(bindir, profile, "backup")           # pre + bkp (implied backup) + post
    write(src / "docs" / "c.txt", b"added later\n")
    incr = _duply(bindir, profile, "incr")       # duplicity's alias `incr`
    # duply 2.4 passes --exclude-filelist only to a duplicity it takes for 0.7.03 or later
    assert "--exclude-globbing-filelist" not in incr.stdout + incr.stderr

    status = _duply(bindir, profile, "status")
    assert "Found primary backup chain" in status.stdout
    assert "Incremental" in status.stdout

    listing = _duply(bindir, profile, "list")
    assert "docs/c.txt" in listing.stdout
    assert "skipped/big.dat" not in listing.stdout and "cache.tmp" not in listing.stdout

    verify = _duply(bindir, profile, "verify")
    assert "0 difference(s) found" in verify.stdout
    one = _duply(bindir, profile, "verifyPath", "docs/a.txt", str(src / "docs" / "a.txt"))
    assert "0 difference(s) found" in one.stdout

    restored = tmp_path / "restored"
    _duply(bindir, profile, "restore", str(restored))
    assert snapshot(restored) == _without_excluded(snapshot(src))

    fetched = tmp_path / "fetched.txt"
    _duply(bindir, profile, "fetch", "docs/c.txt", str(fetched))
    assert fetched.read_bytes() == b"added later\n"

    _duply(bindir, profile, "full")              # a second chain, for the purges to act on
    write(src / "docs" / "d.txt", b"on the second chain\n")
    _duply(bindir, profile, "incr")
    assert "Found 1 secondary backup chain(s)" in _duply(bindir, profile, "status").stdout
    _duply(bindir, profile, "purge", "--force")                 # MAX_AGE=1M: nothing that old
    purged = _duply(bindir, profile, "purgeIncr", "--force")    # MAX_FULLS_WITH_INCRS=1
    assert "Deleting backup set: incremental" in purged.stdout, purged.stdout
    purged = _duply(bindir, profile, "purgeFull", "--force")    # MAX_FULL_BACKUPS=1
    assert "Deleting backup set: full" in purged.stdout, purged.stdout
    assert "Found 0 secondary backup chain(s)" in _duply(bindir, profile, "status").stdout
    _duply(bindir, profile, "cleanup", "--force")

    # a later mtime: like duplicity, an incremental sees a change by mtime (whole seconds)
    write(src / "notes.md", b"# notes, changed\n", mtime=time.time() + 60)
    chain = _duply(bindir, profile, "backup_verify_purge", "--force")
    assert chain.stdout.count("Finished state OK") >= 5, chain.stdout   # pre, bkp, post, verify, purge

    # stock duplicity restores what cairn wrote for duply
    by_duplicity = tmp_path / "by-duplicity"
    duplicity(duplicity_bin, "restore", url, by_duplicity)
    assert snapshot(by_duplicity) == _without_excluded(snapshot(src))
    if os.path.exists(DEBIAN_DUPLICITY):        # and Debian's 0.8 does too
        by_08 = tmp_path / "by-duplicity-0.8"
        duplicity(DEBIAN_DUPLICITY, "restore", "--archive-dir", tmp_path / "cache-0.8", url, by_08)
        assert snapshot(by_08) == _without_excluded(snapshot(src))


def test_duply_without_encryption(tmp_path, duplicity_bin):
    """GPG_KEY='disabled': duply passes --no-encryption and no passphrase."""
    src = tmp_path / "src"
    _tree(src)
    url = f"file://{tmp_path / 'target'}"
    bindir = _cairn_as_duplicity(tmp_path)
    profile = _profile(tmp_path, src, url, gpg="GPG_KEY='disabled'\n")
    _duply(bindir, profile, "backup")
    write(src / "notes.md", b"# changed\n", mtime=time.time() + 60)     # (see above)
    _duply(bindir, profile, "incr")
    assert not any(n.endswith(".gpg") for n in os.listdir(tmp_path / "target"))
    restored = tmp_path / "restored"
    _duply(bindir, profile, "restore", str(restored))
    assert snapshot(restored) == _without_excluded(snapshot(src))
    by_duplicity = tmp_path / "by-duplicity"
    duplicity(duplicity_bin, "restore", "--no-encryption", url, by_duplicity, passphrase=None)
    assert snapshot(by_duplicity) == _without_excluded(snapshot(src))
