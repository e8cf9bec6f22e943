# SPDX-License-Identifier: GPL-3.0-or-later
"""Stock duplicity 3.2.1, with its own sftp (paramiko) and S3 (boto3) backends, against the same
real servers: it restores what cairn wrote there, and cairn restores what it wrote."""
import os

import pytest

from servers import S3_ENV, MotoS3, Sshd
from treeutil import cairn, diff_snapshots, duplicity, make_hard_tree, snapshot, write


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


def _targets(kind, sshd, s3, tmp_path):
    if kind == "sftp":
        opts = ["--ssh-options=" + sshd.ssh_options]
        return sshd.url(tmp_path / "remote"), opts, opts, {}
    opts = ["--s3-endpoint-url", s3.endpoint]
    return f"s3://cairn-interop/{tmp_path.name}", opts, opts, dict(S3_ENV)


def _change(src):
    write(str(src / "plain.txt"), b"changed by the incremental\n", mtime=1_700_000_000)
    write(str(src / "added.bin"), os.urandom(300_000))
    os.unlink(src / "empty")


@pytest.mark.parametrize("kind", ["sftp", "s3"])
def test_duplicity_restores_cairn(kind, sshd, s3, duplicity_bin, tmp_path):
    url, copts, dopts, env = _targets(kind, sshd, s3, tmp_path)
    src = tmp_path / "src"
    make_hard_tree(str(src))
    cairn("full", "--volsize", "1", "--archive-dir", tmp_path / "cc", *copts, src, url, env=env)
    first = snapshot(str(src))
    _change(src)
    cairn("incremental", "--volsize", "1", "--archive-dir", tmp_path / "cc", *copts, src, url, env=env)
    second = snapshot(str(src))
    dest = tmp_path / "dup-restore"
    duplicity(duplicity_bin, "restore", "--archive-dir", tmp_path / "dc", *dopts, url, dest, env=env)
    assert diff_snapshots(second, snapshot(str(dest))) == []
    status = duplicity(duplicity_bin, "collection-status", "--archive-dir", tmp_path / "dc", *dopts, url,
                       env=env).stdout.decode()
    assert "Full" in status and "Incremental" in status
    # and an older point through duplicity's own --time
    full_time = [ln for ln in status.splitlines() if "Full" in ln][0]
    assert full_time
    dest0 = tmp_path / "dup-restore-0"
    import json
    sets = json.loads(cairn("collection-status", "--json", "--archive-dir", tmp_path / "cc", *copts, url,
                            env=env).stdout)["chains"][0]["sets"]
    duplicity(duplicity_bin, "restore", "--time", str(sets[0]["timestamp"]), "--archive-dir", tmp_path / "dc",
              *dopts, url, dest0, env=env)
    assert diff_snapshots(first, snapshot(str(dest0))) == []


@pytest.mark.parametrize("kind", ["sftp", "s3"])
def test_cairn_restores_duplicity(kind, sshd, s3, duplicity_bin, tmp_path):
    url, copts, dopts, env = _targets(kind, sshd, s3, tmp_path)
    src = tmp_path / "src"
    make_hard_tree(str(src))
    duplicity(duplicity_bin, "full", "--volsize", "1", "--archive-dir", tmp_path / "dc", *dopts, src, url, env=env)
    _change(src)
    duplicity(duplicity_bin, "incremental", "--volsize", "1", "--archive-dir", tmp_path / "dc", *dopts, src, url,
              env=env)
    expect = snapshot(str(src))
    dest = tmp_path / "cairn-restore"
    cairn("restore", "--archive-dir", tmp_path / "cc", *copts, url, dest, env=env)
    assert diff_snapshots(expect, snapshot(str(dest))) == []
    # and cairn extends duplicity's chain there
    write(str(src / "later.txt"), b"later\n")
    cairn("incremental", "--archive-dir", tmp_path / "cc", *copts, src, url, env=env)
    dest2 = tmp_path / "dup-restore-after-cairn"
    duplicity(duplicity_bin, "restore", "--archive-dir", tmp_path / "dc", *dopts, url, dest2, env=env)
    assert diff_snapshots(snapshot(str(src)), snapshot(str(dest2))) == []
