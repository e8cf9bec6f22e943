# SPDX-License-Identifier: GPL-3.0-or-later
"""Check mode changes nothing (issue 9, finding 10): every module run with --check leaves the
archive dir, the target, the GnuPG home, the temp dir and ~/.gnupg exactly as they were, while
still saying what it would do."""
import hashlib
import json
import os
import stat
import subprocess
import sys

from test_ansible import BIN, ROOT, _env

sys.path.insert(0, os.path.join(ROOT, "tests", "integration", "engine"))
from treeutil import cairn  # noqa: E402

PASSPHRASE = "check mode passphrase"


def _snapshot(path, top_mtime=True):
    """Every entry under ``path``: type, mode, size, mtime, content hash or link target.
    ``top_mtime`` False: the top directory's mtime is not compared (a run's own temp dir comes
    and goes there; what is left must be the same)."""
    path = str(path)
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [".", *dirnames, *filenames]:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            what = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    what = hashlib.sha1(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                what = os.readlink(p)
            mtime = None if not top_mtime and name == "." and dirpath == path else st.st_mtime_ns
            out[os.path.relpath(p, path)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_size,
                                             mtime, what)
    return out


def _kill_agents(home):
    subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True, check=False)


def test_check_mode_changes_nothing(tmp_path, gnupghome):
    home, enc = gnupghome["home"], gnupghome["enc"]
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"alpha\n")
    cache = tmp_path / "cache"
    sym_url = f"file://{tmp_path / 'sym-target'}"
    pub_url = f"file://{tmp_path / 'pub-target'}"
    for _chain in range(2):                 # two chains, so keep_full=1 has something to prune
        cairn("full", "--archive-dir", cache, src, sym_url, passphrase=PASSPHRASE)
    cairn("full", "--archive-dir", cache, "--encrypt-key", enc, src, pub_url, passphrase=None)
    (src / "b.txt").write_bytes(b"new since the backups\n")
    (tmp_path / "sym-target" / ".cairn-tmp.duplicity-full.20200101T000000Z.vol9.difftar.gpg").write_bytes(b"x")
    other = tmp_path / "other-gnupg"
    other.mkdir(mode=0o700)
    subprocess.run(["gpg", "--homedir", str(other), "--batch", "--passphrase", "", "--quick-gen-key",
                    "other@cairn.invalid", "ed25519", "sign", "never"], capture_output=True, check=True)
    new_key = subprocess.run(["gpg", "--homedir", str(other), "--armor", "--export", "other@cairn.invalid"],
                             capture_output=True, text=True, check=True).stdout
    _kill_agents(str(other))
    user_home = tmp_path / "home"
    user_home.mkdir()
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    for name in os.listdir(cache):
        # no lock file yet, and a cached manifest of a set the target no longer has: a run
        # that is not read-only would create the one and remove the other
        os.unlink(cache / name / "lockfile")
        (cache / name / "duplicity-full.20100101T000000Z.manifest").write_bytes(b"Volume 1:\n")
    fresh = tmp_path / "fresh-cache"          # and an archive dir that does not exist yet
    sym = {"target": sym_url, "passphrase": PASSPHRASE, "archive_dir": str(cache)}
    pub = {"target": pub_url, "encrypt_keys": [enc], "archive_dir": str(cache)}
    tasks = [
        ("cairn.backup.backup", dict(sym, source=str(src)), True),
        ("cairn.backup.backup", dict(sym, source=str(src), archive_dir=str(fresh)), True),
        ("cairn.backup.backup_info", dict(pub, archive_dir=str(fresh), list_files=True), False),
        ("cairn.backup.prune", dict(sym, archive_dir=str(fresh), keep_full=1), True),
        ("cairn.backup.backup", dict(pub, source=str(src)), True),
        ("cairn.backup.restore", dict(sym, dest=str(tmp_path / "restored")), True),
        ("cairn.backup.restore", dict(pub, dest=str(tmp_path / "restored")), True),
        ("cairn.backup.verify", dict(sym, source=str(src), compare_data=True, fail_on_difference=False), False),
        ("cairn.backup.verify", dict(pub, source=str(src)), False),
        ("cairn.backup.prune", dict(sym, keep_full=1, cleanup=True), True),
        ("cairn.backup.backup_info", dict(sym, list_files=True), False),
        ("cairn.backup.backup_info", dict(pub, list_files=True), False),
        ("cairn.backup.gpg_key", {"gnupg_home": home, "content": new_key, "trust": "full"}, True),
        ("cairn.backup.gpg_key", {"gnupg_home": home, "fingerprint": enc, "trust": "marginal"}, True),
        ("cairn.backup.gpg_key", {"gnupg_home": str(tmp_path / "no-such-home"), "uid": "new@cairn.invalid"}, True),
        ("cairn.backup.gpg_key", {"uid": "fallback@cairn.invalid"}, True),
    ]
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": []}]
    for i, (module, args, changes) in enumerate(tasks):
        play[0]["tasks"] += [{"name": f"{i} {module}", module: args, "register": f"r{i}"},
                             {"ansible.builtin.assert": {"that": [f"r{i} is {'changed' if changes else 'not changed'}"],
                                                         "fail_msg": f"{module} #{i}: {{{{ r{i} }}}}"}}]
    (tmp_path / "play.json").write_text(json.dumps(play))
    watched = {"archive dir": cache, "symmetric target": tmp_path / "sym-target", "public-key target":
               tmp_path / "pub-target", "GnuPG home": home, "temp dir": tmpdir, "source": src}
    _kill_agents(home)
    # the top directory's mtime of these two may change: a run's temp dir comes and goes in one,
    # gpg-agent's sockets in the other (gpg cannot decrypt without an agent); their contents may not
    loose = ("temp dir", "GnuPG home")
    before = {k: _snapshot(v, k not in loose) for k, v in watched.items()}
    env = dict(_env(), GNUPGHOME=home, TMPDIR=str(tmpdir), HOME=str(user_home),
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-local"), ANSIBLE_REMOTE_TEMP=str(tmp_path / "ansible-remote"))
    env.pop("PASSPHRASE", None)
    r = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", "--check",
                        "-e", f"ansible_python_interpreter={sys.executable}", str(tmp_path / "play.json")],
                       cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0 and "failed=0" in r.stdout, r.stdout[-6000:] + r.stderr[-2000:]
    after = {k: _snapshot(v, k not in loose) for k, v in watched.items()}
    for what in watched:
        changed = sorted(set(before[what].items()) ^ set(after[what].items()))
        assert not changed, f"{what} changed in check mode: {changed[:6]}"
    assert not (tmp_path / "restored").exists() and not (tmp_path / "no-such-home").exists()
    assert not (user_home / ".gnupg").exists()        # gpg_key fell back to $HOME/.gnupg before
    assert not fresh.exists()
    from cairn.crypto import agent_running
    assert not agent_running(home), "check mode left a gpg-agent running in the GnuPG home"
