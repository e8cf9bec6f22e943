# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared fixtures: real gpg with a throwaway GNUPGHOME, the duplicity oracle."""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "plugins", "module_utils"))

TEST_PASSPHRASE = "correct horse battery staple"


def _gpg(home, *args, input=None):
    return subprocess.run(["gpg", "--homedir", home, "--batch", "--no-tty", *args],
                          input=input, capture_output=True, check=True)


@pytest.fixture(scope="session")
def gpg_keys(tmp_path_factory):
    """A GNUPGHOME with two passphrase-less RSA keys: an encryption key and a signing key.

    Returns a dict with ``home``, ``enc`` (fingerprint) and ``sign`` (fingerprint). Tests that need
    a private copy use ``gnupghome`` below.
    """
    home = str(tmp_path_factory.mktemp("gnupg"))
    os.chmod(home, 0o700)
    out = {}
    for role in ("enc", "sign"):
        params = textwrap.dedent(f"""\
            %no-protection
            Key-Type: RSA
            Key-Length: 2048
            Key-Usage: sign,encrypt
            Name-Real: cairn test {role}
            Name-Email: {role}@cairn.invalid
            Expire-Date: 0
            %commit
            """)
        _gpg(home, "--gen-key", input=params.encode())
        listing = _gpg(home, "--with-colons", "--list-secret-keys", f"{role}@cairn.invalid").stdout.decode()
        out[role] = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")][0]
    out["home"] = home
    yield out
    subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True, check=False)


@pytest.fixture
def gnupghome(gpg_keys, tmp_path):
    """A private copy of the session keyring, also exported as GNUPGHOME for child processes."""
    home = str(tmp_path / "gnupg")
    shutil.copytree(gpg_keys["home"], home, ignore=shutil.ignore_patterns("S.*"))
    os.chmod(home, 0o700)
    old = os.environ.get("GNUPGHOME")
    os.environ["GNUPGHOME"] = home
    yield dict(gpg_keys, home=home)
    subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True, check=False)
    if old is None:
        os.environ.pop("GNUPGHOME", None)
    else:
        os.environ["GNUPGHOME"] = old


@pytest.fixture(scope="session")
def duplicity_bin():
    """Path of stock duplicity 3.2.1 (`make duplicity` builds it); skipped where absent unless CI."""
    path = os.environ.get("CAIRN_DUPLICITY") or os.path.join(ROOT, ".venv-duplicity", "bin", "duplicity")
    if not os.path.exists(path):
        if os.environ.get("CI"):
            pytest.fail(f"duplicity oracle missing at {path}: run `make duplicity`")
        pytest.skip("duplicity oracle not built (make duplicity)")
    return path
