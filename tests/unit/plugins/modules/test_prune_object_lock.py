# SPDX-License-Identifier: GPL-3.0-or-later
"""The prune module with S3 Object Lock: the lock options reach the engine, what the target kept
is returned (as ``retained``: Ansible reads a result's ``skipped`` as a skipped task) and said."""
import pytest

from ansible_collections.cairn.backup.plugins.module_utils.cairn import api
from ansible_collections.cairn.backup.plugins.modules import backup, prune

COMMON = {"target": "s3://bucket/host", "passphrase": "pw", "archive_dir": "/tmp/cache-not-used"}
KEPT = {"name": "duplicity-full.20260101T000000Z.manifest.gpg", "reason": "retention", "mode": "compliance",
        "retain_until": "2027-01-01T00:00:00Z"}


@pytest.mark.parametrize("check_mode", [True, False])
def test_prune_returns_what_object_lock_kept(run_module, fake, check_mode):
    fake(api, "prune", {"changed": False, "files": [], "sets": [], "skipped": [KEPT],
                        "kept_sets": [{"type": "full", "time": "2026-01-01T00:00:00Z", "x": 1}],
                        "chains_before": [], "chains_after": []})
    out = run_module(prune, dict(COMMON, keep_full=1), check_mode=check_mode)
    assert not out.failed and "skipped" not in out.result
    assert out.result["retained"] == [KEPT]
    assert out.result["retained_sets"] == [{"type": "full", "time": "2026-01-01T00:00:00Z"}]
    assert "S3 Object Lock" in out.result["msg"] and ("would keep" if check_mode else "kept 1 file") in out.result["msg"]


def test_lock_options_reach_the_engine(run_module, fake):
    calls = fake(api, "backup", {"type": "full"})
    run_module(backup, dict(COMMON, source="/etc", s3_object_lock_mode="compliance", s3_object_lock_days=35))
    target = calls.calls[0][0][0]
    assert (target.backend.s3_object_lock_mode, target.backend.s3_object_lock_days) == ("compliance", 35)


def test_one_lock_option_without_the_other_fails(run_module, fake):
    fake(api, "prune", {})
    out = run_module(prune, dict(COMMON, keep_full=1, s3_object_lock_days=35))
    assert out.failed and out.result["exit_code"] == 23 and "s3_object_lock_mode" in out.result["msg"]
