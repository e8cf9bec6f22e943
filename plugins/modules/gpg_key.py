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
    description:
      - With O(state=present) and neither O(content) nor O(path), generate a key with this user id
        unless a key with this user id, or with this e-mail address, exists (C(bob@example.org)
        does not match C(bob@example.org.uk)).
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

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.cairn.backup.plugins.module_utils.cairn.errors import CairnError
from ansible_collections.cairn.backup.plugins.module_utils.cairn.keyring import (
    HAS_GNUPG, TRUST_LEVELS, KeyRequest, Keyring, converge)


def _request(module):
    p = module.params
    material = None
    if p["path"]:
        try:
            with open(p["path"], "rb") as f:
                material = f.read()
        except OSError as e:
            module.fail_json(msg=f"cannot read {p['path']}: {e.strerror}")
    elif p["content"] is not None:
        material = p["content"].encode()
    return KeyRequest(state=p["state"], fingerprint=p["fingerprint"], uid=p["uid"], key_type=p["key_type"],
                      key_length=p["key_length"], expire=p["expire"], passphrase=p["passphrase"],
                      material=material, trust=p["trust"], export_path=p["export_path"],
                      delete_secret=p["secret"])


def _result(outcome, diff):
    after = outcome["after"]
    result = {"changed": outcome["changed"]}
    if outcome.get("fingerprint"):
        result["fingerprint"] = outcome["fingerprint"]
    if "fingerprints" in outcome:
        result["fingerprints"] = outcome["fingerprints"]
    if after is not None and after.fingerprint != "(new key)":
        result.update(uids=after.uids, secret=after.secret, trust=after.trust)
    elif after is not None:
        result["uids"] = after.uids
    if diff:
        before = outcome["before"]
        result["diff"] = {"before": {"fingerprints": [before.fingerprint] if before else [],
                                     "trust": before.trust if before else None},
                          "after": {"fingerprints": [after.fingerprint] if after else [],
                                    "trust": after.trust if after else None}}
    return result


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
    gpg_bin = module.get_bin_path("gpg")
    if not (HAS_GNUPG and gpg_bin) and module.check_mode and module.params["state"] == "present":
        # a --check run on a fresh host, before cairn.backup.agent installed gpg: every key is new
        module.exit_json(changed=True, fingerprint=module.params["fingerprint"],
                         msg="gpg or python-gnupg is not installed yet; the key would be added")
    if not HAS_GNUPG:
        module.fail_json(msg=missing_required_lib("python-gnupg"))
    if not gpg_bin:
        module.fail_json(msg="the gpg binary is not installed (Debian: gnupg, RHEL: gnupg2)")
    try:
        with Keyring(module.params["gnupg_home"], gpg_bin, read_only=module.check_mode) as keyring:
            outcome = converge(keyring, _request(module), module.check_mode)
    except CairnError as e:
        module.fail_json(msg=e.message, exit_code=e.exit_code)
    module.exit_json(**_result(outcome, module._diff))


if __name__ == "__main__":
    main()
