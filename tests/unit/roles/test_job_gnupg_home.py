# SPDX-License-Identifier: GPL-3.0-or-later
"""The job role makes the jobs' GnuPG home (a symmetric-only job, with no keys role, failed with
exit 31 "gnupghome should be a directory"), exactly as the keys role makes it: same path by
default, owner and mode, so that with both roles a keyring is never changed back and forth.
molecule/job-symmetric runs that setup for real."""
import os

import yaml

ROLES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles")


def _load(*path):
    with open(os.path.join(ROLES, *path)) as f:
        return yaml.safe_load(f)


def test_job_role_creates_the_gnupg_home_as_the_keys_role_does():
    task = next(t for t in _load("job", "tasks", "present.yml") if t.get("name") == "Create the job directories")
    module = task["ansible.builtin.file"]
    items = {i["path"]: i["mode"] for i in task["loop"]}
    assert items.get("{{ cairn_job_gnupg_home }}") == "0700"
    keys = next(t for t in _load("keys", "tasks", "main.yml") if "keyring directory" in t.get("name", ""))
    keys_module = keys["ansible.builtin.file"]
    assert keys_module["mode"] == items["{{ cairn_job_gnupg_home }}"]
    owner = ("owner", "group", "state")
    assert [module[k] for k in owner] == [keys_module[k] for k in owner] == ["root", "root", "directory"]
    assert _load("job", "defaults", "main.yml")["cairn_job_gnupg_home"] == \
        _load("keys", "defaults", "main.yml")["cairn_keys_gnupg_home"]
