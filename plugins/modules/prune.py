#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cairn.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: prune
short_description: Apply a retention policy to a duplicity-format archive
version_added: 0.1.0
description:
  - Deletes old backup chains and leftovers, as duplicity's C(remove-older-than),
    C(remove-all-but-n-full), C(remove-all-inc-of-but-n-full) and C(cleanup) do; together they
    remove what each of them would (the engine's one retention policy, which C(cairn prune) and
    the job role's retention use too).
  - Never removes the chain of the newest backup.
  - C(changed) is V(true) when files were deleted (or would be, in check mode).
  - On an S3 bucket with Object Lock, files still under retention or a legal hold are never deleted;
    they are returned in RV(retained) and their sets in RV(retained_sets), and RV(msg) says so.
  - Run it from the Ansible controller (C(delegate_to) V(localhost)) with credentials that may delete
    when the hosts hold write-only ones (see C(docs/immutable-backups.md)).
author:
  - cairn.backup contributors (@cairn-backup)
extends_documentation_fragment:
  - cairn.backup.common
  - cairn.backup.common.attributes
attributes:
  check_mode:
    support: full
    details: Lists the sets and files that would be deleted and the chains that would be left, exactly.
  diff_mode:
    support: full
    details: The chains (start and end times) before and after.
options:
  older_than:
    description: Delete chains that ended before this time (a duplicity time string such as V(6M)).
    type: str
  keep_full:
    description: Keep this many full backups with their incrementals; delete older chains.
    type: int
  keep_full_with_incrementals:
    description: Keep the incrementals of only this many newest chains; older chains keep their full backup.
    type: int
  cleanup:
    description: Delete what interrupted runs left (incomplete and orphaned sets, stray signatures, temp files).
    type: bool
    default: false
'''

EXAMPLES = r'''
- name: Keep three months of daily backups, incrementals only for the last two chains
  cairn.backup.prune:
    target: file:///srv/backup/web1/etc
    keep_full: 3
    keep_full_with_incrementals: 2
    cleanup: true
'''

RETURN = r'''
files:
  description: Remote files deleted (or that would be).
  returned: always
  type: list
  elements: str
  sample: [duplicity-full.20260101T020000Z.vol1.difftar.gpg]
sets:
  description: Backup sets deleted (or that would be), each with C(type) and C(time).
  returned: always
  type: list
  elements: dict
  sample: [{type: full, time: "2026-01-01T02:00:00Z"}]
retained:
  description:
    - Files that S3 Object Lock keeps (see O(s3_object_lock_mode)) and that were not deleted (or would not
      be), each with C(name), C(reason) (V(retention), V(legal-hold), V(set-kept) for the other files of a
      set kept whole, V(denied)), C(mode) and C(retain_until) (ISO 8601, UTC).
    - A set with any file under retention is kept whole, with the sets of its chain it builds on.
  returned: always
  type: list
  elements: dict
  sample: [{name: duplicity-full.20260101T020000Z.manifest.gpg, reason: retention, mode: compliance,
            retain_until: "2026-02-01T02:00:00Z"}]
retained_sets:
  description: Backup sets the policy selected but that were kept because of S3 Object Lock, each with C(type) and C(time).
  returned: always
  type: list
  elements: dict
  sample: [{type: full, time: "2026-01-01T02:00:00Z"}]
msg:
  description: Says how many files and sets S3 Object Lock kept, when it kept any.
  returned: when files were kept
  type: str
chains:
  description: The chains left (or that would be left), each with C(start_time) and C(end_time).
  returned: always
  type: list
  elements: dict
  sample: [{start_time: "2026-11-01T02:00:00Z", end_time: "2026-11-25T02:00:00Z"}]
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cairn.backup.plugins.module_utils.module_args import (
    COMMON_MUTUALLY_EXCLUSIVE, common_argument_spec, fail, parse, run, target_options)
from ansible_collections.cairn.backup.plugins.module_utils.cairn import api, timespec
from ansible_collections.cairn.backup.plugins.module_utils.cairn.errors import CairnError


def _chains(chains):
    return [{"start_time": c["start_time"], "end_time": c["end_time"]} for c in chains]


def main():
    spec = common_argument_spec()
    spec.update(older_than=dict(type="str"), keep_full=dict(type="int"),
                keep_full_with_incrementals=dict(type="int"), cleanup=dict(type="bool", default=False))
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                           mutually_exclusive=COMMON_MUTUALLY_EXCLUSIVE,
                           required_one_of=[("older_than", "keep_full", "keep_full_with_incrementals", "cleanup")])
    p = module.params
    target = target_options(module)
    try:
        policy = api.RetentionPolicy(older_than=parse(module, timespec.parse, p["older_than"]),
                                     keep_full=p["keep_full"], keep_full_with_incrementals=p["keep_full_with_incrementals"],
                                     cleanup=p["cleanup"])
    except CairnError as e:
        fail(module, e)
    r = run(module, api.prune, target, policy, force=not module.check_mode)
    result = dict(changed=r["changed"], files=r["files"], sets=[{"type": s["type"], "time": s["time"]} for s in r["sets"]],
                  # not "skipped": Ansible reads a result's "skipped" as "the task was skipped"
                  chains=_chains(r["chains_after"]), retained=r.get("skipped") or [],
                  retained_sets=[{"type": s["type"], "time": s["time"]} for s in r.get("kept_sets") or ()])
    if result["retained"]:
        held = [k for k in result["retained"] if k["reason"] in ("retention", "legal-hold")]
        result["msg"] = (f"{'would keep' if module.check_mode else 'kept'} {len(result['retained'])} file(s) and "
                         f"{len(result['retained_sets'])} set(s) that S3 Object Lock protects ({len(held)} under retention "
                         "or a legal hold): not deleted; a later prune removes them when their retention has passed")
    if module._diff:
        result["diff"] = {"before": {"chains": _chains(r["chains_before"])}, "after": {"chains": result["chains"]}}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
