#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cairn.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: backup
short_description: Back up a directory to a duplicity-format archive
version_added: 0.1.0
description:
  - Makes a full or incremental backup of O(source) to O(target) in duplicity's archive format,
    encrypted with gpg (symmetric or public-key) or gzipped.
  - Stock duplicity restores what this module writes.
  - C(changed) is V(true) when a backup set was written (or would be, in check mode).
author:
  - cairn.backup contributors (@cairn-backup)
extends_documentation_fragment:
  - cairn.backup.common
  - cairn.backup.common.attributes
attributes:
  check_mode:
    support: full
    details: Says whether a full or an incremental backup would be made and why, with the counts of new, changed and deleted files, writing nothing.
  diff_mode:
    support: none
options:
  source:
    description: The directory to back up.
    type: path
    required: true
  mode:
    description:
      - V(auto) makes a full backup when there is none, when the last chain has no complete
        signatures, or when the last full is older than O(full_if_older_than); else an incremental.
    type: str
    choices: [auto, full, incremental]
    default: auto
  full_if_older_than:
    description: A duplicity time string, for example V(1M) or V(2W).
    type: str
  min_interval:
    description:
      - Skip the run, unchanged, when the last backup is younger than this duplicity interval
        (for example V(20h)). Makes a playbook safe to run often.
    type: str
  includes:
    description: Include globs, with duplicity's semantics (tried in order, before O(excludes)).
    type: list
    elements: str
    default: []
  excludes:
    description: Exclude globs, with duplicity's semantics.
    type: list
    elements: str
    default: []
  exclude_filelist:
    description: A file of C(+ )/C(- ) prefixed globs (duplicity's C(--exclude-filelist)).
    type: path
  volsize:
    description: Maximum volume size in MiB.
    type: int
    default: 200
'''

EXAMPLES = r'''
- name: Nightly backup of /etc, full every month
  cairn.backup.backup:
    source: /etc
    target: file:///srv/backup/{{ inventory_hostname }}/etc
    passphrase: "{{ vault_backup_passphrase }}"
    full_if_older_than: 1M
    min_interval: 20h
    excludes:
      - /etc/ssl/private

- name: Public-key encrypted backup (the host needs no secret key)
  cairn.backup.backup:
    source: /var/www
    target: file:///mnt/nas/www
    encrypt_keys:
      - 0x1234567890ABCDEF
'''

RETURN = r'''
skipped_reason:
  description: Why no backup was made (O(min_interval) not reached).
  returned: when the run was skipped
  type: str
  sample: last backup is 2h old, younger than min_interval 20h
type:
  description: V(full) or V(incremental).
  returned: always
  type: str
  sample: incremental
reason:
  description: Why that type was chosen.
  returned: always
  type: str
  sample: extends the chain started 2026-11-01T02:00:00Z
time:
  description: Time of the set written (ISO 8601, UTC).
  returned: when a set was written
  type: str
  sample: "2026-11-25T02:00:00Z"
volumes:
  description: Number of volumes written.
  returned: when a set was written
  type: int
  sample: 3
bytes_stored:
  description: Bytes written to the target (volumes, manifest, signatures).
  returned: when a set was written
  type: int
  sample: 104857600
new_files:
  description: Files new since the last backup.
  returned: always
  type: int
  sample: 12
changed_files:
  description: Files changed since the last backup.
  returned: always
  type: int
  sample: 3
deleted_files:
  description: Files deleted since the last backup.
  returned: always
  type: int
  sample: 1
source_files:
  description: Entries in the source after selection.
  returned: when a set was written
  type: int
  sample: 5111
errors:
  description: Files that could not be read and were skipped (named in the task's warnings).
  returned: when a set was written
  type: int
  sample: 0
duration:
  description: Seconds the backup took.
  returned: when a set was written
  type: float
  sample: 4.2
'''

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cairn.backup.plugins.module_utils.module_args import (
    COMMON_MUTUALLY_EXCLUSIVE, common_argument_spec, fail, run, target_options, warn)
from ansible_collections.cairn.backup.plugins.module_utils.cairn import api, timespec
from ansible_collections.cairn.backup.plugins.module_utils.cairn.errors import CairnError


def _interval_seconds(text):
    now = int(time.time())
    return now - timespec.parse(text, now=now)


def main():
    spec = common_argument_spec()
    spec.update(
        source=dict(type="path", required=True),
        mode=dict(type="str", choices=["auto", "full", "incremental"], default="auto"),
        full_if_older_than=dict(type="str"),
        min_interval=dict(type="str"),
        includes=dict(type="list", elements="str", default=[]),
        excludes=dict(type="list", elements="str", default=[]),
        exclude_filelist=dict(type="path"),
        volsize=dict(type="int", default=200),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                           mutually_exclusive=COMMON_MUTUALLY_EXCLUSIVE)
    p = module.params
    target = target_options(module)
    rules = [("include", g) for g in p["includes"]] + [("exclude", g) for g in p["excludes"]]
    if p["exclude_filelist"]:
        rules.append(("exclude-filelist", p["exclude_filelist"]))
    try:
        full_if = timespec.parse(p["full_if_older_than"]) if p["full_if_older_than"] else None
        min_interval = _interval_seconds(p["min_interval"]) if p["min_interval"] else None
    except CairnError as e:
        fail(module, e)
    opts = api.BackupOptions(source=p["source"], mode=p["mode"], full_if_older_than=full_if,
                             volsize=p["volsize"], rules=rules)
    plan = run(module, api.plan_changes, target, opts)
    if min_interval is not None and plan["last_backup_age"] is not None and plan["last_backup_age"] < min_interval:
        module.exit_json(changed=False, skipped_reason=(
            f"last backup is {plan['last_backup_age']}s old, younger than min_interval {p['min_interval']}"),
            type=plan["type"], reason=plan["reason"], new_files=0, changed_files=0, deleted_files=0)
    if module.check_mode:
        module.exit_json(changed=True, **plan)
    result = run(module, api.backup, target, opts)
    warnings = result.pop("warnings", [])
    for w in warnings:
        warn(module, w)
    result.pop("exit_code", None)
    module.exit_json(changed=True, **result)


if __name__ == "__main__":
    main()
