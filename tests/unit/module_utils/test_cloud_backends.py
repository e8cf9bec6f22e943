# SPDX-License-Identifier: GPL-3.0-or-later
"""gs://, b2:// and dpbx:// set-up without a network: which credentials are taken from where,
what a missing library or credential says, and what redaction knows of them."""
import json
import os
import subprocess
import sys

import pytest

from cairn.backends import BackendOptions, open_raw, secrets_of
from cairn.backends import gcs
from cairn.errors import UserError

ENGINE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "plugins", "module_utils")


def _no_google_env(tmp_path, **more):
    env = {"HOME": str(tmp_path / "home")}
    env.update(more)
    return env


def test_gs_without_credentials_names_the_google_ways_only(tmp_path):
    with pytest.raises(UserError) as e:
        open_raw("gs://bucket/x", BackendOptions(env=_no_google_env(tmp_path, AWS_ACCESS_KEY_ID="AKIA",
                                                                    AWS_SECRET_ACCESS_KEY="aws-secret")))
    text = str(e.value)
    assert "GOOGLE_APPLICATION_CREDENTIALS" in text and "GS_ACCESS_KEY_ID" in text
    assert "application-default login" in text and "AWS_" not in text


def test_gs_half_an_hmac_pair_is_refused(tmp_path):
    with pytest.raises(UserError) as e:
        open_raw("gs://bucket/x", BackendOptions(env=_no_google_env(tmp_path, GS_SECRET_ACCESS_KEY="s3cr3t-gs")))
    assert "GS_ACCESS_KEY_ID" in str(e.value) and "AWS_" not in str(e.value)


def test_gs_credentials_file_is_found_as_google_finds_it(tmp_path):
    home = tmp_path / "home"
    adc = home / ".config" / "gcloud" / "application_default_credentials.json"
    assert gcs.credential_file({"HOME": str(home)}) == (None, None)
    adc.parent.mkdir(parents=True)
    adc.write_text("{}")
    assert gcs.credential_file({"HOME": str(home)})[0] == str(adc)
    moved = tmp_path / "cfg"
    moved.mkdir()
    (moved / "application_default_credentials.json").write_text("{}")
    assert gcs.credential_file({"HOME": str(home), "CLOUDSDK_CONFIG": str(moved)})[0] == str(
        moved / "application_default_credentials.json")
    # GOOGLE_APPLICATION_CREDENTIALS wins over gcloud's file
    assert gcs.credential_file({"HOME": str(home), "GOOGLE_APPLICATION_CREDENTIALS": "/k.json"}) == (
        "/k.json", "GOOGLE_APPLICATION_CREDENTIALS")


def test_gs_refuses_credential_files_of_other_kinds(tmp_path):
    key = tmp_path / "external.json"
    key.write_text(json.dumps({"type": "external_account", "credential_source": {"executable": {"command": "x"}}}))
    with pytest.raises(UserError) as e:
        open_raw("gs://bucket/x", BackendOptions(env={"GOOGLE_APPLICATION_CREDENTIALS": str(key)}))
    assert "external_account" in str(e.value)


def test_secrets_of_reads_the_google_credential_files(tmp_path):
    adc = tmp_path / "home" / ".config" / "gcloud" / "application_default_credentials.json"
    adc.parent.mkdir(parents=True)
    adc.write_text(json.dumps({"type": "authorized_user", "client_id": "c", "client_secret": "Gc-secret-991",
                               "refresh_token": "1//refresh-Mk-77"}))
    secrets = secrets_of(["gs://b/p"], {"HOME": str(tmp_path / "home")})
    assert secrets.hide("a 1//refresh-Mk-77 b Gc-secret-991") == "a *** b ***"
    # HMAC keys in use: the file is not what signs in, its values are not searched for
    assert gcs.file_secrets({"HOME": str(tmp_path / "home"), "GS_ACCESS_KEY_ID": "a",
                             "GS_SECRET_ACCESS_KEY": "b"}) == []


def test_new_secret_variables_are_redacted():
    secrets = secrets_of(["dpbx:///x"], {"DPBX_ACCESS_TOKEN": "sl.token-4471", "DPBX_APP_SECRET": "app-secret-77",
                                         "DPBX_REFRESH_TOKEN": "refresh-8812", "BACKEND_PASSWORD": "b2-key-5512"})
    assert secrets.hide("sl.token-4471 app-secret-77 refresh-8812 b2-key-5512") == "*** *** *** ***"


def test_b2_key_from_duplicitys_variables_and_region_given():
    for env in ({"BACKEND_PASSWORD": "K004key"}, {"FTP_PASSWORD": "K004key"}, {"B2_APPLICATION_KEY": "K004key"}):
        be = open_raw("b2://keyid@bucket/p", BackendOptions(s3_region_name="us-west-004", env=env))
        try:
            creds = be.client._request_signer._credentials
            assert (creds.access_key, creds.secret_key) == ("keyid", "K004key")
            assert be.client.meta.region_name == "us-west-004"
        finally:
            be.close()
    for name in ("B2_APPLICATION_KEY_ID", "B2_ACCOUNT_ID"):      # the b2 tool's names, new and old
        be = open_raw("b2://bucket/p", BackendOptions(s3_endpoint_url="http://127.0.0.1:9", env={
            name: "envid", "B2_APPLICATION_KEY": "K004key"}))
        try:
            assert be.client._request_signer._credentials.access_key == "envid"
        finally:
            be.close()


def test_dpbx_urls_and_credentials():
    with pytest.raises(UserError, match="DPBX_ACCESS_TOKEN"):
        open_raw("dpbx:///backups", BackendOptions(env={}))
    with pytest.raises(UserError, match="three slashes"):
        open_raw("dpbx://backups/x", BackendOptions(env={"DPBX_ACCESS_TOKEN": "t"}))
    # a refresh token needs the app key it was issued to
    with pytest.raises(UserError, match="DPBX_APP_KEY"):
        open_raw("dpbx:///b", BackendOptions(env={"DPBX_REFRESH_TOKEN": "r"}))
    be = open_raw("dpbx:///Backups/web%201/", BackendOptions(env={"DPBX_ACCESS_TOKEN": "t"}))
    assert be.folder == "/Backups/web 1" and be._path("duplicity-x") == "/Backups/web 1/duplicity-x"
    assert open_raw("dpbx:///", BackendOptions(env={"DPBX_ACCESS_TOKEN": "t"})).folder == ""


MISSING = r'''
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("google", "dropbox"):
            raise ImportError(f"No module named {name!r}")
sys.meta_path.insert(0, Block())
sys.path.insert(0, sys.argv[1])
from cairn.backends import BackendOptions, open_raw
from cairn.errors import UserError
for url, env in (("gs://b/x", {"GOOGLE_APPLICATION_CREDENTIALS": sys.argv[2]}), ("dpbx:///x", {"DPBX_ACCESS_TOKEN": "t"})):
    try:
        open_raw(url, BackendOptions(env=env))
    except UserError as e:
        print(e)
'''


def test_missing_libraries_are_named(tmp_path):
    key = tmp_path / "k.json"
    key.write_text("{}")
    r = subprocess.run([sys.executable, "-c", MISSING, os.path.abspath(ENGINE), str(key)], capture_output=True,
                       text=True, check=False)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2
    assert "pip install google-cloud-storage" in lines[0] and "pip install dropbox" in lines[1]


def test_gs_keys_with_object_rights_only_still_upload(tmp_path):
    """A service account with roles/storage.objectAdmin may not read the bucket (403 on
    buckets.get): the upload goes ahead instead of failing or trying to create it."""
    from google.api_core import exceptions as gexc

    uploaded = []

    class Blob:
        def __init__(self, key):
            self.key = key

        def upload_from_file(self, f, size, **kw):
            uploaded.append((self.key, f.read(size)))

    class Bucket:
        def exists(self, **kw):
            raise gexc.Forbidden("caller does not have storage.buckets.get access")

        def blob(self, key):
            return Blob(key)

    class Client:
        def create_bucket(self, *a, **kw):
            raise AssertionError("no bucket creation for a bucket that is there")

    be = gcs.GcsBackend("gs://b/p", BackendOptions(), "b", "p", None, "proj", "test")
    be._local.conn = (Client(), Bucket())
    src = tmp_path / "f"
    src.write_bytes(b"data")
    be.put(str(src), "duplicity-x")
    assert uploaded == [("p/duplicity-x", b"data")]


def test_webdav_headers_parse_as_duplicity_s_csv_pairs():
    from cairn.backends.webdav import parse_headers
    assert parse_headers(None) == {}
    assert parse_headers('Cookie,"a=1, b=2",X-Token,abc') == {"Cookie": "a=1, b=2", "X-Token": "abc"}
    for bad in ("Cookie", "Cookie,a,X", "Bad Name,v", "X,a\r\nInjected: 1"):
        with pytest.raises(UserError):
            parse_headers(bad)


def test_webdav_header_values_are_secrets_of_the_run():
    from cairn.cli import run_secrets
    secrets = run_secrets(["--webdav-headers", "Cookie,session=s3cr3t-cookie; lang=en",
                           "--webdav-headers=X-T,tok-4491"], {})
    assert secrets.hide("s3cr3t-cookie and tok-4491") == "*** and ***"
    assert secrets.hide("Cookie: session=s3cr3t-cookie; lang=en") == "Cookie: ***"
