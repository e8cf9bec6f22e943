# SPDX-License-Identifier: GPL-3.0-or-later
"""The crypto layer: whole files through the real gpg (python-gnupg), or gzip when unencrypted.

Symmetric messages (no signature, no custom gpg) are written and read in this process by
``openpgp`` instead: no gpg process, no pipes, and one S2K per run for the volumes cairn writes.
Messages to public keys are too (unsigned): to write them, gpg makes one session key and its
PKESK packets per run (``_make_recipient_keys``); to read them, gpg decrypts only the session
key, from the key packets and the encrypted random prefix (``session_keys``). gpg never sees a
volume's data, and secret keys never leave gpg-agent. Everything else, and anything ``openpgp``
does not read, goes through gpg.

With ``use_gpgsm`` (duplicity's --use-gpgsm) files are encrypted with gpgsm instead: CMS
(S/MIME) to X.509 certificates, written as ``.p7m``; gpgsm runs as a plain subprocess (python-gnupg
speaks gpg only), and ``.p7m`` files are read with it.

Passphrases reach gpg only on its stdin (python-gnupg's --passphrase-fd 0), never argv or the
environment, and never appear in messages. Outputs appear under their final name only when
complete.
"""
import contextlib
import errno
import functools
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import zlib
from dataclasses import dataclass, field

from . import openpgp
from .errors import (BadPassphrase, CairnError, CorruptArchive, CorruptCiphertext, CryptoError, GpgsmNeeded,
                     HashMismatch, LocalIOError, NoSecretKey, UserError, WrongSigner)
from .naming import encoding

try:    # ISA-L's gzip writer for the signature files (python-isal, as openpgp's deflate)
    from isal import igzip
except ImportError:
    igzip = None


def open_gpg(**kwargs):
    """python-gnupg's GPG, reading gpg's status output as UTF-8 that tolerates other bytes.

    gpg echoes names and texts taken from the message itself (a literal packet's file name, a
    signer's user id); in a corrupt or hostile file those are bytes that are not UTF-8, and
    python-gnupg's strict decoder then kills the thread that reads the status lines, leaving a
    result with no status at all. Replacing such bytes keeps every status line readable.
    """
    gpg = _tolerant_gpg_class()(**kwargs)
    gpg.encoding = "utf-8"
    return gpg


@functools.lru_cache(maxsize=None)
def _tolerant_gpg_class():
    """python-gnupg is imported when gpg is first needed: its import (email.utils and more) is
    13 ms of every run's start, and a run of symmetric volumes never runs gpg."""
    try:
        import gnupg
    except ImportError:
        raise CairnError("python-gnupg is not installed (pip install python-gnupg)") from None

    class _TolerantGPG(gnupg.GPG):
        def _read_response(self, stream, result):
            stream.errors = "replace"
            handle_status = result.handle_status

            def tolerant(keyword, value):
                # a status line cut short in a damaged message (ERRSIG with two fields) must not
                # end the reading either; the whole text stays in result.stderr for _failure
                try:
                    handle_status(keyword, value)
                except (ValueError, IndexError, KeyError):
                    pass
            result.handle_status = tolerant
            super()._read_response(stream, result)
    return _TolerantGPG


@dataclass(frozen=True)
class CryptoOptions:
    mode: str = "symmetric"               # 'symmetric' | 'pubkey' | 'none'
    passphrase: str = field(default=None, repr=False)
    sign_passphrase: str = field(default=None, repr=False)
    recipients: tuple = ()
    hidden_recipients: tuple = ()
    sign_key: str = None
    gnupg_home: str = None
    gpg_options: tuple = ()
    gpg_binary: str = "gpg"
    compress: bool = True                 # False: --no-compression (gpg -z none; plain, not gzip, unencrypted)
    openpgp_engine: str = "builtin"       # 'gpg': symmetric messages through gpg too (--openpgp-engine gpg)
    use_gpgsm: bool = False               # gpgsm (CMS, X.509 recipients), files named .p7m (--use-gpgsm)


# session keys kept by their PKESK packets: a run's volumes (cairn's) share theirs
_MAX_SESSION_KEYS = 64

# duplicity 3.2.1 refuses older gpgsm (cli_main.py, gpg.py)
GPGSM_MIN_VERSION = (2, 2, 27)


def _norm_key(k):
    k = k.strip().upper()
    return k[2:] if k.startswith("0X") else k


class Crypto:
    def __init__(self, options):
        self.o = options
        if options.mode not in ("symmetric", "pubkey", "none"):
            raise UserError(f"unknown encryption mode {options.mode!r}")
        for p in (options.passphrase, options.sign_passphrase):
            if p is not None and ("\n" in p or "\r" in p):
                raise UserError("the passphrase contains a line break; gpg cannot take it on a "
                                "passphrase file descriptor")
        if options.mode == "pubkey" and not (options.recipients or options.hidden_recipients):
            raise UserError("public-key encryption needs at least one --encrypt-key")
        if options.openpgp_engine not in ("builtin", "gpg"):
            raise UserError(f"unknown OpenPGP engine {options.openpgp_engine!r} (builtin or gpg)")
        if options.use_gpgsm:
            check_gpgsm_options(options)
        self._gpg = None
        self._keys = None                # openpgp.KeyCache: this run's passphrase and derived keys
        self._session = {}               # PKESK packets -> the session keys gpg gave for them
        self._recipients = None          # openpgp.RecipientKeys of this run's writes; False: gpg writes
        self._setup = threading.Lock()
        self._agent_was_running = None   # known once gpg has been set up
        self._unlocked = set()           # secret keys gpg unlocked with a passphrase cairn gave
        self._gpgsm = None               # the gpgsm binary, once its version was checked
        self._gpgsm_unlocked = set()     # certificates (key ids) gpgsm decrypted to with our passphrase

    @property
    def encrypted(self):
        return self.o.mode != "none"

    @property
    def encrypted_suffix(self):
        """The suffix of the encrypted files this run writes: .p7m with gpgsm, else .gpg."""
        return ".p7m" if self.o.use_gpgsm else ".gpg"

    @property
    def suffix(self):
        return self.encrypted_suffix if self.encrypted else ".gz" if self.o.compress else ""

    def _home(self):
        return self.o.gnupg_home or os.environ.get("GNUPGHOME") or None

    def _g(self):
        with self._setup:          # volume workers of several threads arrive at once
            return self._g_locked()

    def _g_locked(self):
        if self._gpg is None:
            try:
                self._gpg = open_gpg(gpgbinary=self.o.gpg_binary, gnupghome=self._home())
            except (OSError, ValueError, RuntimeError) as e:
                raise CryptoError(f"cannot run gpg ({self.o.gpg_binary}): {e}") from None
            if self._agent_was_running is None:          # gpgsm may have started it in this run
                self._agent_was_running = agent_running(self._home())
        return self._gpg

    def close(self, stop_started_agent=False):
        """After a run, gpg-agent holds no passphrase cairn gave it.

        Symmetric passphrases are never cached (--no-symkey-cache). A secret key cairn unlocked
        (public-key decryption, signing) is cleared from the agent's cache by keygrip; keys
        the user unlocked, a smartcard's PIN and the agent's own settings are left alone. With
        ``stop_started_agent`` (check mode, which must leave the GnuPG home as it found it),
        an agent that was not running before this run is stopped; otherwise it stays, as it
        does after duplicity (stopping it could cut off another run using the same keyring).
        """
        self._keys = None                # the derived keys go with the run
        self._session.clear()
        self._recipients = None
        if self._gpg is None and self._gpgsm is None:
            return
        home = self._home()
        if stop_started_agent and not self._agent_was_running:
            stop_agent(home)
        elif (self._unlocked or self._gpgsm_unlocked) and agent_running(home):
            grips = []
            if self._unlocked:
                grips += _keygrips(self.o.gpg_binary, home, sorted(self._unlocked))
            if self._gpgsm_unlocked:
                grips += _keygrips(self._gpgsm, home, sorted(self._gpgsm_unlocked), gpgsm=True)
            for grip in grips:
                _run_quietly(["gpg-connect-agent", *_homedir(home),
                              f"CLEAR_PASSPHRASE --mode=normal {grip}", "/bye"])
        self._unlocked.clear()
        self._gpgsm_unlocked.clear()

    def _common(self):
        return ["--no-secmem-warning", "--no-symkey-cache", *self.o.gpg_options]

    # --- the built-in OpenPGP path ---------------------------------------------------------

    def _builtin(self):
        """Whether this run may read and write OpenPGP messages itself: not when the user chose gpg,
        another gpg binary or gpg options (those mean gpg's behaviour), nor with a signing key
        (signatures are gpg's)."""
        o = self.o
        return (o.openpgp_engine == "builtin" and o.gpg_binary == "gpg" and not o.gpg_options
                and not o.sign_key)

    def builtin_decodes(self, name):
        """Whether the built-in path reads ``name``: ``decode_file`` tries it (checking a SHA1
        while it decrypts, handing out the plaintext only whole), and ``decrypt_builtin`` may.
        Symmetric messages need the passphrase; public-key ones get their session key from gpg."""
        return encoding(name) == "gpg" and self._builtin()    # never a .p7m (gpgsm's)

    def derive_builtin_keys(self, src):
        """The built-in path's keys for the message in ``src``, found ahead (see
        openpgp.derive_keys): a passphrase's S2K keys, or a public-key message's session key
        from gpg; nothing is raised."""
        if not self._builtin():
            return
        try:
            with open(src, "rb") as fin:
                openpgp.derive_keys(fin, self._key_cache(), self.session_keys)
        except (OSError, CairnError):
            pass

    def decrypt_builtin(self, name, src, sink):
        """Decrypt ``src`` (fetched as ``name``, a symmetric OpenPGP message) with the built-in
        path into ``sink`` (``write``) as it streams: no temp file, and the plaintext is
        written before the MDC at its end is checked, which then raises. So only for a volume
        whose SHA1 the caller has already checked against its manifest (restore). Raises
        openpgp.Unsupported, before writing anything, for what gpg must read."""
        with open(src, "rb") as fin:
            openpgp.decrypt(fin, sink, self._key_cache(), self.session_keys)

    def _key_cache(self):
        """This run's KeyCache; None without a passphrase."""
        if not self.o.passphrase:
            return None
        with self._setup:
            if self._keys is None:
                self._keys = openpgp.KeyCache(self.o.passphrase)
            return self._keys

    def session_keys(self, message):
        """The session keys for ``message`` (see _gpg_session_keys): gpg is asked once for the
        same PKESK packets (all the volumes of a run cairn wrote, or again after a key was found
        ahead); at most _MAX_SESSION_KEYS are kept, until close()."""
        packets = openpgp.key_packets(message)
        with self._setup:
            keys = self._session.get(packets)
        if keys is None:
            keys = self._gpg_session_keys(message)
            with self._setup:
                if len(self._session) >= _MAX_SESSION_KEYS:       # crafted archives: bounded
                    self._session.pop(next(iter(self._session)))
                self._session[packets] = keys
        return list(keys)

    def _gpg_session_keys(self, message):
        """The session keys gpg finds for ``message``, an ``openpgp.key_message``: the PKESK
        packets of a message encrypted to public keys and its encrypted random prefix, no
        plaintext. Returns [(cipher id, key)]; [] when gpg gives none (no secret key, a wrong
        key passphrase, gpg missing), and the caller then hands the whole file to gpg, which
        reports why as it does for any message.

        The key comes only through gpg's status lines on a pipe of ours. gpg also logs it, so
        its stderr is discarded and its configuration file (which may name a log file) is not
        read: nothing the key reaches is kept. The key passphrase reaches gpg on its stdin, as
        python-gnupg gives it."""
        self._g()        # what close() needs: whether the agent ran before this run
        argv = [self.o.gpg_binary, "--no-options", *_homedir(self._home()), "--batch", "--no-tty",
                "--no-secmem-warning", "--status-fd", "1", "--show-session-key", "--output", os.devnull]
        stdin = message
        if self.o.passphrase:
            argv += ["--pinentry-mode", "loopback", "--passphrase-fd", "0"]
            stdin = self.o.passphrase.encode("utf-8") + b"\n" + message
        argv.append("--decrypt")
        try:
            p = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False)
        except OSError:
            return []
        keys = []
        for line in p.stdout.splitlines():
            words = line.split()
            if len(words) < 3 or words[0] != b"[GNUPG:]":
                continue
            if words[1] == b"SESSION_KEY":
                algo, _colon, key = words[2].partition(b":")
                try:
                    keys.append((int(algo), bytes.fromhex(key.decode("ascii"))))
                except ValueError:
                    pass                 # not a key: openpgp goes to gpg for the whole file
            elif words[1] == b"DECRYPTION_KEY" and self.o.passphrase:
                # a secret key our passphrase unlocked: close() clears it from the agent
                self._unlocked.add(words[2].decode("ascii", "replace"))
        return keys

    def _writing_keys(self):
        """What the built-in path writes this run's messages with: the KeyCache (symmetric,
        with a passphrase), the RecipientKeys (public keys; gpg makes them once), or None:
        gpg writes every message."""
        if not self.encrypted or self.o.use_gpgsm or not self._builtin():
            return None
        if self.o.mode == "symmetric":
            return self._key_cache()
        with self._setup:
            if self._recipients is None:
                self._recipients = self._make_recipient_keys() or False
            return self._recipients or None

    def _make_recipient_keys(self):
        """This run's session key and PKESK packets, from gpg: it encrypts a random probe both
        to the recipients (with its trust, preferences and gpg.conf: encrypt-to, groups) and
        with a random throwaway passphrase, whose SKESK gives the session key away to us alone
        (openpgp.RecipientKeys). None when that fails: gpg then writes each message, and
        reports what is wrong (a missing public key) as it always did."""
        self._g_locked()     # what close() needs: whether the agent ran before this run
        o = self.o
        passphrase = os.urandom(24).hex()
        probe = os.urandom(32)
        argv = [o.gpg_binary, *_homedir(self._home()), "--batch", "--no-tty", "--no-secmem-warning",
                "--no-symkey-cache", "--no-armor", "--trust-model", "always", "--pinentry-mode", "loopback",
                "--passphrase-fd", "0", "--s2k-mode", "3", "--s2k-digest-algo", "SHA256", "--s2k-count", "1024",
                "--compress-algo", "none", "--encrypt", "--symmetric"]
        for r in o.recipients:
            argv += ["--recipient", r]
        for r in o.hidden_recipients:
            argv += ["--hidden-recipient", r]
        argv += ["--output", "-"]
        try:
            p = subprocess.run(argv, input=passphrase.encode() + b"\n" + probe, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, check=False)
        except OSError:
            return None
        if p.returncode != 0:
            return None
        try:
            return openpgp.RecipientKeys.from_gpg_message(p.stdout, passphrase, probe)
        except openpgp.Unsupported:
            return None

    # --- files ---------------------------------------------------------------------------

    def encrypt_file(self, src, dst, *, compress=True, compress_level=None, gzip_when_plain=True):
        """Encrypt ``src`` (a path, or a file object read until it returns b"") into ``dst``,
        which appears only when complete; unencrypted, it is gzipped (volumes, signatures) or
        copied (manifests, which duplicity never gzips). Returns the SHA1 (hex) of ``dst``,
        computed as it is written where this process writes it."""
        tmp = dst + ".tmp"
        try:
            digest = None
            keys = self._writing_keys()
            if self.encrypted and self.o.use_gpgsm:
                self._encrypt_gpgsm(src, tmp)
            elif keys is not None:
                level = None if not compress or not self.o.compress else (
                    GPG_LEVEL if compress_level is None else int(compress_level))
                with _reader(src) as fin, _LocalWriter(tmp) as raw:
                    out = _HashingWriter(raw)
                    openpgp.encrypt(fin, out, keys, compress_level=level)
                    digest = out.hexdigest()
            elif self.encrypted:
                self._encrypt(src, tmp, compress, compress_level)
            elif gzip_when_plain and self.o.compress:
                with _reader(src) as fin, _LocalWriter(tmp) as raw:
                    out = _HashingWriter(raw)
                    write_volume_gzip(fin, out, compress=compress, compress_level=compress_level)
                    digest = out.hexdigest()
            else:
                with _reader(src) as fin, open(tmp, "wb") as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
            if digest is None:
                digest = sha1_file(tmp)
            os.replace(tmp, dst)
            return digest
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    encrypt_fileobj = encrypt_file

    def _encrypt(self, src, out, compress, compress_level):
        o = self.o
        extra = ["--no-secmem-warning", "--no-symkey-cache", "--force-mdc"]
        if not compress or not o.compress:
            extra += ["--compress-algo", "none"]
        elif compress_level is not None:
            extra += ["-z", str(int(compress_level))]
        extra += list(o.gpg_options)       # the user's --gpg-options win
        if o.sign_key:
            extra += ["--default-key", o.sign_key]
        recipients, hidden = list(o.recipients), {}
        if o.hidden_recipients and _has_hidden_recipients():
            hidden = {"hidden_recipients": list(o.hidden_recipients)}
        elif o.hidden_recipients:
            # Debian 12's python3-gnupg (0.4.9, what the agent role installs) has no
            # hidden_recipients: encrypt to them with every key ID thrown (which also hides
            # the visible recipients' IDs; decryption is the same either way)
            recipients += list(o.hidden_recipients)
            extra.append("--throw-keyids")
        symmetric = o.mode == "symmetric"
        if symmetric and not o.passphrase:
            raise UserError("symmetric encryption needs a passphrase (PASSPHRASE or --passphrase-file)")
        passphrase = o.passphrase if symmetric else (o.sign_passphrase or o.passphrase if o.sign_key else None)
        f = open(src, "rb") if isinstance(src, (str, bytes)) else src
        try:
            r = self._g().encrypt_file(
                f, None if symmetric else recipients, **hidden,
                sign=o.sign_key or None, always_trust=True, passphrase=passphrase, armor=False,
                output=out, symmetric=symmetric, extra_args=extra)
        finally:
            if f is not src:
                f.close()
        _check_local_write(r, out)
        if o.sign_key and passphrase is not None:
            self._unlocked.add(o.sign_key)
        if not r.ok:
            what = os.path.basename(src) if isinstance(src, (str, bytes)) else os.path.basename(out)
            raise _failure(r, f"could not encrypt {what}")

    def decode_file(self, name, src, dst, *, follow=False, sha1=None):
        """The plaintext of ``src``, a file fetched from the target as ``name``: decrypted,
        gunzipped or as it is, by the suffix of ``name`` (naming.encoding). ``dst`` appears
        whole or not at all; with ``follow`` it is written in place as it comes, so that a
        reader can follow it (restore parses a volume while gpg decrypts it).

        With ``sha1`` (the manifest's), ``src`` must have that hash (HashMismatch). The built-in
        path hashes it while it decrypts and hands out ``dst`` only whole, once both the hash and
        the MDC are good (so ``follow`` does not apply there); gpg gets ``src`` only after a
        separate hash pass."""
        kind = encoding(name)
        if kind == "gpgsm" and not self.o.use_gpgsm:
            raise GpgsmNeeded(f"{name} is encrypted with gpgsm (S/MIME, .p7m): read this archive with "
                              "--use-gpgsm (module option use_gpgsm) and the certificate's secret key "
                              "in the GnuPG home")
        if kind == "gpg" and self._builtin():
            try:
                self._decrypt_builtin(name, src, dst, sha1)
                return
            except openpgp.Unsupported:
                pass                         # public-key, signed, or newer packets: gpg reads it
        if sha1 is not None and sha1_file(src) != sha1:
            raise _hash_mismatch(name, sha1)
        out = dst if follow else dst + ".tmp"
        try:
            if kind == "gpg":
                self._decrypt(src, out)
            elif kind == "gpgsm":
                self._decrypt_gpgsm(src, out)
            elif kind == "gzip":
                _gunzip(src, out, name)
            else:
                shutil.copyfile(src, out)
            if not follow:
                os.replace(out, dst)
        finally:
            if not follow and os.path.exists(out):
                os.unlink(out)

    def _decrypt_builtin(self, name, src, dst, sha1):
        tmp = dst + ".tmp"
        try:
            with open(src, "rb") as raw:
                fin = _HashingReader(raw)
                try:
                    with _LocalWriter(tmp) as fout:
                        openpgp.decrypt(fin, fout, self._key_cache(), self.session_keys)
                except openpgp.Unsupported:
                    raise                    # nothing written: gpg reads it
                except CryptoError:
                    # a volume that is not what its manifest says is reported as such, whatever
                    # broke first in its decryption
                    if sha1 is not None and fin.rest_hexdigest() != sha1:
                        raise _hash_mismatch(name, sha1) from None
                    raise
                if sha1 is not None and fin.rest_hexdigest() != sha1:
                    raise _hash_mismatch(name, sha1)
            os.replace(tmp, dst)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _decrypt(self, src, out):
        with open(src, "rb") as f:
            r = self._g().decrypt_file(f, passphrase=self.o.passphrase or None, output=out,
                                       extra_args=self._common())
        if self.o.passphrase:
            # DECRYPTION_KEY <fpr> <primary fpr> <trust>: a secret key our passphrase unlocked
            self._unlocked.update(line.split()[2] for line in (r.stderr or "").splitlines()
                                  if line.startswith("[GNUPG:] DECRYPTION_KEY ") and len(line.split()) > 2)
        _check_local_write(r, out)
        if not r.ok:
            raise _failure(r, f"could not decrypt {os.path.basename(src)}")
        if self.o.sign_key:
            want = _norm_key(self.o.sign_key)
            got = [x for x in (r.fingerprint, r.key_id, getattr(r, "pubkey_fingerprint", None)) if x]
            if not r.valid or not any(_norm_key(g).endswith(want) or want.endswith(_norm_key(g)) for g in got):
                signer = r.key_id or "nobody"
                raise WrongSigner(f"{os.path.basename(src)} is not signed by {self.o.sign_key} "
                                  f"(signature: {signer if r.valid else 'missing or invalid'})")

    # --- gpgsm (--use-gpgsm) ---------------------------------------------------------------

    def _gpgsm_binary(self):
        """gpgsm, checked once per run: it runs, and is at least GPGSM_MIN_VERSION (as duplicity
        requires). ``--gpg-binary`` names it when given (as duplicity's does), else ``gpgsm``."""
        with self._setup:
            if self._gpgsm is None:
                binary = gpgsm_binary(self.o.gpg_binary)
                check_gpgsm_version(binary)
                if self._agent_was_running is None:      # gpg may have started it in this run
                    self._agent_was_running = agent_running(self._home())
                self._gpgsm = binary
            return self._gpgsm

    def _gpgsm_run(self, args, stdin, stdout, doing, passphrase=None):
        """Run gpgsm with ``args``, ``stdin`` (a path, or a file object fed until b"") and
        ``stdout`` (a path written by gpgsm); a failure raises the CryptoError ``_gpgsm_failure``
        makes of its status lines. The passphrase goes on a pipe (--passphrase-fd), never argv."""
        binary = self._gpgsm_binary()
        argv = [binary, *_homedir(self._home()), "--batch", "--no-tty", "--no-secmem-warning",
                "--status-fd", "2"]
        pass_fds, rfd = (), None
        if passphrase is not None:
            rfd, wfd = os.pipe()
            with os.fdopen(wfd, "wb") as w:          # a line fits a pipe's buffer: no deadlock
                w.write(passphrase.encode() + b"\n")
            argv += ["--pinentry-mode", "loopback", "--passphrase-fd", str(rfd)]
            pass_fds = (rfd,)
        argv += [*self.o.gpg_options, *args]       # the user's --gpg-options, as duplicity applies them
        try:
            with tempfile.TemporaryFile() as err, open(stdout, "wb") as fout:
                fin = open(stdin, "rb") if isinstance(stdin, (str, bytes, os.PathLike)) else None
                try:
                    proc = subprocess.Popen(argv, stdin=fin if fin is not None else subprocess.PIPE,
                                            stdout=fout, stderr=err, pass_fds=pass_fds)
                except OSError as e:
                    raise CryptoError(f"cannot run gpgsm ({binary}): {e.strerror or e}") from None
                finally:
                    if rfd is not None:
                        os.close(rfd)
                        rfd = None
                    if fin is not None:
                        fin.close()
                try:
                    if fin is None:
                        _feed(proc, stdin)
                finally:
                    code = proc.wait()
                err.seek(0)
                text = err.read().decode("utf-8", "replace")
        finally:
            if rfd is not None:
                os.close(rfd)
        if code != 0:
            raise _gpgsm_failure(text, code, doing)
        return text

    def _encrypt_gpgsm(self, src, out):
        o = self.o
        if o.mode != "pubkey" or not o.recipients:
            raise UserError("--use-gpgsm encrypts to certificates only: give --encrypt-key "
                            "(gpgsm has no symmetric encryption)")
        what = os.path.basename(src) if isinstance(src, (str, bytes)) else os.path.basename(out)
        args = [x for r in o.recipients for x in ("--recipient", r)]
        self._gpgsm_run([*args, "--encrypt"], src, out, f"could not encrypt {what}")

    def _decrypt_gpgsm(self, src, out):
        # a failure leaves ``out`` to the caller, as gpg's path does (decode_file drops its temp)
        text = self._gpgsm_run(["--decrypt"], src, out, f"could not decrypt {os.path.basename(src)}",
                               passphrase=self.o.passphrase or None)
        if self.o.passphrase:
            self._gpgsm_unlocked.update(line.split()[2] for line in text.splitlines()
                                        if line.startswith("[GNUPG:] ENC_TO ") and len(line.split()) > 2)


class _HashingWriter:
    """A binary file object's write, with the SHA1 of everything written (hashed once, as it goes)."""

    def __init__(self, f):
        self.f = f
        self.h = hashlib.sha1()

    def write(self, data):
        self.h.update(data)
        return self.f.write(data)

    def hexdigest(self):
        return self.h.hexdigest()


class _LocalWriter:
    """A temp file written by the built-in path: a write or close that fails (a full disk) is a
    LocalIOError that names the temp dir, as gpg's failures to write are."""

    def __init__(self, path):
        self.path = path
        self.f = open(path, "wb")

    def write(self, data):
        try:
            return self.f.write(data)
        except OSError as e:
            raise self._error(e) from None

    def _error(self, e):
        return LocalIOError(f"could not write {self.path}: {e.strerror or e} "
                            "(the temp dir; --tempdir or TMPDIR moves it)")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.f.close()
        except OSError as e:
            if exc[0] is None:
                raise self._error(e) from None


class _HashingReader:
    """A binary file object's read, with the SHA1 of everything read."""

    def __init__(self, f):
        self.f = f
        self.h = hashlib.sha1()

    def read(self, n=-1):
        data = self.f.read(n)
        self.h.update(data)
        return data

    def rest_hexdigest(self):
        """The SHA1 of the whole file: what was read, then the rest of it."""
        for block in iter(lambda: self.f.read(1 << 20), b""):
            self.h.update(block)
        return self.h.hexdigest()


def sha1_file(path):
    """The SHA1 (hex) of a file's bytes."""
    with open(path, "rb") as f:
        return _HashingReader(f).rest_hexdigest()


def _hash_mismatch(name, sha1):
    return HashMismatch(f"volume {name} is corrupt: its SHA1 does not match the manifest (expected {sha1})")


def _failure(r, doing):
    """The CryptoError subclass for a failed gpg run, from its status lines (the one place gpg's
    output is read for why); ``doing`` says what failed ("could not decrypt X")."""
    text = r.stderr or ""
    if "BAD_PASSPHRASE" in text or "Bad session key" in text or "bad passphrase" in text.lower():
        return BadPassphrase(f"gpg {doing}: bad passphrase (check PASSPHRASE or the passphrase file)")
    if "NO_SECKEY" in text or "No secret key" in text:
        return NoSecretKey(f"gpg {doing}: no secret key to decrypt it in this GnuPG home")
    if "INV_RECP" in text or "No public key" in text or "unusable public key" in text:
        return CryptoError(f"gpg {doing}: a recipient key is missing or unusable (import it and check its validity)")
    if "INV_SGNR" in text or "unusable secret key" in text:
        return CryptoError(f"gpg {doing}: the signing key is missing or unusable")
    if "MISSING_PASSPHRASE" in text or "NEED_PASSPHRASE_SYM" in text and "passphrase" not in text.lower():
        return BadPassphrase(f"gpg {doing}: no passphrase was given")
    if ("NODATA" in text or "invalid packet" in text or "CRC error" in text or "DECRYPTION_FAILED" in text
            or "BADMDC" in text):
        return CorruptCiphertext(f"gpg {doing}: the file is corrupt or not an OpenPGP message")
    status = getattr(r, "status", None) or "failed"
    return CryptoError(f"gpg {doing}: {status} (gpg said: {_last_gpg_line(text)})")


def gpgsm_binary(gpg_binary):
    """The gpgsm to run: ``--gpg-binary`` when it names another program than gpg (duplicity runs
    the given binary with --use-gpgsm too), else ``gpgsm``."""
    return "gpgsm" if gpg_binary in (None, "", "gpg") else gpg_binary


def check_gpgsm_options(o):
    """What gpgsm cannot do, said before anything runs (usage errors)."""
    if o.mode == "none":
        raise UserError("--use-gpgsm (use_gpgsm) encrypts with gpgsm: it cannot go with --no-encryption")
    if o.hidden_recipients:
        raise UserError("--use-gpgsm (use_gpgsm): gpgsm cannot hide recipients; use --encrypt-key, "
                        "not --hidden-encrypt-key")
    if o.sign_key:
        raise UserError("--use-gpgsm (use_gpgsm): gpgsm cannot sign and encrypt in one message; "
                        "drop --sign-key")


def gpgsm_version(binary):
    """(major, minor, patch) of ``binary --version``; CryptoError when it does not run."""
    try:
        r = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30, check=False,
                           errors="replace")
    except OSError as e:
        raise CryptoError(f"cannot run gpgsm ({binary}): {e.strerror or e} (--use-gpgsm needs GnuPG's "
                          "gpgsm, e.g. the Debian package gpgsm)") from None
    except subprocess.TimeoutExpired:
        raise CryptoError(f"gpgsm ({binary}) did not answer --version") from None
    first = r.stdout.splitlines()[0] if r.stdout.strip() else ""
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", first)
    if r.returncode != 0 or m is None:
        raise CryptoError(f"cannot tell the version of gpgsm ({binary}): {first or r.stderr.strip() or 'no output'}")
    return tuple(int(x) for x in m.groups())


def check_gpgsm_version(binary):
    version = gpgsm_version(binary)
    if version < GPGSM_MIN_VERSION:
        raise CryptoError(f"gpgsm {'.'.join(map(str, version))} ({binary}) is too old: --use-gpgsm needs "
                          f"{'.'.join(map(str, GPGSM_MIN_VERSION))} or later")
    return version


def _feed(proc, src):
    """Write the file object ``src`` (read until b"") to ``proc``'s stdin, then close it."""
    try:
        for block in iter(lambda: src.read(1 << 20), b""):
            proc.stdin.write(block)
    except BrokenPipeError:
        pass                     # gpgsm stopped reading: its exit status says why
    finally:
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass


def _gpgsm_failure(text, code, doing):
    """The CryptoError for a failed gpgsm run, from its status lines and messages."""
    if "BAD_PASSPHRASE" in text or "Bad passphrase" in text:
        return BadPassphrase(f"gpgsm {doing}: bad passphrase for the certificate's secret key")
    # a protected key and no passphrase: loopback got none, or the agent's pinentry has no terminal
    if any(w in text for w in ("No passphrase given", "No pinentry", "Operation cancelled",
                               "Inappropriate ioctl for device")):
        return BadPassphrase(f"gpgsm {doing}: the certificate's secret key is protected and no passphrase "
                             "was given (set PASSPHRASE or use a passphrase file)")
    if "NO_SECKEY" in text or "No secret key" in text:
        return NoSecretKey(f"gpgsm {doing}: no secret key of a recipient certificate in this GnuPG home")
    if "INV_RECP" in text or "No public key" in text:
        return CryptoError(f"gpgsm {doing}: a recipient certificate is missing, unusable or not trusted "
                           f"(import it, and mark its root certificate trusted in trustlist.txt; gpgsm "
                           f"said: {_last_gpg_line(text, 'gpgsm:')})")
    if "DECRYPTION_FAILED" in text or "ksba" in text.lower() or "Invalid" in text:
        return CorruptCiphertext(f"gpgsm {doing}: the file is corrupt or not a CMS (S/MIME) message "
                                 f"(gpgsm said: {_last_gpg_line(text, 'gpgsm:')})")
    return CryptoError(f"gpgsm {doing}: exit {code} (gpgsm said: {_last_gpg_line(text, 'gpgsm:')})")


# gpg's words for a local disk that would not take its output
_DISK_ERRORS = tuple(os.strerror(e) for e in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO))


def _check_local_write(r, out):
    """gpg can report a good decryption (DECRYPTION_OKAY) and still exit 2 because it could not
    write all of the output: a truncated volume must not pass for a whole one."""
    text = r.stderr or ""
    reason = next((e for e in _DISK_ERRORS if e in text), None)
    if getattr(r, "returncode", 0) and reason:
        raise LocalIOError(f"gpg could not write {out}: {reason} (the temp dir; --tempdir or TMPDIR moves it)")


def _homedir(home):
    return ["--homedir", home] if home else []


def _run_quietly(argv, timeout=15):
    """A gpg helper whose failure must not fail the run (it only tidies the agent up)."""
    import subprocess
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


def agent_running(home):
    """Whether a gpg-agent answers on this keyring's socket (asked without starting one)."""
    import socket
    r = _run_quietly(["gpgconf", *_homedir(home), "--list-dirs", "agent-socket"])
    path = r.stdout.strip() if r is not None and r.returncode == 0 else ""
    if not path:
        return True            # cannot tell: treat it as the user's own
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


def stop_agent(home, wait=5.0):
    """Stop this keyring's gpg-agent and wait (up to ``wait`` s) until its sockets and its
    process are gone: ``gpgconf --kill`` returns before the agent has removed them. A caller
    that must leave the GnuPG home as it found it (check mode) looks right after, and an agent
    still exiting when a job's run ends keeps its systemd unit waiting for the cgroup to empty,
    which hosts with cgroup v1 may learn only at TimeoutStopSec (the unit then fails)."""
    import glob
    import os
    import time
    r = _run_quietly(["gpgconf", *_homedir(home), "--list-dirs", "agent-socket"])
    socket_path = r.stdout.strip() if r is not None and r.returncode == 0 else ""
    r = _run_quietly(["gpg-connect-agent", *_homedir(home), "--no-autostart", "getinfo pid", "/bye"])
    pids = [line[2:].strip() for line in (r.stdout if r is not None else "").splitlines() if line.startswith("D ")]
    proc = f"/proc/{pids[0]}" if pids and pids[0].isdigit() else None
    _run_quietly(["gpgconf", *_homedir(home), "--kill", "gpg-agent"])
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and ((socket_path and glob.glob(glob.escape(socket_path) + "*"))
                                           or (proc and os.path.exists(proc))):
        time.sleep(0.02)


def _keygrips(gpg_binary, home, keys, gpgsm=False):
    """The keygrips of the secret keys ``keys`` (fingerprints or ids) and their subkeys (of
    gpgsm's certificates with ``gpgsm``)."""
    extra = [] if gpgsm else ["--no-auto-check-trustdb"]
    r = _run_quietly([gpg_binary, *_homedir(home), "--batch", *extra, "--with-colons",
                      "--with-keygrip", "--list-secret-keys", *keys])
    if r is None:
        return []
    return [line.split(":")[9] for line in r.stdout.splitlines()
            if line.startswith("grp:") and len(line.split(":")) > 9 and line.split(":")[9]]


def _last_gpg_line(text, tag="gpg:"):
    lines = [ln for ln in text.splitlines() if ln.startswith(tag) and "DBG:" not in ln]
    return lines[-1][len(tag):].strip() if lines else "nothing"


GPG_LEVEL = 6        # gpg's default deflate level, for a volume written without -z
GZIP_LEVEL = 6       # duplicity's (gzip.GzipFile's default): the gzip writer without python-isal
# ISA-L's default level, for signature files: on them it takes a twelfth to a twentieth of zlib's
# time at level 6 and writes within 2 % of its size (smaller on many small files). Volumes go
# through write_volume_gzip (openpgp.Deflater, as encrypted volumes).
ISAL_GZIP_LEVEL = 2


_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"    # deflate, no name, mtime 0, OS unknown
_FINAL_EMPTY_STORED_BLOCK = b"\x01\x00\x00\xff\xff"


def write_volume_gzip(fin, fout, *, compress=True, compress_level=None):
    """A volume without encryption: a .gz file (RFC 1952, no name, mtime 0, as duplicity's) around
    the deflate stream the built-in OpenPGP path compresses volumes with (ISA-L; stretches that do
    not compress stored as they are, see openpgp.Deflater), so that a volume costs the same CPU
    encrypted or not; any gunzip, duplicity's included, reads it. ``compress`` false (a volume of
    incompressible data, see VolumeWriter.regime) or level 0: deflate's stored blocks only."""
    level = GPG_LEVEL if compress_level is None else int(compress_level)
    crc, size = 0, 0
    openpgp.write_all(fout, _GZIP_HEADER)
    deflate = None
    if compress and level > 0:
        deflate = openpgp.Deflater(level, lambda data: openpgp.write_all(fout, data), True)
    while True:
        data = fin.read(openpgp.CHUNK)
        if not data:
            break
        crc = openpgp.crc32(data, crc)
        size += len(data)
        if deflate is not None:
            deflate.write(data)
        else:
            openpgp.write_all(fout, openpgp.stored_blocks(data))
    if deflate is not None:
        deflate.close()
    else:
        openpgp.write_all(fout, _FINAL_EMPTY_STORED_BLOCK)
    openpgp.write_all(fout, (crc & 0xFFFFFFFF).to_bytes(4, "little") + (size & 0xFFFFFFFF).to_bytes(4, "little"))


def write_gzip(src, dst):
    """gzip ``src`` (a path or a readable file object) into ``dst`` as duplicity reads .gz files:
    no stored name, mtime 0; with ISA-L's deflate where python-isal is installed, else zlib's
    at duplicity's level 6 (signature files in the archive dir)."""
    with _reader(src) as fin, open(dst, "wb") as raw:
        if igzip is not None:
            fout = igzip.IGzipFile(filename="", mode="wb", compresslevel=ISAL_GZIP_LEVEL, fileobj=raw, mtime=0)
        else:
            fout = gzip.GzipFile(filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=raw, mtime=0)
        with fout:
            shutil.copyfileobj(fin, fout, 1 << 20)


@contextlib.contextmanager
def _reader(src):
    """``src`` opened for reading when it is a path; a file object as it is (left open)."""
    if isinstance(src, (str, bytes, os.PathLike)):
        with open(src, "rb") as f:
            yield f
    else:
        yield src


def _gunzip(src, dst, name):
    try:
        with gzip.open(src, "rb") as fin, open(dst, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise CorruptArchive(f"{name} is corrupt: {e or type(e).__name__}") from None


@functools.lru_cache(maxsize=None)
def _has_hidden_recipients():
    """Whether this python-gnupg's encrypt_file takes hidden_recipients (0.5.1 and later)."""
    import inspect

    import gnupg
    return "hidden_recipients" in inspect.signature(gnupg.GPG.encrypt_file).parameters
