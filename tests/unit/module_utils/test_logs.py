# SPDX-License-Identifier: GPL-3.0-or-later
"""Importing an engine module changes no logger (issue 10, item 8): the front ends set the
libraries' levels, with logs.quiet_libraries."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

CHECK = """
import logging
names = ["gnupg", "paramiko", "boto3", "botocore", "s3transfer", "azure", "azure.storage", "urllib3"]
before = {n: logging.getLogger(n).level for n in names}
import cairn.api, cairn.cli, cairn.crypto, cairn.job
from cairn.backends import azure, ftp, s3, sftp, webdav
assert {n: logging.getLogger(n).level for n in names} == before, "an import set a level"
from cairn.logs import LIBRARY_LEVELS, quiet_libraries
quiet_libraries()
assert all(logging.getLogger(n).level == level for n, level in LIBRARY_LEVELS.items())
print("ok")
"""


def test_imports_leave_loggers_alone_and_front_ends_quiet_them():
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "plugins", "module_utils"))
    r = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
