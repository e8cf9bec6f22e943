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
  compare_data_sample:
    description:
      - With O(compare_data=true), compare the content of this many regular files only, picked at
        random from the backup's signatures (each file as likely as any other), so a large tree
        is not read whole on every verify. Every volume is still fetched, hash-checked and
        decrypted, and the type and metadata of every file still compared.
      - Unset, the content of every file is compared.
    type: int
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
data_compared:
  description: Regular files whose content was compared (all of them, or the sample).
  returned: always
  type: int
  sample: 200
data_sample:
  description: The sample size asked for (O(compare_data_sample)), or V(null) when every file's content was compared.
  returned: always
  type: int
  sample: 200
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
                compare_data_sample=dict(type="int"),
                time=dict(type="str"), path=dict(type="str"),
                fail_on_difference=dict(type="bool", default=True))
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                           mutually_exclusive=COMMON_MUTUALLY_EXCLUSIVE,
                           required_if=[("compare_data", True, ("source",))])
    p = module.params
    target = target_options(module)
    result = run(module, api.verify, target, p["source"], time=parse(module, timespec.parse, p["time"]),
                 path=p["path"], compare_data=p["compare_data"], rules=selection_rules(module),
                 data_sample=p["compare_data_sample"])
    for w in result.pop("warnings", []):
        warn(module, w)
    if result["differences"] and p["fail_on_difference"]:
        n = len(result["differences"])
        module.fail_json(msg=f"verify found {n} difference(s): " +
                         "; ".join(d["message"] for d in result["differences"][:10]), **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
