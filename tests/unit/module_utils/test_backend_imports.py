# SPDX-License-Identifier: GPL-3.0-or-later
"""A host without a backend's Python library can still use every other target, and opening a
target that needs the missing library says which package to install."""
import os
import subprocess
import sys

import pytest

ENGINE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "plugins", "module_utils")

SCRIPT = r'''
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("paramiko", "boto3", "botocore", "azure", "requests", "urllib3"):
            raise ImportError(f"No module named {name!r}")
sys.meta_path.insert(0, Block())
sys.path.insert(0, sys.argv[1])
from cairn.backends import BackendOptions, open_raw
from cairn.backends import azure, s3, sftp, webdav  # importable without their libraries
from cairn.errors import UserError
open_raw("file:///tmp/x", BackendOptions()).close()
for url in ("sftp://h/x", "s3://bucket/x", "webdav://h/x", "azure://cont/x"):
    try:
        open_raw(url, BackendOptions(env={"AZURE_ACCOUNT_NAME": "a", "AZURE_ACCOUNT_KEY": "k"}))
    except UserError as e:
        print(e)
'''


def test_missing_backend_libraries_are_reported_per_target():
    r = subprocess.run([sys.executable, "-c", SCRIPT, os.path.abspath(ENGINE)], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 4
    for scheme, lib, deb in (("sftp://", "paramiko", "python3-paramiko"), ("s3://", "boto3", "python3-boto3"),
                             ("webdav://", "requests", "python3-requests"),
                             ("azure://", "azure-storage-blob", "python3-azure-storage-blob")):
        line = [x for x in lines if x.startswith(scheme)][0]
        assert f"pip install {lib}" in line and deb in line


GNUPG_SCRIPT = r'''
import importlib.abc, io, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "gnupg":
            raise ImportError(f"No module named {name!r}")
if sys.argv[3] == "block":
    sys.meta_path.insert(0, Block())
sys.path.insert(0, sys.argv[1])
import cairn.cli, cairn.api, cairn.restore  # the whole engine imports without python-gnupg
from cairn.crypto import Crypto, CryptoOptions
from cairn.errors import CairnError
out = sys.argv[2]
c = Crypto(CryptoOptions(mode="symmetric", passphrase="not a secret"))
c.encrypt_file(io.BytesIO(b"volume data" * 1000), out)      # the built-in OpenPGP path: no gpg
print("symmetric ok", "gnupg" in sys.modules)
try:
    Crypto(CryptoOptions(mode="pubkey", recipients=("ABCD",))).encrypt_file(io.BytesIO(b"x"), out + "2")
except CairnError as e:
    print(e)
print("gpg needed", "gnupg" in sys.modules)
'''


@pytest.mark.parametrize("installed", [True, False])
def test_python_gnupg_is_imported_only_when_gpg_runs(tmp_path, installed):
    """Symmetric volumes never run gpg, so python-gnupg (13 ms of every start, with email.utils)
    is imported only when gpg is needed; a host without it gets a clear error then."""
    r = subprocess.run([sys.executable, "-c", GNUPG_SCRIPT, os.path.abspath(ENGINE), str(tmp_path / "v.gpg"),
                        "use" if installed else "block"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "symmetric ok False"
    assert lines[-1] == f"gpg needed {installed}"
    if not installed:
        assert "python-gnupg is not installed (pip install python-gnupg)" in lines[1]
