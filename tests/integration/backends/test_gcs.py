# SPDX-License-Identifier: GPL-3.0-or-later
"""gs:// with Google sign-in (a service account key file, gcloud's application default
credentials) against the GCS emulator on loopback, with Google's token endpoint stood in for
by a loopback server that checks the signed JWT / refresh token as Google does."""
import os

import pytest

from conformance import check_cycle, check_interface
from google_standins import GcsEmulator, TokenServer
from treeutil import cairn, diff_snapshots, duplicity, snapshot, write

from cairn import naming
from cairn.backends import BackendOptions, secrets_of

# no real Google endpoint, no AWS or HMAC keys from the machine running the tests
CLEAN = {"GS_ACCESS_KEY_ID": "", "GS_SECRET_ACCESS_KEY": "", "GOOGLE_APPLICATION_CREDENTIALS": "",
         "STORAGE_EMULATOR_HOST": "", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    server = GcsEmulator(tmp_path_factory.mktemp("gcs")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tokens():
    server = TokenServer()
    yield server
    server.close()


@pytest.fixture
def sa_env(tokens, tmp_path):
    """A service account key file through GOOGLE_APPLICATION_CREDENTIALS, and a HOME without
    gcloud's credentials."""
    key = tmp_path / "sa-key.json"
    info = tokens.service_account(key)
    env = dict(CLEAN, GOOGLE_APPLICATION_CREDENTIALS=str(key), HOME=str(tmp_path / "home"))
    return env, info


def _names(gcs, bucket, prefix):
    return sorted(b.name[len(prefix) + 1:] for b in gcs.client().list_blobs(bucket, prefix=prefix + "/"))


def test_interface_with_a_service_account(gcs, tokens, sa_env, tmp_path):
    env, info = sa_env
    before = len(tokens.granted)
    left = check_interface("gs://cairn-iface/some/prefix", BackendOptions(s3_endpoint_url=gcs.endpoint, env=env),
                           tmp_path)
    assert left == []
    # the bucket was created (project_id of the key file), and the key signed the sign-in
    assert gcs.client().bucket("cairn-iface").exists()
    granted = tokens.granted[before:]
    assert granted and granted[0][:2] == ("service_account", info["client_email"])
    assert "devstorage" in granted[0][2]


def test_cycle_with_a_service_account(gcs, sa_env, tmp_path):
    """Backup, incremental, restore at both points, verify, a second chain, prune, cleanup;
    the emulator found by STORAGE_EMULATOR_HOST, as Google's tools find one."""
    env, _info = sa_env
    env = dict(env, STORAGE_EMULATOR_HOST=f"127.0.0.1:{gcs.port}")
    check_cycle("gs://cairn-cycle/host1", ["--no-encryption"], tmp_path, env=env)
    names = _names(gcs, "cairn-cycle", "host1")
    assert names and all(naming.parse(n) is not None for n in names), names
    # nothing outside the prefix
    assert all(b.name.startswith("host1/") for b in gcs.client().list_blobs("cairn-cycle"))


def test_large_volumes_through_the_rate_limit(gcs, sa_env, tmp_path):
    """A 19 MiB volume (a resumable upload) and a 3 MiB one (one request), both through the
    rate limit, whose reader returns at most 1 MiB per read."""
    env, _info = sa_env
    src = tmp_path / "src"
    write(str(src / "big.bin"), os.urandom(19 << 20))
    common = ["--no-encryption", "--archive-dir", tmp_path / "c", "--s3-endpoint-url", gcs.endpoint,
              "--volsize", "25", "--no-adaptive-compression", "--compress-level", "0", "--max-upload-rate", "400M"]
    cairn("full", *common, src, "gs://cairn-large/x", env=env)
    write(str(src / "mid.bin"), os.urandom(3 << 20))
    cairn("incremental", *common, src, "gs://cairn-large/x", env=env)
    sizes = sorted(b.size for b in gcs.client().list_blobs("cairn-large", prefix="x/") if ".difftar" in b.name)
    assert len(sizes) == 2 and sizes[0] > 3 << 20 and sizes[1] > 19 << 20, sizes
    cairn("restore", *common, "gs://cairn-large/x", tmp_path / "r", env=env)
    assert diff_snapshots(snapshot(str(src)), snapshot(str(tmp_path / "r"))) == []


def test_application_default_credentials(gcs, tokens, tmp_path):
    """gcloud auth application-default login's file under HOME, no other credentials."""
    home = tmp_path / "home"
    info = tokens.authorized_user(str(home / ".config" / "gcloud" / "application_default_credentials.json"))
    src = tmp_path / "src"
    write(str(src / "a.txt"), b"adc\n")
    # (google-auth sends a user's refresh token to Google's URL whatever the file says: the
    # backend's test hook points it at the stand-in)
    env = dict(CLEAN, HOME=str(home), CAIRN_GOOGLE_TOKEN_URI=tokens.uri)
    before = len(tokens.granted)
    common = ["--no-encryption", "--archive-dir", tmp_path / "c", "--s3-endpoint-url", gcs.endpoint]
    r = cairn("full", "-v", "debug", *common, src, "gs://cairn-adc/x", env=env)
    assert ("authorized_user", info["client_id"]) in [g[:2] for g in tokens.granted[before:]]
    for secret in (info["client_secret"], info["refresh_token"]):
        assert secret.encode() not in r.stdout + r.stderr
    cairn("restore", *common, "gs://cairn-adc/x", tmp_path / "r", env=env)
    assert (tmp_path / "r" / "a.txt").read_bytes() == b"adc\n"
    # CLOUDSDK_CONFIG moves gcloud's directory, as it does for gcloud
    moved = tmp_path / "gcloud-config"
    (home / ".config" / "gcloud").rename(moved)
    r = cairn("collection-status", *common, "gs://cairn-adc/x", env=dict(env, CLOUDSDK_CONFIG=str(moved)))
    assert b"Full" in r.stdout


@pytest.mark.duplicity
def test_same_layout_as_duplicity(gcs, sa_env, tmp_path, duplicity_bin):
    """cairn's objects under the prefix are duplicity's files, one object each: duplicity
    restores them as a plain directory; and a duplicity archive copied under a prefix restores
    with cairn from gs:// (a bucket duplicity filled through GCS's S3 API)."""
    env, _info = sa_env
    src = tmp_path / "src"
    write(str(src / "a.txt"), b"one\n")
    write(str(src / "d" / "b.bin"), os.urandom(300_000))
    common = ["--no-encryption", "--s3-endpoint-url", gcs.endpoint]
    cairn("full", *common, "--archive-dir", tmp_path / "c", src, "gs://cairn-layout/web1", env=env)
    write(str(src / "a.txt"), b"two, changed\n", mtime=1_700_000_000)
    cairn("incremental", *common, "--archive-dir", tmp_path / "c", src, "gs://cairn-layout/web1", env=env)
    bucket = gcs.client().bucket("cairn-layout")
    copy = tmp_path / "copy"
    copy.mkdir()
    for blob in gcs.client().list_blobs("cairn-layout", prefix="web1/"):
        blob.download_to_filename(str(copy / blob.name.split("/", 1)[1]))
    kinds = sorted({naming.parse(n).type for n in os.listdir(copy)})
    assert {"full", "inc"} <= set(kinds), kinds
    dest = tmp_path / "by-duplicity"
    duplicity(duplicity_bin, "restore", "--no-encryption", "--archive-dir", tmp_path / "dc", "--name", "g",
              f"file://{copy}", dest)
    assert diff_snapshots(snapshot(str(src)), snapshot(str(dest))) == []
    # the other way: duplicity's own archive, put under a prefix object by object
    dup = tmp_path / "dup"
    duplicity(duplicity_bin, "full", "--no-encryption", "--archive-dir", tmp_path / "dc2", "--name", "d",
              src, f"file://{dup}")
    for name in os.listdir(dup):
        bucket.blob(f"from-duplicity/{name}").upload_from_filename(str(dup / name))
    assert _names(gcs, "cairn-layout", "from-duplicity") == sorted(os.listdir(dup))
    dest = tmp_path / "by-cairn"
    cairn("restore", *common, "--archive-dir", tmp_path / "c3", "gs://cairn-layout/from-duplicity", dest, env=env)
    assert diff_snapshots(snapshot(str(src)), snapshot(str(dest))) == []


def test_no_credentials_names_the_google_ways(gcs, tmp_path):
    src = tmp_path / "src"
    write(str(src / "a"), b"a")
    env = dict(CLEAN, HOME=str(tmp_path / "empty-home"), AWS_ACCESS_KEY_ID="AKIAIGNORED",
               AWS_SECRET_ACCESS_KEY="aws-secret-ignored")
    r = cairn("full", "--no-encryption", "--archive-dir", tmp_path / "c", "--s3-endpoint-url", gcs.endpoint,
              src, "gs://cairn-nocreds/x", check=False, env=env)
    assert r.returncode == 23, r.stderr
    err = r.stderr.decode()
    for way in ("GS_ACCESS_KEY_ID", "GS_SECRET_ACCESS_KEY", "GOOGLE_APPLICATION_CREDENTIALS",
                "gcloud auth application-default login"):
        assert way in err, err
    assert "AWS_" not in err and "Traceback" not in err
    # half an HMAC pair: both are named, AWS_* never (boto3 would have sent the AWS keys)
    r = cairn("full", "--no-encryption", "--archive-dir", tmp_path / "c", "--s3-endpoint-url", gcs.endpoint,
              src, "gs://cairn-nocreds/x", check=False, env=dict(env, GS_ACCESS_KEY_ID="GOOGHALF"))
    err = r.stderr.decode()
    assert r.returncode == 23 and "GS_SECRET_ACCESS_KEY" in err and "AWS_" not in err, err
    # a key file that is not there, and one that is no credentials file
    r = cairn("full", "--no-encryption", "--archive-dir", tmp_path / "c", src, "gs://cairn-nocreds/x",
              check=False, env=dict(env, GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "missing.json")))
    assert r.returncode == 23 and b"does not exist" in r.stderr, r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "nonsense"}')
    r = cairn("full", "--no-encryption", "--archive-dir", tmp_path / "c", src, "gs://cairn-nocreds/x",
              check=False, env=dict(env, GOOGLE_APPLICATION_CREDENTIALS=str(bad)))
    assert r.returncode == 23 and b"cannot use the Google credentials file" in r.stderr, r.stderr


def test_a_key_google_refuses_is_exit_52_and_never_shown(gcs, tokens, tmp_path):
    key = tmp_path / "unknown-key.json"
    info = tokens.service_account(key, email="gone@cairn-test.iam.gserviceaccount.com", known=False)
    src = tmp_path / "src"
    write(str(src / "a"), b"a")
    env = dict(CLEAN, GOOGLE_APPLICATION_CREDENTIALS=str(key), HOME=str(tmp_path))
    r = cairn("full", "--json", "-v", "debug", "--no-encryption", "--num-retries", "1", "--archive-dir",
              tmp_path / "c", "--s3-endpoint-url", gcs.endpoint, src, "gs://cairn-refused/x", check=False, env=env)
    assert r.returncode == 52, r.stderr
    assert b"refused the credentials" in r.stderr and b"retry" not in r.stderr
    out = (r.stdout + r.stderr).decode()
    body = [line for line in info["private_key"].splitlines() if "-----" not in line]
    for secret in [info["private_key_id"], *body]:
        assert secret not in out


def test_secrets_of_knows_the_key_file(tokens, tmp_path):
    key = tmp_path / "k.json"
    info = tokens.service_account(key, known=False)
    secrets = secrets_of(["gs://b/p"], {"GOOGLE_APPLICATION_CREDENTIALS": str(key)})
    line = info["private_key"].splitlines()[3]
    text = secrets.hide(f"failed: {line} / {info['private_key_id']}")
    assert line not in text and info["private_key_id"] not in text
