# SPDX-License-Identifier: GPL-3.0-or-later
"""Every module against remote targets (real servers on loopback), with the credentials given as
no_log module options: the playbook runs green and -vvv output never shows them."""
import json
import os
import subprocess
import sys

import pytest

from servers import S3_ENV, MotoS3, Sshd
from treeutil import make_hard_tree

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PLAYBOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "playbooks", "remote_cycle.yml")


def run_remote_cycle(tmp_path, remote, secrets):
    """Run the module cycle against ``remote`` (module options); ``secrets`` must never show."""
    src = tmp_path / "src"
    make_hard_tree(str(src))
    work = tmp_path / "work"
    work.mkdir()
    variables = tmp_path / "vars.json"
    variables.write_text(json.dumps({"cairn_src": str(src), "cairn_work": str(work), "cairn_remote": remote,
                                     "cairn_passphrase": "module-pass-" + os.urandom(4).hex(),
                                     "ansible_python_interpreter": sys.executable}))
    os.chmod(variables, 0o600)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
               AWS_EC2_METADATA_DISABLED="true")
    for k in list(env):                  # credentials come from the module options only
        if k.startswith(("AWS_ACCESS", "AWS_SECRET", "AZURE_")) or k == "FTP_PASSWORD":
            del env[k]
    r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-vvv",
                        "-i", "localhost,", "-c", "local", "-e", f"@{variables}", PLAYBOOK],
                       cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert "failed=0" in r.stdout
    for secret in secrets:
        assert secret not in r.stdout and secret not in r.stderr
    return r


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


def test_modules_on_sftp(sshd, tmp_path):
    run_remote_cycle(tmp_path, {"target": sshd.url(tmp_path / "remote"), "ssh_options": sshd.ssh_options}, [])


def test_modules_on_s3(s3, tmp_path):
    remote = {"target": "s3://cairn-modules/web1", "s3_endpoint_url": s3.endpoint,
              "aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"],
              "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"], "s3_region_name": "us-east-1"}
    run_remote_cycle(tmp_path, remote, [S3_ENV["AWS_SECRET_ACCESS_KEY"]])


def test_modules_with_a_mirror(sshd, s3, tmp_path):
    """Two targets in one run: both hold every file; a restore reads them."""
    remote = {"target": sshd.url(tmp_path / "remote"), "ssh_options": sshd.ssh_options,
              "mirror_targets": ["s3://cairn-mirror/web1"], "s3_endpoint_url": s3.endpoint,
              "aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"],
              "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"]}
    run_remote_cycle(tmp_path, remote, [S3_ENV["AWS_SECRET_ACCESS_KEY"]])
    on_sftp = sorted(os.listdir(tmp_path / "remote"))
    on_s3 = sorted(o["Key"].split("/", 1)[1] for o in s3.client().list_objects_v2(Bucket="cairn-mirror")["Contents"])
    assert on_sftp == on_s3 and any(n.startswith("duplicity-full.") for n in on_s3)
