# SPDX-License-Identifier: GPL-3.0-or-later
"""b2:// as duplicity users write it: ``b2://keyID:appKey@bucket/path`` with no region and no
endpoint on the command line. cairn asks B2's authorize call (here a loopback stand-in that
checks the key as B2 does) for the account's S3 endpoint, here moto's server."""
import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from servers import MotoS3
from treeutil import cairn, diff_snapshots, snapshot, write

from cairn.backends import BackendOptions, open_raw

KEY_ID = "0041b2c3d4e5f600000000007"
APP_KEY = "K004Mk-b2/app+key"            # B2 keys hold '/' and '+': percent-encoded in a URL
ENC_KEY = "K004Mk-b2%2Fapp%2Bkey"
MASTER_ID = "1b2c3d4e5f60"               # an account ID: the master key's key ID
CLEAN = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_EC2_METADATA_DISABLED": "true",
         "B2_APPLICATION_KEY": "", "BACKEND_PASSWORD": "", "FTP_PASSWORD": ""}


class B2Authorize:
    """b2_authorize_account (API v3) on loopback: Basic auth with the key ID and key; answers
    the account's S3 endpoint (``apiInfo.storageApi.s3ApiUrl``) as B2 does."""

    def __init__(self, s3_url):
        self.s3_url = s3_url
        self.calls = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):       # noqa: N802 - http.server's name
                auth = self.headers.get("Authorization", "")
                user, _sep, key = base64.b64decode(auth[6:] or b"").decode().partition(":")
                outer.calls.append((self.path, user))
                if self.path != "/b2api/v3/b2_authorize_account" or not auth.startswith("Basic "):
                    return self._answer(404, {"status": 404, "code": "not_found"})
                if key != APP_KEY or user not in (KEY_ID, MASTER_ID):
                    return self._answer(401, {"status": 401, "code": "unauthorized", "message": ""})
                self._answer(200, {"accountId": MASTER_ID, "authorizationToken": "4_stand-in-token",
                                   "apiInfo": {"storageApi": {"apiUrl": "http://127.0.0.1:1",
                                                              "s3ApiUrl": outer.s3_url}}})

            def _answer(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = MotoS3(tmp_path_factory.mktemp("moto-b2")).start()
    yield server
    server.stop()


@pytest.fixture
def b2(s3):
    server = B2Authorize(s3.endpoint)
    yield server
    server.close()


def test_duplicity_url_without_region_or_endpoint(s3, b2, tmp_path):
    """What failed: duplicity's b2:// has no region, and cairn asked for --s3-region-name."""
    src = tmp_path / "src"
    write(str(src / "a.txt"), b"b2 data\n")
    write(str(src / "d" / "b.bin"), b"x" * 50_000)
    env = dict(CLEAN, CAIRN_B2_API_URL=b2.url)
    url = f"b2://{KEY_ID}:{ENC_KEY}@cairn-b2-dup/host1/daily"
    common = ["--no-encryption", "--archive-dir", tmp_path / "c"]
    r = cairn("full", "-v", "debug", *common, src, url, env=env)
    assert APP_KEY.encode() not in r.stdout + r.stderr and ENC_KEY.encode() not in r.stdout + r.stderr
    assert (b2.calls[0][1]) == KEY_ID
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket="cairn-b2-dup")["Contents"]]
    assert keys and all(k.startswith("host1/daily/duplicity-") for k in keys), keys
    dest = tmp_path / "r"
    cairn("restore", *common, url, dest, env=env)
    assert diff_snapshots(snapshot(str(src)), snapshot(str(dest))) == []


def test_key_from_the_environment(s3, b2, tmp_path):
    """duplicity's BACKEND_PASSWORD (and FTP_PASSWORD) for the key; the b2 tool's
    B2_APPLICATION_KEY_ID with B2_APPLICATION_KEY when the URL has neither."""
    src = tmp_path / "src"
    write(str(src / "a.txt"), b"env\n")
    common = ["--no-encryption", "--archive-dir", tmp_path / "c"]
    for i, (url, more) in enumerate((
            (f"b2://{KEY_ID}@cairn-b2-env/p", {"BACKEND_PASSWORD": APP_KEY}),
            (f"b2://{KEY_ID}@cairn-b2-env/p", {"FTP_PASSWORD": APP_KEY}),
            ("b2://cairn-b2-env/p", {"B2_APPLICATION_KEY_ID": KEY_ID, "B2_APPLICATION_KEY": APP_KEY}))):
        write(str(src / "n.txt"), b"%d\n" % i, mtime=1_700_000_000 + i)
        r = cairn("incremental" if i else "full", "-v", "debug", *common, src, url,
                  env=dict(CLEAN, CAIRN_B2_API_URL=b2.url, **more))
        assert APP_KEY.encode() not in r.stdout + r.stderr
    assert [c[1] for c in b2.calls] == [KEY_ID] * 3


def test_refused_key_and_master_key(s3, b2, tmp_path):
    src = tmp_path / "src"
    write(str(src / "a.txt"), b"a\n")
    common = ["--no-encryption", "--archive-dir", tmp_path / "c"]
    env = dict(CLEAN, CAIRN_B2_API_URL=b2.url)
    r = cairn("full", *common, src, f"b2://{KEY_ID}:Wrong-Mk-key@cairn-b2-no/p", check=False, env=env)
    assert r.returncode == 52 and b"refused the application key" in r.stderr, r.stderr
    assert b"Wrong-Mk-key" not in r.stderr
    r = cairn("full", *common, src, f"b2://{MASTER_ID}:{ENC_KEY}@cairn-b2-no/p", check=False, env=env)
    assert r.returncode == 23 and b"master application key" in r.stderr, r.stderr
    assert APP_KEY.encode() not in r.stderr
    # nothing answers: a clear message naming the way around it
    r = cairn("full", *common, "--num-retries", "0", "--timeout", "2", src, f"b2://{KEY_ID}:{ENC_KEY}@cairn-b2-no/p",
              check=False, env=dict(CLEAN, CAIRN_B2_API_URL="http://127.0.0.1:1"))
    assert r.returncode == 50 and b"--s3-endpoint-url" in r.stderr, r.stderr


def test_region_comes_from_the_endpoint(b2):
    """B2 checks the region in the signature: it is taken from s3.<region>.backblazeb2.com."""
    b2.s3_url = "https://s3.eu-central-003.backblazeb2.com"
    be = open_raw(f"b2://{KEY_ID}:{ENC_KEY}@bucket/p", BackendOptions(env=dict(CLEAN, CAIRN_B2_API_URL=b2.url)))
    try:
        assert be.client.meta.region_name == "eu-central-003"
        assert be.endpoint_url == "https://s3.eu-central-003.backblazeb2.com"
    finally:
        be.close()
    # a region given is used as it is, without asking B2
    calls = len(b2.calls)
    be = open_raw(f"b2://{KEY_ID}:{ENC_KEY}@bucket/p",
                  BackendOptions(s3_region_name="us-west-004", env=dict(CLEAN)))
    try:
        assert be.endpoint_url == "https://s3.us-west-004.backblazeb2.com" and len(b2.calls) == calls
    finally:
        be.close()
