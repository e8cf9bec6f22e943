#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cairn.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: gpg_key
short_description: Manage the GnuPG keys backups are encrypted and signed with
version_added: 0.1.0
description:
  - Generates a key (when no key with O(uid) exists), imports key material from O(content) or
    O(path), sets owner trust, exports the public key, or deletes a key, in a GnuPG home on the
    managed host.
  - Idempotent by fingerprint. Never returns or logs secret key material.
  - C(changed) is V(true) when a key was generated, imported or deleted, when the trust changed,
    or when O(export_path) was (re)written.
author:
  - cairn.backup contributors (@cairn-backup)
extends_documentation_fragment:
  - cairn.backup.common.attributes
attributes:
  check_mode:
    support: full
    details:
      - Key material to import is only scanned; nothing is written.
      - On a host where gpg or python-gnupg is not installed yet (a C(--check) run before
        the cairn.backup.agent role installs them), reports
        C(changed) for O(state=present) without looking further.
  diff_mode:
    support: full
    details: Fingerprints and trust before and after.
options:
  gnupg_home:
    description: The GnuPG home; default E(GNUPGHOME) or gpg's default.
    type: path
  state:
    description: Whether the key should be there.
    type: str
    choices: [present, absent]
    default: present
  fingerprint:
    description: The key to act on (for O(state=absent), O(trust), O(export_path)) when it is not generated or imported by this task.
    type: str
  uid:
    description: With O(state=present) and neither O(content) nor O(path), generate a key with this user id unless one exists.
    type: str
  key_type:
    description: Type of a generated key.
    type: str
    default: RSA
  key_length:
    description: Length of a generated key.
    type: int
    default: 3072
  expire:
    description: Expiry of a generated key, as gpg takes it (V(0) never, V(2y), ...).
    type: str
    default: "0"
  passphrase:
    description: Protects a generated secret key; without it the key has no passphrase.
    type: str
  content:
    description: Armored key material to import (public or secret).
    type: str
  path:
    description: A key file on the managed host to import.
    type: path
  trust:
    description: Owner trust to set on the key.
    type: str
    choices: [unknown, never, marginal, full, ultimate]
  export_path:
    description: Write the armored public key here (mode 0644), only when its content differs.
    type: path
  secret:
    description: With O(state=absent), delete the secret key too.
    type: bool
    default: true
requirements:
  - python-gnupg and the gpg binary on the managed host
'''

EXAMPLES = r'''
- name: A backup key for the fleet, generated once on the key host
  cairn.backup.gpg_key:
    uid: backup@example.org
    key_length: 4096
    export_path: /root/backup-public.asc
  register: backup_key

- name: Hosts that encrypt get the public key, fully trusted
  cairn.backup.gpg_key:
    content: "{{ lookup('file', 'files/backup-public.asc') }}"
    trust: full

- name: Retire an old key
  cairn.backup.gpg_key:
    fingerprint: 0123456789ABCDEF0123456789ABCDEF01234567
    state: absent
'''

RETURN = r'''
fingerprint:
  description: Fingerprint of the key acted on.
  returned: when a key was found, generated or imported
  type: str
  sample: 0123456789ABCDEF0123456789ABCDEF01234567
fingerprints:
  description: Every fingerprint the imported material carried.
  returned: when O(content) or O(path) was given
  type: list
  elements: str
  sample: [0123456789ABCDEF0123456789ABCDEF01234567]
uids:
  description: User ids of the key.
  returned: when the key is present
  type: list
  elements: str
  sample: [backup@example.org]
secret:
  description: Whether the secret key is in the GnuPG home.
  returned: when the key is present
  type: bool
  sample: true
trust:
  description: Owner trust of the key.
  returned: when the key is present
  type: str
  sample: full
'''

import atexit
import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.cairn.backup.plugins.module_utils.cairn.crypto import agent_running, stop_agent

try:
    import gnupg
    HAS_GNUPG = True
except ImportError:
    HAS_GNUPG = False

TRUST_LEVELS = {"unknown": "TRUST_UNDEFINED", "never": "TRUST_NEVER", "marginal": "TRUST_MARGINAL",
                "full": "TRUST_FULLY", "ultimate": "TRUST_ULTIMATE"}
# --with-colons ownertrust letters -> our names
OWNERTRUST = {"": "unknown", "-": "unknown", "q": "unknown", "o": "unknown", "n": "never",
              "m": "marginal", "f": "full", "u": "ultimate"}


def _keys(gpg, secret=False):
    return {k["fingerprint"]: k for k in gpg.list_keys(secret=secret)}


def _state(gpg, fpr):
    pub = _keys(gpg).get(fpr)
    if pub is None:
        return None
    return {"fingerprint": fpr, "uids": pub.get("uids", []), "secret": fpr in _keys(gpg, True),
            "trust": OWNERTRUST.get(pub.get("ownertrust", ""), "unknown")}


def _scan(gpg, module, data):
    if hasattr(gpg, "scan_keys_mem"):
        found = gpg.scan_keys_mem(data)
    else:
        # python-gnupg before 0.4.8 (some distributions' packages) scans files only
        with tempfile.NamedTemporaryFile("wb", suffix=".asc") as f:
            f.write(data if isinstance(data, bytes) else data.encode("utf-8"))
            f.flush()
            found = gpg.scan_keys(f.name)
    fprs = [k["fingerprint"] for k in found]
    if not fprs:
        module.fail_json(msg="the key material holds no OpenPGP key (is it armored key data?)")
    return list(dict.fromkeys(fprs)), any(k.get("type") == "sec" for k in found)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            gnupg_home=dict(type="path"), state=dict(type="str", choices=["present", "absent"], default="present"),
            fingerprint=dict(type="str"), uid=dict(type="str"), key_type=dict(type="str", default="RSA"),
            key_length=dict(type="int", default=3072, no_log=False), expire=dict(type="str", default="0"),
            passphrase=dict(type="str", no_log=True), content=dict(type="str", no_log=True),
            path=dict(type="path"), trust=dict(type="str", choices=list(TRUST_LEVELS)),
            export_path=dict(type="path"), secret=dict(type="bool", default=True)),
        mutually_exclusive=[("content", "path"), ("uid", "content"), ("uid", "path")],
        required_if=[("state", "absent", ("fingerprint",))],
        supports_check_mode=True)
    p = module.params
    gpg_bin = module.get_bin_path("gpg")
    if module.check_mode and (not HAS_GNUPG or not gpg_bin) and p["state"] == "present":
        # a fresh host in a --check run before cairn.backup.agent installed gpg: every key
        # would be new
        module.exit_json(changed=True, fingerprint=p["fingerprint"],
                         msg="gpg or python-gnupg is not installed yet; the key would be added")
    if not HAS_GNUPG:
        module.fail_json(msg=missing_required_lib("python-gnupg"))
    if not gpg_bin:
        module.fail_json(msg="the gpg binary is not installed (Debian: gnupg, RHEL: gnupg2)")
    home = p["gnupg_home"] or os.environ.get("GNUPGHOME") or os.path.expanduser("~/.gnupg")
    scratch = None
    if not os.path.isdir(home):
        if module.check_mode:
            # judge against an empty keyring, as the new home would be, and touch nothing: not
            # the missing home, and not another one (it fell back to $HOME/.gnupg before)
            scratch = home = tempfile.mkdtemp(prefix="cairn-gpg-key-check-")
        else:
            os.makedirs(home, mode=0o700)
    if module.check_mode:
        # exit_json/fail_json end the process: leave the home as found on the way out (atexit
        # runs these last-in first-out: the agent this run started stops, then the scratch goes)
        if scratch:
            atexit.register(shutil.rmtree, scratch, True)
        if not agent_running(home):
            atexit.register(stop_agent, home)
    os.environ["LC_ALL"] = "C"
    # in check mode gpg must not update the trust database while it lists keys
    gpg = gnupg.GPG(gpgbinary=gpg_bin, gnupghome=home,
                    options=["--no-auto-check-trustdb"] if module.check_mode else None)
    gpg.encoding = "utf-8"
    changed = False
    fprs = []

    # which key, and does it need creating?
    if p["state"] == "absent":
        fpr = p["fingerprint"].replace(" ", "").upper()
        before = _state(gpg, fpr)
        if before is not None:
            changed = True
            if not module.check_mode:
                if p["secret"] and before["secret"]:
                    r = gpg.delete_keys(fpr, secret=True, expect_passphrase=False)
                    if str(r) != "ok":
                        module.fail_json(msg=f"gpg could not delete the secret key {fpr}: {r.status}")
                r = gpg.delete_keys(fpr)
                if str(r) != "ok":
                    module.fail_json(msg=f"gpg could not delete the key {fpr}: {r.status}")
        result = dict(changed=changed, fingerprint=fpr)
        if module._diff:
            result["diff"] = {"before": {"fingerprints": [fpr] if before else []}, "after": {"fingerprints": []}}
        module.exit_json(**result)

    if p["content"] is not None or p["path"]:
        if p["path"]:
            try:
                with open(p["path"], "rb") as f:
                    data = f.read()
            except OSError as e:
                module.fail_json(msg=f"cannot read {p['path']}: {e.strerror}")
        else:
            data = p["content"].encode()
        fprs, has_secret = _scan(gpg, module, data)
        fpr = fprs[0]
        missing = [f for f in fprs if _state(gpg, f) is None or (has_secret and not _state(gpg, f)["secret"])]
        before = _state(gpg, fpr)
        if missing:
            changed = True
            if not module.check_mode:
                r = gpg.import_keys(data)
                if not r.fingerprints:
                    module.fail_json(msg="gpg imported nothing: " + "; ".join(
                        x.get("text", "") for x in r.results if x.get("text"))[:300])
    elif p["uid"]:
        match = [k for k in gpg.list_keys() if any(p["uid"] in u for u in k.get("uids", []))]
        if match:
            fpr = match[0]["fingerprint"]
            before = _state(gpg, fpr)
        else:
            before = None
            changed = True
            if module.check_mode:
                module.exit_json(changed=True, uids=[p["uid"]],
                                 diff={"before": {"fingerprints": []}, "after": {"fingerprints": ["(new key)"]}})
            params = dict(name_email=p["uid"], key_type=p["key_type"], key_length=p["key_length"],
                          expire_date=p["expire"], key_usage="sign,encrypt")
            if p["passphrase"]:
                params["passphrase"] = p["passphrase"]
            else:
                params["no_protection"] = True
            r = gpg.gen_key(gpg.gen_key_input(**params))
            if not r.fingerprint:
                module.fail_json(msg="gpg could not generate the key: " + (r.status or "unknown error"))
            fpr = r.fingerprint
    elif p["fingerprint"]:
        fpr = p["fingerprint"].replace(" ", "").upper()
        before = _state(gpg, fpr)
        if before is None:
            module.fail_json(msg=f"no key {fpr} in the GnuPG home; give content, path or uid to add it")
    else:
        module.fail_json(msg="state=present needs one of uid, content, path or fingerprint")

    after = _state(gpg, fpr) if not module.check_mode else (before or {"fingerprint": fpr, "trust": "unknown"})
    if p["trust"] and (after or {}).get("trust") != p["trust"]:
        changed = True
        if not module.check_mode:
            r = gpg.trust_keys([fpr], TRUST_LEVELS[p["trust"]])
            if getattr(r, "status", "ok") not in ("ok", None) and "error" in str(getattr(r, "stderr", "")).lower():
                module.fail_json(msg=f"gpg could not set the trust of {fpr}")
        after = dict(after or {}, trust=p["trust"])
    if p["export_path"]:
        public = gpg.export_keys(fpr, armor=True)
        current = None
        if os.path.exists(p["export_path"]):
            with open(p["export_path"], encoding="utf-8") as f:
                current = f.read()
        if module.check_mode and not public:
            changed = True
        elif current != public:
            changed = True
            if not module.check_mode:
                tmp = p["export_path"] + ".tmp"
                with open(tmp, "w", encoding="utf-8") as f:
                    f.write(public)
                os.chmod(tmp, 0o644)
                os.replace(tmp, p["export_path"])
    if not module.check_mode:
        after = _state(gpg, fpr)
    result = dict(changed=changed, fingerprint=fpr)
    if fprs:
        result["fingerprints"] = fprs
    if after:
        result.update({k: after[k] for k in ("uids", "secret", "trust") if k in after})
    if module._diff:
        result["diff"] = {"before": {"fingerprints": [fpr] if before else [], "trust": (before or {}).get("trust")},
                          "after": {"fingerprints": [fpr], "trust": (after or {}).get("trust")}}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
