# SPDX-License-Identifier: GPL-3.0-or-later
"""--use-gpgsm (duplicity's): volumes, manifests and signatures encrypted with the real gpgsm to
an X.509 certificate, named .p7m; read back by cairn and by stock duplicity, and the other way.

The fixture makes a throwaway GnuPG home holding a self-signed CA certificate with an RSA key for
signing and encryption (no passphrase), its root marked trusted and CRL checks off (no network).
"""
import os
import shutil
import subprocess
import textwrap
import time

import pytest

from treeutil import cairn, diff_snapshots, duplicity, snapshot, write

PARAMS = textwrap.dedent("""\
    Key-Type: RSA
    Key-Length: 2048
    Key-Usage: sign, encrypt, cert
    Serial: random
    Name-DN: CN=cairn gpgsm {name},O=cairn test
    Issuer-DN: CN=cairn gpgsm {name},O=cairn test
    Not-After: 2099-12-31
    Extension: 2.5.29.19 c 30030101FF
    """)


def _gpgsm(home, *args, input=None, check=True):
    r = subprocess.run(["gpgsm", "--homedir", home, "--batch", "--no-tty", *args], input=input,
                       capture_output=True, check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"gpgsm {args} failed: {r.stderr.decode(errors='replace')}")
    return r


def _new_home(path):
    os.makedirs(path, mode=0o700)
    with open(os.path.join(path, "gpgsm.conf"), "w", encoding="ascii") as f:
        f.write("disable-crl-checks\n")
    return path


def _make_cert(home, name):
    """A self-signed certificate with its (unprotected) secret key in ``home``: (fingerprint, DER)."""
    params = os.path.join(home, f"{name}.params")
    with open(params, "w", encoding="ascii") as f:
        f.write(PARAMS.format(name=name))
    der = os.path.join(home, f"{name}.der")
    # an empty passphrase through loopback pinentry: gpgsm 2.2 skips %no-protection
    _gpgsm(home, "--pinentry-mode", "loopback", "--passphrase-fd", "0", "--gen-key", "--output", der, params,
           input=b"")
    _trust(home, der)
    listing = _gpgsm(home, "--with-colons", "--list-secret-keys").stdout.decode()
    fprs = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")]
    with open(der, "rb") as f:
        cert = f.read()
    return fprs[-1], cert


def _trust(home, der):
    """Import a certificate and mark it (a root) trusted, so that gpgsm encrypts to it in batch mode."""
    _gpgsm(home, "--import", der)
    fpr = _gpgsm(home, "--with-colons", "--list-keys").stdout.decode()
    with open(os.path.join(home, "trustlist.txt"), "w", encoding="ascii") as f:
        for line in fpr.splitlines():
            if line.startswith("fpr:"):
                f.write(f"{line.split(':')[9]} S relax\n")


def _kill_agent(home):
    subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True, check=False)


@pytest.fixture(scope="module")
def gpgsm_cert(tmp_path_factory):
    if shutil.which("gpgsm") is None:
        pytest.skip("gpgsm is not installed (Debian: apt-get install gpgsm)")
    base = tmp_path_factory.mktemp("gpgsm")
    home = _new_home(str(base / "home"))
    try:
        fpr, der = _make_cert(home, "backup")
    except AssertionError as e:
        _kill_agent(home)
        pytest.skip(f"gpgsm cannot make a certificate here: {e}")
    # a second home: another certificate's secret key, and the backup certificate without its key
    other = _new_home(str(base / "other"))
    other_fpr, _other_key = _make_cert(other, "other")
    der_path = str(base / "backup.der")
    with open(der_path, "wb") as f:
        f.write(der)
    _gpgsm(other, "--import", der_path)
    with open(os.path.join(other, "trustlist.txt"), "a", encoding="ascii") as f:
        f.write(f"{fpr} S relax\n")
    yield {"home": home, "fpr": fpr, "other": other, "other_fpr": other_fpr}
    _kill_agent(home)
    _kill_agent(other)


def _env(home):
    return {"GNUPGHOME": home}


def _tree(src):
    # an hour old: a change made in the same second as the backup is still seen as one
    old = time.time() - 3600
    write(src / "a.txt", b"alpha\n" * 1000, mtime=old)
    write(src / "dir" / "b.bin", os.urandom(300_000), mtime=old)
    write(src / "dir" / "empty", b"", mtime=old)


def _target_files(tmp_path):
    return sorted(os.listdir(tmp_path / "target"))


def test_full_and_incremental_with_gpgsm_restore_byte_identical(tmp_path, gpgsm_cert):
    src, url, env = tmp_path / "src", f"file://{tmp_path / 'target'}", _env(gpgsm_cert["home"])
    _tree(src)
    key = ("--use-gpgsm", "--encrypt-key", gpgsm_cert["fpr"])
    cairn("full", *key, "--archive-dir", tmp_path / "cache", src, url, env=env)
    first = snapshot(src)
    write(src / "a.txt", b"changed\n")
    write(src / "dir" / "c.txt", b"gamma\n" * 5000)
    os.unlink(src / "dir" / "empty")
    cairn("incremental", *key, "--archive-dir", tmp_path / "cache", src, url, env=env)
    names = _target_files(tmp_path)
    assert len(names) == 6 and all(n.endswith(".p7m") for n in names), names
    for name in names:
        with open(tmp_path / "target" / name, "rb") as f:
            head = f.read(40)
        # CMS (a DER SEQUENCE holding the pkcs7-envelopedData OID), not OpenPGP
        assert head[:1] == b"\x30" and b"\x2a\x86\x48\x86\xf7\x0d\x01\x07\x03" in head, name
        # and gpgsm decrypts it with the certificate's secret key
        assert _gpgsm(gpgsm_cert["home"], "--decrypt", str(tmp_path / "target" / name)).returncode == 0
    # restore from a fresh cache (manifests and signatures decrypted by gpgsm too)
    cairn("restore", "--use-gpgsm", "--archive-dir", tmp_path / "cache2", url, tmp_path / "out", env=env)
    assert diff_snapshots(snapshot(src), snapshot(tmp_path / "out")) == []
    cairn("restore", "--use-gpgsm", "--archive-dir", tmp_path / "cache2", "-t", _first_time(names), url,
          tmp_path / "out1", env=env)
    assert diff_snapshots(first, snapshot(tmp_path / "out1")) == []
    assert cairn("verify", "--use-gpgsm", "--archive-dir", tmp_path / "cache3", url, src, env=env).returncode == 0
    listed = cairn("list-current-files", "--use-gpgsm", "--archive-dir", tmp_path / "cache4", url, env=env)
    assert b"dir/c.txt" in listed.stdout and b"dir/empty" not in listed.stdout


def _first_time(names):
    full = next(n for n in names if n.startswith("duplicity-full.") and ".manifest" in n)
    return full.split(".")[1]


def test_duplicity_restores_cairns_gpgsm_archive(tmp_path, gpgsm_cert, duplicity_bin):
    src, url, env = tmp_path / "src", f"file://{tmp_path / 'target'}", _env(gpgsm_cert["home"])
    _tree(src)
    key = ("--use-gpgsm", "--encrypt-key", gpgsm_cert["fpr"])
    cairn("full", *key, "--archive-dir", tmp_path / "cache", src, url, env=env)
    first = snapshot(src)
    write(src / "dir" / "c.txt", b"gamma\n")
    cairn("incremental", *key, "--archive-dir", tmp_path / "cache", src, url, env=env)
    full_time = _first_time(_target_files(tmp_path))
    # stock duplicity 3.2.1 deadlocks restoring through an incremental with gpgsm (it keeps two
    # gpgsm decryptions open at once, the second waits for the keybox the first holds while the
    # first waits for its output to be read): it restores the full, and lists the incremental
    duplicity(duplicity_bin, "restore", *key, "--archive-dir", tmp_path / "dupcache", "-t", full_time, url,
              tmp_path / "out", env=env)
    assert diff_snapshots(first, snapshot(tmp_path / "out")) == []
    listed = duplicity(duplicity_bin, "list-current-files", *key, "--archive-dir", tmp_path / "dupcache2", url,
                       env=env).stdout
    assert b" dir/c.txt" in listed and b" dir/b.bin" in listed


def test_cairn_restores_duplicitys_gpgsm_archive(tmp_path, gpgsm_cert, duplicity_bin):
    src, url, env = tmp_path / "src", f"file://{tmp_path / 'target'}", _env(gpgsm_cert["home"])
    _tree(src)
    key = ("--use-gpgsm", "--encrypt-key", gpgsm_cert["fpr"])
    duplicity(duplicity_bin, "full", *key, "--archive-dir", tmp_path / "dupcache", src, url, env=env)
    write(src / "a.txt", b"changed by duplicity\n")
    duplicity(duplicity_bin, "incremental", *key, "--archive-dir", tmp_path / "dupcache", src, url, env=env)
    names = _target_files(tmp_path)
    assert len(names) == 6 and all(n.endswith(".p7m") for n in names), names
    cairn("restore", "--use-gpgsm", "--archive-dir", tmp_path / "cache", url, tmp_path / "out", env=env)
    assert diff_snapshots(snapshot(src), snapshot(tmp_path / "out")) == []
    # and cairn continues duplicity's chain, which duplicity reads
    write(src / "dir" / "d.txt", b"delta\n")
    cairn("incremental", *key, "--archive-dir", tmp_path / "cache", src, url, env=env)
    listed = duplicity(duplicity_bin, "list-current-files", *key, "--archive-dir", tmp_path / "dupcache", url,
                       env=env).stdout
    assert b" dir/d.txt" in listed
    cairn("restore", "--use-gpgsm", "--archive-dir", tmp_path / "cache3", url, tmp_path / "out2", env=env)
    assert diff_snapshots(snapshot(src), snapshot(tmp_path / "out2")) == []


@pytest.mark.parametrize("home_key", ["other", "empty"])
def test_decryption_without_the_secret_key_exits_31_and_restores_nothing(tmp_path, gpgsm_cert, home_key):
    src, url = tmp_path / "src", f"file://{tmp_path / 'target'}"
    _tree(src)
    cairn("full", "--use-gpgsm", "--encrypt-key", gpgsm_cert["fpr"], "--archive-dir", tmp_path / "cache", src, url,
          env=_env(gpgsm_cert["home"]))
    # "other": a home with the certificate but another certificate's secret key; "empty": no keys at all
    home = gpgsm_cert["other"] if home_key == "other" else _new_home(str(tmp_path / "empty-home"))
    try:
        for cache in ("cache", "fresh"):      # volumes (manifests cached) and manifests
            out = tmp_path / f"out-{cache}"
            r = cairn("restore", "--use-gpgsm", "--archive-dir", tmp_path / cache, url, out, env=_env(home),
                      check=False)
            err = r.stderr.decode(errors="replace")
            assert r.returncode == 31, err
            assert "gpgsm could not decrypt" in err and "no secret key" in err, err
            assert "Traceback" not in err
            assert not out.exists() or not any(p for p in out.rglob("*") if p.is_file()), list(out.rglob("*"))
    finally:
        if home_key == "empty":
            _kill_agent(home)


def test_a_p7m_archive_without_use_gpgsm_is_a_clear_error(tmp_path, gpgsm_cert):
    src, url, env = tmp_path / "src", f"file://{tmp_path / 'target'}", _env(gpgsm_cert["home"])
    _tree(src)
    cairn("full", "--use-gpgsm", "--encrypt-key", gpgsm_cert["fpr"], "--archive-dir", tmp_path / "cache", src, url,
          env=env)
    r = cairn("restore", "--archive-dir", tmp_path / "fresh", url, tmp_path / "out", env=env, check=False)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 31, err
    assert ".manifest.p7m is encrypted with gpgsm" in err and "--use-gpgsm" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, words", [
    (("--use-gpgsm",), "needs the recipients' certificates"),
    (("--use-gpgsm", "--no-encryption"), "cannot go with"),
    (("--use-gpgsm", "--hidden-encrypt-key", "FPR"), "cannot hide recipients"),
    (("--use-gpgsm", "--encrypt-key", "FPR", "--sign-key", "FPR"), "cannot sign and encrypt"),
])
def test_what_gpgsm_cannot_do_is_a_usage_error(tmp_path, gpgsm_cert, args, words):
    src, url = tmp_path / "src", f"file://{tmp_path / 'target'}"
    _tree(src)
    args = tuple(gpgsm_cert["fpr"] if a == "FPR" else a for a in args)
    r = cairn("full", *args, src, url, env=_env(gpgsm_cert["home"]), check=False)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 23, err
    assert words in err and "Traceback" not in err
    assert not (tmp_path / "target").exists() or not os.listdir(tmp_path / "target")


def test_a_missing_gpgsm_exits_31(tmp_path, gpgsm_cert):
    src, url = tmp_path / "src", f"file://{tmp_path / 'target'}"
    _tree(src)
    r = cairn("full", "--use-gpgsm", "--encrypt-key", gpgsm_cert["fpr"], "--gpg-binary", tmp_path / "no-gpgsm",
              src, url, env=_env(gpgsm_cert["home"]), check=False)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 31, err
    assert "cannot run gpgsm" in err and "Traceback" not in err
    assert not [n for n in os.listdir(tmp_path / "target") if n.startswith("duplicity-")] \
        if (tmp_path / "target").exists() else True


def test_an_unknown_recipient_exits_31(tmp_path, gpgsm_cert):
    src, url = tmp_path / "src", f"file://{tmp_path / 'target'}"
    _tree(src)
    r = cairn("full", "--use-gpgsm", "--encrypt-key", "0" * 40, src, url, env=_env(gpgsm_cert["home"]), check=False)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 31, err
    assert "recipient certificate is missing" in err and "Traceback" not in err


KEY_PASSPHRASE = "gpgsm key passphrase"


@pytest.fixture(scope="module")
def protected_cert(tmp_path_factory, gpgsm_cert):
    """A certificate whose secret key is protected by KEY_PASSPHRASE."""
    home = _new_home(str(tmp_path_factory.mktemp("gpgsm-protected") / "home"))
    params = os.path.join(home, "p.params")
    with open(params, "w", encoding="ascii") as f:
        f.write(PARAMS.format(name="protected"))
    der = os.path.join(home, "p.der")
    _gpgsm(home, "--pinentry-mode", "loopback", "--passphrase-fd", "0", "--gen-key", "--output", der, params,
           input=KEY_PASSPHRASE.encode() + b"\n")
    _trust(home, der)
    fpr = [line.split(":")[9] for line in _gpgsm(home, "--with-colons", "--list-keys").stdout.decode().splitlines()
           if line.startswith("fpr:")][0]
    yield {"home": home, "fpr": fpr}
    _kill_agent(home)


def _cached_keys(home):
    """The keygrips whose passphrase gpg-agent holds (KEYINFO's cached field is 1)."""
    r = subprocess.run(["gpg-connect-agent", "--homedir", home, "--no-autostart", "KEYINFO --list", "/bye"],
                       capture_output=True, text=True, check=False)
    return [line.split()[2] for line in r.stdout.splitlines()
            if line.startswith("S KEYINFO") and len(line.split()) > 6 and line.split()[6] == "1"]


def test_a_protected_key_is_unlocked_with_the_passphrase_and_not_left_cached(tmp_path, protected_cert):
    src, url, env = tmp_path / "src", f"file://{tmp_path / 'target'}", _env(protected_cert["home"])
    _tree(src)
    cairn("full", "--use-gpgsm", "--encrypt-key", protected_cert["fpr"], src, url, env=env, passphrase=None)
    for given, words in ((None, "no passphrase was given"), ("wrong", "bad passphrase")):
        _kill_agent(protected_cert["home"])
        r = cairn("restore", "--use-gpgsm", "--archive-dir", tmp_path / f"c-{given}", url, tmp_path / f"o-{given}",
                  env=env, passphrase=given, check=False)
        err = r.stderr.decode(errors="replace")
        assert r.returncode == 31 and words in err and "Traceback" not in err, err
        assert not (tmp_path / f"o-{given}").exists()
    cairn("restore", "--use-gpgsm", "--archive-dir", tmp_path / "c", url, tmp_path / "out", env=env,
          passphrase=KEY_PASSPHRASE)
    assert diff_snapshots(snapshot(src), snapshot(tmp_path / "out")) == []
    # the agent still runs (as after duplicity) but holds no passphrase cairn gave it
    assert _cached_keys(protected_cert["home"]) == []
    subprocess.run(["gpgsm", "--homedir", protected_cert["home"], "--batch", "--pinentry-mode", "loopback",
                    "--passphrase-fd", "0", "-o", os.devnull, "--decrypt",
                    str(next((tmp_path / "target").glob("*.manifest.p7m")))],
                   input=KEY_PASSPHRASE.encode() + b"\n", capture_output=True, check=True)
    assert _cached_keys(protected_cert["home"]), "gpg-agent does not cache loopback passphrases here"
