# SPDX-License-Identifier: GPL-3.0-or-later
"""S3 with credentials that are checked: moto's server with IAM enforcement on (issue 11).

Users: ``host`` may do anything on S3 but delete (the write-only credentials of a fleet host),
``ctl`` may do everything (the Ansible controller's). A mirror whose credentials are refused
lags alone; a host with write-only credentials backs up to an Object Lock bucket but cannot
prune (a clean exit 52, nothing deleted); the controller prunes only what is past retention.
"""
import datetime
import json
import os

import pytest

from servers import S3_ENV, MotoS3
from treeutil import cairn, diff_snapshots, duplicity, snapshot, write

from cairn import naming

LOCK = ["--s3-object-lock-mode", "governance", "--s3-object-lock-days", "3"]
WRITE_ONLY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
    {"Effect": "Deny", "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"], "Resource": "*"}]}
EVERYTHING = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


class AuthMotoS3(MotoS3):
    """moto checking every request's credentials and IAM policies, after the six calls that
    make its two users."""

    def __init__(self, workdir):
        super().__init__(workdir)
        self.env = dict(self.env, INITIAL_NO_AUTH_ACTION_COUNT="6")

    def start(self):
        import boto3
        super().start()
        iam = boto3.client("iam", endpoint_url=self.endpoint, region_name="us-east-1",
                           aws_access_key_id="setup", aws_secret_access_key="setup")
        self.users = {}
        for user, policy in (("host", WRITE_ONLY), ("ctl", EVERYTHING)):
            iam.create_user(UserName=user)
            key = iam.create_access_key(UserName=user)["AccessKey"]
            iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps(policy))
            self.users[user] = dict(S3_ENV, AWS_ACCESS_KEY_ID=key["AccessKeyId"],
                                    AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"])
        return self

    def client_as(self, user):
        import boto3
        env = self.users[user]
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = AuthMotoS3(tmp_path_factory.mktemp("moto-auth")).start()
    yield server
    server.stop()


def _sets(names):
    return sorted(n for n in names if naming.parse(n) is not None)


def test_a_mirror_whose_credentials_are_refused_lags_alone(s3, tmp_path, duplicity_bin):
    src = tmp_path / "src"
    write(str(src / "a.txt"), b"first\n")
    primary = tmp_path / "primary"
    mirror = "s3://cairn-mirror/host1"
    refused = dict(S3_ENV, AWS_ACCESS_KEY_ID="AKIAREFUSED0000", AWS_SECRET_ACCESS_KEY="Refused-MARKER-secret")
    common = ["--no-encryption", "--archive-dir", tmp_path / "cache", "--s3-endpoint-url", s3.endpoint,
              "--num-retries", "1"]
    r = cairn("full", "--json", *common, "--mirror", mirror, src, f"file://{primary}", env=refused, check=False)
    assert r.returncode == 64, r.stderr
    result = json.loads(r.stdout)
    assert [t["url"] for t in result["lagging_targets"]] == [mirror]
    assert b"Refused-MARKER-secret" not in r.stdout + r.stderr
    assert _sets(os.listdir(primary))
    # the credentials mended: the next run copies the missing set to the mirror first
    write(str(src / "b.txt"), b"second\n")
    r = cairn("incremental", "--json", *common, "--mirror", mirror, src, f"file://{primary}",
              env=s3.users["ctl"])
    result = json.loads(r.stdout)
    assert result["lagging_targets"] == [] and result["mirrors_caught_up"], r.stderr
    keys = [o["Key"].split("/", 1)[1] for o in
            s3.client_as("ctl").list_objects_v2(Bucket="cairn-mirror", Prefix="host1/").get("Contents", [])]
    assert _sets(keys) == _sets(os.listdir(primary))
    dest = tmp_path / "from-mirror"
    duplicity(duplicity_bin, "restore", "--no-encryption", "--s3-endpoint-url", s3.endpoint, "--archive-dir",
              tmp_path / "dupcache", "--name", "m", mirror, dest, env=s3.users["ctl"])
    assert diff_snapshots(snapshot(src), snapshot(dest)) == []


def _retained(client, bucket, key):
    return client.head_object(Bucket=bucket, Key=key).get("ObjectLockRetainUntilDate")


def test_write_only_hosts_cannot_prune_and_the_controller_prunes_what_is_past_retention(s3, tmp_path):
    bucket = "cairn-locked"
    ctl = s3.client_as("ctl")
    ctl.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    src = tmp_path / "src"
    url = f"s3://{bucket}/web1"
    common = ["--no-encryption", "--archive-dir", tmp_path / "cache", "--s3-endpoint-url", s3.endpoint]
    firsts = []
    for i in range(2):
        write(str(src / f"f{i}.txt"), b"chain %d\n" % i)
        r = cairn("full", *common, *LOCK, src, url, env=s3.users["host"], check=False)
        assert r.returncode == 0, r.stderr
        names = [o["Key"] for o in ctl.list_objects_v2(Bucket=bucket).get("Contents", [])]
        if i == 0:
            firsts = [k for k in names if naming.parse(k.split("/", 1)[1]) is not None]
    archive = [o["Key"] for o in ctl.list_objects_v2(Bucket=bucket).get("Contents", [])
               if naming.parse(o["Key"].split("/", 1)[1]) is not None]
    assert archive and all(_retained(ctl, bucket, k) for k in archive)
    # the controller: the old chain is still retained, so nothing goes, and it says so
    r = cairn("remove-all-but-n-full", "1", "--force", "--json", *common, url, env=s3.users["ctl"])
    assert json.loads(r.stdout)["kept_sets"], r.stderr
    assert all(k in [o["Key"] for o in ctl.list_objects_v2(Bucket=bucket)["Contents"]] for k in archive)
    # the old chain's retention passes
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)
    for key in firsts:
        ctl.put_object_retention(Bucket=bucket, Key=key, BypassGovernanceRetention=True,
                                 Retention={"Mode": "GOVERNANCE", "RetainUntilDate": past})
    # the host: its credentials may not delete; a clean refusal, nothing gone
    r = cairn("remove-all-but-n-full", "1", "--force", *common, url, env=s3.users["host"], check=False)
    assert r.returncode == 52, r.stderr
    assert b"Traceback" not in r.stderr and b"not allowed to delete" in r.stderr
    assert all(k in [o["Key"] for o in ctl.list_objects_v2(Bucket=bucket)["Contents"]] for k in archive)
    # the controller removes it, and only it
    cairn("remove-all-but-n-full", "1", "--force", *common, url, env=s3.users["ctl"])
    left = [o["Key"] for o in ctl.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert not [k for k in firsts if k in left]
    assert sorted(k for k in left if k in archive) == sorted(k for k in archive if k not in firsts)
    versions = ctl.list_object_versions(Bucket=bucket)
    assert not [v for v in versions.get("Versions", []) if v["Key"] in firsts]
