# SPDX-License-Identifier: GPL-3.0-or-later
"""How gpg's results are judged, with python-gnupg result stand-ins."""
import gzip
import hashlib
import io
import os
import random
import subprocess
import zlib
from types import SimpleNamespace

import pytest

import cairn.crypto
from cairn.crypto import Crypto, CryptoOptions, _check_local_write, _failure, write_gzip
from cairn.errors import (BadPassphrase, CorruptArchive, CorruptCiphertext, CryptoError, ExitCode, LocalIOError,
                          NoSecretKey)


def test_good_decryption_with_a_write_error_is_a_local_disk_error():
    r = SimpleNamespace(ok=True, returncode=2,
                        stderr="[GNUPG:] DECRYPTION_OKAY\ngpg: error writing to '/tmp/x.tar': No space left on device\n")
    with pytest.raises(LocalIOError) as e:
        _check_local_write(r, "/tmp/x.tar")
    assert e.value.exit_code == ExitCode.LOCAL_IO == 62
    assert "No space left on device" in e.value.message and "/tmp/x.tar" in e.value.message


@pytest.mark.parametrize("returncode,stderr", [
    (2, "[GNUPG:] DECRYPTION_OKAY\ngpg: Can't check signature: No public key\n"),   # output complete
    (0, "gpg: encrypted with 1 passphrase\n"),
    (None, "gpg: error writing: No space left on device\n"),   # a python-gnupg without returncode
])
def test_other_results_are_left_to_the_usual_checks(returncode, stderr):
    _check_local_write(SimpleNamespace(ok=True, returncode=returncode, stderr=stderr), "/tmp/x")


@pytest.mark.parametrize("stderr, kind", [
    ("[GNUPG:] NEED_PASSPHRASE_SYM 9 3 2\n[GNUPG:] BAD_PASSPHRASE\n", BadPassphrase),
    ("gpg: decryption failed: Bad session key\n", BadPassphrase),
    ("[GNUPG:] ENC_TO 1234 1 0\n[GNUPG:] NO_SECKEY 1234\n", NoSecretKey),
    ("[GNUPG:] NODATA 3\n", CorruptCiphertext),
    ("gpg: invalid packet (ctb=2f)\n", CorruptCiphertext),
    ("[GNUPG:] BADMDC\n[GNUPG:] DECRYPTION_FAILED\n", CorruptCiphertext),
    ("[GNUPG:] INV_RECP 0 ABCD\n", CryptoError),
])
def test_each_gpg_failure_has_its_own_class(stderr, kind):
    """The reason is read from gpg's status lines once, in the crypto layer; callers tell a
    missing secret key from a corrupt file by its class (exit 31 for all)."""
    err = _failure(SimpleNamespace(ok=False, stderr=stderr, status="failed"), "could not decrypt x.gpg")
    assert err.__class__ is kind and err.exit_code == ExitCode.GPG_FAILED
    assert err.message.startswith("gpg could not decrypt x.gpg: ")


@pytest.mark.parametrize("name, data, expect", [
    ("duplicity-full.20260101T000000Z.vol1.difftar.gz", gzip.compress(b"tar bytes"), b"tar bytes"),
    ("duplicity-full.20260101T000000Z.vol1.difftar", b"raw tar", b"raw tar"),
    ("df.kx1.1.dt.z", gzip.compress(b"short name"), b"short name"),
])
def test_decode_by_the_remote_name(tmp_path, name, data, expect):
    src, dst = tmp_path / "fetched", tmp_path / "plain"
    src.write_bytes(data)
    Crypto(CryptoOptions(mode="none")).decode_file(name, str(src), str(dst))
    assert dst.read_bytes() == expect and sorted(os.listdir(tmp_path)) == ["fetched", "plain"]


def test_a_damaged_gzip_volume_is_corrupt_and_leaves_nothing(tmp_path):
    src, dst = tmp_path / "fetched", tmp_path / "plain"
    src.write_bytes(gzip.compress(b"x" * 1000)[:-9])
    with pytest.raises(CorruptArchive, match="vol1.difftar.gz is corrupt"):
        Crypto(CryptoOptions(mode="none")).decode_file("duplicity-full.20260101T000000Z.vol1.difftar.gz",
                                                       str(src), str(dst))
    assert not dst.exists() and sorted(os.listdir(tmp_path)) == ["fetched"]


@pytest.mark.parametrize("isal", [True, False], ids=["isal", "without-isal"])
def test_one_gzip_writer_for_the_archive_dirs_signatures(tmp_path, monkeypatch, isal):
    # ISA-L's deflate where python-isal is installed, duplicity's level 6 otherwise: a .gz file
    # duplicity's gzip module reads
    if isal:
        assert cairn.crypto.igzip is not None, "python-isal is a runtime requirement"
    else:
        monkeypatch.setattr(cairn.crypto, "igzip", None)
    data = b"".join(b"%d data " % i for i in range(2000))
    src = tmp_path / "in"
    src.write_bytes(data)
    write_gzip(str(src), str(tmp_path / "a.gz"))
    with open(src, "rb") as f:
        write_gzip(f, str(tmp_path / "b.gz"))
    a = (tmp_path / "a.gz").read_bytes()
    assert a == (tmp_path / "b.gz").read_bytes() and gzip.decompress(a) == data
    assert a[4:8] == b"\0\0\0\0" and not a[3] & 0x08      # mtime 0, no stored file name
    # level 6 is zlib's stream; ISA-L writes another, as valid. The header's last byte (the OS)
    # is left out: gzip.compress writes another than GzipFile does
    level6 = gzip.compress(data, compresslevel=6, mtime=0)
    assert (a[10:] == level6[10:]) is not isal


def _volume_data(seed):
    """Text, then random bytes (an already compressed file), then text again: a volume's mix."""
    rnd = random.Random(seed)
    text = b"".join(b"%d line of a config file, %s\n" % (i, rnd.choice([b"yes", b"no", b"maybe"]))
                    for i in range(60_000))
    return text + rnd.randbytes(3 << 20) + text[:700_001]


@pytest.mark.parametrize("compress,level", [(True, None), (True, 1), (True, 9), (False, None), (True, 0)])
def test_a_volume_without_encryption_is_one_gzip_of_the_built_in_deflate(tmp_path, compress, level):
    """--no-encryption: the volume's .gz is gzip's container around the deflate encrypted volumes
    get (ISA-L, incompressible stretches stored): gzip and zlib read it, its SHA1 is what is
    returned, text shrinks, random bytes are stored and not inflated."""
    data = _volume_data(3)
    crypto = Crypto(CryptoOptions(mode="none"))
    dst = tmp_path / "vol.difftar.gz"
    sha1 = crypto.encrypt_file(io.BytesIO(data), str(dst), compress=compress, compress_level=level)
    out = dst.read_bytes()
    assert sha1 == hashlib.sha1(out).hexdigest()
    assert out[:4] == b"\x1f\x8b\x08\x00" and out[4:8] == b"\0\0\0\0"     # deflate, no name, mtime 0
    assert gzip.decompress(out) == data
    assert zlib.decompress(out, 16 + zlib.MAX_WBITS) == data
    random_part = 3 << 20
    if compress and level != 0:
        assert len(out) < random_part + (len(data) - random_part) // 3, "the text was not compressed"
    else:
        assert len(data) < len(out) < len(data) * 1.001, "stored blocks only"
    assert len(out) < len(data) * 1.001


def test_an_empty_volume_without_encryption(tmp_path):
    crypto = Crypto(CryptoOptions(mode="none"))
    for compress in (True, False):
        dst = tmp_path / f"empty-{compress}.gz"
        crypto.encrypt_file(io.BytesIO(b""), str(dst), compress=compress)
        assert gzip.decompress(dst.read_bytes()) == b""


@pytest.fixture
def fake_gpg(monkeypatch):
    """gpg's status output for the session-key call, stood in: records argv and stdin."""
    fake = SimpleNamespace(stdout=b"", calls=[])

    def run(argv, input=None, **kw):
        fake.calls.append((argv, input, kw))
        return SimpleNamespace(returncode=2, stdout=fake.stdout)
    monkeypatch.setattr("cairn.crypto.subprocess.run", run)
    monkeypatch.setattr(Crypto, "_g", lambda self: None)
    return fake


def test_session_keys_are_read_from_the_status_lines_only(fake_gpg):
    key = bytes(range(32))
    fake_gpg.stdout = (b"[GNUPG:] ENC_TO 84F0EB6A6EB4FA59 1 0\n"
                       b"[GNUPG:] DECRYPTION_KEY AAAA BBBB u\n"
                       b"gpg: session key: '9:0000'\n"                    # not a status line
                       b"[GNUPG:] SESSION_KEY 9:" + key.hex().upper().encode() + b"\n"
                       b"[GNUPG:] SESSION_KEY 9:NOTHEX\n[GNUPG:] SESSION_KEY x:00\n[GNUPG:] SESSION_KEY\n"
                       b"[GNUPG:] BADMDC\n")
    c = Crypto(CryptoOptions(mode="symmetric", passphrase="key pass", gnupg_home="/nonexistent/home"))
    assert c.session_keys(b"the key message") == [(9, key)]
    argv, stdin, kw = fake_gpg.calls[0]
    # the passphrase on stdin before the message, never in argv; stderr (gpg logs the key there)
    # discarded and gpg's configuration file (a log-file option) not read
    assert stdin == b"key pass\nthe key message" and not any("key pass" in a for a in argv)
    assert "--no-options" in argv and "--show-session-key" in argv
    assert argv[argv.index("--status-fd") + 1] == "1" and argv[argv.index("--passphrase-fd") + 1] == "0"
    assert kw["stderr"] is subprocess.DEVNULL
    assert c._unlocked == {"AAAA"}                     # cleared from the agent by close()
    # without a passphrase: the message alone, nothing unlocked by us
    c = Crypto(CryptoOptions(mode="symmetric", gnupg_home="/nonexistent/home"))
    assert c.session_keys(b"m") == [(9, key)]
    argv, stdin = fake_gpg.calls[1][:2]
    assert stdin == b"m" and "--passphrase-fd" not in argv and c._unlocked == set()


def test_no_session_key_when_gpg_cannot_run(monkeypatch):
    def run(*a, **kw):
        raise FileNotFoundError("gpg")
    monkeypatch.setattr("cairn.crypto.subprocess.run", run)
    monkeypatch.setattr(Crypto, "_g", lambda self: None)
    assert Crypto(CryptoOptions(mode="symmetric")).session_keys(b"m") == []
