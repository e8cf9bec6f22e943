# SPDX-License-Identifier: GPL-3.0-or-later
"""S3 Object Lock against moto's real HTTP server: retention on every archive object, prune and
cleanup that skip what is still retained, and delete every version once it has expired."""
import datetime
import json

import pytest

from servers import S3_ENV, MotoS3
from treeutil import cairn, write

DAYS = 3


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = MotoS3(tmp_path_factory.mktemp("moto-lock")).start()
    yield server
    server.stop()


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _common(s3, tmp_path, *extra):
    return ["--no-encryption", "--archive-dir", tmp_path / "cache", "--s3-endpoint-url", s3.endpoint, *extra]


LOCK = ["--s3-object-lock-mode", "governance", "--s3-object-lock-days", str(DAYS)]


def _keys(client, bucket):
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def _all_versions(client, bucket):
    out = client.list_object_versions(Bucket=bucket)
    return ([v["Key"] for v in out.get("Versions", [])], [d["Key"] for d in out.get("DeleteMarkers", [])])


def _expire(client, bucket, keys):
    """What waiting out the retention does: governance lets its retention be shortened (with the
    bypass permission), and moto accepts a date in the past."""
    past = _now() - datetime.timedelta(minutes=1)
    for key in keys:
        client.put_object_retention(Bucket=bucket, Key=key, BypassGovernanceRetention=True,
                                    Retention={"Mode": "GOVERNANCE", "RetainUntilDate": past})


def _two_chains(s3, tmp_path, bucket):
    src = tmp_path / "src"
    write(str(src / "a.txt"), b"first" * 100)
    cairn("full", *_common(s3, tmp_path, *LOCK), src, f"s3://{bucket}/h", env=S3_ENV)
    first = _keys(s3.client(), bucket)
    write(str(src / "b.txt"), b"second" * 100)
    cairn("full", *_common(s3, tmp_path, *LOCK), src, f"s3://{bucket}/h", env=S3_ENV)
    return first


def test_every_archive_object_carries_the_retention(s3, tmp_path):
    src = tmp_path / "src"
    write(str(src / "a.txt"), b"a" * 5000)
    # the bucket does not exist: cairn creates it with Object Lock enabled
    cairn("full", *_common(s3, tmp_path, *LOCK), src, "s3://cairn-lock-every/h", env=S3_ENV)
    write(str(src / "b.txt"), b"b" * 5000)
    cairn("incremental", *_common(s3, tmp_path, *LOCK), src, "s3://cairn-lock-every/h", env=S3_ENV)
    client = s3.client()
    keys = _keys(client, "cairn-lock-every")
    kinds = {k.split("/")[-1].split(".")[0] for k in keys}
    assert kinds == {"duplicity-full", "duplicity-full-signatures", "duplicity-inc", "duplicity-new-signatures"}
    assert any(".vol1." in k for k in keys) and any(".manifest" in k for k in keys)
    expect = _now() + datetime.timedelta(days=DAYS)
    for key in keys:
        head = client.head_object(Bucket="cairn-lock-every", Key=key)
        assert head.get("ObjectLockMode") == "GOVERNANCE", key
        until = head["ObjectLockRetainUntilDate"]
        assert abs((until - expect).total_seconds()) < 300, (key, until)
    # no lock object or unfinished name is left, nor a hidden version of one (renames delete for good)
    versions, markers = _all_versions(client, "cairn-lock-every")
    assert sorted(versions) == keys and markers == []
    cairn("restore", *_common(s3, tmp_path), "s3://cairn-lock-every/h", tmp_path / "r", env=S3_ENV)
    assert (tmp_path / "r" / "b.txt").read_bytes() == b"b" * 5000


def test_prune_skips_retained_objects_then_deletes_them_when_expired(s3, tmp_path):
    bucket = "cairn-lock-prune"
    first = _two_chains(s3, tmp_path, bucket)
    client = s3.client()
    before = _keys(client, bucket)
    # still under retention: nothing is deleted, the old chain is reported as kept
    r = cairn("remove-all-but-n-full", "1", "--force", "--json", *_common(s3, tmp_path),
              f"s3://{bucket}/h", env=S3_ENV)
    out = json.loads(r.stdout)
    assert out["files"] == [] and out["sets"] == []
    assert [s["type"] for s in out["kept_sets"]] == ["full"]
    skipped = {k["name"]: k for k in out["skipped"]}
    assert sorted("h/" + n for n in skipped) == first
    assert all(k["reason"] == "retention" and k["mode"] == "governance" for k in skipped.values())
    assert all(k["retain_until"][:10] == (_now() + datetime.timedelta(days=DAYS)).strftime("%Y-%m-%d")
               for k in skipped.values())
    assert b"S3 Object Lock" in r.stderr
    assert _keys(client, bucket) == before
    # the text output says so too
    r = cairn("remove-all-but-n-full", "1", "--force", *_common(s3, tmp_path), f"s3://{bucket}/h", env=S3_ENV)
    assert b"Keeping backup set under S3 Object Lock: full" in r.stdout
    assert b"skipped " in r.stdout and b"retention (governance) until" in r.stdout

    # the volume expires before its manifest: the set is still kept whole, nothing half-deleted
    vol = [k for k in first if ".vol1." in k]
    _expire(client, bucket, vol)
    r = cairn("remove-all-but-n-full", "1", "--force", "--json", *_common(s3, tmp_path),
              f"s3://{bucket}/h", env=S3_ENV)
    out = json.loads(r.stdout)
    assert out["files"] == [] and [s["type"] for s in out["kept_sets"]] == ["full"]
    assert {k["name"]: k["reason"] for k in out["skipped"]}[vol[0][2:]] == "set-kept"
    assert _keys(client, bucket) == before

    # all of it expired: deleted for good (every version, no delete marker hiding a version)
    _expire(client, bucket, first)
    r = cairn("remove-all-but-n-full", "1", "--force", "--json", *_common(s3, tmp_path),
              f"s3://{bucket}/h", env=S3_ENV)
    out = json.loads(r.stdout)
    assert sorted("h/" + n for n in out["files"]) == first and out["skipped"] == []
    versions, markers = _all_versions(client, bucket)
    assert not set(first) & set(versions) and not set(first) & set(markers)
    assert _keys(client, bucket) == sorted(set(before) - set(first))


def test_cleanup_skips_a_retained_leftover(s3, tmp_path):
    bucket = "cairn-lock-cleanup"
    src = tmp_path / "src"
    write(str(src / "a.txt"), b"a" * 100)
    cairn("full", *_common(s3, tmp_path, *LOCK), src, f"s3://{bucket}/h", env=S3_ENV)
    client = s3.client()
    # a set that never got its manifest (an old run's volume), under retention
    stray = "h/duplicity-full.20200101T000000Z.vol1.difftar.gz"
    client.put_object(Bucket=bucket, Key=stray, Body=b"x", ObjectLockMode="COMPLIANCE",
                      ObjectLockRetainUntilDate=_now() + datetime.timedelta(days=1))
    r = cairn("cleanup", "--force", "--json", *_common(s3, tmp_path), f"s3://{bucket}/h", env=S3_ENV)
    out = json.loads(r.stdout)
    assert [k["name"] for k in out["skipped"]] == [stray[2:]]
    assert out["skipped"][0]["mode"] == "compliance" and out["files"] == []
    assert stray in _keys(client, bucket)
    # a dry run says the same, touching nothing
    r = cairn("cleanup", *_common(s3, tmp_path), f"s3://{bucket}/h", env=S3_ENV)
    assert b"Would keep backup set under S3 Object Lock" in r.stdout and stray[2:].encode() in r.stdout


def test_prune_api_reports_what_it_kept(s3, tmp_path):
    """What the prune module returns: api.prune's skipped and kept_sets."""
    from cairn import api, options
    from cairn.retention import RetentionPolicy
    bucket = "cairn-lock-api"
    first = _two_chains(s3, tmp_path, bucket)
    target = options.target_options({"target": f"s3://{bucket}/h", "no_encryption": True,
                                     "archive_dir": str(tmp_path / "cache"), "s3_endpoint_url": s3.endpoint},
                                    dict(S3_ENV))
    r = api.prune(target, RetentionPolicy(keep_full=1), force=True)
    assert r["changed"] is False and r["files"] == []
    assert sorted("h/" + k["name"] for k in r["skipped"]) == first
    assert len(r["kept_sets"]) == 1 and len(r["chains_after"]) == 2


def test_bucket_without_object_lock_is_a_clear_error(s3, tmp_path):
    s3.client().create_bucket(Bucket="cairn-no-lock")
    src = tmp_path / "src"
    write(str(src / "a.txt"), b"a")
    r = cairn("full", *_common(s3, tmp_path, *LOCK), src, "s3://cairn-no-lock/h", env=S3_ENV, check=False)
    assert r.returncode == 23, r.stderr
    assert b"needs Object Lock on the bucket cairn-no-lock" in r.stderr
    assert b"Traceback" not in r.stderr
    assert _keys(s3.client(), "cairn-no-lock") == []


def test_lock_options_need_each_other(s3, tmp_path):
    src = tmp_path / "src"
    write(str(src / "a.txt"), b"a")
    for extra, text in ((["--s3-object-lock-mode", "compliance"], b"not only the mode"),
                        (["--s3-object-lock-days", "5"], b"not only the days"),
                        (["--s3-object-lock-mode", "compliance", "--s3-object-lock-days", "0"], b"positive"),
                        (["--s3-object-lock-mode", "legal", "--s3-object-lock-days", "5"], b"governance or compliance")):
        r = cairn("full", *_common(s3, tmp_path, *extra), src, "s3://cairn-usage/h", env=S3_ENV, check=False)
        assert r.returncode == 23 and text in r.stderr, (extra, r.stderr)
    assert "cairn-usage" not in [b["Name"] for b in s3.client().list_buckets()["Buckets"]]
