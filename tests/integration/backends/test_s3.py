# SPDX-License-Identifier: GPL-3.0-or-later
"""s3:// (and gs://, b2:// mapped onto S3 endpoints) against a real S3-compatible HTTP server."""
import json
import os

import pytest

from conformance import check_cycle, check_interface
from servers import S3_ENV, MotoS3
from treeutil import cairn, write

from cairn.backends import BackendOptions


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = MotoS3(tmp_path_factory.mktemp("moto")).start()
    yield server
    server.stop()


def _opts(s3, **kw):
    return BackendOptions(s3_endpoint_url=s3.endpoint, env=dict(S3_ENV), **kw)


def test_interface(s3, tmp_path):
    assert check_interface("s3://cairn-iface/some/prefix", _opts(s3), tmp_path) == []
    # nothing outside the prefix, and nothing of ours left at the bucket's top
    assert s3.client().list_objects_v2(Bucket="cairn-iface").get("KeyCount") == 0


def test_cycle_encrypted_multipart(s3, tmp_path):
    # 5 MiB parts: every 1 MiB volume is one part, the 3 MiB+ big file spans volumes
    check_cycle("s3://cairn-cycle/host1", ["--s3-endpoint-url", s3.endpoint, "--s3-multipart-chunk-size", "5"],
                tmp_path, env=S3_ENV)
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket="cairn-cycle")["Contents"]]
    assert keys and all(k.startswith("host1/duplicity-") for k in keys)


def test_multipart_storage_class_and_sse(s3, tmp_path):
    src = tmp_path / "src"
    write(str(src / "big.bin"), os.urandom(13 << 20))          # one volume, three 5 MiB parts
    common = ["--no-encryption", "--archive-dir", tmp_path / "c", "--s3-endpoint-url", s3.endpoint,
              "--s3-multipart-chunk-size", "5", "--s3-use-ia", "--s3-use-server-side-encryption",
              "--no-adaptive-compression", "--compress-level", "0"]
    cairn("full", *common, src, "s3://cairn-classes", env=S3_ENV)
    client = s3.client()
    vol = [o["Key"] for o in client.list_objects_v2(Bucket="cairn-classes")["Contents"]
           if ".vol1." in o["Key"]][0]
    head = client.head_object(Bucket="cairn-classes", Key=vol)
    assert head["StorageClass"] == "STANDARD_IA"
    assert head["ServerSideEncryption"] == "AES256"
    assert "-" in head["ETag"]                 # a multipart upload's ETag: md5-of-parts "-N"
    cairn("restore", *common, "s3://cairn-classes", tmp_path / "r", env=S3_ENV)
    assert (tmp_path / "r" / "big.bin").read_bytes() == (src / "big.bin").read_bytes()


def test_gs_and_b2_urls_map_onto_s3(s3, tmp_path):
    src = tmp_path / "src"
    write(str(src / "a"), b"a" * 100)
    gs_env = {"GS_ACCESS_KEY_ID": "gs-key", "GS_SECRET_ACCESS_KEY": "gs-secret", "AWS_EC2_METADATA_DISABLED": "true"}
    common = ["--no-encryption", "--s3-endpoint-url", s3.endpoint]
    s3.client().create_bucket(Bucket="cairn-gs")
    cairn("full", *common, "--archive-dir", tmp_path / "c1", src, "gs://cairn-gs/x", env=gs_env)
    assert any(o["Key"].startswith("x/duplicity-full.")
               for o in s3.client().list_objects_v2(Bucket="cairn-gs")["Contents"])
    cairn("remove-all-but-n-full", "1", "--force", *common, "--archive-dir", tmp_path / "c1",
          "gs://cairn-gs/x", env=gs_env)
    b2_secret = "b2-app-key-990"
    r = cairn("full", "--json", *common, "--archive-dir", tmp_path / "c2", "-v", "debug", src,
              f"b2://keyid:{b2_secret}@cairn-b2/y", env={"AWS_EC2_METADATA_DISABLED": "true"})
    assert json.loads(r.stdout)["type"] == "full"
    assert b2_secret.encode() not in r.stdout + r.stderr
    r = cairn("full", "--no-encryption", "--archive-dir", tmp_path / "c3", src, "b2://keyid@cairn-b2/y",
              check=False, env={"B2_APPLICATION_KEY": ""})
    assert r.returncode == 23 and b"B2_APPLICATION_KEY" in r.stderr


def test_no_credentials_is_a_clear_error(s3, tmp_path):
    src = tmp_path / "src"
    write(str(src / "a"), b"a")
    env = {k: "" for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    env.update(AWS_EC2_METADATA_DISABLED="true", AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               AWS_CONFIG_FILE=str(tmp_path / "none"))
    r = cairn("full", "--no-encryption", "--archive-dir", tmp_path / "c", "--s3-endpoint-url", s3.endpoint,
              src, "s3://cairn-nocreds", check=False, env=env)
    assert r.returncode == 52, r.stderr
    assert b"no credentials" in r.stderr


def test_secret_key_never_in_output(s3, tmp_path):
    src = tmp_path / "src"
    write(str(src / "a"), b"a")
    r = cairn("full", "-v", "debug", "--no-encryption", "--archive-dir", tmp_path / "c", "--s3-endpoint-url",
              s3.endpoint, src, "s3://cairn-quiet", env=S3_ENV)
    assert S3_ENV["AWS_SECRET_ACCESS_KEY"].encode() not in r.stdout + r.stderr
