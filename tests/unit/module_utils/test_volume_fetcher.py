# SPDX-License-Identifier: GPL-3.0-or-later
"""The restore's volume fetcher with a fake target and a fake gpg: every set of a chain gets its
first volume decrypting at once, however far the full set reads ahead."""
import threading

from cairn.restore import VolumeFetcher


class Target:
    def __init__(self, tmp_path):
        self.dir = tmp_path

    def local_path(self, name):
        path = self.dir / name
        path.write_bytes(b"encrypted")
        return str(path)


class SlowGpg:
    """Decrypts nothing until released; records which volumes it has started on."""

    def __init__(self):
        self.started = {}
        self.release = threading.Event()

    def decode_file(self, name, src, out, follow=False):
        assert follow            # restore parses a volume while it is being decrypted
        self.started.setdefault(name, threading.Event()).set()
        self.release.wait(30)
        with open(out, "wb") as f:
            f.write(name.encode())

    def wait_started(self, name, timeout):
        return self.started.setdefault(name, threading.Event()).wait(timeout)


def test_the_incremental_sets_head_volume_does_not_queue_behind_the_full_sets_read_ahead(tmp_path):
    gpg = SlowGpg()
    fetcher = VolumeFetcher(Target(tmp_path), gpg, str(tmp_path), streams=2)
    full = fetcher.stream([("full.vol1.difftar.gpg", None), ("full.vol2.difftar.gpg", None)])
    inc = fetcher.stream([("inc.vol1.difftar.gpg", None)])
    try:
        name, full_reader = next(full)         # submits vol1 and reads ahead vol2
        assert name == "full.vol1.difftar.gpg"
        _name, inc_reader = next(inc)
        # both full volumes are busy decrypting; the merge needs the incremental's first one
        # now, and it must be under way rather than waiting for a free worker
        assert gpg.wait_started("full.vol1.difftar.gpg", 10) and gpg.wait_started("full.vol2.difftar.gpg", 10)
        assert gpg.wait_started("inc.vol1.difftar.gpg", 10)
        gpg.release.set()
        assert full_reader.read() == b"full.vol1.difftar.gpg"
        assert inc_reader.read() == b"inc.vol1.difftar.gpg"
    finally:
        gpg.release.set()
        full.close()
        inc.close()
        fetcher.close()


# --- the built-in decryption, handed over in memory ----------------------------------------

import hashlib                                          # noqa: E402
import os                                               # noqa: E402

import pytest                                           # noqa: E402

from cairn import openpgp                               # noqa: E402
from cairn.crypto import Crypto, CryptoOptions          # noqa: E402
from cairn.errors import CorruptCiphertext, HashMismatch  # noqa: E402

PASSPHRASE = "fetcher test passphrase"
NAME = "duplicity-full.20260101T000000Z.vol1.difftar.gpg"


class Stored:
    """A file:// target holding volumes as they are."""

    def __init__(self, tmp_path):
        self.dir = tmp_path / "target"
        self.dir.mkdir()

    def local_path(self, name):
        return str(self.dir / name)

    def put(self, name, plaintext):
        with open(self.local_path(name), "wb") as out:
            openpgp.encrypt(_Bytes(plaintext), out, openpgp.KeyCache(PASSPHRASE, s2k_count=1024))
        return hashlib.sha1((self.dir / name).read_bytes()).hexdigest()


class _Bytes:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def read(self, n=-1):
        n = len(self.data) - self.pos if n < 0 else n
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out


def _fetcher(tmp_path, target):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    return VolumeFetcher(target, Crypto(CryptoOptions(passphrase=PASSPHRASE)), str(tmp)), tmp


def test_a_volume_the_built_in_path_decrypts_never_lands_in_the_temp_dir(tmp_path):
    target = Stored(tmp_path)
    plaintext = os.urandom(3 << 20) + b"z" * (5 << 20)
    sha1 = target.put(NAME, plaintext)
    fetcher, tmp = _fetcher(tmp_path, target)
    try:
        for _name, reader in fetcher.stream([(NAME, sha1)]):
            first = reader.read(1 << 20)
            assert os.listdir(tmp) == [], "the plaintext goes through memory, not a temp file"
            assert first + reader.read() == plaintext
    finally:
        fetcher.close()


def test_a_volume_not_matching_its_manifest_hands_out_nothing(tmp_path):
    target = Stored(tmp_path)
    sha1 = target.put(NAME, b"the volume as it was written" * 1000)
    with open(target.local_path(NAME), "r+b") as f:
        f.seek(-100, os.SEEK_END)
        f.write(b"\0" * 10)         # damage near the end: decryption alone would see it only there
    fetcher, _tmp = _fetcher(tmp_path, target)
    try:
        with pytest.raises(HashMismatch):
            for _name, reader in fetcher.stream([(NAME, sha1)]):
                reader.read(1)
                pytest.fail("a byte of a volume that fails its SHA1 reached the reader")
    finally:
        fetcher.close()


def test_a_failed_mdc_reaches_the_reader(tmp_path):
    target = Stored(tmp_path)
    target.put(NAME, os.urandom(2 << 20))
    with open(target.local_path(NAME), "r+b") as f:
        f.seek(1 << 20)             # inside the literal data: only the MDC can tell
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 1]))
    sha1 = hashlib.sha1(open(target.local_path(NAME), "rb").read()).hexdigest()  # a manifest that agrees
    fetcher, _tmp = _fetcher(tmp_path, target)
    try:
        with pytest.raises(CorruptCiphertext, match="MDC"):
            for _name, reader in fetcher.stream([(NAME, sha1)]):
                reader.read()
    finally:
        fetcher.close()


def test_a_reader_that_stops_early_does_not_hang_the_decryption(tmp_path):
    """The tar parser stops at the end mark; what follows (here 20 MiB, past the pipe's
    capacity) must neither block the fetch nor the next volume."""
    target = Stored(tmp_path)
    names = [NAME, NAME.replace("vol1", "vol2")]
    sums = [target.put(n, n.encode() + os.urandom(20 << 20)) for n in names]
    fetcher, _tmp = _fetcher(tmp_path, target)
    got = []
    try:
        for name, reader in fetcher.stream(list(zip(names, sums))):
            got.append(reader.read(len(name)))
    finally:
        fetcher.close()
    assert got == [n.encode() for n in names]


class Unsupported(Crypto):
    """The built-in path gives up before writing (a public-key or signed message): gpg reads it."""

    def __init__(self):
        super().__init__(CryptoOptions(passphrase=PASSPHRASE))
        self.gpg_used = []

    def decrypt_builtin(self, name, src, sink):
        raise openpgp.Unsupported("a message encrypted to a public key")

    def decode_file(self, name, src, dst, *, follow=False, sha1=None):
        self.gpg_used.append(name)
        with open(dst, "wb") as f:
            f.write(b"what gpg decrypted")


def test_what_the_built_in_path_does_not_read_goes_to_gpg(tmp_path):
    target = Stored(tmp_path)
    sha1 = target.put(NAME, b"whatever")
    crypto = Unsupported()
    fetcher = VolumeFetcher(target, crypto, str(tmp_path))
    try:
        for _name, reader in fetcher.stream([(NAME, sha1)]):
            assert reader.read() == b"what gpg decrypted"
    finally:
        fetcher.close()
    assert crypto.gpg_used == [NAME]
