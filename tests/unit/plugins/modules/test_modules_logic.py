# SPDX-License-Identifier: GPL-3.0-or-later
"""Each module's own logic over a faked engine: what it calls, with which options, in check
mode and not, and what it returns (the engine itself is tested elsewhere)."""
import pytest

from ansible_collections.cairn.backup.plugins.module_utils.cairn import api
from ansible_collections.cairn.backup.plugins.module_utils.cairn.errors import NoBackupFound
from ansible_collections.cairn.backup.plugins.modules import backup, backup_info, prune, restore, verify

COMMON = {"target": "file:///srv/b", "passphrase": "pw", "archive_dir": "/tmp/cache-not-used"}


def test_backup_min_interval_looks_at_the_age_only(run_module, fake):
    age = fake(api, "last_backup_age", (3600, "2026-11-30T00:00:00Z"))
    plan, run = fake(api, "plan_changes", {}), fake(api, "backup", {})
    out = run_module(backup, dict(COMMON, source="/src", min_interval="20h"))
    assert not out.failed and out.result["changed"] is False
    assert "3600s old" in out.result["skipped_reason"] and out.result["last_backup"] == "2026-11-30T00:00:00Z"
    assert len(age.calls) == 1 and plan.calls == [] and run.calls == []     # no walk, no backup


def test_backup_in_check_mode_plans_and_writes_nothing(run_module, fake):
    plan = fake(api, "plan_changes", {"type": "incremental", "reason": "r", "new_files": 2, "changed_files": 1,
                                      "deleted_files": 0, "unchanged_files": 5, "last_backup": None,
                                      "last_backup_age": None})
    run = fake(api, "backup", {})
    out = run_module(backup, dict(COMMON, source="/src"), check_mode=True)
    assert out.result["changed"] and out.result["new_files"] == 2 and run.calls == []
    (target, opts), _kw = plan.calls[0]
    assert target.read_only and opts.source == "/src"


def test_backup_passes_every_option_to_the_engine(run_module, fake):
    run = fake(api, "backup", {"type": "full", "warnings": ["cannot read /src/x"], "exit_code": 9, "volumes": 1})
    out = run_module(backup, dict(COMMON, source="/src", file_prefix="web1-", hidden_encrypt_keys=["K"],
                                  gpg_options="--compress-algo none", jobs=2, compress_level=6, volsize=50,
                                  selection=["+ /src/keep", "- /src/**"], break_lock=True, lock_stale_after="1h"))
    (target, opts), _kw = run.calls[0]
    assert (target.file_prefix, target.crypto.hidden_recipients, target.crypto.gpg_options) == \
        ("web1-", ("K",), ("--compress-algo", "none"))
    assert (target.break_lock, target.lock_stale_after, target.read_only) == (True, 3600, False)
    assert (opts.jobs, opts.compress_level, opts.volsize) == (2, 6, 50)
    assert opts.rules == [("include", "/src/keep"), ("exclude", "/src/**")]
    assert out.result["changed"] and "exit_code" not in out.result
    assert out.result["warnings"] == ["cannot read /src/x"]


def test_the_per_kind_file_prefixes_reach_the_engine(run_module, fake):
    run = fake(api, "backup", {"type": "full", "volumes": 1})
    run_module(backup, dict(COMMON, source="/src", file_prefix="P-", file_prefix_archive="a-",
                            file_prefix_manifest="m-", file_prefix_signature="s-"))
    (target, _opts), _kw = run.calls[0]
    assert (target.names.file, target.names.archive, target.names.manifest, target.names.signature) == \
        ("P-", "a-", "m-", "s-")


def test_backup_reports_an_engine_error_with_its_exit_code(run_module, fake):
    fake(api, "backup", NoBackupFound("nothing there at ftp://u:secret@h/x"))
    out = run_module(backup, dict(COMMON, source="/src"))
    assert out.failed and out.result["exit_code"] == 4 and "secret" not in out.result["msg"]


def test_restore_check_mode_plans_from_the_signatures(run_module, fake):
    plan = fake(api, "plan_restore", {"files": 2, "paths": ["etc", "etc/x"], "time": "T", "timestamp": 1})
    run = fake(api, "restore", {})
    out = run_module(restore, dict(COMMON, dest="/d", path="etc", time="1700000000"), check_mode=True)
    assert out.result["changed"] and out.result["paths"] == ["etc", "etc/x"] and run.calls == []
    assert plan.calls[0][1] == {"time": 1700000000, "path": "etc"}


def test_an_incomplete_restore_fails_the_task_with_what_was_lost(run_module, fake):
    lost = [{"path": "etc/x", "volume": "duplicity-full.20261122T020000Z.vol2.difftar.gpg", "what": "data"}]
    volumes = [{"volume": lost[0]["volume"], "reason": "missing from the target", "first_path": "etc/a",
                "last_path": "etc/z", "paths_listed": True}]
    fake(api, "restore", {"files": 40, "skipped": 0, "warnings": [], "incomplete": True, "lost": lost,
                          "lost_count": 1, "lost_volumes": volumes})
    out = run_module(restore, dict(COMMON, dest="/d"))
    assert out.failed and out.result["exit_code"] == 63 and out.result["changed"]
    assert "1 path(s)" in out.result["msg"] and out.result["lost"] == lost and out.result["lost_volumes"] == volumes


def test_restore_passes_ownership_options(run_module, fake):
    run = fake(api, "restore", {"files": 3, "warnings": []})
    out = run_module(restore, dict(COMMON, dest="/d", restore_ownership=False, numeric_owner=True))
    assert out.result["changed"] and out.result["files"] == 3
    kw = run.calls[0][1]
    assert (kw["restore_owner"], kw["numeric_owner"], kw["force"]) == (False, True, False)
    assert kw["rename"] == []


def test_restore_passes_renames_in_order(run_module, fake):
    run = fake(api, "restore", {"files": 3, "warnings": []})
    run_module(restore, dict(COMMON, dest="/d", rename=[{"from": "a", "to": "b"}, {"from": "c/d", "to": "e"}]))
    assert run.calls[0][1]["rename"] == [("a", "b"), ("c/d", "e")]


@pytest.mark.parametrize("check_mode", [True, False])
def test_prune_applies_one_policy_and_shows_exact_chains(run_module, fake, check_mode):
    chain = {"start_time": "A", "end_time": "B", "start_timestamp": 1, "end_timestamp": 2, "sets": [],
             "volumes": 1, "has_signatures": True}
    pr = fake(api, "prune", {"changed": True, "files": ["f"], "sets": [{"type": "full", "time": "A", "x": 1}],
                             "chains_before": [chain, dict(chain, start_time="C")],
                             "chains_after": [dict(chain, start_time="C")]})
    out = run_module(prune, dict(COMMON, keep_full=1, keep_full_with_incrementals=2, cleanup=True),
                     check_mode=check_mode, diff=True)
    (target, policy), kw = pr.calls[0]
    assert kw == {"force": not check_mode} and target.read_only is check_mode
    assert (policy.keep_full, policy.keep_full_with_incrementals, policy.cleanup) == (1, 2, True)
    assert out.result["sets"] == [{"type": "full", "time": "A"}]
    assert out.result["diff"]["before"]["chains"] == [{"start_time": "A", "end_time": "B"},
                                                      {"start_time": "C", "end_time": "B"}]
    assert out.result["chains"] == out.result["diff"]["after"]["chains"] == [{"start_time": "C", "end_time": "B"}]


def test_prune_refuses_keeping_no_full(run_module, fake):
    fake(api, "prune", {})
    out = run_module(prune, dict(COMMON, keep_full=0))
    assert out.failed and "at least 1" in out.result["msg"]


def test_verify_fails_on_differences_unless_told_not_to(run_module, fake):
    diff = {"compared": 3, "files_in_backup": 3, "differences": [{"path": "a", "what": "data", "message": "m"}],
            "warnings": []}
    run = fake(api, "verify", diff)
    out = run_module(verify, dict(COMMON, source="/s", compare_data=True, excludes=["/s/tmp"]))
    assert out.failed and "1 difference" in out.result["msg"]
    assert run.calls[0][1]["rules"] == [("exclude", "/s/tmp")]
    fake(api, "verify", dict(diff, warnings=[]))
    out = run_module(verify, dict(COMMON, source="/s", compare_data=True, fail_on_difference=False))
    assert not out.failed and out.result["changed"] is False


def test_backup_info_is_plain_data_and_never_changed(run_module, fake):
    st = {"chains": [{"sets": [1, 2]}], "last_full": "F", "last_full_age": 5, "last_backup": "B",
          "last_backup_age": 1, "orphaned_sets": [], "incomplete_sets": [], "stored_bytes": None,
          "unfinished_files": ["cairn-unfinished.duplicity-full.20261122T020000Z.vol1.difftar.gpg"]}
    status = fake(api, "status", st)
    out = run_module(backup_info, dict(COMMON, stored_size=True))
    assert out.result["changed"] is False and out.result["chain_length"] == 2
    assert out.result["unfinished_files"] == st["unfinished_files"]
    assert out.result["stored_bytes"] is None and status.calls[0][0][1] is True


class _Keyring:
    """A keyring holding one key, as the gpg_key module sees it through the engine's Keyring."""

    opened = []

    def __init__(self, home, gpg_binary, read_only=False):
        self.read_only = read_only
        _Keyring.opened.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def key(self, fpr):
        from ansible_collections.cairn.backup.plugins.module_utils.cairn.keyring import KeyState
        return KeyState(fpr, ["Backup <b@x.org>"], True, "full") if fpr == "A" * 40 else None

    def keys_with_uid(self, uid):
        return [self.key("A" * 40)] if uid == "b@x.org" else []


def test_gpg_key_reports_the_key_and_its_diff(run_module, monkeypatch):
    from ansible_collections.cairn.backup.plugins.modules import gpg_key
    monkeypatch.setattr(gpg_key, "Keyring", _Keyring)
    monkeypatch.setattr(gpg_key.AnsibleModule, "get_bin_path", lambda self, name, required=False: "/usr/bin/gpg")
    out = run_module(gpg_key, {"uid": "b@x.org", "trust": "full"}, check_mode=True, diff=True)
    assert not out.failed and out.result["changed"] is False and _Keyring.opened[-1].read_only
    assert out.result["fingerprint"] == "A" * 40 and out.result["secret"] is True
    assert out.result["diff"] == {"before": {"fingerprints": ["A" * 40], "trust": "full"},
                                  "after": {"fingerprints": ["A" * 40], "trust": "full"}}
    out = run_module(gpg_key, {"state": "absent"})
    assert out.failed and "fingerprint" in out.result["msg"]
