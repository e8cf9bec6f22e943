# SPDX-License-Identifier: GPL-3.0-or-later
"""OpenPGP (RFC 4880) messages encrypted with a passphrase, in process: no gpg to spawn.

What ``gpg --symmetric`` writes and reads, for cairn's volumes, signatures and manifests:

* one or more SKESK v4 packets (section 5.3): the session key is the passphrase's S2K key
  (section 3.7: simple, salted or iterated and salted; any of MD5 .. SHA512, SHA3), or is
  encrypted with it;
* one SEIPD v1 packet (5.13): CFB with a zero IV over a random block plus its last two octets
  repeated (the "quick check"), the message, and an MDC packet (5.14: SHA-1 of all of it);
* inside, an optional compressed-data packet (5.6: ZIP, ZLIB or BZip2) holding one literal data
  packet (5.9).

Packet headers of both formats are read (4.2), with definite, partial (4.2.2.4) and the old
format's indeterminate lengths; marker packets (5.8) are skipped. Messages encrypted to public
keys (PKESK v3, 5.1) are read too when the caller can get their session key: gpg decrypts it
from a message cut down to the key packets (``key_message``), and the bulk of the message is
read here. Everything else -- signed messages, AEAD (SEIPD v2, tag 20, SKESK v5/v6), ciphers
other than AES, ASCII armor, text-mode literals -- raises :class:`Unsupported` before any
output is written, and the caller hands the file to gpg instead.

Volumes are streamed in 1 MiB pieces (zlib, hashlib and OpenSSL then work on big buffers and
release the GIL), in constant memory whatever the message's size or compression ratio.

Written from RFC 4880 (and RFC 9580 for the algorithm numbers it adds); no code was taken
from another implementation.
"""
import bz2
import hashlib
import hmac
import io
import os
import threading
import zlib

from .errors import BadPassphrase, CorruptCiphertext, CryptoError

try:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
    from cryptography.hazmat.primitives.ciphers.modes import CBC, ECB
    try:      # where newer cryptography keeps CFB (it warns for the old name)
        from cryptography.hazmat.decrepit.ciphers.modes import CFB
    except ImportError:       # Debian 12's python3-cryptography 38
        from cryptography.hazmat.primitives.ciphers.modes import CFB
except ImportError:           # the fast path is then Unsupported, and gpg does the work
    Cipher = algorithms = CFB = CBC = ECB = None

try:    # ISA-L's deflate: 5-10x zlib's speed at nearly its ratio, inflate 2-3x (python-isal)
    from isal import isal_zlib
except ImportError:           # the standard library's zlib does the same, slower
    isal_zlib = None
_ZLIB_ERRORS = (zlib.error,) if isal_zlib is None else (zlib.error, isal_zlib.error)
crc32 = (isal_zlib or zlib).crc32     # ISA-L's CRC-32: 6 GB/s here, three times zlib's

CHUNK = 1 << 20               # what is read, hashed, ciphered and written at a time
DEFAULT_S2K_COUNT = 65011712  # gpg's default (and the largest the one-octet count can say)

# section 9.2 (and RFC 9580 9.3): the ciphers the fast path speaks, with their key length
_CIPHERS = {7: ("AES128", 16), 8: ("AES192", 24), 9: ("AES256", 32)}
_CIPHER_IDS = {"AES": 7, "AES128": 7, "AES192": 8, "AES256": 9}
_BLOCK = 16                   # AES's block size
# section 9.4 (and RFC 9580 9.5): hashlib's names
_HASHES = {1: "md5", 2: "sha1", 3: "ripemd160", 8: "sha256", 9: "sha384", 10: "sha512", 11: "sha224",
           12: "sha3_256", 14: "sha3_512"}
_WRITE_HASHES = {"SHA1": 2, "SHA224": 11, "SHA256": 8, "SHA384": 9, "SHA512": 10}
_COMPRESSION = {0: "none", 1: "ZIP", 2: "ZLIB", 3: "BZip2"}

# packet tags (section 4.3)
_PKESK, _SIG, _SKESK, _ONEPASS, _COMPRESSED, _SED, _MARKER, _LITERAL, _SEIPD, _MDC, _AEAD = \
    1, 2, 3, 4, 8, 9, 10, 11, 18, 19, 20
_SMALL_PACKET = 4096          # more than any SKESK or marker packet needs
_MAX_SKESKS = 8               # each costs an S2K: a crafted file must not make a run crawl
_MAX_PKESKS = 64              # recipients (PKESK); gpg gets them all in one call
_MAX_CACHED_KEYS = 256
_S2K_BUFFER = 1 << 16         # salt+passphrase repeated into this much, hashed over and over
_MDC_SIZE = 22                # 0xD3 0x14 and SHA-1's 20 octets


class Unsupported(CryptoError):
    """The message uses something the fast path does not read (a signed message, a public-key
    message without its session key, AEAD packets, a cipher other than AES, an unknown hash,
    S2K or compression, ASCII armor, a text-mode literal), or the ``cryptography`` package is
    missing: the caller uses gpg instead, on the file from its start. Always raised before any
    output byte is written.

    A CryptoError (exit code 31), so that one that escapes the caller by mistake ends the run
    with gpg's documented code rather than as a bug."""


class _Damaged(Exception):
    """A damaged message (CorruptCiphertext at the API), where the packets around the
    encrypted data say so: truncated, a bad length, trailing data."""


class _DamagedPlaintext(_Damaged):
    """The decrypted data does not parse: a damaged message, or a wrong key whose quick check
    passed by chance (told apart by where it happens)."""


class _BadMdc(_Damaged):
    """The MDC packet is missing or does not match."""


# --- S2K (section 3.7) --------------------------------------------------------------------

def decode_count(c):
    """The number of octets an iterated S2K hashes, from its one-octet code (3.7.1.3)."""
    return (16 + (c & 15)) << ((c >> 4) + 6)


def encode_count(count):
    """The smallest one-octet code that hashes at least ``count`` octets."""
    for c in range(256):
        if decode_count(c) >= count:
            return c
    raise ValueError(f"an S2K count of at most {decode_count(255)} octets is possible, not {count}")


def _hash_repeated(h, unit, total):
    """Feed ``h`` the first ``total`` octets of ``unit`` repeated, from a big pre-built buffer
    (one update per 64 KiB, not per salt+passphrase)."""
    big = unit * max(1, _S2K_BUFFER // len(unit))
    full, rest = divmod(total, len(big))
    for dummy in range(full):
        h.update(big)
    if rest:
        h.update(memoryview(big)[:rest])


def s2k(passphrase, s2k_type, hash_name, salt, count, key_length):
    """The key ``key_length`` octets long that an S2K specifier makes of ``passphrase`` (bytes).

    ``s2k_type`` 0 (simple), 1 (salted) or 3 (iterated and salted, ``count`` the octets to hash,
    decoded); a longer key than the hash gives is made of more hash contexts, the n-th
    preloaded with n-1 zero octets (3.7.1.1)."""
    key = b""
    preload = 0
    while len(key) < key_length:
        h = hashlib.new(hash_name)
        h.update(bytes(preload))
        if s2k_type == 0:
            h.update(passphrase)
        elif s2k_type == 1:
            h.update(salt + passphrase)
        else:
            unit = salt + passphrase
            _hash_repeated(h, unit, max(count, len(unit)))
        key += h.digest()
        preload += 1
    return key[:key_length]


def _hash_name(hash_id):
    """hashlib's name for an OpenPGP hash, or None when this Python does not have it."""
    name = _HASHES.get(hash_id)
    if name is None:
        return None
    try:
        hashlib.new(name)
    except ValueError:    # ripemd160 with OpenSSL 3, md5 under FIPS
        return None
    return name


class KeyCache:
    """One run's passphrase and the keys derived from it.

    The passphrase is never in repr(), str() or an exception's text, and a KeyCache is not
    pickled. S2K keys are derived once per (S2K, hash, salt, count, key length) and kept, so a
    restore of many volumes written in one run pays the S2K once. Encryption uses one random
    salt per KeyCache: every message written with it has the same S2K specifier and key (valid
    OpenPGP, as gpg writes for each message; each message still has its own random prefix). A
    KeyCache is shared by threads: a key is derived by one of them while the others wait.
    """

    __slots__ = ("_passphrase", "_cipher", "_hash", "_count", "_salt", "_keys", "_lock", "_deriving")

    def __init__(self, passphrase, *, s2k_count=DEFAULT_S2K_COUNT, cipher="AES256", s2k_hash="SHA256"):
        if isinstance(passphrase, str):
            passphrase = passphrase.encode("utf-8")      # what gpg gets on its passphrase fd
        if not isinstance(passphrase, bytes):
            raise TypeError("the passphrase is str or bytes")
        cipher_id = _CIPHER_IDS.get(str(cipher).upper())
        if cipher_id is None:
            raise ValueError(f"cipher {cipher!r}: the fast path writes only {', '.join(sorted(_CIPHER_IDS))}")
        hash_id = _WRITE_HASHES.get(str(s2k_hash).upper().replace("-", ""))
        if hash_id is None:
            raise ValueError(f"S2K hash {s2k_hash!r}: the fast path writes only {', '.join(sorted(_WRITE_HASHES))}")
        self._passphrase = passphrase
        self._cipher = cipher_id
        self._hash = hash_id
        self._count = encode_count(int(s2k_count))
        self._salt = os.urandom(8)
        self._keys = {}
        self._lock = threading.Lock()
        self._deriving = {}

    def __repr__(self):
        return (f"KeyCache(cipher={_CIPHERS[self._cipher][0]}, s2k_hash={_HASHES[self._hash].upper()}, "
                f"s2k_count={self.s2k_count}, keys={len(self._keys)})")

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("a KeyCache holds a passphrase and is not pickled")

    @property
    def s2k_count(self):
        """The octets the S2K of messages written with this KeyCache hashes (``s2k_count``
        rounded up to what the one-octet count can say)."""
        return decode_count(self._count)

    def key(self, s2k_type, hash_id, salt, count, key_length):
        """The S2K key for a specifier (``count`` decoded), derived once."""
        spec = (s2k_type, hash_id, salt, count, key_length)
        with self._lock:
            key = self._keys.get(spec)
            if key is not None:
                return key
            busy = self._deriving.setdefault(spec, threading.Lock())
        with busy:                 # another thread deriving the same key: wait for it
            with self._lock:
                key = self._keys.get(spec)
            if key is None:
                key = s2k(self._passphrase, s2k_type, _HASHES[hash_id], salt, count, key_length)
                with self._lock:
                    if len(self._keys) >= _MAX_CACHED_KEYS:       # crafted files, each its own salt
                        self._keys.pop(next(iter(self._keys)))
                    self._keys[spec] = key
                    self._deriving.pop(spec, None)
        return key

    def _for_writing(self):
        """The packets before the encrypted data of every message written with this KeyCache
        (its SKESK packet), and the session key (its S2K key)."""
        key_length = _CIPHERS[self._cipher][1]
        key = self.key(3, self._hash, self._salt, decode_count(self._count), key_length)
        body = bytes((4, self._cipher, 3, self._hash)) + self._salt + bytes((self._count,))
        return bytes((0xC0 | _SKESK,)) + _definite_length(len(body)) + body, key


class RecipientKeys:
    """One run's session key for messages to public keys, and its PKESK packets.

    gpg makes them (it holds the recipients' keys and their preferences): ``from_gpg_message``
    takes a short message gpg encrypted both to the recipients and with a throwaway passphrase
    (``gpg --encrypt --symmetric``), whose SKESK and PKESK packets carry one session key; the
    passphrase opens the SKESK, and the message's own MDC proves the key. Every message
    ``encrypt`` writes with a RecipientKeys then has those PKESK packets (not the SKESK) and is
    encrypted with that session key, each with its own random prefix: what any OpenPGP reader
    decrypts with the recipients' secret keys, as it would gpg's. Like a KeyCache, the key is
    one per run, never in repr() or an exception, and a RecipientKeys is not pickled.
    """

    __slots__ = ("_head", "_key", "cipher")

    def __init__(self, pkesks, cipher, key):
        if cipher not in _CIPHERS or len(key) != _CIPHERS[cipher][1] or not pkesks:
            raise ValueError("a RecipientKeys needs PKESK packets and an AES session key")
        self._head = b"".join(bytes((0xC0 | _PKESK,)) + _definite_length(len(b)) + b for b in pkesks)
        self._key = key
        self.cipher = cipher

    @classmethod
    def from_gpg_message(cls, message, passphrase, plaintext):
        """From ``message``, which gpg encrypted to the recipients and with ``passphrase``
        (one SKESK), and whose plaintext must be ``plaintext``. Raises Unsupported when the
        message is not that (another cipher than AES, no PKESK, more than one SKESK, ...)."""
        if Cipher is None:
            raise Unsupported("the cryptography package is not installed")
        pieces = [bytes(message)]
        src = _Source(lambda n: pieces.pop() if pieces else b"")
        pkesks, skesks = [], []
        try:
            while True:
                h = _header(src)
                if h is None:
                    raise Unsupported("no encrypted data in gpg's message")
                tag, length, partial = h
                if tag == _SEIPD:
                    break
                body = _small_body(src, length, partial, "a key packet")
                if tag == _PKESK:
                    pkesks.append(body)
                elif tag == _SKESK:
                    skesks.append(_parse_skesk(body))
                elif tag != _MARKER:
                    raise Unsupported(f"a packet of tag {tag} before gpg's encrypted data")
        except _Damaged as e:
            raise Unsupported(f"gpg's message cannot be parsed ({e})") from None
        if len(skesks) != 1 or isinstance(skesks[0], str) or not pkesks or len(pkesks) > _MAX_PKESKS:
            raise Unsupported("gpg's message is not one passphrase packet and the public-key packets")
        keys = KeyCache(passphrase)
        candidates = _session_keys(skesks, keys)
        out = io.BytesIO()
        try:
            decrypt(io.BytesIO(bytes(message)), out, keys, session_keys=lambda m: [])
        except CryptoError as e:
            raise Unsupported(f"gpg's message does not decrypt with its passphrase ({e})") from None
        if len(candidates) != 1 or not hmac.compare_digest(out.getvalue(), plaintext):
            raise Unsupported("gpg's message does not hold what was given to it")
        return cls(pkesks, *candidates[0])

    def __repr__(self):
        return f"RecipientKeys(cipher={_CIPHERS[self.cipher][0]}, packets={len(self._head)} octets)"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("a RecipientKeys holds a session key and is not pickled")

    def _for_writing(self):
        return self._head, self._key


# --- writing --------------------------------------------------------------------------------

def _definite_length(n):
    """A new-format packet length (4.2.2.1-3)."""
    if n < 192:
        return bytes((n,))
    if n < 8384:
        n -= 192
        return bytes((192 + (n >> 8), n & 0xFF))
    return b"\xff" + n.to_bytes(4, "big")


_PARTIAL = bytes((224 + CHUNK.bit_length() - 1,))    # "the next 1 MiB, and more after it"


class _PacketWriter:
    """A new-format packet of unknown length, written as it comes: 1 MiB partial body lengths,
    the rest with a definite length at close (a short packet is one definite length)."""

    def __init__(self, tag, sink):
        self._sink = sink
        self._header = bytes((0xC0 | tag,))
        self._parts = []
        self._size = 0

    def write(self, data):
        if not data:
            return
        self._parts.append(data)
        self._size += len(data)
        if self._size > CHUNK:           # strictly more: the last piece is never a partial one
            data = b"".join(self._parts)
            view = memoryview(data)
            pos = 0
            while len(data) - pos > CHUNK:
                self._sink(self._header + _PARTIAL)
                self._header = b""
                self._sink(view[pos:pos + CHUNK])
                pos += CHUNK
            self._parts = [data[pos:]]
            self._size = len(data) - pos

    def close(self):
        self._sink(self._header + _definite_length(self._size))
        for part in self._parts:
            self._sink(part)
        self._parts = []


def _cfb(key, decrypt=False):
    """AES in plain CFB with a zero IV (what SEIPD and encrypted session keys use)."""
    cipher = Cipher(algorithms.AES(key), CFB(bytes(_BLOCK)))
    return cipher.decryptor() if decrypt else cipher.encryptor()


def _update(ctx, data):
    """``ctx.update(data)`` into a buffer of our own: cryptography 38's update() of a 1 MiB piece
    costs twice what OpenSSL does (it allocates and copies twice); update_into does not."""
    out = bytearray(len(data) + _BLOCK - 1)
    del out[ctx.update_into(data, out):]
    return out


class _Encryptor:
    """SEIPD v1's contents: the random prefix, the data, the MDC packet; CFB with a zero IV."""

    def __init__(self, key, sink):
        self._sink = sink
        self._cipher = _cfb(key)
        self._mdc = hashlib.sha1()
        prefix = os.urandom(_BLOCK)
        self.write(prefix + prefix[-2:])

    def write(self, data):
        if data:
            self._mdc.update(data)
            self._sink(_update(self._cipher, data))

    def close(self):
        self._mdc.update(b"\xd3\x14")
        self._sink(_update(self._cipher, b"\xd3\x14" + self._mdc.digest()) + self._cipher.finalize())


_WINDOW_BITS = 15             # deflate's 32 KiB window (gpg's ZIP uses 8 KiB: faster, ~9 % bigger on text)
_SEGMENT = 1 << 18            # what store_incompressible judges at a time
_PROBE = 1 << 12              # ... from this much of its middle, start and end
_INCOMPRESSIBLE = 0.97        # ... stored when deflate (level 1) cannot take 3 % off any probe


def stored_blocks(data):
    """``data`` as deflate stored blocks (RFC 1951 3.2.4), none of them final."""
    out = []
    view = memoryview(data)
    for pos in range(0, len(view), 0xFFFF):
        n = min(0xFFFF, len(view) - pos)
        out.append(bytes((0, n & 0xFF, n >> 8, ~n & 0xFF, (~n >> 8) & 0xFF)))
        out.append(view[pos:pos + n])
    return b"".join(out)


def _incompressible(segment):
    for start in (len(segment) // 2 - _PROBE // 2, 0, len(segment) - _PROBE):
        probe = segment[max(0, start):max(0, start) + _PROBE]
        if len(zlib.compress(probe, 1)) < _INCOMPRESSIBLE * len(probe):
            return False
    return True


def isal_level(level):
    """ISA-L's level (0-3) for a gpg/zlib level (1-9). On the benchmark dataset's tar (352 MB)
    ISA-L's 2 takes 0.80 s and writes 224.5 MB, its 3 takes 1.62 s for 223.0 MB (zlib's 6: 11.4 s,
    214.6 MB), its 1 0.77 s for 225.3 MB: 2 for the levels up to gpg's default 6, 3 above."""
    return 1 if level <= 2 else 2 if level <= 6 else 3


class Deflater:
    """Raw deflate (the ZIP algorithm, RFC 1951) of what is written, to ``sink``.

    With ``store_incompressible``, each 256 KiB of a big write of which deflate at level 1
    (cheap) cannot shrink 4 KiB by 3 % -- from its middle, nor its start, nor its end: already
    compressed or encrypted files -- goes into stored blocks as it is, instead of through
    deflate at ``level``, which would spend 30-50 ms a MiB to gain nothing. Compressible data
    pays one probe (about 1 %). Before such blocks the compressor is fully flushed
    (Z_FULL_FLUSH: byte-aligned, and no later match refers to anything before that point), so
    the stream stays one valid deflate stream that any inflater, gpg's included, reads."""

    def __init__(self, level, sink, store_incompressible):
        if isal_zlib is not None:
            self._z = isal_zlib.compressobj(isal_level(level), isal_zlib.DEFLATED, -_WINDOW_BITS)
        else:
            self._z = zlib.compressobj(level, zlib.DEFLATED, -_WINDOW_BITS)
        self._sink = sink
        self._adaptive = store_incompressible
        self._fresh = True        # nothing given to the compressor since it was flushed

    def write(self, data):
        if not self._adaptive or len(data) < _SEGMENT // 2:
            self._compress(data)
            return
        for pos in range(0, len(data), _SEGMENT):
            segment = data[pos:pos + _SEGMENT]
            if _incompressible(segment):
                if not self._fresh:
                    self._sink(self._z.flush(zlib.Z_FULL_FLUSH))
                    self._fresh = True
                self._sink(stored_blocks(segment))
            else:
                self._compress(segment)

    def _compress(self, data):
        self._fresh = False
        self._sink(self._z.compress(data))

    def close(self):
        self._sink(self._z.flush())


def encrypt(fin, fout, keys, *, compress_level=6, store_incompressible=True):
    """Read ``fin`` (a binary file object, until it returns b"") and write one OpenPGP message
    to ``fout``; returns the number of octets written.

    The message: with a KeyCache, an SKESK v4 packet (iterated and salted S2K; no encrypted
    session key: the S2K key is the session key); with a RecipientKeys, its PKESK packets
    (the session key encrypted to each recipient, by gpg). Then a SEIPD v1 packet with its MDC, in 1 MiB partial
    lengths. Inside, a compressed-data packet (ZIP, raw deflate, at ``compress_level``, like
    gpg's default) holding a literal data packet ('b', no name, date 0); with
    ``compress_level`` None or 0 (like gpg's ``-z 0`` / ``--compress-algo none``) the literal
    packet alone. ``store_incompressible``: data that does not compress goes into deflate's
    stored blocks without the cost of trying (see Deflater). Memory use is constant.

    Raises Unsupported when ``cryptography`` is missing (nothing written then); errors of
    ``fin`` and ``fout`` (OSError) pass through: the caller writes to a temporary file."""
    if Cipher is None:
        raise Unsupported("the cryptography package is not installed")
    written = [0]

    def out(data):
        written[0] += len(data)
        write_all(fout, data)

    head, key = keys._for_writing()
    out(head)
    seipd = _PacketWriter(_SEIPD, out)
    seipd.write(b"\x01")
    enc = _Encryptor(key, seipd.write)
    compressed = compress_level not in (None, 0)
    if compressed:
        packet = _PacketWriter(_COMPRESSED, enc.write)
        packet.write(b"\x01")
        deflate = Deflater(int(compress_level), packet.write, store_incompressible)
        literal = _PacketWriter(_LITERAL, deflate.write)
    else:
        literal = _PacketWriter(_LITERAL, enc.write)
    literal.write(b"b\x00\x00\x00\x00\x00")       # binary, no name, date 0
    while True:
        data = fin.read(CHUNK)
        if not data:
            break
        literal.write(data)
    literal.close()
    if compressed:
        deflate.close()
        packet.close()
    enc.close()
    seipd.close()
    return written[0]


def write_all(fout, data):
    """``fout.write(data)`` until all of it is written (a raw file may take less at a time)."""
    n = fout.write(data)
    if n is not None and n < len(data):        # a raw (unbuffered) file may write less
        view = memoryview(data)
        while n < len(view):
            more = fout.write(view[n:])
            if not more:
                raise OSError(f"the output file took {n} of {len(view)} octets")
            n += more


# --- reading --------------------------------------------------------------------------------

class _Source:
    """Octets pulled from ``pull(n)`` (a function returning the next piece, b"" at the end; it
    may return more than ``n``, the rest is kept), read by exact counts (headers) or in pieces
    (data). ``damaged`` is the exception for an end that comes too early.

    Headers are read without reading ahead past the packet they are in (``n`` goes down to
    _Body): a header is parsed, or found damaged, before the data after it is pulled, and the
    MDC is reached only by reading all the data before it."""

    __slots__ = ("_pull", "_buf", "_pos", "_eof", "damaged")

    def __init__(self, pull, damaged=_Damaged):
        self._pull = pull
        self._buf = b""
        self._pos = 0
        self._eof = False
        self.damaged = damaged

    def pull(self, n=CHUNK):
        """The next piece, 1 to ``n`` octets; b"" only at the end."""
        buf, pos = self._buf, self._pos
        if pos < len(buf):
            if pos == 0 and len(buf) <= n:
                self._buf = b""
                return buf
            end = min(pos + n, len(buf))
            self._pos = end
            return buf[pos:end]
        if self._eof:
            return b""
        piece = self._pull(n)
        if not piece:
            self._eof = True
            return b""
        if len(piece) <= n:
            return piece
        self._buf, self._pos = piece, n
        return piece[:n]

    def read(self, n, what):
        """Exactly ``n`` octets (``what`` names them for the error when they are not there)."""
        piece = self.pull(n)
        if len(piece) == n:
            return piece
        parts = [piece]
        got = len(piece)
        while piece and got < n:
            piece = self.pull(n - got)
            parts.append(piece)
            got += len(piece)
        if got < n:
            raise self.damaged(f"it ends in the middle of {what}")
        return b"".join(parts)

    def at_end(self):
        if self._pos < len(self._buf):
            return False
        if self._eof:
            return True
        piece = self._pull(CHUNK)
        if not piece:
            self._eof = True
            return True
        self._buf, self._pos = piece, 0
        return False


def _new_length(src, what):
    """A new-format length (4.2.2): (length, partial)."""
    o1 = src.read(1, what)[0]
    if o1 < 192:
        return o1, False
    if o1 < 224:
        return ((o1 - 192) << 8) + src.read(1, what)[0] + 192, False
    if o1 == 255:
        return int.from_bytes(src.read(4, what), "big"), False
    return 1 << (o1 & 0x1F), True


def _header(src):
    """The next packet header: (tag, length, partial), length None for the old format's
    indeterminate length; None at the end of ``src``."""
    first = src.pull(1)
    if not first:
        return None
    c = first[0]
    if not c & 0x80:
        raise src.damaged(f"octet 0x{c:02x} where a packet header should start")
    if c & 0x40:
        tag = c & 0x3F
        length, partial = _new_length(src, "a packet header")
    else:
        tag, kind = (c >> 2) & 0x0F, c & 3
        partial = False
        length = None if kind == 3 else int.from_bytes(src.read(1 << kind, "a packet header"), "big")
    if tag == 0:
        raise src.damaged("a packet with the reserved tag 0")
    return tag, length, partial


class _Body:
    """A packet's body, pulled in pieces: definite, partial lengths (the following length
    headers read as they come), or indeterminate (to the end of ``src``)."""

    __slots__ = ("_src", "_left", "_partial", "_indeterminate")

    def __init__(self, src, length, partial):
        self._src = src
        self._indeterminate = length is None
        self._left = length or 0
        self._partial = partial

    def pull(self, n=CHUNK):
        """Up to ``n`` octets; many small partial lengths (gpg writes 8 KiB ones) are joined
        into one piece, so that the layers above work on big buffers."""
        src = self._src
        if self._indeterminate:
            return src.pull(n)
        parts = []
        got = 0
        while got < n:
            if not self._left:
                if not self._partial:
                    break
                self._left, self._partial = _new_length(src, "a partial body length")
                continue
            piece = src.pull(min(n - got, self._left))
            if not piece:
                raise src.damaged("it is truncated (a packet ends before its length)")
            self._left -= len(piece)
            parts.append(piece)
            got += len(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)


def _small_body(src, length, partial, what):
    if partial or length is None or length > _SMALL_PACKET:
        raise src.damaged(f"{what} with an impossible length")
    return src.read(length, what)


def _parse_skesk(body):
    """An SKESK packet: (cipher id, s2k type, hash id, salt, count, encrypted key), or a str
    saying what the fast path does not read."""
    if len(body) < 4:
        raise _Damaged("a passphrase packet (SKESK) that is too short")
    version, cipher, s2k_type = body[0], body[1], body[2]
    if version != 4:
        return f"a version {version} passphrase packet (SKESK)"
    if cipher not in _CIPHERS:
        return f"cipher algorithm {cipher} (the fast path reads AES)"
    if s2k_type not in (0, 1, 3):
        return f"S2K type {s2k_type}"
    hash_id = body[3]
    if _hash_name(hash_id) is None:
        return f"hash algorithm {hash_id}"
    end = {0: 4, 1: 12, 3: 13}[s2k_type]
    if len(body) < end:
        raise _Damaged("a passphrase packet (SKESK) that is too short")
    salt = body[4:12] if s2k_type else b""
    count = decode_count(body[12]) if s2k_type == 3 else 0
    return cipher, s2k_type, hash_id, salt, count, body[end:]


def _session_keys(skesks, keys):
    """The (cipher id, key) candidates the passphrase gives for the SKESK packets."""
    candidates = []
    for cipher, s2k_type, hash_id, salt, count, esk in skesks:
        key = keys.key(s2k_type, hash_id, salt, count, _CIPHERS[cipher][1])
        if not esk:
            candidates.append((cipher, key))
            continue
        # an encrypted session key (5.3): CFB, zero IV, the S2K key; the cipher's number first
        plain = _cfb(key, decrypt=True).update(esk)
        inner = plain[0]
        if inner in _CIPHERS and len(plain) - 1 == _CIPHERS[inner][1]:
            candidates.append((inner, plain[1:]))
        # else: a wrong passphrase (or a damaged packet); the quick check of the others decides
    return candidates


class CfbDecryptor:
    """AES-CFB decryption with a zero IV, as two passes that the CPU pipelines.

    OpenSSL decrypts CFB one block after the other (about 0.5 GB/s here), though no plaintext
    block depends on another: P[i] = E(C[i-1]) xor C[i]. ECB encryption of the ciphertext gives
    every E(C[i-1]) at once, and CBC decryption of that, D(W[i]) xor W[i-1], is C[i-1] xor
    E(C[i-2]): the plaintext, with OpenSSL's parallel AES doing the xor (about 3 GB/s, both
    passes). The CBC IV, E(zero IV), makes its first output P[0].

    ``update_into(data, out, offset)`` writes the plaintext of ``data`` at ``out[offset:]``
    (room for ``len(data) + 2 * 16`` octets) and returns its length; it lags the ciphertext by
    the last incomplete block, which ``finalize`` decrypts. The tests hold it to OpenSSL's own
    CFB for every length and split.
    """

    __slots__ = ("_ecb", "_cbc", "_scratch", "_fed")

    def __init__(self, key):
        iv = Cipher(algorithms.AES(key), ECB()).encryptor().update(bytes(_BLOCK))
        self._ecb = Cipher(algorithms.AES(key), ECB()).encryptor()
        self._cbc = Cipher(algorithms.AES(key), CBC(iv)).decryptor()
        self._scratch = bytearray()
        self._fed = 0

    def update_into(self, data, out, offset=0):
        need = len(data) + _BLOCK - 1
        if len(self._scratch) < need:
            self._scratch = bytearray(need)
        w = memoryview(self._scratch)
        whole = self._ecb.update_into(data, w)     # an incomplete last block waits inside
        self._fed += len(data)
        if not whole:
            return 0
        return self._cbc.update_into(w[:whole], memoryview(out)[offset:])

    def finalize(self):
        """The plaintext of the incomplete last block (b"" when there is none)."""
        rest = self._fed % _BLOCK
        tail = b""
        if rest:    # zeros complete the block; only its first ``rest`` octets are the message's
            tail = self._cbc.update(self._ecb.update(bytes(_BLOCK - rest)))[:rest]
        self._ecb.finalize()
        self._cbc.finalize()
        return tail


class _Decryptor:
    """The plaintext of a SEIPD v1 packet's body, in pieces, without its prefix and MDC packet;
    at the end of the body the MDC is checked (the last piece is b"" only when it matched).
    ``first`` is the body's first _BLOCK + 2 octets after its version, already read."""

    def __init__(self, src, candidates, first):
        self._src = src
        for cipher, key in candidates:
            prefix = _cfb(key, decrypt=True).update(first)
            if prefix[_BLOCK - 2:_BLOCK] == prefix[_BLOCK:]:
                break
        else:
            raise BadPassphrase("wrong passphrase: the message's quick check failed "
                                "(or the first octets of its encrypted data are damaged)")
        self._dec = CfbDecryptor(key)
        # the fast decryption starts over at the prefix, which is not part of what is pulled
        self._skip = len(prefix) - self._dec.update_into(first, bytearray(len(first) + 2 * _BLOCK))
        self._mdc = hashlib.sha1(prefix)
        self._tail = b""
        self._ended = False
        self._checked = False
        self.verified = False

    def pull(self, n=CHUNK):
        while not self._ended:
            data = self._src.pull()
            if not data:
                self._ended = True
                last = self._last()
                if last:        # the MDC is checked at the next pull, as for any other end
                    return last
                self._finish()
                break
            # the plaintext goes in after the octets held back (which may be the MDC packet),
            # and the last _MDC_SIZE of it are held back in turn: no piece is copied twice
            kept = len(self._tail)
            out = bytearray(kept + len(data) + 2 * _BLOCK)
            out[:kept] = self._tail
            end = kept + self._dec.update_into(data, out, kept)
            if self._skip:      # nothing is held back yet: kept is 0
                drop = min(self._skip, end)
                del out[:drop]
                end -= drop
                self._skip -= drop
            if end <= _MDC_SIZE:
                self._tail = out[:end]
                continue
            self._tail = out[end - _MDC_SIZE:end]
            del out[end - _MDC_SIZE:]
            self._mdc.update(out)
            return out
        if not self.verified and not self._checked:
            self._finish()
            return b""
        if not self.verified:      # pulled again after the MDC failed
            raise _BadMdc("the integrity check (MDC) failed: the file was modified or damaged")
        return b""

    def _last(self):
        """At the end of the body: the plaintext the last incomplete block still held (up to the
        MDC packet, which is kept for _finish)."""
        rest = self._dec.finalize()
        if self._skip:
            rest = rest[self._skip:]
        tail = bytes(self._tail) + rest
        if len(tail) <= _MDC_SIZE:
            self._tail = tail
            return b""
        self._tail = tail[-_MDC_SIZE:]
        last = tail[:-_MDC_SIZE]
        self._mdc.update(last)
        return last

    def _finish(self):
        self._checked = True
        tail = self._tail
        if len(tail) < _MDC_SIZE:
            raise _BadMdc("the encrypted data is too short to hold its integrity check (MDC)")
        self._mdc.update(tail[:2])
        if tail[:2] != b"\xd3\x14" or not hmac.compare_digest(self._mdc.digest(), tail[2:]):
            raise _BadMdc("the integrity check (MDC) failed: the file was modified or damaged")
        self.verified = True


class _Inflater:
    """The decompressed contents of a compressed-data packet, in pieces of at most 1 MiB
    whatever the ratio; b"" only when the compressed stream ended where the packet does."""

    def __init__(self, src, algo):
        self._src = src
        self._bz2 = algo == 3
        self._d = bz2.BZ2Decompressor() if self._bz2 else (isal_zlib or zlib).decompressobj(-15 if algo == 1 else 15)
        self._more = False

    def pull(self, n=CHUNK):
        d, src = self._d, self._src
        while not d.eof:
            if self._bz2:
                need = d.needs_input
            else:       # zlib may hold output back even when all input was taken
                need = not d.unconsumed_tail and not self._more
            if need:
                data = src.pull()
                if not data:
                    raise _DamagedPlaintext("the compressed data ends before its end mark")
            else:
                data = b"" if self._bz2 else d.unconsumed_tail
            try:
                out = d.decompress(data, CHUNK)
            except (*_ZLIB_ERRORS, OSError, EOFError, ValueError) as e:
                raise _DamagedPlaintext(f"the compressed data is damaged ({e})") from None
            self._more = len(out) == CHUNK
            if out:
                return out
        if d.unused_data or not src.at_end():
            raise _DamagedPlaintext("data follows the end of the compressed data")
        return b""


def _open_literal(inner):
    """Read up to the first octet of the literal data: its body, and the source the literal
    packet is in (to check that nothing follows it). Raises Unsupported for signed messages and
    whatever else the fast path does not read, before any data is written."""
    compressed = False
    src = inner
    while True:
        h = _header(src)
        if h is None:
            raise src.damaged("no literal data packet in the encrypted data")
        tag, length, partial = h
        if tag == _LITERAL:
            break
        if tag in (_ONEPASS, _SIG):
            raise Unsupported("a signed message")
        if tag != _COMPRESSED:
            raise src.damaged(f"a packet of tag {tag} where the literal data should be")
        if compressed:
            raise Unsupported("compressed data inside compressed data")
        compressed = True
        body = _Source(_Body(src, length, partial).pull, _DamagedPlaintext)
        algo = body.read(1, "the compressed data packet")[0]
        if algo not in _COMPRESSION:
            raise Unsupported(f"compression algorithm {algo}")
        if algo:
            src = _Source(_Inflater(body, algo).pull, _DamagedPlaintext)
        else:
            src = body
    literal = _Source(_Body(src, length, partial).pull, _DamagedPlaintext)
    fmt, name_length = literal.read(2, "the literal data packet")
    literal.read(name_length + 4, "the literal data packet")    # the file name, the date
    if fmt != ord("b"):
        raise Unsupported(f"a literal data packet of format {chr(fmt)!r} (gpg converts the text)")
    return literal, src


def derive_keys(fin, keys, session_keys=None):
    """Derive into ``keys`` (a KeyCache or None) the S2K keys for the passphrase packets (SKESK)
    that open the message in ``fin``, decrypting nothing: a caller runs it beside other work
    (restore: beside a volume's hash pass), and ``decrypt`` then finds the key derived. With
    ``session_keys``, a message encrypted to public keys has it called ahead with the same
    ``key_message`` that ``decrypt`` gives it (the caller keeps the answer for then). Never
    raises for what ``decrypt`` would report (a damaged or unsupported message): it just stops."""
    src = _Source(lambda n: fin.read(4096))      # the packets before the data are small
    pkesks, skesks = [], 0
    try:
        for _packet in range(_MAX_SKESKS + _MAX_PKESKS + 8):
            h = _header(src)
            if h is None:
                return
            tag, length, partial = h
            if tag == _MARKER:
                _small_body(src, length, partial, "a marker packet")
            elif tag == _SKESK:
                skesks += 1
                if skesks > _MAX_SKESKS:          # decrypt() leaves such a message to gpg
                    return
                parsed = _parse_skesk(_small_body(src, length, partial, "a passphrase packet (SKESK)"))
                if not isinstance(parsed, str) and keys is not None:
                    cipher, s2k_type, hash_id, salt, count, _esk = parsed
                    keys.key(s2k_type, hash_id, salt, count, _CIPHERS[cipher][1])
            elif (tag == _PKESK and session_keys is not None and len(pkesks) < _MAX_PKESKS
                  and not partial and length is not None and length <= _SMALL_PACKET):
                pkesks.append(src.read(length, "a public-key packet (PKESK)"))
            elif tag == _SEIPD and pkesks:
                body = _Source(_Body(src, length, partial).pull)
                if body.read(1, "the encrypted data packet")[0] == 1:
                    session_keys(key_message(pkesks, body.read(_BLOCK + 2, "the encrypted data")))
                return
            else:
                return
    except (_Damaged, CryptoError, OSError, ValueError):
        return


def key_message(pkesks, first):
    """The smallest message that lets gpg decrypt a session key: the PKESK packets' bodies
    (``pkesks``) and an encrypted data packet holding only ``first``, the encrypted random
    prefix (no octet of the plaintext)."""
    out = [bytes((0xC0 | _PKESK,)) + _definite_length(len(body)) + body for body in pkesks]
    out.append(bytes((0xC0 | _SEIPD,)) + _definite_length(1 + len(first)) + b"\x01" + first)
    return b"".join(out)


def key_packets(message):
    """The PKESK packets of a ``key_message``, without the encrypted prefix: the same packets
    hold the same session key, whatever message they open."""
    return message[:-(3 + _BLOCK + 2)]        # SEIPD tag, length, version and the prefix


def decrypt(fin, fout, keys, session_keys=None):
    """Write the plaintext of the OpenPGP message in ``fin`` to ``fout`` as it streams; returns
    the number of plaintext octets.

    ``keys`` (a KeyCache, or None without a passphrase) opens passphrase packets (SKESK). A
    message encrypted to public keys (PKESK) needs ``session_keys``: a function given
    ``key_message()`` of the message -- its PKESK packets and the encrypted random prefix, no
    plaintext -- that returns [(cipher id, session key)], [] when it has none (crypto asks gpg,
    whose secret keys never leave gpg-agent). Without it, or when it has none, such a message
    is Unsupported. A session key is used only if it passes the quick check, and the plaintext
    only if the MDC then matches, as with a passphrase.

    Reads what ``gpg --symmetric`` writes: AES128/192/256; S2K simple, salted or iterated and
    salted with SHA1, SHA256, SHA512, ...; compression none, ZIP, ZLIB or BZip2; old- and
    new-format packet headers, partial lengths; marker packets.

    Raises
      * BadPassphrase: the passphrase is wrong: the quick check fails; or it passes -- by chance,
        for 1 in 65536 wrong passphrases -- but the decrypted data is no message and the MDC
        fails (the text says which; damage to the first octets of the data looks the same);
      * CorruptCiphertext: not an OpenPGP message, an unencrypted one, truncation, a bad length,
        damaged encrypted data, a failed or missing MDC (a SED packet, tag 9, without integrity
        protection is refused, as gpg does), data after the message;
      * Unsupported: what the fast path does not read (see the class), before any output; also
        a message whose MDC matches but whose packets the fast path cannot parse;
      * OSError from ``fin`` or ``fout``.
    Texts never contain the passphrase, a key or message data.

    The plaintext is written before the MDC at its end is checked (a volume is ~200 MB and is
    not held in memory). A message that fails its check always raises, and nothing after the
    point of failure is written -- but what came before it has been: the caller writes to a
    temporary file and deletes it when this raises, so that no plaintext of a message that
    failed its MDC is ever used. After Unsupported, the caller gives gpg the file from its
    start (``fin`` has been read from).
    """
    if Cipher is None:
        raise Unsupported("the cryptography package is not installed")
    try:
        return _decrypt(fin, fout, keys, session_keys)
    except _Damaged as e:
        raise CorruptCiphertext(f"corrupt OpenPGP message: {e}") from None


def _decrypt(fin, fout, keys, session_keys):
    first = [fin.read(CHUNK)]
    if not first[0]:
        raise _Damaged("the file is empty")
    if first[0][:64].lstrip()[:15] == b"-----BEGIN PGP ":
        raise Unsupported("an ASCII-armored message")
    src = _Source(lambda n: first.pop() if first else fin.read(CHUNK))
    skesks, pkesks, unsupported = [], [], []
    while True:
        h = _header(src)
        if h is None:
            raise _Damaged("no encrypted data packet")
        tag, length, partial = h
        if tag == _MARKER:
            _small_body(src, length, partial, "a marker packet")
        elif tag == _SKESK:
            if len(skesks) + len(unsupported) >= _MAX_SKESKS:
                raise Unsupported(f"more than {_MAX_SKESKS} passphrase packets (SKESK)")
            parsed = _parse_skesk(_small_body(src, length, partial, "a passphrase packet (SKESK)"))
            (unsupported if isinstance(parsed, str) else skesks).append(parsed)
        elif tag == _PKESK:
            if session_keys is None:
                raise Unsupported("a message encrypted to a public key")
            if len(pkesks) >= _MAX_PKESKS:
                raise Unsupported(f"more than {_MAX_PKESKS} public-key packets (PKESK)")
            if partial or length is None or length > _SMALL_PACKET:
                raise Unsupported("a public-key packet (PKESK) of a length the fast path does not read")
            pkesks.append(src.read(length, "a public-key packet (PKESK)"))
        elif tag == _SEIPD:
            break
        elif tag == _SED:
            raise _Damaged("encrypted data without integrity protection (no MDC; a SED packet) is refused")
        elif tag == _AEAD:
            raise Unsupported("AEAD encrypted data (tag 20)")
        elif tag in (_LITERAL, _COMPRESSED, _SIG, _ONEPASS):
            raise _Damaged("the message is not encrypted")
        else:
            raise _Damaged(f"a packet of tag {tag} where encrypted data should be")
    body = _Source(_Body(src, length, partial).pull)
    version = body.read(1, "the encrypted data packet")[0]
    if version == 2:
        raise Unsupported("a version 2 encrypted data packet (SEIPD v2, AEAD)")
    if version != 1:
        raise _Damaged(f"an encrypted data packet of unknown version {version}")
    if not skesks and not pkesks:
        raise Unsupported(unsupported[0]) if unsupported else _Damaged("no passphrase packet (SKESK)")
    if skesks and keys is None and not pkesks:
        raise Unsupported("a message encrypted with a passphrase, and no passphrase given")
    prefix = body.read(_BLOCK + 2, "the encrypted data")
    candidates = _session_keys(skesks, keys) if skesks and keys is not None else []
    if pkesks:
        candidates += [(cipher, key) for cipher, key in session_keys(key_message(pkesks, prefix))
                       if cipher in _CIPHERS and len(key) == _CIPHERS[cipher][1]]
        if not candidates:
            # no secret key, a wrong key passphrase, a cipher other than AES: gpg reads the
            # message and says why
            raise Unsupported("a message encrypted to a public key that gpg gave no session key for")
    try:
        dec = _Decryptor(body, candidates, prefix)
    except BadPassphrase:
        if unsupported or pkesks:   # the key may be in a packet the fast path does not read
            raise Unsupported(unsupported[0] if unsupported else
                              "a public-key message whose session key fails the quick check") from None
        raise
    inner = _Source(dec.pull, _DamagedPlaintext)
    try:
        literal, container = _open_literal(inner)
    except (_DamagedPlaintext, _BadMdc) as e:
        # Nothing written yet. Garbage after a passed quick check: a wrong key that passed it
        # by chance, damage, or a message the fast path cannot parse; the MDC tells.
        try:
            while dec.pull():
                pass
        except _BadMdc:
            if pkesks:        # gpg's session key passed the quick check: damage; gpg reports it
                raise Unsupported("a public-key message whose integrity check (MDC) fails") from None
            what = "" if isinstance(e, _BadMdc) else f"the decrypted data is no message ({e}) and "
            raise BadPassphrase(f"wrong passphrase (or damaged data): the quick check passed, as it "
                                f"does by chance for 1 in 65536 wrong passphrases, but {what}the "
                                f"integrity check (MDC) failed") from None
        raise Unsupported(f"an encrypted message the fast path cannot parse ({e})") from None
    written = 0
    while True:
        piece = literal.pull()
        if not piece:
            break
        write_all(fout, piece)
        written += len(piece)
    if not container.at_end():
        raise _DamagedPlaintext("data follows the literal data packet")
    if not inner.at_end():
        raise _DamagedPlaintext("data follows the compressed data packet")
    if not dec.verified:      # cannot be: the end of inner is the end of dec
        raise _BadMdc("the integrity check (MDC) was not reached")
    if not src.at_end():
        raise _Damaged("data follows the encrypted data packet")
    return written


def is_symmetric_message(head):
    """Whether ``head`` (the first octets of a file; a few dozen are plenty) starts like a
    message encrypted with a passphrase: marker packets, then an SKESK v4 packet. It says
    nothing about whether decrypt() reads the rest (the cipher, say) or the passphrase fits."""
    pieces = [bytes(head)]
    src = _Source(lambda n: pieces.pop() if pieces else b"")
    try:
        while True:
            h = _header(src)
            if h is None:
                return False
            tag, length, partial = h
            if tag == _SKESK:
                return src.pull(1) in (b"\x04", b"")
            if tag != _MARKER or partial or length is None:
                return False
            src.read(length, "a marker packet")
    except _Damaged:
        return False
