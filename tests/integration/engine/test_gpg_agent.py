# SPDX-License-Identifier: GPL-3.0-or-later
"""No secret key's passphrase stays cached in gpg-agent after a run (issue 9, finding 6).

A public-key restore, or a signed backup, gives gpg the key's passphrase; gpg-agent caches it
(600 s by default, up to 2 h), and any process of the user could then decrypt without it.
"""
import os
import subprocess
import textwrap

import pytest

from treeutil import cairn

KEY_PASSPHRASE = "key passphrase 8813"


def _gpg(home, *args, input=None):
    return subprocess.run(["gpg", "--homedir", home, "--batch", "--no-tty", *args], input=input,
                          capture_output=True, check=True)


@pytest.fixture
def protected_key(tmp_path):
    """A GNUPGHOME holding one passphrase-protected key (sign + encrypt subkey)."""
    home = str(tmp_path / "gnupg")
    os.mkdir(home, 0o700)
    params = textwrap.dedent(f"""\
        Key-Type: EDDSA
        Key-Curve: ed25519
        Subkey-Type: ECDH
        Subkey-Curve: cv25519
        Name-Real: cairn protected
        Name-Email: protected@cairn.invalid
        Passphrase: {KEY_PASSPHRASE}
        Expire-Date: 0
        %commit
        """)
    _gpg(home, "--pinentry-mode", "loopback", "--gen-key", input=params.encode())
    listing = _gpg(home, "--with-colons", "--with-keygrip", "-K").stdout.decode()
    fpr = [ln.split(":")[9] for ln in listing.splitlines() if ln.startswith("fpr:")][0]
    grips = [ln.split(":")[9] for ln in listing.splitlines() if ln.startswith("grp:")]
    yield {"home": home, "fpr": fpr, "grips": grips}
    subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True, check=False)


def _cached(home, grips):
    """The keygrips whose passphrase gpg-agent holds (KEYINFO's fifth field is 1)."""
    out = []
    for grip in grips:
        r = subprocess.run(["gpg-connect-agent", "--homedir", home, f"KEYINFO {grip}", "/bye"],
                           capture_output=True, text=True, check=True)
        for line in r.stdout.splitlines():
            if line.startswith("S KEYINFO") and line.split()[6] == "1":
                out.append(grip)
    return out


def test_no_passphrase_stays_in_the_users_agent(tmp_path, protected_key):
    home, fpr = protected_key["home"], protected_key["fpr"]
    subprocess.run(["gpgconf", "--homedir", home, "--launch", "gpg-agent"], check=True)
    env = {"GNUPGHOME": home}
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_bytes(b"secret data\n")
    url = f"file://{tmp_path / 'target'}"
    keys = ["--encrypt-key", fpr, "--sign-key", fpr, "--archive-dir", tmp_path / "cache"]
    # a signed backup unlocks the key with SIGN_PASSPHRASE
    cairn("full", *keys, src, url, env=dict(env, SIGN_PASSPHRASE=KEY_PASSPHRASE), passphrase=None)
    assert _cached(home, protected_key["grips"]) == []
    # a public-key restore unlocks it with PASSPHRASE
    cairn("restore", *keys, url, tmp_path / "out", env=env, passphrase=KEY_PASSPHRASE)
    assert (tmp_path / "out" / "f.txt").read_bytes() == b"secret data\n"
    assert _cached(home, protected_key["grips"]) == []
    # the user's own agent is still there, and what the user caches is not ours to clear
    r = subprocess.run(["gpg-connect-agent", "--homedir", home, "GETINFO pid", "/bye"], capture_output=True,
                       text=True, check=True)
    assert r.stdout.startswith("D "), r.stdout
    # and without the passphrase nothing decrypts any more
    volume = next(n for n in os.listdir(tmp_path / "target") if ".vol1." in n)
    r = subprocess.run(["gpg", "--homedir", home, "--batch", "--pinentry-mode", "error", "-o", "-",
                        "--decrypt", str(tmp_path / "target" / volume)], capture_output=True, check=False)
    assert r.returncode != 0
