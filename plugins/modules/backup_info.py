#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cairn.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: backup_info
short_description: Describe a duplicity-format archive
version_added: 0.1.0
description:
  - Returns the chains, sets and volumes of an archive, the last full and last backup with their
    ages, orphaned and incomplete sets, and with O(list_files) the files at O(time).
  - Reads only manifests and signatures (cached locally); never reports C(changed).
author:
  - cairn.backup contributors (@cairn-backup)
extends_documentation_fragment:
  - cairn.backup.common
  - cairn.backup.common.attributes
attributes:
  check_mode:
    support: full
    details: Read-only; behaves the same.
  diff_mode:
    support: none
options:
  list_files:
    description: Also return the files of the backup at O(time).
    type: bool
    default: false
  time:
    description: The point in time for O(list_files) (a duplicity time string); default the latest.
    type: str
  stored_size:
    description:
      - Also return how many bytes the archive takes on the target (RV(stored_bytes), and
        C(stored_bytes) in each chain). Costs one size request per remote file.
    type: bool
    default: false
'''

EXAMPLES = r'''
- name: How old is the last backup?
  cairn.backup.backup_info:
    target: file:///srv/backup/web1/etc
  register: info

- name: Alert when older than a day
  ansible.builtin.fail:
    msg: last backup is {{ info.last_backup_age }} seconds old
  when: info.last_backup_age is none or info.last_backup_age > 86400

# ad hoc:
# ansible web1 -m cairn.backup.backup_info -a 'target=file:///srv/backup/web1/etc list_files=true time=1W'
'''

RETURN = r'''
chains:
  description:
    - Complete chains, oldest first, each with C(start_time), C(end_time), C(volumes), C(has_signatures)
      and C(sets) (each with C(type), C(time), C(volumes), C(encrypted)).
  returned: always
  type: list
  elements: dict
  sample: [{start_time: "2026-11-01T02:00:00Z", end_time: "2026-11-25T02:00:00Z", volumes: 30, has_signatures: true, sets: []}]
last_full:
  description: Time of the newest full backup (ISO 8601, UTC), or null.
  returned: always
  type: str
  sample: "2026-11-01T02:00:00Z"
last_full_age:
  description: Seconds since the newest full backup, or null.
  returned: always
  type: int
  sample: 2073600
last_backup:
  description: Time of the newest backup set, or null.
  returned: always
  type: str
  sample: "2026-11-25T02:00:00Z"
last_backup_age:
  description: Seconds since the newest backup set, or null.
  returned: always
  type: int
  sample: 3600
stored_bytes:
  description:
    - Bytes the archive's chains take on the target (volumes, manifests, signatures); V(null)
      when the target cannot tell a file's size.
  returned: when O(stored_size=true)
  type: int
  sample: 52428800
chain_length:
  description: Sets in the newest chain (1 full + incrementals).
  returned: always
  type: int
  sample: 24
orphaned_sets:
  description: Incremental sets that belong to no chain.
  returned: always
  type: list
  elements: dict
  sample: []
incomplete_sets:
  description:
    - Sets without manifest or signatures (an interrupted run).
    - M(cairn.backup.prune) with O(cairn.backup.prune#module:cleanup=true) removes them.
  returned: always
  type: list
  elements: dict
  sample: []
unfinished_files:
  description:
    - Volumes a backup uploaded under their unfinished names and never committed (it was
      interrupted); duplicity does not read them.
    - The next backup, or M(cairn.backup.prune) with O(cairn.backup.prune#module:cleanup=true), removes them.
  returned: always
  type: list
  elements: str
  sample: [cairn-unfinished.duplicity-full.20261122T020000Z.vol1.difftar.gpg]
files:
  description: The files of the backup at O(time), each with C(path), C(type), C(size), C(mtime).
  returned: when O(list_files=true)
  type: list
  elements: dict
  sample: [{path: nginx/nginx.conf, type: reg, size: 1024, mtime: "2026-11-20T10:00:00Z"}]
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cairn.backup.plugins.module_utils.module_args import (
    COMMON_MUTUALLY_EXCLUSIVE, common_argument_spec, parse, run, target_options)
from ansible_collections.cairn.backup.plugins.module_utils.cairn import api, timespec


def file_list(target, time):
    """The result's files, built as the signatures are read (no PathInfo list beside them)."""
    with api.files_at(target, time) as (infos, _set_time):
        return [{"path": os.fsdecode(i.relpath), "type": i.type, "size": i.size,
                 "mtime": timespec.to_iso(i.mtime)} for i in infos]


def main():
    spec = common_argument_spec()
    spec.update(list_files=dict(type="bool", default=False), time=dict(type="str"),
                stored_size=dict(type="bool", default=False))
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                           mutually_exclusive=COMMON_MUTUALLY_EXCLUSIVE)
    p = module.params
    target = target_options(module)
    st = run(module, api.status, target, p["stored_size"])
    result = {k: st[k] for k in ("chains", "last_full", "last_full_age", "last_backup",
                                 "last_backup_age", "orphaned_sets", "incomplete_sets", "unfinished_files")}
    result["chain_length"] = len(st["chains"][-1]["sets"]) if st["chains"] else 0
    if p["stored_size"]:
        result["stored_bytes"] = st["stored_bytes"]
    if p["list_files"]:
        result["files"] = run(module, file_list, target, parse(module, timespec.parse, p["time"]))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
