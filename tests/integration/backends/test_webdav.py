# SPDX-License-Identifier: GPL-3.0-or-later
"""webdav:// and webdavs:// against real WsgiDAV servers (on cheroot) on loopback."""
import os
import shutil
import subprocess
import sys

import pytest

from conformance import check_cycle, check_interface, check_untrusted_certificate
from servers import ServerProcess, free_port
from test_ftp import make_cert
from treeutil import cairn, write

from cairn.backends import BackendOptions, open_raw
from cairn.backends.base import TEMP_PREFIX


USER = "backup"
PASSWORD = "dav-Secret-4410-pw"

SERVER = r'''
import logging, sys
from cheroot import wsgi
from wsgidav.wsgidav_app import WsgiDAVApp

port, root, user, password, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
config = {
    "host": "127.0.0.1", "port": port,
    "provider_mapping": {"/": root},
    "simple_dc": {"user_mapping": {"*": {user: {"password": password}}}},
    "http_authenticator": {
        "domain_controller": None,
        # "digest": a server that refuses Basic and offers only Digest
        "accept_basic": mode != "digest", "accept_digest": True, "default_to_digest": mode == "digest",
    },
    "verbose": 1,
    "logging": {"enable_loggers": []},
    "dir_browser": {"enable": False},
    "lock_storage": True,
}
app = WsgiDAVApp(config)
if mode == "cookie":        # a server behind a gateway that wants a session cookie (--webdav-headers)
    dav = app

    def app(environ, start_response):
        if "session=gw-Cookie-7781" not in environ.get("HTTP_COOKIE", ""):
            start_response("403 Forbidden", [("Content-Length", "0")])
            return [b""]
        return dav(environ, start_response)
server = wsgi.Server(("127.0.0.1", port), app, numthreads=16)
if mode == "tls":
    from cheroot.ssl.builtin import BuiltinSSLAdapter
    server.ssl_adapter = BuiltinSSLAdapter(sys.argv[6], sys.argv[7])
server.start()
'''


class DavServer(ServerProcess):
    def __init__(self, workdir, mode="basic"):
        workdir = os.fspath(workdir)
        self.root = os.path.join(workdir, "root")
        os.makedirs(self.root, exist_ok=True)
        script = os.path.join(workdir, "davd.py")
        with open(script, "w") as f:
            f.write(SERVER)
        port = free_port()
        argv = [sys.executable, script, str(port), self.root, USER, PASSWORD, mode]
        self.cert = None
        if mode == "tls":
            self.cert, key = make_cert(workdir)
            argv += [self.cert, key]
        self.scheme = "webdavs" if mode == "tls" else "webdav"
        super().__init__(argv, port, os.path.join(workdir, "davd.log"))

    def url(self, path, password=False):
        secret = f":{PASSWORD}" if password else ""
        return f"{self.scheme}://{USER}{secret}@127.0.0.1:{self.port}/{path}"


def _server(tmp_path_factory, mode):
    server = DavServer(tmp_path_factory.mktemp(f"dav-{mode}"), mode).start()
    return server


@pytest.fixture(scope="module")
def davd(tmp_path_factory):
    server = _server(tmp_path_factory, "basic")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def digestd(tmp_path_factory):
    server = _server(tmp_path_factory, "digest")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def davsd(tmp_path_factory):
    server = _server(tmp_path_factory, "tls")
    yield server
    server.stop()


def test_interface_basic_password_in_url(davd, tmp_path):
    assert check_interface(davd.url("dav/iface", password=True), BackendOptions(), tmp_path) == []
    # the nested collections were made on the way
    assert os.path.isdir(os.path.join(davd.root, "dav", "iface"))


def test_interface_digest_only_password_from_env(digestd, tmp_path):
    opts = BackendOptions(env={"FTP_PASSWORD": PASSWORD})
    assert check_interface(digestd.url("iface"), opts, tmp_path) == []


def test_interface_webdavs(davsd, tmp_path):
    opts = BackendOptions(ssl_cacert_file=davsd.cert, env={"FTP_PASSWORD": PASSWORD})
    assert check_interface(davsd.url("iface"), opts, tmp_path) == []


def test_listing_skips_subcollections_and_keeps_odd_names(davd, tmp_path):
    be = open_raw(davd.url("dav/odd", password=True), BackendOptions())
    try:
        (tmp_path / "f").write_bytes(b"x")
        be.put(str(tmp_path / "f"), "duplicity-full.20260101T000000Z.manifest")
        be.put(str(tmp_path / "f"), "name with space%and#hash")
        os.makedirs(os.path.join(davd.root, "dav", "odd", "subdir"))
        assert sorted(be.list()) == ["duplicity-full.20260101T000000Z.manifest", "name with space%and#hash"]
        assert not [n for n in os.listdir(os.path.join(davd.root, "dav", "odd")) if n.startswith(TEMP_PREFIX)]
    finally:
        be.close()


def test_cycle_webdav_password_from_env(davd, tmp_path):
    check_cycle(davd.url("cycle/nested"), ["--no-encryption"], tmp_path, env={"FTP_PASSWORD": PASSWORD})
    names = os.listdir(os.path.join(davd.root, "cycle", "nested"))
    assert any(n.startswith("duplicity-full.") and n.endswith(".difftar.gz") for n in names)


def test_cycle_webdavs_encrypted(davsd, tmp_path):
    check_cycle(davsd.url("cycle"), ["--ssl-cacert-file", davsd.cert], tmp_path,
                env={"FTP_PASSWORD": PASSWORD})
    assert any(n.endswith(".difftar.gpg") for n in os.listdir(os.path.join(davsd.root, "cycle")))


def test_webdavs_untrusted_certificate(davsd, tmp_path):
    check_untrusted_certificate(davsd.url("untrusted"), os.path.join(davsd.root, "untrusted"), tmp_path,
                                {"FTP_PASSWORD": PASSWORD})


@pytest.mark.parametrize("which", ["davd", "digestd"])
def test_wrong_password_fails_without_showing_it(which, request, tmp_path):
    server = request.getfixturevalue(which)
    src = tmp_path / "src"
    write(str(src / "a"), b"a" * 100)
    common = ["--no-encryption", "--archive-dir", tmp_path / "c", "-v", "debug"]
    wrong = "wrong-" + PASSWORD
    r = cairn("full", *common, src, server.url("wrong"), env={"FTP_PASSWORD": wrong}, check=False)
    assert r.returncode == 52, r.stderr
    assert b"refused the login" in r.stderr
    assert wrong.encode() not in r.stdout + r.stderr
    assert not os.path.exists(os.path.join(server.root, "wrong"))
    r = cairn("full", *common, src, server.url("wrong", password=True))
    assert PASSWORD.encode() not in r.stdout + r.stderr


def test_unreachable_fails_clearly(tmp_path):
    src = tmp_path / "src"
    write(str(src / "a"), b"a")
    url = f"webdav://{USER}@127.0.0.1:{free_port()}/x"
    r = cairn("full", "--no-encryption", "--num-retries", "1", "--archive-dir", tmp_path / "c", src, url,
              check=False, env={"FTP_PASSWORD": PASSWORD})
    assert r.returncode == 50, r.stderr
    assert b"cannot connect to 127.0.0.1" in r.stderr and b"after 2 attempts" in r.stderr
    assert PASSWORD.encode() not in r.stderr


COOKIE = "session=gw-Cookie-7781"


@pytest.fixture(scope="module")
def cookied(tmp_path_factory):
    server = _server(tmp_path_factory, "cookie")
    yield server
    server.stop()


def test_webdav_headers_reach_the_server_and_stay_secret(cookied, tmp_path):
    """duplicity's --webdav-headers 'Cookie,session=...': sent with every request; the value, a
    credential, shows nowhere (not even at debug)."""
    env = {"FTP_PASSWORD": PASSWORD}
    src = tmp_path / "src"
    write(str(src / "a"), b"a" * 100)
    common = ["--no-encryption", "--archive-dir", tmp_path / "c", "-v", "debug"]
    r = cairn("full", *common, src, cookied.url("gw"), env=env, check=False)
    assert r.returncode != 0, "the gateway lets nobody in without the cookie"
    check_cycle(cookied.url("gw"), ["--no-encryption", "--webdav-headers", f"Cookie,{COOKIE}"], tmp_path,
                env=env)
    r = cairn("collection-status", *common, "--webdav-headers", f"Cookie,{COOKIE}", cookied.url("gw"), env=env)
    assert COOKIE.encode() not in r.stdout + r.stderr
    for bad in ("Cookie", "Bad Name,x", "X-A,line\nbreak"):
        r = cairn("collection-status", *common, "--webdav-headers", bad, cookied.url("gw"), env=env, check=False)
        assert r.returncode == 23 and b"--webdav-headers" in r.stderr, r.stderr


def test_ssl_cacert_path_a_hashed_directory(davsd, tmp_path):
    """duplicity's --ssl-cacert-path: a directory of CA certificates under their hash names."""
    cadir = tmp_path / "cas"
    cadir.mkdir()
    shutil.copy(davsd.cert, cadir / "dav.pem")
    subprocess.run(["openssl", "rehash", str(cadir)], check=True)
    check_cycle(davsd.url("capath"), ["--ssl-cacert-path", str(cadir)], tmp_path, env={"FTP_PASSWORD": PASSWORD})
    empty = tmp_path / "empty"
    empty.mkdir()
    r = cairn("collection-status", "--archive-dir", tmp_path / "c2", "--ssl-cacert-path", str(empty),
              davsd.url("capath"), env={"FTP_PASSWORD": PASSWORD}, check=False)
    assert r.returncode == 52 and b"certificate" in r.stderr, r.stderr
