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
  - cairn.backup.common.selection
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
      - O(full_if_older_than) and O(full_if_n_inc) turn V(incremental) into a full too, as in duplicity.
    type: str
    choices: [auto, full, incremental]
    default: auto
  full_if_older_than:
    description: A duplicity time string, for example V(1M) or V(2W).
    type: str
  min_interval:
    description:
      - Skip the run, unchanged, when the last backup is younger than this interval (for example
        V(20h), V(3600)). Makes a playbook safe to run often; it costs one listing of the
        target, not a walk of the source.
    type: str
  volsize:
    description: Maximum volume size in MiB.
    type: int
    default: 200
  allow_source_mismatch:
    description: Allow another host name or source directory than the last backup's (duplicity's C(--allow-source-mismatch)).
    type: bool
    default: false
  max_blocksize:
    description: Cap the rsync block size in bytes (duplicity's C(--max-blocksize)); V(0) for no cap.
    type: int
    default: 0
  jobs:
    description: gpg processes encrypting volumes at once; V(0) for the number of CPUs.
    type: int
    default: 0
  adaptive_compression:
    description: Store data that does not compress without gpg compression (V(false) compresses everything).
    type: bool
    default: true
  compress_level:
    description:
      - Compression level, 0 to 9 (duplicity leaves gpg's 6). gpg's C(-z) where gpg writes the volumes
        (public keys, signing, O(gpg_binary)); the built-in writer maps 1-2 to ISA-L's level 1, 3-6 to
        its level 2 and 7-9 to its level 3.
    type: int
    default: 3
  full_if_n_inc:
    description:
      - Make a full backup when the last chain already has this many incremental backups, even in
        O(mode=incremental) (duplicity's C(--full-if-n-inc)). Combines with O(full_if_older_than).
    type: int
  skip_if_no_change:
    description:
      - An incremental backup that would store no change stores nothing; the result then has
        C(skipped=true) and C(changed=false) (duplicity's C(--skip-if-no-change)).
    type: bool
    default: false
  files_from:
    description:
      - A file listing the paths to back up, one a line, relative to O(source) (duplicity's
        C(--files-from)). Their parent directories are implied, a listed directory's contents
        are not; the selection rules still apply.
    type: path
  null_separator:
    description: O(files_from) and the filelists are NUL-separated rather than one path a line.
    type: bool
    default: false
  copy_links:
    description: Back up what symbolic links point to, under the links' names (duplicity's C(--copy-links)).
    type: bool
    default: false
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
  sample: last backup is 7200s old, younger than min_interval 20h
last_backup:
  description: Time of the newest backup set at the target (ISO 8601, UTC).
  returned: when the run was skipped
  type: str
  sample: "2026-11-25T00:00:00Z"
type:
  description: V(full) or V(incremental).
  returned: when a set was written or would be
  type: str
  sample: incremental
reason:
  description: Why that type was chosen.
  returned: when a set was written or would be
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
resumed_at_volume:
  description: >-
    When the run continued an interrupted set, the first volume it wrote (the ones before were
    kept from the interrupted run); null otherwise. Other options than the interrupted run's
    start a new set instead, and a warning says why.
  returned: when a set was written
  type: int
  sample: 7
volume_bytes_uploaded:
  description: Bytes of volumes this run uploaded (without those a resumed run kept).
  returned: when a set was written
  type: int
  sample: 209715200
bytes_stored:
  description: Bytes written to the target (volumes, manifest, signatures).
  returned: when a set was written
  type: int
  sample: 104857600
new_files:
  description: Files new since the last backup.
  returned: when a set was written or would be
  type: int
  sample: 12
changed_files:
  description: Files changed since the last backup.
  returned: when a set was written or would be
  type: int
  sample: 3
deleted_files:
  description: Files deleted since the last backup.
  returned: when a set was written or would be
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
lagging_targets:
  description:
    - Targets of O(mirror_targets) (or the primary, when O(mirror_stand_in) let a mirror stand
      in) that failed during this run and missed the new set. The task does not fail for
      them; each is also named in a warning. The next run copies to them the sets they lack
      before it backs up. The CLI exits 64 in this case.
  returned: when a set was written
  type: list
  elements: dict
  contains:
    url:
      description: The target's URL, its password hidden.
      type: str
    error:
      description: Why it lags (the failure it met).
      type: str
    index:
      description: 0 for O(target), 1 for the first of O(mirror_targets), and so on.
      type: int
  sample: [{url: "sftp://backup@mirror.example.com/srv/backup", error: "cannot connect: Connection refused", index: 1}]
mirrors_caught_up:
  description: Targets that lacked sets from earlier runs and were brought up to date before the backup.
  returned: when a set was written
  type: list
  elements: dict
  sample: [{url: "s3://bucket/host", sets_copied: [], files_copied: 4, bytes_copied: 1048576}]
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cairn.backup.plugins.module_utils.module_args import (
    COMMON_MUTUALLY_EXCLUSIVE, backup_options, common_argument_spec, parse, run, selection_argument_spec,
    target_options, warn)
from ansible_collections.cairn.backup.plugins.module_utils.cairn import api, timespec


def main():
    spec = common_argument_spec()
    spec.update(selection_argument_spec())
    spec.update(
        source=dict(type="path", required=True),
        mode=dict(type="str", choices=["auto", "full", "incremental"], default="auto"),
        full_if_older_than=dict(type="str"),
        min_interval=dict(type="str"),
        volsize=dict(type="int", default=200),
        allow_source_mismatch=dict(type="bool", default=False),
        max_blocksize=dict(type="int", default=0),
        jobs=dict(type="int", default=0),
        adaptive_compression=dict(type="bool", default=True),
        compress_level=dict(type="int", default=3),
        full_if_n_inc=dict(type="int"),
        skip_if_no_change=dict(type="bool", default=False),
        files_from=dict(type="path"),
        null_separator=dict(type="bool", default=False),
        copy_links=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                           mutually_exclusive=COMMON_MUTUALLY_EXCLUSIVE)
    target, opts = target_options(module), backup_options(module)
    min_interval = parse(module, timespec.parse_duration, module.params["min_interval"])
    if min_interval is not None:
        age, last = run(module, api.last_backup_age, target)
        if age is not None and age < min_interval:
            module.exit_json(changed=False, last_backup=last, skipped_reason=(
                f"last backup is {age}s old, younger than min_interval {module.params['min_interval']}"))
    if module.check_mode:
        module.exit_json(changed=True, **run(module, api.plan_changes, target, opts))
    result = run(module, api.backup, target, opts)
    for w in result.pop("warnings", []):
        warn(module, w)
    for t in result.get("lagging_targets") or ():
        warn(module, f"target {t['url']} is lagging (the next run brings it up to date): {t['error']}")
    result.pop("exit_code", None)
    # an unchanged incremental skipped (skip_if_no_change); "skipped" would make Ansible report
    # the task itself as skipped
    if result.pop("skipped", False):
        result["skipped_reason"] = result["reason"]
        result.pop("dry_run", None)
        module.exit_json(changed=False, **result)
    result.pop("dry_run", None)
    module.exit_json(changed=True, **result)


if __name__ == "__main__":
    main()
