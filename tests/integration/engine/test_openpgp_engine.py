# SPDX-License-Identifier: GPL-3.0-or-later
"""The engine's built-in OpenPGP path against real gpg and stock duplicity: what it writes is
plain OpenPGP (gpg and duplicity read it), one key derivation per run, and every run that asks
for gpg's behaviour (--openpgp-engine gpg, --gpg-options, --gpg-binary) still gets gpg."""
import os
import re
import shutil
import subprocess

import pytest

from treeutil import PASSPHRASE, cairn, diff_snapshots, duplicity, snapshot, write

from cairn.errors import ExitCode


def _tree(root):
    # incompressible, so that --volsize 1 makes several volumes
    for i in range(3):
        write(os.path.join(root, f"big{i}.bin"), os.urandom(700_000))
    write(os.path.join(root, "text.txt"), b"a line of text\n" * 5000)
    write(os.path.join(root, "sub", "small"), b"small\n")
    return root


def _gpg_files(target):
    return sorted(n for n in os.listdir(target) if n.endswith(".gpg"))


def _symkey_packet(path, home):
    """gpg's own reading of the first packet: {'cipher': n, 'salt': hex, 'count': n}."""
    r = subprocess.run(["gpg", "--homedir", home, "--batch", "--list-packets", "--pinentry-mode", "loopback",
                        "--passphrase-fd", "0", path], input=PASSPHRASE.encode(), capture_output=True, check=False)
    text = r.stdout.decode(errors="replace")
    m = re.search(r":symkey enc packet: version 4, cipher (\d+).*?\n\s+salt ([0-9A-Fa-f]+), count (\d+)", text, re.S)
    assert m, f"no symmetric key packet in {path}:\n{text}\n{r.stderr.decode(errors='replace')}"
    return {"cipher": int(m.group(1)), "salt": m.group(2).upper(), "count": int(m.group(3))}


def _gpg_decrypts(path, home):
    r = subprocess.run(["gpg", "--homedir", home, "--batch", "--pinentry-mode", "loopback", "--passphrase-fd", "0",
                        "--decrypt", path], input=PASSPHRASE.encode(), capture_output=True, check=False)
    assert r.returncode == 0, f"gpg could not decrypt {os.path.basename(path)}: {r.stderr.decode(errors='replace')}"
    return r.stdout


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "gnupg"
    h.mkdir(mode=0o700)
    yield str(h)
    subprocess.run(["gpgconf", "--homedir", str(h), "--kill", "all"], capture_output=True, check=False)


def test_builtin_writes_what_gpg_and_duplicity_read(tmp_path, home, duplicity_bin):
    src = _tree(str(tmp_path / "src"))
    target = tmp_path / "target"
    url = f"file://{target}"
    env = {"GNUPGHOME": home}
    cairn("full", "--volsize", "1", "--archive-dir", tmp_path / "c", src, url, env=env)
    write(os.path.join(src, "sub", "later"), b"added later\n", mtime=2_000_000_000)
    cairn("incremental", "--volsize", "1", "--archive-dir", tmp_path / "c", src, url, env=env)
    names = _gpg_files(target)
    assert sum(".vol" in n for n in names) >= 4, names
    # every file is an OpenPGP message gpg decrypts; volumes are tars, manifests say "Volume"
    for n in names:
        plain = _gpg_decrypts(str(target / n), home)
        if ".vol" in n:
            assert plain[257:262] == b"ustar", n
        elif ".manifest" in n:
            assert b"Volume 1:" in plain, n
    # one salt (one key derivation) for every file a run wrote: the two runs' salts differ
    full = {_symkey_packet(str(target / n), home)["salt"] for n in names if ".full." in n or "full-sig" in n}
    incr = {_symkey_packet(str(target / n), home)["salt"] for n in names if ".inc." in n or "new-sig" in n}
    assert len(full) == 1 and len(incr) == 1 and full != incr, (full, incr)
    # and stock duplicity restores the chain
    out = tmp_path / "by-duplicity"
    duplicity(duplicity_bin, "restore", "--archive-dir", tmp_path / "dc", url, out, env=env)
    assert diff_snapshots(snapshot(src), snapshot(out)) == []


def test_builtin_reads_what_duplicity_writes(tmp_path, home, duplicity_bin):
    src = _tree(str(tmp_path / "src"))
    url = f"file://{tmp_path}/target"
    env = {"GNUPGHOME": home}
    duplicity(duplicity_bin, "full", "--volsize", "1", "--archive-dir", tmp_path / "dc", src, url, env=env)
    out = tmp_path / "out"
    cairn("restore", "--archive-dir", tmp_path / "c", url, out, env=env)
    assert diff_snapshots(snapshot(src), snapshot(out)) == []


def _logging_gpg(tmp_path):
    log = tmp_path / "gpg-calls"
    wrapper = tmp_path / "my-gpg"
    wrapper.write_text(f'#!/bin/sh\necho called >> "{log}"\nexec gpg "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper), log


@pytest.mark.parametrize("how", ["engine", "binary", "options"])
def test_runs_that_ask_for_gpg_get_gpg(tmp_path, home, how):
    src = _tree(str(tmp_path / "src"))
    target = tmp_path / "target"
    url = f"file://{target}"
    env = {"GNUPGHOME": home}
    wrapper, log = _logging_gpg(tmp_path)
    extra = {"engine": ["--openpgp-engine", "gpg"], "binary": ["--gpg-binary", wrapper],
             "options": ["--gpg-options", "--cipher-algo AES128"]}[how]
    cairn("full", "--volsize", "1", "--archive-dir", tmp_path / "c", *extra, src, url, env=env)
    packets = [_symkey_packet(str(target / n), home) for n in _gpg_files(target)]
    # gpg derives a key with a salt of its own for every message
    assert len({p["salt"] for p in packets}) == len(packets) > 2
    if how == "binary":
        assert log.read_text().count("called") >= len(packets)
    if how == "options":
        assert {p["cipher"] for p in packets} == {7}         # AES128: the user's option reached gpg
    out = tmp_path / "out"
    cairn("restore", "--archive-dir", tmp_path / "c2", *extra, url, out, env=env)
    assert diff_snapshots(snapshot(src), snapshot(out)) == []


def test_builtin_restore_refuses_a_damaged_volume_before_any_of_it_is_written(tmp_path, home):
    src = str(tmp_path / "src")
    for i in range(4):
        write(os.path.join(src, f"f{i}.bin"), os.urandom(600_000))
    target = tmp_path / "target"
    url = f"file://{target}"
    env = {"GNUPGHOME": home}
    cairn("full", "--volsize", "1", "--archive-dir", tmp_path / "c", src, url, env=env)
    vol2 = next(n for n in _gpg_files(target) if ".vol2." in n)
    with open(target / vol2, "r+b") as f:
        f.seek(os.path.getsize(target / vol2) // 2)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0x40]))
    out = tmp_path / "out"
    r = cairn("restore", "--archive-dir", tmp_path / "c", url, out, env=env, check=False)
    # restore goes past the volume and lists what needed it (exit 63), as with gpg
    assert r.returncode == ExitCode.RESTORE_INCOMPLETE, r.stderr
    assert b"vol2" in r.stderr and b"SHA1" in r.stderr and b"Traceback" not in r.stderr
    # what is restored is whole; the files volume 2 held are not there at all
    restored = sorted(n for n in os.listdir(out) if not n.startswith("."))
    assert restored and len(restored) < 4, restored
    for n in restored:
        with open(out / n, "rb") as a, open(os.path.join(src, n), "rb") as b:
            assert a.read() == b.read(), n


def test_wrong_passphrase_with_the_builtin_path(tmp_path, home):
    src = _tree(str(tmp_path / "src"))
    url = f"file://{tmp_path}/target"
    env = {"GNUPGHOME": home}
    cairn("full", "--archive-dir", tmp_path / "c", src, url, env=env)
    r = cairn("restore", "--archive-dir", tmp_path / "c2", url, tmp_path / "out", env=env,
              passphrase="not the passphrase", check=False)
    assert r.returncode == ExitCode.GPG_FAILED, r.stderr
    assert b"passphrase" in r.stderr and b"Traceback" not in r.stderr
    assert b"not the passphrase" not in r.stderr


def _gpg_shim(tmp_path):
    """A directory with a ``gpg`` that logs each call's arguments (one line) and runs the real
    one: put first on PATH, it sees every gpg the run starts by name."""
    real = shutil.which("gpg")
    shim = tmp_path / "shim"
    shim.mkdir()
    log = tmp_path / "gpg-argv"
    (shim / "gpg").write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec "{real}" "$@"\n')
    (shim / "gpg").chmod(0o755)
    return str(shim), log


@pytest.mark.parametrize("writer", ["cairn", "duplicity", "duplicity-hidden"])
def test_builtin_reads_public_key_archives_asking_gpg_only_for_session_keys(
        tmp_path, gnupghome, duplicity_bin, writer):
    src = _tree(str(tmp_path / "src"))
    target = tmp_path / "target"
    url = f"file://{target}"
    env = {"GNUPGHOME": gnupghome["home"]}
    key = ["--hidden-encrypt-key" if writer.endswith("hidden") else "--encrypt-key", gnupghome["enc"]]
    if writer == "cairn":
        cairn("full", "--volsize", "1", "--archive-dir", tmp_path / "c", *key, src, url, env=env, passphrase=None)
    else:
        duplicity(duplicity_bin, "full", "--volsize", "1", "--archive-dir", tmp_path / "dc", *key, src, url,
                  env=env, passphrase=None)
    volumes = [n for n in _gpg_files(target) if ".vol" in n]
    assert len(volumes) >= 3
    shim, log = _gpg_shim(tmp_path)
    out = tmp_path / "out"
    cairn("restore", "--archive-dir", tmp_path / "c2", url, out, passphrase=None,
          env=dict(env, PATH=f"{shim}:{os.environ['PATH']}"))
    assert diff_snapshots(snapshot(src), snapshot(out)) == []
    decrypts = [line for line in log.read_text().splitlines() if "--decrypt" in line]
    # gpg decrypted session keys only (manifests and signatures too), never a whole file
    assert decrypts and all("--show-session-key" in line for line in decrypts), decrypts
    if writer == "cairn":
        # one session key and one set of PKESK packets for all the files of cairn's run: one ask
        assert len(decrypts) == 1, decrypts
        # ... and stock duplicity restores what cairn wrote
        duplicity(duplicity_bin, "restore", "--archive-dir", tmp_path / "dc2", url, tmp_path / "dup-out",
                  env=env, passphrase="")
        assert diff_snapshots(snapshot(src), snapshot(tmp_path / "dup-out")) == []
    else:
        assert len(decrypts) >= len(volumes)
