# SPDX-License-Identifier: GPL-3.0-or-later
"""A GnuPG keyring as the gpg_key module and the keys role need it: find, import, generate,
trust, export and delete keys, idempotently by fingerprint, with a plan of what would change.

Everything goes through python-gnupg's status protocol (not gpg's translated messages), and
secret material is never returned. ``read_only`` (check mode) leaves the GnuPG home as found:
a home that does not exist is judged as the empty keyring it would be, gpg never updates the
trust database, and an agent the run started is stopped again.
"""
import os
import shutil
import tempfile
from dataclasses import dataclass, field

from .crypto import agent_running, open_gpg, stop_agent
from .errors import CairnError, UserError

try:
    import gnupg
    HAS_GNUPG = True
except ImportError:      # reported when a keyring is opened
    gnupg = None
    HAS_GNUPG = False

TRUST_LEVELS = {"unknown": "TRUST_UNDEFINED", "never": "TRUST_NEVER", "marginal": "TRUST_MARGINAL",
                "full": "TRUST_FULLY", "ultimate": "TRUST_ULTIMATE"}
# --with-colons ownertrust letters -> our names
_OWNERTRUST = {"": "unknown", "-": "unknown", "q": "unknown", "o": "unknown", "n": "never",
               "m": "marginal", "f": "full", "u": "ultimate"}


class KeyringError(CairnError):
    """gpg refused a keyring operation."""


@dataclass
class KeyState:
    fingerprint: str
    uids: list
    secret: bool
    trust: str

    def public(self):
        return {"fingerprint": self.fingerprint, "uids": self.uids, "secret": self.secret, "trust": self.trust}


@dataclass
class KeyRequest:
    """What a gpg_key task asks for (its options, as typed values)."""

    state: str = "present"
    fingerprint: str = None
    uid: str = None
    key_type: str = "RSA"
    key_length: int = 3072
    expire: str = "0"
    passphrase: str = field(default=None, repr=False)
    material: bytes = field(default=None, repr=False)     # key data to import (content or a file's)
    trust: str = None
    export_path: str = None
    delete_secret: bool = True


def uid_matches(wanted, uid):
    """A key's user id is the one asked for: the whole id, or its e-mail address (in <...>,
    compared without case). ``bob@x`` is not ``bob@x.org``."""
    wanted = wanted.strip()
    if uid == wanted:
        return True
    if "<" in uid and uid.endswith(">"):
        return uid[uid.rindex("<") + 1:-1].lower() == wanted.lower()
    return False


def normalize_fingerprint(text):
    return text.replace(" ", "").upper().removeprefix("0X")


class Keyring:
    def __init__(self, home, gpg_binary="gpg", read_only=False):
        self.home = home or os.environ.get("GNUPGHOME") or os.path.expanduser("~/.gnupg")
        self.gpg_binary = gpg_binary
        self.read_only = read_only
        self.scratch = None
        self.agent_was_running = True
        self.gpg = None

    def __enter__(self):
        if gnupg is None:
            raise UserError("python-gnupg is not installed (pip install python-gnupg, or the package "
                            "python3-gnupg)")
        if not os.path.isdir(self.home):
            if self.read_only:
                # judged as the empty keyring the new home would be; the missing home stays missing
                self.scratch = self.home = tempfile.mkdtemp(prefix="cairn-keyring-")
            else:
                os.makedirs(self.home, mode=0o700)
        self.agent_was_running = agent_running(self.home)
        try:
            self.gpg = open_gpg(gpgbinary=self.gpg_binary, gnupghome=self.home,
                                options=["--no-auto-check-trustdb"] if self.read_only else None)
        except (OSError, ValueError, RuntimeError) as e:
            raise KeyringError(f"cannot run gpg ({self.gpg_binary}): {e}") from None
        return self

    def __exit__(self, *exc):
        if self.read_only and not self.agent_was_running:
            stop_agent(self.home)
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)

    # --- reading --------------------------------------------------------------------------

    def _listed(self, secret=False):
        return {k["fingerprint"]: k for k in self.gpg.list_keys(secret=secret)}

    def key(self, fingerprint):
        pub = self._listed().get(fingerprint)
        if pub is None:
            return None
        return KeyState(fingerprint, list(pub.get("uids", [])), fingerprint in self._listed(secret=True),
                        _OWNERTRUST.get(pub.get("ownertrust", ""), "unknown"))

    def keys_with_uid(self, uid):
        return [self.key(fpr) for fpr, k in self._listed().items()
                if any(uid_matches(uid, u) for u in k.get("uids", []))]

    def scan(self, material):
        """(fingerprints, holds secret keys) of key material, without importing it."""
        if hasattr(self.gpg, "scan_keys_mem"):
            found = self.gpg.scan_keys_mem(material)
        else:      # python-gnupg before 0.4.8 (Debian 11's) scans files only
            with tempfile.NamedTemporaryFile("wb", suffix=".asc") as f:
                f.write(material)
                f.flush()
                found = self.gpg.scan_keys(f.name)
        fprs = list(dict.fromkeys(k["fingerprint"] for k in found))
        if not fprs:
            raise UserError("the key material holds no OpenPGP key (is it armored key data?)")
        return fprs, any(k.get("type") == "sec" for k in found)

    def export_public(self, fingerprint):
        return self.gpg.export_keys(fingerprint, armor=True)

    # --- changing -------------------------------------------------------------------------

    def import_keys(self, material):
        r = self.gpg.import_keys(material)
        if not r.fingerprints:
            raise KeyringError("gpg imported nothing: " + "; ".join(
                x.get("text", "") for x in r.results if x.get("text"))[:300])

    def generate(self, req):
        params = dict(name_email=req.uid, key_type=req.key_type, key_length=req.key_length,
                      expire_date=req.expire, key_usage="sign,encrypt")
        if req.passphrase:
            params["passphrase"] = req.passphrase
        else:
            params["no_protection"] = True
        r = self.gpg.gen_key(self.gpg.gen_key_input(**params))
        if not r.fingerprint:
            raise KeyringError(f"gpg could not generate the key: {r.status or 'unknown error'}")
        return r.fingerprint

    def set_trust(self, fingerprint, trust):
        try:
            self.gpg.trust_keys([fingerprint], TRUST_LEVELS[trust])
        except ValueError as e:            # python-gnupg's way of saying gpg failed
            raise KeyringError(f"gpg could not set the trust of {fingerprint}: {e}") from None

    def delete(self, fingerprint, secret):
        if secret:
            r = self.gpg.delete_keys(fingerprint, secret=True, expect_passphrase=False)
            if str(r) != "ok":
                raise KeyringError(f"gpg could not delete the secret key {fingerprint}: {r.status}")
        r = self.gpg.delete_keys(fingerprint)
        if str(r) != "ok":
            raise KeyringError(f"gpg could not delete the key {fingerprint}: {r.status}")


def converge(keyring, req, check_mode):
    """Bring the keyring to ``req``; in check mode only say what would change.

    Returns {changed, fingerprint, fingerprints?, before, after}: ``before``/``after`` are
    KeyStates (or None) for the key acted on; ``after`` is what it would be in check mode.
    """
    if req.state == "absent":
        fpr = normalize_fingerprint(req.fingerprint)
        before = keyring.key(fpr)
        if before is not None and not check_mode:
            keyring.delete(fpr, req.delete_secret and before.secret)
        return {"changed": before is not None, "fingerprint": fpr, "before": before, "after": None}

    changed = False
    out = {}
    if req.material is not None:
        fprs, has_secret = keyring.scan(req.material)
        fpr = fprs[0]
        out["fingerprints"] = fprs
        missing = [f for f in fprs if keyring.key(f) is None or (has_secret and not keyring.key(f).secret)]
        before = keyring.key(fpr)
        if missing:
            changed = True
            if not check_mode:
                keyring.import_keys(req.material)
        after = before or KeyState(fpr, [], has_secret, "unknown")
    elif req.uid:
        found = keyring.keys_with_uid(req.uid)
        if found:
            before = after = found[0]
            fpr = before.fingerprint
        else:
            changed = True
            before = None
            if check_mode:
                return {"changed": True, "fingerprint": None, "uids": [req.uid], "before": None,
                        "after": KeyState("(new key)", [req.uid], True, req.trust or "unknown")}
            fpr = keyring.generate(req)
            after = keyring.key(fpr)
    elif req.fingerprint:
        fpr = normalize_fingerprint(req.fingerprint)
        before = after = keyring.key(fpr)
        if before is None:
            raise UserError(f"no key {fpr} in the GnuPG home; give content, path or uid to add it")
    else:
        raise UserError("state=present needs one of uid, content, path or fingerprint")

    if not check_mode:
        after = keyring.key(fpr) or after
    if req.trust and after.trust != req.trust:
        changed = True
        if not check_mode:
            keyring.set_trust(fpr, req.trust)
        after = KeyState(after.fingerprint, after.uids, after.secret, req.trust)
    if req.export_path and _export_differs(keyring, fpr, req.export_path, check_mode):
        changed = True
    if not check_mode:
        after = keyring.key(fpr)
    out.update(changed=changed, fingerprint=fpr, before=before, after=after)
    return out


def _export_differs(keyring, fpr, path, check_mode):
    """Whether the public key file at ``path`` is missing or stale; (re)written unless check mode."""
    public = keyring.export_public(fpr)
    if not public:               # check mode: the key is not imported yet, so it will differ
        return True
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == public:
                return False
    except FileNotFoundError:
        pass
    if not check_mode:
        tmp = f"{path}.tmp.{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(public)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    return True
