# SPDX-License-Identifier: GPL-3.0-or-later
"""Public-key messages read by the built-in path, against the real gpg: gpg decrypts only the
session key (from the key packets and the encrypted random prefix), cairn.openpgp the rest.
Whatever gpg cannot give a key for goes to gpg whole, with gpg's errors; the key never reaches
a log, an exception or an output.

Each test has throwaway GnuPG homes; keys are made with gpg --quick-gen-key.
"""
import hashlib
import io
import logging
import os
import random
import re
import shutil
import subprocess

import pytest

from cairn import openpgp
from cairn.crypto import Crypto, CryptoOptions
from cairn.errors import BadPassphrase, CorruptCiphertext, CryptoError, HashMismatch, NoSecretKey

KEY_PASSPHRASE = "the key's own passphrase"
MiB = 1 << 20
pytestmark = pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed")


def run_gpg(home, *args, data=None, passphrase=None, check=True):
    extra = ["--pinentry-mode", "loopback", "--passphrase-fd", "0"] if passphrase is not None else []
    stdin = (passphrase.encode() + b"\n" + (data or b"")) if passphrase is not None else data
    p = subprocess.run(["gpg", "--homedir", home, "--batch", "--no-tty", "--trust-model", "always", *extra, *args],
                       input=stdin, capture_output=True, check=False)
    if check and p.returncode != 0:
        raise AssertionError(f"gpg {' '.join(args)} failed: {p.stderr.decode(errors='replace')}")
    return p


def fingerprint(home, uid, secret=False):
    listing = run_gpg(home, "--with-colons", "--list-secret-keys" if secret else "--list-keys", uid).stdout.decode()
    return [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")][0]


def kill_agent(home):
    subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True, check=False)


@pytest.fixture(scope="module")
def keyring(tmp_path_factory):
    """A GnuPG home with three secret keys: ``rsa`` (RSA-3072), ``ecc`` (Curve25519) and
    ``locked`` (RSA, protected by KEY_PASSPHRASE); and the public key of ``stranger``, whose
    secret key is elsewhere."""
    home = str(tmp_path_factory.mktemp("pk-gnupg"))
    os.chmod(home, 0o700)
    other = str(tmp_path_factory.mktemp("pk-other"))
    os.chmod(other, 0o700)
    for name, algo, usage in (("rsa", "rsa3072", "cert,sign,encr"), ("ecc", "future-default", "default")):
        run_gpg(home, "--passphrase", "", "--quick-gen-key", f"{name}@cairn.invalid", algo, usage, "never")
    run_gpg(home, "--quick-gen-key", "locked@cairn.invalid", "rsa2048", "cert,sign,encr", "never", passphrase=KEY_PASSPHRASE)
    run_gpg(other, "--passphrase", "", "--quick-gen-key", "stranger@cairn.invalid", "rsa2048", "cert,sign,encr", "never")
    run_gpg(home, "--import", data=run_gpg(other, "--export", "stranger@cairn.invalid").stdout)
    kill_agent(other)
    yield {"home": home, **{n: fingerprint(home, f"{n}@cairn.invalid") for n in ("rsa", "ecc", "locked", "stranger")}}
    kill_agent(home)


@pytest.fixture
def home(keyring, tmp_path):
    """A private copy of the keyring (tests change its gpg.conf, its agent's cache)."""
    path = str(tmp_path / "gnupg")
    shutil.copytree(keyring["home"], path, ignore=shutil.ignore_patterns("S.*"))
    yield path
    kill_agent(path)


def mixed(n, seed=0):
    rnd = random.Random(seed)
    text = b"".join(b"line %d of a text that compresses\n" % i for i in range(4000))
    out = []
    while sum(map(len, out)) < n:
        out.append(rnd.randbytes(100 << 10) if len(out) % 2 == 0 else text[:100 << 10])
    return b"".join(out)[:n]


def encrypt(home, tmp_path, data, *args, name="vol.gpg"):
    path = tmp_path / name
    run_gpg(home, "--yes", "--encrypt", *args, "-o", str(path), data=data)
    return path


def crypto(home, passphrase=None, **kw):
    return Crypto(CryptoOptions(mode="symmetric", passphrase=passphrase, gnupg_home=home, **kw))


@pytest.fixture
def built_in_only(monkeypatch):
    """Fails a test in which gpg decrypts a whole message (python-gnupg's path)."""
    def whole(self, src, out):
        raise AssertionError(f"gpg decrypted all of {os.path.basename(src)}")
    monkeypatch.setattr(Crypto, "_decrypt", whole)


def decode(c, path, tmp_path, sha1=True):
    dst = tmp_path / "plain"
    digest = hashlib.sha1(path.read_bytes()).hexdigest() if sha1 else None
    c.decode_file(path.name, str(path), str(dst), sha1=digest)
    return dst.read_bytes()


def gpg_session_key(home, path):
    """gpg's own reading of the message's session key (its configuration not read)."""
    p = run_gpg(home, "--no-options", "--decrypt", "--show-session-key", "-o", os.devnull, str(path))
    algo, key = re.search(r"session key: '(\d+):([0-9A-F]+)'", p.stderr.decode()).groups()
    return int(algo), bytes.fromhex(key)


CASES = {
    "default": [],
    "compress-none": ["--compress-algo", "none"],
    "compress-zip": ["--compress-algo", "zip"],
    "compress-bzip2": ["--compress-algo", "bzip2"],
    "AES128": ["--cipher-algo", "AES128"],
    "AES192-zlib": ["--cipher-algo", "AES192", "--compress-algo", "zlib"],
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("key", ["rsa", "ecc"])
def test_public_key_messages_are_read_in_process(keyring, home, tmp_path, built_in_only, key, case):
    data = mixed(3 * MiB + 7, seed=len(case))
    path = encrypt(home, tmp_path, data, "-r", keyring[key], *CASES[case])
    c = crypto(home)
    assert decode(c, path, tmp_path) == data
    # the key gpg hands over is the message's own
    msg = path.read_bytes()
    given = []
    openpgp.decrypt(io.BytesIO(msg), io.BytesIO(), None, lambda m: given.extend(c.session_keys(m)) or given)
    assert given == [gpg_session_key(home, path)]
    c.close()


def test_hidden_and_several_recipients(keyring, home, tmp_path, built_in_only):
    data = mixed(MiB)
    c = crypto(home)
    for args in (["-R", keyring["rsa"]], ["--throw-keyids", "-r", keyring["ecc"]],
                 ["-r", keyring["stranger"], "-r", keyring["ecc"]],
                 ["-r", keyring["stranger"], "-R", keyring["rsa"], "-r", keyring["ecc"]]):
        assert decode(c, encrypt(home, tmp_path, data, *args), tmp_path) == data, args


def test_gpg_is_asked_once_for_the_same_key_packets(keyring, home, tmp_path, built_in_only, monkeypatch):
    """Restore finds a volume's key beside its hash pass, and a run's volumes cairn wrote share
    their PKESK packets: gpg is asked once for them, whatever the number of messages."""
    asked = []
    ask = Crypto._gpg_session_keys
    monkeypatch.setattr(Crypto, "_gpg_session_keys", lambda self, m: asked.append(m) or ask(self, m))
    data = mixed(MiB)
    path = encrypt(home, tmp_path, data, "-r", keyring["rsa"])
    c = crypto(home)
    c.derive_builtin_keys(str(path))
    assert len(asked) == 1
    for _n in (1, 2):
        out = io.BytesIO()
        c.decrypt_builtin(path.name, str(path), out)
        assert out.getvalue() == data and len(asked) == 1
    other = encrypt(home, tmp_path, data, "-r", keyring["rsa"], name="other.gpg")   # its own session key
    assert decode(c, other, tmp_path) == data and len(asked) == 2
    c.close()                                                  # the keys go with the run
    assert c._session == {}


def test_a_message_without_our_secret_key_is_gpgs_to_refuse(keyring, home, tmp_path):
    path = encrypt(home, tmp_path, b"for someone else", "-r", keyring["stranger"])
    with pytest.raises(NoSecretKey):
        decode(crypto(home, passphrase="whatever"), path, tmp_path)
    assert not (tmp_path / "plain").exists()


def test_a_protected_secret_key(keyring, home, tmp_path, built_in_only, monkeypatch):
    data = mixed(2 * MiB)
    path = encrypt(home, tmp_path, data, "-r", keyring["locked"])
    # a wrong key passphrase: gpg gives no session key, then refuses the whole message itself
    monkeypatch.undo()
    with pytest.raises(BadPassphrase):
        decode(crypto(home, passphrase="not the key's"), path, tmp_path)
    assert not (tmp_path / "plain").exists()
    # the right one: read in process, and the key gpg unlocked is cleared from the agent after
    monkeypatch.setattr(Crypto, "_decrypt", lambda *a: pytest.fail("gpg decrypted the whole message"))
    c = crypto(home, passphrase=KEY_PASSPHRASE)
    assert decode(c, path, tmp_path) == data
    subkeys = run_gpg(home, "--with-colons", "--list-secret-keys", keyring["locked"]).stdout.decode()
    assert c._unlocked & {line.split(":")[9] for line in subkeys.splitlines() if line.startswith("fpr:")}
    c.close()
    monkeypatch.undo()
    with pytest.raises(BadPassphrase):       # not read from the agent's cache
        decode(crypto(home, passphrase="not the key's"), path, tmp_path)


def test_the_session_key_reaches_no_log(keyring, home, tmp_path, built_in_only, caplog, capfd):
    """gpg logs a key it shows: its stderr is discarded and its configuration (which may name a
    log file) is not read. cairn's own logs, errors and outputs never hold the key."""
    data = mixed(MiB)
    path = encrypt(home, tmp_path, data, "-r", keyring["rsa"])
    key = gpg_session_key(home, path)[1]
    log = tmp_path / "gpg.log"
    with open(os.path.join(home, "gpg.conf"), "w") as f:
        f.write(f"log-file {log}\nverbose\n")
    caplog.set_level(logging.DEBUG)
    c = crypto(home)
    assert decode(c, path, tmp_path) == data
    damaged = bytearray(path.read_bytes())
    damaged[-3] ^= 1                                 # the MDC: found after the key was used
    (tmp_path / "bad.gpg").write_bytes(bytes(damaged))
    with pytest.raises(CorruptCiphertext) as e:
        decode(c, tmp_path / "bad.gpg", tmp_path, sha1=False)
    c.close()
    out, err = capfd.readouterr()
    seen = "\n".join([caplog.text, out, err, str(e.value), repr(e.value),
                      log.read_text(errors="replace") if log.exists() else ""])
    for text in (key.hex(), key.hex().upper()):
        assert text not in seen


def test_damaged_public_key_messages(keyring, home, tmp_path):
    data = mixed(3 * MiB)
    path = encrypt(home, tmp_path, data, "-r", keyring["rsa"], "--compress-algo", "none")
    msg = path.read_bytes()
    c = crypto(home)
    for where in (len(msg) // 2, len(msg) - 2, 700):
        bad = bytearray(msg)
        bad[where] ^= 0x10
        (tmp_path / "bad.gpg").write_bytes(bytes(bad))
        with pytest.raises(CryptoError) as e:       # the built-in path's error, or gpg's
            decode(c, tmp_path / "bad.gpg", tmp_path, sha1=False)
        assert not isinstance(e.value, (BadPassphrase, NoSecretKey)), (where, e.value)
        assert not (tmp_path / "plain").exists()
        # against the manifest's hash, the file is what is wrong
        with pytest.raises(HashMismatch):
            c.decode_file("bad.gpg", str(tmp_path / "bad.gpg"), str(tmp_path / "plain"),
                          sha1=hashlib.sha1(msg).hexdigest())
        assert not (tmp_path / "plain").exists()


def test_signed_public_key_messages_go_to_gpg(keyring, home, tmp_path):
    data = b"signed and encrypted\n" * 1000
    path = encrypt(home, tmp_path, data, "-r", keyring["rsa"], "--sign", "--local-user", keyring["ecc"])
    assert decode(crypto(home), path, tmp_path) == data


@pytest.mark.parametrize("option", [{"gpg_options": ("--compress-algo", "zlib")}, {"openpgp_engine": "gpg"}])
def test_runs_that_ask_for_gpg_do_not_ask_it_for_session_keys(keyring, home, tmp_path, monkeypatch, option):
    monkeypatch.setattr(Crypto, "session_keys", lambda *a: pytest.fail("the built-in path was used"))
    data = mixed(MiB)
    path = encrypt(home, tmp_path, data, "-r", keyring["rsa"])
    assert decode(crypto(home, **option), path, tmp_path) == data


# --- writing to public keys --------------------------------------------------------------

def packets(home, path):
    """gpg's own listing of a message's packets (it needs no secret key for this)."""
    return run_gpg(home, "--list-packets", "--pinentry-mode", "loopback", "--passphrase", "x", str(path),
                   check=False).stdout.decode(errors="replace")


@pytest.fixture
def public_only(keyring, tmp_path):
    """A GnuPG home with the public keys only: a host that backs up and cannot restore."""
    path = str(tmp_path / "public-only")
    os.mkdir(path, 0o700)
    run_gpg(path, "--import", data=run_gpg(keyring["home"], "--export").stdout)
    yield path
    kill_agent(path)


@pytest.mark.parametrize("how", ["recipient", "hidden", "two"])
def test_messages_to_public_keys_written_in_process(keyring, home, public_only, tmp_path, monkeypatch, how):
    writer = public_only
    made = []
    make = Crypto._make_recipient_keys
    monkeypatch.setattr(Crypto, "_make_recipient_keys", lambda self: made.append(1) or make(self))
    monkeypatch.setattr(Crypto, "_encrypt", lambda *a: pytest.fail("gpg encrypted a whole file"))
    keys = {"recipient": {"recipients": (keyring["rsa"],)}, "hidden": {"hidden_recipients": (keyring["ecc"],)},
            "two": {"recipients": (keyring["rsa"], keyring["ecc"])}}[how]
    c = Crypto(CryptoOptions(mode="pubkey", gnupg_home=writer, **keys))
    data = [mixed(MiB + 3, seed=1), b"manifest text\n" * 100, b""]
    paths = []
    for i, d in enumerate(data):
        (tmp_path / f"plain{i}").write_bytes(d)
        paths.append(tmp_path / f"msg{i}.gpg")
        digest = c.encrypt_file(str(tmp_path / f"plain{i}"), str(paths[-1]), compress=i != 1)
        assert digest == hashlib.sha1(paths[-1].read_bytes()).hexdigest()
    c.close()
    assert made == [1]                                  # gpg made the run's keys once
    for path, d in zip(paths, data):
        listing = packets(home, path)
        assert "symkey enc packet" not in listing, listing        # the throwaway passphrase is not in it
        assert listing.count("pubkey enc packet") == (2 if how == "two" else 1), listing
        if how == "hidden":
            assert "keyid 0000000000000000" in listing, listing
        # gpg (holding the secret keys) reads each, as does cairn
        out = run_gpg(home, "--decrypt", str(path)).stdout
        assert out == d
        assert decode(crypto(home), path, tmp_path) == d
    # one session key for the run, each message its own random prefix
    assert len({gpg_session_key(home, p) for p in paths}) == 1
    assert paths[0].read_bytes()[:600] != paths[1].read_bytes()[:600]


def test_gpgs_configuration_still_chooses_the_recipients(keyring, home, public_only, tmp_path):
    """encrypt-to in gpg.conf (a second key every volume is also for) holds as it did when gpg
    wrote each file."""
    writer = public_only
    with open(os.path.join(writer, "gpg.conf"), "w") as f:
        f.write(f"encrypt-to {keyring['ecc']}\n")
    c = Crypto(CryptoOptions(mode="pubkey", gnupg_home=writer, recipients=(keyring["rsa"],)))
    (tmp_path / "plain").write_bytes(b"for two keys")
    c.encrypt_file(str(tmp_path / "plain"), str(tmp_path / "msg.gpg"))
    assert c._recipients, "gpg.conf made the built-in path give up"
    assert packets(home, tmp_path / "msg.gpg").count("pubkey enc packet") == 2


def test_an_unknown_recipient_is_gpgs_error_as_before(keyring, home, tmp_path):
    c = Crypto(CryptoOptions(mode="pubkey", gnupg_home=home, recipients=("nobody@cairn.invalid",)))
    (tmp_path / "plain").write_bytes(b"for nobody")
    with pytest.raises(CryptoError) as e:
        c.encrypt_file(str(tmp_path / "plain"), str(tmp_path / "msg.gpg"))
    assert "recipient key is missing" in str(e.value), e.value
    assert not (tmp_path / "msg.gpg").exists() and not (tmp_path / "msg.gpg.tmp").exists()
    assert c._recipients is False
