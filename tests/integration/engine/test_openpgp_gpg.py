# SPDX-License-Identifier: GPL-3.0-or-later
"""cairn.openpgp against the real gpg, both ways: what encrypt() writes gpg decrypts, what
``gpg --symmetric`` writes decrypt() reads (or refuses, or leaves to gpg: Unsupported).

Each test has a throwaway GNUPGHOME; passphrases reach gpg on a --passphrase-fd pipe.
"""
import io
import os
import random
import re
import shutil
import subprocess

import pytest

from cairn import openpgp
from cairn.errors import BadPassphrase, CorruptCiphertext

PASSPHRASE = "correct horse battery staple"
MiB = 1 << 20
pytestmark = pytest.mark.skipif(shutil.which("gpg") is None,
                                reason="gpg is not installed")


@pytest.fixture
def home(tmp_path):
    path = str(tmp_path / "gnupg")
    os.mkdir(path, 0o700)
    yield path
    subprocess.run(["gpgconf", "--homedir", path, "--kill", "all"], capture_output=True, check=False)


def gpg(home, *args, passphrase=PASSPHRASE, data=None, check=True):
    """gpg in batch mode, the passphrase on a pipe of its own (--passphrase-fd), ``data`` on stdin."""
    r, w = os.pipe()
    os.write(w, passphrase.encode() + b"\n")
    os.close(w)
    try:
        p = subprocess.run(["gpg", "--homedir", home, "--batch", "--no-tty", "--pinentry-mode", "loopback",
                            "--no-symkey-cache", "--passphrase-fd", str(r), "--status-fd", "2", *args],
                           input=data, pass_fds=(r,), capture_output=True, check=False)
    finally:
        os.close(r)
    if check and p.returncode != 0:
        raise AssertionError(f"gpg {' '.join(args)} failed: {p.stderr.decode(errors='replace')}")
    return p


def mixed(n, seed=0):
    """Incompressible and text-like runs of 100 KiB."""
    rnd = random.Random(seed)
    text = b"".join(b"for i in range(%d):\n    total += i * %d  # comment\n" % (i, i) for i in range(4000))
    out, i = [], 0
    while sum(map(len, out)) < n:
        out.append(rnd.randbytes(100 << 10) if i % 2 == 0 else text[:100 << 10])
        i += 1
    return b"".join(out)[:n]


def ours(msg, keys):
    out = io.BytesIO()
    openpgp.decrypt(io.BytesIO(msg), out, keys)
    return out.getvalue()


class NoWrites(io.RawIOBase):
    def writable(self):
        return True

    def write(self, b):
        raise AssertionError("output was written before Unsupported")


@pytest.fixture(scope="module")
def keys():
    return openpgp.KeyCache(PASSPHRASE)         # gpg's default count, as cairn uses it


# --- gpg reads ours -----------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 1000, MiB - 6, MiB, 3 * MiB + 333])
@pytest.mark.parametrize("level,store", [(6, True), (6, False), (1, True), (None, True)])
def test_gpg_decrypts_what_encrypt_writes(home, tmp_path, keys, size, level, store):
    data = mixed(size, seed=size)
    out = io.BytesIO()
    openpgp.encrypt(io.BytesIO(data), out, keys, compress_level=level, store_incompressible=store)
    path = tmp_path / "msg.gpg"
    path.write_bytes(out.getvalue())
    p = gpg(home, "--decrypt", "-o", str(tmp_path / "plain"), str(path))
    status = p.stderr.decode()
    assert (tmp_path / "plain").read_bytes() == data
    assert "[GNUPG:] DECRYPTION_OKAY" in status and "[GNUPG:] GOODMDC" in status
    assert "WARNING" not in status
    assert openpgp.is_symmetric_message(out.getvalue()[:64])


@pytest.mark.parametrize("cipher,s2k_hash", [("AES128", "SHA1"), ("AES192", "SHA512"), ("AES256", "SHA1")])
def test_gpg_decrypts_every_cipher_and_hash_we_write(home, tmp_path, cipher, s2k_hash):
    keys = openpgp.KeyCache(PASSPHRASE, cipher=cipher, s2k_hash=s2k_hash, s2k_count=1 << 16)
    data = mixed(200000, seed=7)
    out = io.BytesIO()
    openpgp.encrypt(io.BytesIO(data), out, keys)
    (tmp_path / "msg.gpg").write_bytes(out.getvalue())
    p = gpg(home, "--decrypt", "--show-session-key", "-o", str(tmp_path / "plain"), str(tmp_path / "msg.gpg"))
    assert (tmp_path / "plain").read_bytes() == data
    algo = {"AES128": 7, "AES192": 8, "AES256": 9}[cipher]
    assert f"session key: '{algo}:{keys._for_writing()[1].hex().upper()}'" in p.stderr.decode()


def test_gpg_with_the_wrong_passphrase_refuses_ours(home, tmp_path, keys):
    out = io.BytesIO()
    openpgp.encrypt(io.BytesIO(b"secret"), out, keys)
    (tmp_path / "msg.gpg").write_bytes(out.getvalue())
    p = gpg(home, "--decrypt", str(tmp_path / "msg.gpg"), passphrase="not it", check=False)
    assert p.returncode != 0 and b"BAD_PASSPHRASE" in p.stderr


# --- we read gpg's ------------------------------------------------------------------------

def gpg_session_key(home, path):
    """gpg's own session key of a message (for SKESK without an encrypted key: the S2K key)."""
    p = gpg(home, "--decrypt", "--show-session-key", "-o", os.devnull, str(path))
    algo, key = re.search(r"session key: '(\d+):([0-9A-F]+)'", p.stderr.decode()).groups()
    return int(algo), bytes.fromhex(key)


def our_session_key(msg):
    """The S2K key cairn.openpgp derives from the message's SKESK packet (old-format, as gpg
    writes it: 0x8c, one length octet)."""
    assert msg[0] == 0x8C
    body = msg[2:2 + msg[1]]
    version, cipher, s2k_type, hash_id = body[:4]
    assert version == 4
    salt = body[4:12] if s2k_type in (1, 3) else b""
    count = openpgp.decode_count(body[12]) if s2k_type == 3 else 0
    key_length = {7: 16, 8: 24, 9: 32}[cipher]
    return cipher, openpgp.KeyCache(PASSPHRASE).key(s2k_type, hash_id, salt, count, key_length)


GPG_CASES = {
    "default": [],
    "AES128": ["--cipher-algo", "AES128"],
    "AES192": ["--cipher-algo", "AES192"],
    "AES256": ["--cipher-algo", "AES256"],
    "compress-none": ["--compress-algo", "none"],
    "compress-zip": ["--compress-algo", "zip"],
    "compress-zlib": ["--compress-algo", "zlib"],
    "compress-bzip2": ["--compress-algo", "bzip2"],
    "z9": ["-z", "9"],
    "force-mdc": ["--force-mdc"],
    "no-force-mdc": ["--no-force-mdc"],          # gpg 2.2.8 and later still write an MDC
}
for _mode in ("0", "1", "3"):
    for _digest in ("SHA1", "SHA256", "SHA512"):
        GPG_CASES[f"s2k-mode-{_mode}-{_digest}"] = ["--s2k-mode", _mode, "--s2k-digest-algo", _digest]
GPG_CASES["AES192-SHA1-bzip2"] = ["--cipher-algo", "AES192", "--s2k-digest-algo", "SHA1", "--compress-algo", "bzip2"]
GPG_CASES["AES128-SHA512-zlib-s2k1"] = ["--cipher-algo", "AES128", "--s2k-digest-algo", "SHA512",
                                        "--compress-algo", "zlib", "--s2k-mode", "1"]


@pytest.mark.parametrize("case", sorted(GPG_CASES))
@pytest.mark.parametrize("source", ["file", "stdin"])
def test_decrypt_reads_what_gpg_writes(home, tmp_path, case, source):
    """``source`` stdin: gpg does not know the length and writes partial lengths (8 KiB), as
    it does for cairn's volumes today (python-gnupg gives them on stdin)."""
    data = mixed(700000, seed=len(case))
    opts = GPG_CASES[case]
    if case != "default":
        opts = opts + ["--s2k-count", "65536"]     # gpg's default count once (case "default") is enough
    path = tmp_path / "msg.gpg"
    if source == "file":
        (tmp_path / "data").write_bytes(data)
        gpg(home, "--symmetric", *opts, "-o", str(path), str(tmp_path / "data"))
    else:
        gpg(home, "--symmetric", *opts, "-o", str(path), data=data)
    msg = path.read_bytes()
    assert openpgp.is_symmetric_message(msg[:64])
    assert ours(msg, openpgp.KeyCache(PASSPHRASE)) == data
    if source == "file":
        assert our_session_key(msg) == gpg_session_key(home, path)      # S2K known answers from gpg
    with pytest.raises(BadPassphrase, match="quick check"):
        ours(msg, openpgp.KeyCache(PASSPHRASE + "x"))


def test_gpg_messages_of_every_size(home, tmp_path):
    keys = openpgp.KeyCache(PASSPHRASE)
    for size in (0, 1, 8191, 8192, 8193, MiB):
        data = mixed(size, seed=size)
        p = gpg(home, "--symmetric", "--s2k-count", "65536", "-o", "-", data=data)
        assert ours(p.stdout, keys) == data


def test_damaged_gpg_message(home, tmp_path):
    data = mixed(300000, seed=2)
    msg = gpg(home, "--symmetric", "--s2k-count", "65536", "-o", "-", data=data).stdout
    keys = openpgp.KeyCache(PASSPHRASE)
    for pos in (len(msg) // 2, len(msg) - 5, len(msg) - 30, 40):
        bad = msg[:pos] + bytes([msg[pos] ^ 0x10]) + msg[pos + 1:]
        with pytest.raises((CorruptCiphertext, BadPassphrase)):
            ours(bad, keys)
    for cut in (len(msg) - 1, len(msg) // 2, 30):
        with pytest.raises(CorruptCiphertext):
            ours(msg[:cut], keys)


@pytest.mark.parametrize("opts", [["--rfc2440"], ["--rfc2440", "--cipher-algo", "AES256"],
                                  ["--rfc2440", "--compress-algo", "none", "--cipher-algo", "AES128"]],
                         ids=["rfc2440", "rfc2440-AES256", "rfc2440-plain-AES128"])
def test_messages_without_mdc_are_refused(home, tmp_path, opts):
    data = b"no integrity protection\n" * 100
    path = tmp_path / "msg.gpg"
    gpg(home, "--symmetric", *opts, "-o", str(path), data=data)
    msg = path.read_bytes()
    skesk_end = 2 + msg[1]
    assert msg[skesk_end] & 0x3F == 9 or (msg[skesk_end] >> 2) & 0x0F == 9, "gpg wrote no SED packet"
    out = io.BytesIO()
    with pytest.raises(CorruptCiphertext, match="without integrity protection"):
        openpgp.decrypt(io.BytesIO(msg), out, openpgp.KeyCache(PASSPHRASE))
    assert out.getvalue() == b""
    assert gpg(home, "--decrypt", str(path), check=False).returncode != 0       # as gpg itself does


def test_wrong_passphrase_on_a_gpg_message(home, tmp_path):
    msg = gpg(home, "--symmetric", "-o", "-", data=b"x" * 5000).stdout
    with pytest.raises(BadPassphrase) as e:
        ours(msg, openpgp.KeyCache("the wrong one"))
    assert "the wrong one" not in str(e.value) and PASSPHRASE not in str(e.value)


def test_armored_message_is_left_to_gpg(home):
    msg = gpg(home, "--symmetric", "--armor", "-o", "-", data=b"armored").stdout
    with pytest.raises(openpgp.Unsupported, match="armor"):
        openpgp.decrypt(io.BytesIO(msg), NoWrites(), openpgp.KeyCache(PASSPHRASE))


@pytest.mark.parametrize("opts", [["--compress-algo", "zip"], ["--compress-algo", "none"]])
def test_signed_symmetric_message_is_unsupported(gnupghome, opts):
    home = gnupghome["home"]
    msg = gpg(home, "--symmetric", "--sign", "--default-key", gnupghome["sign"], *opts, "-o", "-",
              data=b"signed data\n" * 1000).stdout
    with pytest.raises(openpgp.Unsupported, match="signed"):
        openpgp.decrypt(io.BytesIO(msg), NoWrites(), openpgp.KeyCache(PASSPHRASE))
    assert openpgp.is_symmetric_message(msg)       # the start looks the same: decrypt() tells


@pytest.mark.parametrize("symmetric_too", [False, True])
def test_public_key_message_is_unsupported(gnupghome, symmetric_too):
    home = gnupghome["home"]
    extra = ["--symmetric"] if symmetric_too else []
    msg = gpg(home, "--encrypt", *extra, "--trust-model", "always", "-r", gnupghome["enc"], "-o", "-",
              data=b"for a key\n" * 100).stdout
    with pytest.raises(openpgp.Unsupported, match="public key"):
        openpgp.decrypt(io.BytesIO(msg), NoWrites(), openpgp.KeyCache(PASSPHRASE))
    assert openpgp.is_symmetric_message(msg) is False
