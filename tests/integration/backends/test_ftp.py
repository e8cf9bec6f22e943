# SPDX-License-Identifier: GPL-3.0-or-later
"""ftp:// and ftps:// against real pyftpdlib servers on loopback, started and ended here."""
import os
import subprocess
import sys

import pytest

from conformance import check_cycle, check_interface, check_untrusted_certificate
from servers import ServerProcess, free_port
from treeutil import cairn, write

from cairn.backends import BackendOptions


USER = "backup"
PASSWORD = "ftp-Secret-6632-pw"

SERVER = r'''
import os, sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import ThreadedFTPServer

port, root, user, password, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
authorizer = DummyAuthorizer()
authorizer.add_user(user, password, root, perm="elradfmwMT")
base = FTPHandler
if mode == "tls":
    from pyftpdlib.handlers import TLS_FTPHandler
    base = TLS_FTPHandler


class Handler(base):
    authorizer = authorizer
    auth_failed_timeout = 0.1
    banner = "cairn test ftpd"
    if mode == "tls":
        certfile = sys.argv[6]
        keyfile = sys.argv[7]
        tls_control_required = True
        tls_data_required = True
    if mode == "quirky":
        # an older server: no MLSD/MLST, no rename over a file, 450 for an empty NLST
        proto_cmds = {k: v for k, v in base.proto_cmds.items() if k not in ("MLSD", "MLST")}

        def ftp_RNTO(self, path):
            if os.path.exists(path):
                self._rnfr = None
                self.respond("550 Destination exists.")
                return None
            return super().ftp_RNTO(path)

        def ftp_NLST(self, path):
            if self.fs.isdir(path) and not os.listdir(path):
                self.respond("450 No files found.")
                return None
            return super().ftp_NLST(path)


server = ThreadedFTPServer(("127.0.0.1", port), Handler)
server.serve_forever()
'''


def make_cert(directory):
    """A self-signed certificate for 127.0.0.1 (and its key) made with openssl."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


class Ftpd(ServerProcess):
    def __init__(self, workdir, mode="plain"):
        workdir = os.fspath(workdir)
        self.root = os.path.join(workdir, "root")
        os.makedirs(self.root, exist_ok=True)
        script = os.path.join(workdir, "ftpd.py")
        with open(script, "w") as f:
            f.write(SERVER)
        argv = [sys.executable, script, None, self.root, USER, PASSWORD, mode]
        self.cert = None
        if mode == "tls":
            self.cert, key = make_cert(workdir)
            argv += [self.cert, key]
        port = free_port()
        argv[2] = str(port)
        self.scheme = "ftps" if mode == "tls" else "ftp"
        super().__init__(argv, port, os.path.join(workdir, "ftpd.log"))

    def url(self, path, password=False):
        secret = f":{PASSWORD}" if password else ""
        return f"{self.scheme}://{USER}{secret}@127.0.0.1:{self.port}/{path}"


@pytest.fixture(scope="module")
def ftpd(tmp_path_factory):
    server = Ftpd(tmp_path_factory.mktemp("ftpd")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ftpsd(tmp_path_factory):
    server = Ftpd(tmp_path_factory.mktemp("ftpsd"), mode="tls").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def quirky(tmp_path_factory):
    server = Ftpd(tmp_path_factory.mktemp("quirky"), mode="quirky").start()
    yield server
    server.stop()


def test_interface_passive(ftpd, tmp_path):
    assert check_interface(ftpd.url("iface/passive", password=True), BackendOptions(), tmp_path) == []


def test_interface_active_password_from_env(ftpd, tmp_path):
    opts = BackendOptions(ftp_passive=False, env={"FTP_PASSWORD": PASSWORD})
    assert check_interface(ftpd.url("iface/active"), opts, tmp_path) == []


def test_interface_old_server(quirky, tmp_path):
    """NLST instead of MLSD (450 on an empty dir), delete-then-rename, an absolute path."""
    # the server's root is the login dir, so //abs is the same place as /abs here
    opts = BackendOptions(env={"FTP_PASSWORD": PASSWORD})
    assert check_interface(quirky.url("/abs/dir"), opts, tmp_path) == []
    assert os.path.isdir(os.path.join(quirky.root, "abs", "dir"))


def test_interface_ftps(ftpsd, tmp_path):
    opts = BackendOptions(ssl_cacert_file=ftpsd.cert, env={"FTP_PASSWORD": PASSWORD})
    assert check_interface(ftpsd.url("iface"), opts, tmp_path) == []


def test_cycle_ftp_password_from_env(ftpd, tmp_path):
    check_cycle(ftpd.url("cycle/nested"), ["--no-encryption"], tmp_path, env={"FTP_PASSWORD": PASSWORD})
    names = os.listdir(os.path.join(ftpd.root, "cycle", "nested"))
    assert any(n.startswith("duplicity-full.") and n.endswith(".difftar.gz") for n in names)


def test_cycle_ftps_encrypted(ftpsd, tmp_path):
    check_cycle(ftpsd.url("cycle"), ["--ssl-cacert-file", ftpsd.cert], tmp_path,
                env={"FTP_PASSWORD": PASSWORD})
    assert any(n.endswith(".difftar.gpg") for n in os.listdir(os.path.join(ftpsd.root, "cycle")))


def test_ftps_untrusted_certificate(ftpsd, tmp_path):
    check_untrusted_certificate(ftpsd.url("untrusted"), os.path.join(ftpsd.root, "untrusted"), tmp_path,
                                {"FTP_PASSWORD": PASSWORD})


def test_wrong_password_fails_without_showing_it(ftpd, tmp_path):
    src = tmp_path / "src"
    write(str(src / "a"), b"a" * 100)
    common = ["--no-encryption", "--archive-dir", tmp_path / "c", "-v", "debug"]
    wrong = "wrong-" + PASSWORD
    r = cairn("full", *common, src, ftpd.url("wrong"), env={"FTP_PASSWORD": wrong}, check=False)
    assert r.returncode == 52, r.stderr
    assert b"login" in r.stderr and b"refused" in r.stderr
    assert wrong.encode() not in r.stdout + r.stderr
    url = f"ftp://{USER}:{wrong}@127.0.0.1:{ftpd.port}/wrong"
    r = cairn("full", *common, src, url, check=False)
    assert r.returncode == 52, r.stderr
    assert wrong.encode() not in r.stdout + r.stderr
    # the right one in the URL works (and is not shown either)
    r = cairn("full", *common, src, ftpd.url("wrong", password=True))
    assert PASSWORD.encode() not in r.stdout + r.stderr


def test_unreachable_fails_clearly(tmp_path):
    src = tmp_path / "src"
    write(str(src / "a"), b"a")
    url = f"ftp://{USER}@127.0.0.1:{free_port()}/x"
    r = cairn("full", "--no-encryption", "--num-retries", "1", "--archive-dir", tmp_path / "c", src, url,
              check=False)
    assert r.returncode == 50, r.stderr
    assert b"cannot connect to 127.0.0.1" in r.stderr and b"after 2 attempts" in r.stderr
