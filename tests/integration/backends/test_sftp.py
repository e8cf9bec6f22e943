# SPDX-License-Identifier: GPL-3.0-or-later
"""sftp:// against a real OpenSSH sshd on loopback."""
import json
import os
import shutil
import threading

import paramiko
import pytest

from conformance import check_cycle, check_interface
from servers import Sshd, ensure_password_user
from treeutil import cairn, write

from cairn.backends import BackendOptions, open_raw


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = Sshd(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


def test_interface(sshd, tmp_path):
    opts = BackendOptions(ssh_options=sshd.ssh_options)
    assert check_interface(sshd.url(tmp_path / "remote"), opts, tmp_path) == []


def test_close_waits_for_the_connections_thread(sshd, tmp_path):
    # paramiko's Transport.close() returns before its thread ends; a thread still decrypting a
    # packet while the process exits races OpenSSL's exit handler (a "double free or
    # corruption" abort, seen at the end of a `cairn job ... info` over sftp). close() waits.
    for _round in range(5):
        be = open_raw(sshd.url(tmp_path / "remote"), BackendOptions(ssh_options=sshd.ssh_options))
        be.list()
        threads = [t for t in threading.enumerate() if isinstance(t, paramiko.Transport)]
        assert threads, "the listing went through a paramiko connection"
        be.close()
        assert not [t for t in threads if t.is_alive()], "a connection's thread outlived close()"


def test_cycle_encrypted(sshd, tmp_path):
    check_cycle(sshd.url(tmp_path / "remote" / "nested"), ["--ssh-options", sshd.ssh_options], tmp_path)


def test_unknown_host_key_refused_then_accepted(sshd, tmp_path):
    src = tmp_path / "src"
    write(str(src / "a"), b"a")
    known = tmp_path / "known_hosts"
    opts = f"-oIdentityFile={sshd.client_key} -oUserKnownHostsFile={known}"
    common = ["--no-encryption", "--archive-dir", tmp_path / "c", "--ssh-options", opts]
    url = sshd.url(tmp_path / "remote")
    r = cairn("full", *common, src, url, check=False)
    assert r.returncode == 52, r.stderr
    assert b"is not in" in r.stderr and b"--ssh-accept-new-host-key" in r.stderr
    assert not (tmp_path / "remote").exists()
    cairn("full", "--ssh-accept-new-host-key", *common, src, url)
    assert f"[127.0.0.1]:{sshd.port}" in known.read_text()
    # a changed key is refused even when accepting new ones
    with open(known, "w") as f:
        f.write(f"[127.0.0.1]:{sshd.port} ssh-ed25519 "
                "AAAAC3NzaC1lZDI1NTE5AAAAIBpw4X9zQkJmXdm0pQ6fUu8v1Jc5lZSmJgYV8gq9Xk3V\n")
    r = cairn("incremental", "--ssh-accept-new-host-key", *common, src, url, check=False)
    assert r.returncode == 52 and b"does NOT match" in r.stderr


def test_password_from_env_never_shown(sshd, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("password login needs a local user with a password (root creates one)")
    secret = "pw-Sftp-7781-secret"
    user = ensure_password_user("cairnsftp", secret)
    remote = os.path.join(user.pw_dir, "backups")
    shutil.rmtree(remote, ignore_errors=True)
    src = tmp_path / "src"
    write(str(src / "a"), b"a" * 1000)
    # no key: -oIdentityFile of a key not authorized, so only the password can work
    opts = f"-oUserKnownHostsFile={sshd.known_hosts}"
    common = ["--no-encryption", "--archive-dir", tmp_path / "c", "--ssh-options", opts, "-v", "debug"]
    url = f"sftp://cairnsftp@127.0.0.1:{sshd.port}/backups"        # relative to the home dir
    r = cairn("full", "--json", *common, src, url, env={"FTP_PASSWORD": secret, "SSH_AUTH_SOCK": ""})
    assert json.loads(r.stdout)["type"] == "full"
    assert any(n.startswith("duplicity-full.") for n in os.listdir(remote))
    assert secret.encode() not in r.stdout + r.stderr
    bad = cairn("incremental", *common, src, url, check=False,
                env={"FTP_PASSWORD": "wrong-" + secret, "SSH_AUTH_SOCK": ""})
    assert bad.returncode == 52, bad.stderr
    assert secret.encode() not in bad.stdout + bad.stderr
    # a password in the URL is redacted from every message
    bad = cairn("incremental", *common, src, f"sftp://cairnsftp:{secret}x@127.0.0.1:{sshd.port}/backups",
                check=False, env={"SSH_AUTH_SOCK": ""})
    assert bad.returncode == 52 and (secret + "x").encode() not in bad.stdout + bad.stderr


def test_unreachable_fails_clearly(tmp_path):
    from servers import free_port
    src = tmp_path / "src"
    write(str(src / "a"), b"a")
    url = f"sftp://root@127.0.0.1:{free_port()}//tmp/x"
    r = cairn("full", "--no-encryption", "--num-retries", "1", "--archive-dir", tmp_path / "c", src, url,
              check=False)
    assert r.returncode == 50, r.stderr
    assert b"cannot connect to 127.0.0.1" in r.stderr and b"after 2 attempts" in r.stderr
