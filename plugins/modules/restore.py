#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cairn.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: restore
short_description: Restore files from a duplicity-format archive
version_added: 0.1.0
description:
  - Restores the whole backup, or one path of it, as it was at a point in time, into O(dest).
  - Reads archives written by duplicity or by M(cairn.backup.backup).
  - C(changed) is V(true) when files were written (or would be, in check mode).
  - Entries that would leave O(dest) (C(..), absolute names, paths through symlinks) are refused.
author:
  - cairn.backup contributors (@cairn-backup)
extends_documentation_fragment:
  - cairn.backup.common
  - cairn.backup.common.attributes
attributes:
  check_mode:
    support: full
    details: Lists what would be restored (from the signatures, no volume is read) and writes nothing.
  diff_mode:
    support: none
options:
  dest:
    description:
      - Where to restore. Must not exist or be empty, unless O(force=true).
      - With O(path) naming a file, O(dest) is that file.
    type: path
    required: true
  path:
    description: The path to restore, relative to the backed-up directory, as listed by M(cairn.backup.backup_info).
    type: str
  time:
    description: A duplicity time string (V(3D), V(2026-11-20), V(now), ...); default the latest backup.
    type: str
  force:
    description:
      - Restore into a non-empty O(dest), replacing what is there.
      - Run again after an interrupted restore, regular files it had already written whole (same
        type, mode, mtime, owner and the signature stored in the backup) are kept, not written
        again (RV(skipped)).
    type: bool
    default: false
  restore_ownership:
    description:
      - Give restored files their owners and groups. V(null) (the default) does so when the
        module runs as root, as duplicity does; V(false) is C(--no-restore-ownership).
    type: bool
  numeric_owner:
    description: Restore owners by the numeric ids stored, not by user and group names.
    type: bool
    default: false
  rename:
    description:
      - duplicity's C(--rename FROM TO), for each item - the backup's path O(rename[].from) (relative
        to O(path) when given) and everything below it are written at O(rename[].to) below O(dest).
      - O(rename[].to) must be a relative path inside O(dest) (no C(..), not absolute); missing parents
        are made. Where it is also in the backup, the later of the two in the archive's order wins.
      - Check mode lists the paths as they are in the backup.
    type: list
    elements: dict
    suboptions:
      from:
        description: The path in the backup.
        type: str
        required: true
      to:
        description: Where it is written, relative to O(dest).
        type: str
        required: true
'''

EXAMPLES = r'''
- name: Restore nginx's configuration as it was three days ago
  cairn.backup.restore:
    target: file:///srv/backup/web1/etc
    passphrase: "{{ vault_backup_passphrase }}"
    path: nginx
    dest: /root/nginx-3-days-ago
    time: 3D

- name: Restore last night's nginx config beside the live one, under another name
  cairn.backup.restore:
    target: file:///srv/backup/web1/etc
    passphrase: "{{ vault_backup_passphrase }}"
    dest: /root/restored
    path: nginx
    rename:
      - {from: nginx.conf, to: nginx.conf.from-backup}

# ad hoc, from the command line:
# ansible web1 -m cairn.backup.restore -a 'target=file:///srv/backup/web1/etc path=nginx dest=/root/nginx time=3D'
'''

RETURN = r'''
files:
  description: Number of entries restored (or that would be).
  returned: always
  type: int
  sample: 42
time:
  description: Time of the newest backup set used (ISO 8601, UTC).
  returned: always
  type: str
  sample: "2026-11-22T02:00:00Z"
dest:
  description: Where the files went.
  returned: always
  type: str
  sample: /root/nginx-3-days-ago
paths:
  description: The paths that would be restored (check mode only; at most 1000).
  returned: in check mode
  type: list
  elements: str
  sample: [nginx, nginx/nginx.conf]
skipped:
  description: >-
    Regular files an interrupted restore had already written, found identical (type, mode,
    mtime, owner and the signature stored in the backup) and kept instead of being written
    again; only when restoring with O(force=true) into a target that holds something.
  returned: when files were restored
  type: int
  sample: 0
incomplete:
  description: >-
    Whether some volume was missing, truncated, failed its hash, or could not be decrypted or
    parsed. The restore goes on past it; the task then fails, with RV(lost) and RV(lost_volumes)
    saying what is missing (the CLI exits 63).
  returned: when files were restored
  type: bool
  sample: false
lost:
  description: >-
    The paths not restored because their newest version needed an unusable volume, with the
    volume and what was lost (V(data), V(metadata) of a directory whose contents were restored,
    V(entry) for a symlink or special file, V(deleted) for a deletion, V(unknown) when the set's
    signatures could not be read either).
  returned: when files were restored
  type: list
  elements: dict
  sample: [{path: etc/app.conf, volume: duplicity-full.20261122T020000Z.vol3.difftar.gpg, what: data}]
lost_count:
  description: Number of entries in RV(lost).
  returned: when files were restored
  type: int
  sample: 0
lost_volumes:
  description: Each volume that could not be used, why, and the range of paths it held.
  returned: when files were restored
  type: list
  elements: dict
  sample: [{volume: duplicity-full.20261122T020000Z.vol3.difftar.gpg, reason: missing from the target,
            first_path: etc/app.conf, last_path: etc/ssl, paths_listed: true}]
duration:
  description: Seconds the restore took.
  returned: when files were restored
  type: float
  sample: 1.5
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cairn.backup.plugins.module_utils.module_args import (
    COMMON_MUTUALLY_EXCLUSIVE, common_argument_spec, parse, run, target_options, warn)
from ansible_collections.cairn.backup.plugins.module_utils.cairn import api, timespec
from ansible_collections.cairn.backup.plugins.module_utils.cairn.errors import ExitCode


def main():
    spec = common_argument_spec()
    spec.update(dest=dict(type="path", required=True), path=dict(type="str"), time=dict(type="str"),
                force=dict(type="bool", default=False), restore_ownership=dict(type="bool"),
                numeric_owner=dict(type="bool", default=False),
                rename=dict(type="list", elements="dict", options={"from": dict(type="str", required=True),
                                                                   "to": dict(type="str", required=True)}))
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                           mutually_exclusive=COMMON_MUTUALLY_EXCLUSIVE)
    p = module.params
    target = target_options(module)
    t = parse(module, timespec.parse, p["time"])
    if module.check_mode:
        plan = run(module, api.plan_restore, target, time=t, path=p["path"])
        module.exit_json(changed=plan["files"] > 0, files=plan["files"], paths=plan["paths"], time=plan["time"],
                         dest=p["dest"])
    result = run(module, api.restore, target, p["dest"], time=t, path=p["path"], force=p["force"],
                 numeric_owner=p["numeric_owner"], restore_owner=p["restore_ownership"],
                 rename=[(r["from"], r["to"]) for r in p["rename"] or ()])
    for w in result.pop("warnings", []):
        warn(module, w)
    if result.get("incomplete"):
        # every file that did not need a damaged volume is in place; the task still fails, so a
        # play never goes on as if the restore were whole
        module.fail_json(msg=f"restore incomplete: {len(result['lost_volumes'])} volume(s) could not be used "
                             f"and {result['lost_count']} path(s) that needed them were not restored "
                             "(see lost and lost_volumes); every other file was", changed=result["files"] > 0,
                         exit_code=ExitCode.RESTORE_INCOMPLETE, **result)
    module.exit_json(changed=result["files"] > 0, **result)


if __name__ == "__main__":
    main()
