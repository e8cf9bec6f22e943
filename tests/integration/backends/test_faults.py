# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs through injected faults succeed by retrying; a target down for good fails the run with a
clear message and leaves an archive that the next run completes and that restores exactly."""
import os
from dataclasses import replace

import pytest

from faults import Injector
from servers import S3_ENV, MotoS3, Sshd
from treeutil import diff_snapshots, make_hard_tree, snapshot, write

from cairn import api
from cairn.backends import BackendOptions
from cairn.crypto import CryptoOptions
from cairn.errors import BackendError

PASS = "fault-test-passphrase"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = Sshd(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = MotoS3(tmp_path_factory.mktemp("moto")).start()
    yield server
    server.stop()


def _target(url, tmp_path, cache="cache", **backend):
    opts = BackendOptions(retry_delay=0.01, **backend)
    return api.TargetOptions(url=url, crypto=CryptoOptions(mode="symmetric", passphrase=PASS),
                             archive_dir=str(tmp_path / cache), backend=opts)


def _run_cycle_through_faults(url, tmp_path, gnupghome, **backend):
    src = tmp_path / "src"
    make_hard_tree(str(src))
    with Injector(url.split(":", 1)[0], rate=0.25, seed=7) as inj:
        target = _target("faulty+" + url, tmp_path, num_retries=8, **backend)
        full = api.backup(target, api.BackupOptions(source=str(src), mode="full", volsize=1))
        write(str(src / "new.txt"), b"after the full\n")
        inc = api.backup(target, api.BackupOptions(source=str(src), volsize=1))
        assert (full["type"], inc["type"]) == ("full", "incremental")
        fresh = replace(target, archive_dir=str(tmp_path / "cache2"))
        api.restore(fresh, str(tmp_path / "restored"))
        verified = api.verify(fresh, str(src), compare_data=True)
    assert diff_snapshots(snapshot(str(src)), snapshot(str(tmp_path / "restored"))) == []
    assert verified["differences"] == []
    assert inj.injected >= 5, "the test must actually inject faults"
    return inj


def test_sftp_runs_succeed_through_faults(sshd, tmp_path, gnupghome):
    _run_cycle_through_faults(sshd.url(tmp_path / "remote"), tmp_path, gnupghome, ssh_options=sshd.ssh_options)


def test_s3_runs_succeed_through_faults(s3, tmp_path, gnupghome):
    _run_cycle_through_faults(f"s3://cairn-faults/{tmp_path.name}", tmp_path, gnupghome,
                              s3_endpoint_url=s3.endpoint, env=dict(S3_ENV))


def test_without_retries_faults_fail_the_run(s3, tmp_path, gnupghome):
    """The control: the same faults with --num-retries 0 do fail, so retries are what saved us."""
    src = tmp_path / "src"
    make_hard_tree(str(src))
    with Injector("s3", rate=0.25, seed=7):
        target = _target(f"faulty+s3://cairn-faults/{tmp_path.name}", tmp_path, num_retries=0,
                         s3_endpoint_url=s3.endpoint, env=dict(S3_ENV))
        with pytest.raises(BackendError, match="injected fault"):
            api.backup(target, api.BackupOptions(source=str(src), mode="full", volsize=1))


def test_target_down_for_good_then_next_run_completes(tmp_path, gnupghome):
    """sshd is stopped for real in the middle of a full backup: the run fails with a clear
    message; with sshd back, the next run cleans up and completes, and the archive restores."""
    sshd = Sshd(tmp_path / "sshd").start()
    try:
        src = tmp_path / "src"
        make_hard_tree(str(src))
        write(str(src / "more.bin"), os.urandom(4 << 20))
        url = sshd.url(tmp_path / "remote")
        with Injector("sftp", rate=0.0, after_puts=2, on_after_puts=sshd.stop):
            target = _target("faulty+" + url, tmp_path, ssh_options=sshd.ssh_options, num_retries=2,
                             timeout=5, upload_concurrency=1)
            with pytest.raises(BackendError) as err:
                api.backup(target, api.BackupOptions(source=str(src), mode="full", volsize=1, jobs=1))
        msg = str(err.value)
        assert "after 3 attempts" in msg and "127.0.0.1" in msg, msg
        assert err.value.exit_code == 50
        left = os.listdir(tmp_path / "remote")
        assert any(".vol1." in n for n in left) and not any(".manifest" in n for n in left)
        sshd.start()
        target = _target(url, tmp_path, ssh_options=sshd.ssh_options)
        done = api.backup(target, api.BackupOptions(source=str(src), volsize=1))
        assert done["type"] == "full"
        st = api.status(target)
        assert len(st["chains"]) == 1 and st["incomplete_sets"] == []
        api.restore(replace(target, archive_dir=str(tmp_path / "cache2")), str(tmp_path / "restored"))
        assert diff_snapshots(snapshot(str(src)), snapshot(str(tmp_path / "restored"))) == []
    finally:
        sshd.stop()
