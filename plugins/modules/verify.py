#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cairn.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: verify
short_description: Check the integrity of a duplicity-format archive
version_added: 0.1.0
description:
  - Fetches every volume of the chain at O(time), checks its SHA1 against the manifest,
    decrypts and parses it.
  - With O(compare_data=true), also compares every file with O(source) (type, permissions,
    owner, mtime, content).
  - Never reports C(changed). Fails listing the differences, unless O(fail_on_difference=false).
author:
  - cairn.backup contributors (@cairn-backup)
extends_documentation_fragment:
  - cairn.backup.common
  - cairn.backup.common.selection
  - cairn.backup.common.attributes
attributes:
  check_mode:
    support: full
    details: Runs the same read-only checks.
  diff_mode:
    support: none
options:
  source:
    description: The local directory to compare with; required with O(compare_data=true).
    type: path
  compare_data:
    description:
      - Compare each file with O(source) (duplicity's C(--compare-data)); the selection options
        say which local files belong to the backup, so excluded files are not reported as new.
    type: bool
    default: false
  time:
    description: The point in time to verify (a duplicity time string); default the latest.
    type: str
  path:
    description: Verify only this path of the backup.
    type: str
  fail_on_difference:
    description: Fail when differences are found; with V(false) they are returned.
    type: bool
    default: true
'''

EXAMPLES = r'''
- name: Weekly integrity check of every volume
  cairn.backup.verify:
    target: file:///srv/backup/web1/etc
    passphrase: "{{ vault_backup_passphrase }}"

- name: Compare the backup with the live tree, report only
  cairn.backup.verify:
    target: file:///srv/backup/web1/etc
    passphrase: "{{ vault_backup_passphrase }}"
    source: /etc
    compare_data: true
    fail_on_difference: false
  register: drift
'''

RETURN = r'''
compared:
  description: Entries compared (or parsed, without O(compare_data)).
  returned: always
  type: int
  sample: 5111
files_in_backup:
  description:
    - Files the backup holds (under O(path)), counted from its signature files; RV(compared) must
      equal it or the verify fails. V(null) when a set has no signature file.
  returned: always
  type: int
  sample: 5111
differences:
  description: What differs, each with C(path), C(what) (V(data), V(mtime), V(permissions), V(new), V(missing), ...) and C(message).
  returned: always
  type: list
  elements: dict
  sample: [{path: a.txt, what: data, message: Data for file a.txt is different}]
volumes:
  description: Volumes fetched, hash-checked and decrypted.
  returned: always
  type: int
  sample: 4
time:
  description: Time of the newest set verified (ISO 8601, UTC).
  returned: always
  type: str
  sample: "2026-11-25T02:00:00Z"
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cairn.backup.plugins.module_utils.module_args import (
    COMMON_MUTUALLY_EXCLUSIVE, common_argument_spec, parse, run, selection_argument_spec, selection_rules,
    target_options, warn)
from ansible_collections.cairn.backup.plugins.module_utils.cairn import api, timespec


def main():
    spec = common_argument_spec()
    spec.update(selection_argument_spec())
    spec.update(source=dict(type="path"), compare_data=dict(type="bool", default=False),
                time=dict(type="str"), path=dict(type="str"),
                fail_on_difference=dict(type="bool", default=True))
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                           mutually_exclusive=COMMON_MUTUALLY_EXCLUSIVE,
                           required_if=[("compare_data", True, ("source",))])
    p = module.params
    target = target_options(module)
    result = run(module, api.verify, target, p["source"], time=parse(module, timespec.parse, p["time"]),
                 path=p["path"], compare_data=p["compare_data"], rules=selection_rules(module))
    for w in result.pop("warnings", []):
        warn(module, w)
    if result["differences"] and p["fail_on_difference"]:
        n = len(result["differences"])
        module.fail_json(msg=f"verify found {n} difference(s): " +
                         "; ".join(d["message"] for d in result["differences"][:10]), **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
