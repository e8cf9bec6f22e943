# SPDX-License-Identifier: GPL-3.0-or-later
"""dpbx:// through Dropbox's official SDK against a loopback stand-in of Dropbox's HTTP API v2
(dropbox_standin.py). Not Dropbox itself: there is no Dropbox emulator, and the real service is
not reachable from the test machines. The SDK is pointed at the stand-in by its own
DROPBOX_API_HOST / DROPBOX_API_CONTENT_HOST variables; HTTPS with a throw-away certificate given
by --ssl-cacert-file."""
import json
import os
import subprocess
import sys

import certifi
import pytest

from dropbox_standin import DropboxStandIn
from servers import ROOT
from test_ftp import make_cert
from treeutil import cairn, diff_snapshots, duplicity, snapshot, write

from conformance import check_cycle

TOKEN = "sl.Mk-dpbx-token-5531"
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def dbx(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("dropbox")
    cert, key = make_cert(str(workdir))
    server = DropboxStandIn(cert, key)
    server.tokens.add(TOKEN)
    yield server
    server.close()


def _env(dbx, **more):
    # REQUESTS_CA_BUNDLE as many hosts set it: --ssl-cacert-file must still win
    env = {"DROPBOX_API_HOST": dbx.host, "DROPBOX_API_CONTENT_HOST": dbx.host, "DPBX_ACCESS_TOKEN": TOKEN,
           "DPBX_REFRESH_TOKEN": "", "DPBX_APP_KEY": "", "DPBX_APP_SECRET": "",
           "REQUESTS_CA_BUNDLE": certifi.where()}
    env.update(more)
    return env


def test_interface(dbx, tmp_path):
    """The Backend contract, in a process of its own (the SDK reads its hosts when imported)."""
    runner = ("import json, pathlib, sys\n"
              "from conformance import check_interface\n"
              "from cairn.backends import BackendOptions\n"
              "opts = BackendOptions(ssl_cacert_file=sys.argv[2], env={'DPBX_ACCESS_TOKEN': sys.argv[3]})\n"
              "print(json.dumps(check_interface(sys.argv[1], opts, pathlib.Path(sys.argv[4]))))\n")
    env = dict(os.environ, **_env(dbx))
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "plugins", "module_utils"), HERE,
                                         os.path.join(os.path.dirname(HERE), "engine")])
    r = subprocess.run([sys.executable, "-c", runner, "dpbx:///iface/Some Dir", dbx.server_cert, TOKEN, str(tmp_path)],
                       env=env, capture_output=True, text=True, check=False, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []
    # the backend used the documented endpoints, with the root-relative, case-kept path
    used = {call[0] for call in dbx.calls}
    assert {"files/upload", "files/download", "files/list_folder", "files/delete_v2", "files/move_v2"} <= used


def test_cycle(dbx, tmp_path):
    check_cycle("dpbx:///backups/host1", ["--no-encryption", "--ssl-cacert-file", dbx.server_cert], tmp_path, env=_env(dbx))
    names = dbx.names("/backups/host1")
    assert names and all(n.startswith("duplicity-") for n in names), names
    # more files than one list_folder page: the listing followed the cursor
    assert any(c[0] == "files/list_folder/continue" for c in dbx.calls)


def test_large_volumes_go_up_in_an_upload_session(dbx, tmp_path):
    """A 19 MiB volume in 8 MiB parts, then a 3 MiB one in one call; both through the rate
    limit, whose reader returns at most 1 MiB per read (each part must still be whole)."""
    src = tmp_path / "src"
    write(str(src / "big.bin"), os.urandom(19 << 20))
    common = ["--no-encryption", "--ssl-cacert-file", dbx.server_cert, "--archive-dir", tmp_path / "c", "--volsize", "25",
              "--no-adaptive-compression", "--compress-level", "0", "--max-upload-rate", "400M"]
    before = len(dbx.calls)
    cairn("full", *common, src, "dpbx:///large", env=_env(dbx))
    kinds = [c[0] for c in dbx.calls[before:]]
    assert kinds.count("files/upload_session/start") == 1 and "files/upload_session/append_v2" in kinds
    assert "files/upload_session/finish" in kinds
    write(str(src / "mid.bin"), os.urandom(3 << 20))
    before = len(dbx.calls)
    cairn("incremental", *common, src, "dpbx:///large", env=_env(dbx))
    assert "files/upload_session/start" not in [c[0] for c in dbx.calls[before:]]
    cairn("restore", *common, "dpbx:///large", tmp_path / "r", env=_env(dbx))
    assert diff_snapshots(snapshot(str(src)), snapshot(str(tmp_path / "r"))) == []


def test_refresh_token(dbx, tmp_path):
    """DPBX_REFRESH_TOKEN with DPBX_APP_KEY/DPBX_APP_SECRET: the SDK gets its own access tokens."""
    dbx.refresh["Mk-refresh-77"] = ("app-key-1", "Mk-app-secret")
    src = tmp_path / "src"
    write(str(src / "a.txt"), b"refreshed\n")
    env = _env(dbx, DPBX_ACCESS_TOKEN="", DPBX_REFRESH_TOKEN="Mk-refresh-77", DPBX_APP_KEY="app-key-1",
               DPBX_APP_SECRET="Mk-app-secret")
    r = cairn("full", "-v", "debug", "--no-encryption", "--ssl-cacert-file", dbx.server_cert, "--archive-dir",
              tmp_path / "c", src, "dpbx:///refreshed", env=env)
    assert b"Mk-" not in r.stdout + r.stderr
    assert dbx.names("/refreshed")
    # a refresh token Dropbox does not know: exit 52, not retried
    r = cairn("full", "--no-encryption", "--ssl-cacert-file", dbx.server_cert, "--archive-dir", tmp_path / "c2", src,
              "dpbx:///refreshed2", env=dict(env, DPBX_REFRESH_TOKEN="Mk-revoked"), check=False)
    assert r.returncode == 52 and b"refused the credentials" in r.stderr and b"Mk-" not in r.stderr, r.stderr


@pytest.mark.duplicity
def test_layout_restores_with_duplicity(dbx, tmp_path, duplicity_bin):
    """The folder holds duplicity's files as they are: copied out, duplicity restores them."""
    src = tmp_path / "src"
    write(str(src / "a.txt"), b"one\n")
    write(str(src / "d" / "b.bin"), os.urandom(100_000))
    common = ["--no-encryption", "--ssl-cacert-file", dbx.server_cert, "--archive-dir", tmp_path / "c"]
    cairn("full", *common, src, "dpbx:///layout/web1", env=_env(dbx))
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in dbx.names("/layout/web1"):
        (copy / name).write_bytes(dbx.files[f"/layout/web1/{name}".lower()]["data"])
    duplicity(duplicity_bin, "restore", "--no-encryption", "--archive-dir", tmp_path / "dc", "--name", "x",
              f"file://{copy}", tmp_path / "r")
    assert diff_snapshots(snapshot(str(src)), snapshot(str(tmp_path / "r"))) == []


def test_errors(dbx, tmp_path):
    src = tmp_path / "src"
    write(str(src / "a.txt"), b"a\n")
    common = ["--no-encryption", "--num-retries", "1", "--archive-dir", tmp_path / "c"]
    ca = ["--ssl-cacert-file", dbx.server_cert]
    # no token at all: exit 23 naming duplicity's variable
    r = cairn("full", *common, *ca, src, "dpbx:///e", env=_env(dbx, DPBX_ACCESS_TOKEN=""), check=False)
    assert r.returncode == 23 and b"DPBX_ACCESS_TOKEN" in r.stderr, r.stderr
    # a token Dropbox refuses, and one that expired (the hint names the refresh token way)
    r = cairn("full", *common, *ca, src, "dpbx:///e", env=_env(dbx, DPBX_ACCESS_TOKEN="Mk-wrong-token"), check=False)
    assert r.returncode == 52 and b"refused" in r.stderr and b"Mk-wrong" not in r.stderr, r.stderr
    assert b"retry" not in r.stderr
    dbx.expired.add("Mk-old-token")
    r = cairn("full", *common, *ca, src, "dpbx:///e", env=_env(dbx, DPBX_ACCESS_TOKEN="Mk-old-token"), check=False)
    assert r.returncode == 52 and b"DPBX_REFRESH_TOKEN" in r.stderr and b"Mk-old" not in r.stderr, r.stderr
    # a certificate nobody vouched for: exit 52
    r = cairn("full", *common, src, "dpbx:///e", env=_env(dbx), check=False)
    assert r.returncode == 52 and b"certificate" in r.stderr, r.stderr
    # a full account: exit 53
    dbx.full = True
    try:
        r = cairn("full", *common, *ca, src, "dpbx:///e", env=_env(dbx), check=False)
    finally:
        dbx.full = False
    assert r.returncode == 53 and b"full" in r.stderr, r.stderr
    # a host in the URL: duplicity's form is dpbx:///folder
    r = cairn("full", *common, *ca, src, "dpbx://folder/x", env=_env(dbx), check=False)
    assert r.returncode == 23 and b"three slashes" in r.stderr, r.stderr
