# SPDX-License-Identifier: GPL-3.0-or-later
"""Every option of duplicity 3.2.1's own table, run through `cairn` with a sensible value.

None may be a usage error (cli_compat.DUPLICITY_OPTIONS refuses none; one it refused would need its
reason); options of no effect print their one notice line. The table is read from the installed duplicity.
"""
import json
import os
import subprocess

import pytest

from treeutil import ROOT, cairn, write

_NAMES = r"""
import argparse, json
from duplicity import cli_data as c
from duplicity.cli_util import var2opt
out = {}
for var, kwargs in c.OptionKwargs.items():
    kw = {k: v for k, v in kwargs.items() if k != "default"}
    a = argparse.ArgumentParser(add_help=False).add_argument(var2opt(var), **kw)
    out[var2opt(var)] = 1 if a.nargs is None else a.nargs
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def duplicity_options():
    dup = os.environ.get("CAIRN_DUPLICITY") or os.path.join(ROOT, ".venv-duplicity", "bin", "duplicity")
    python = os.path.join(os.path.dirname(dup), "python")
    if not os.path.exists(python):
        pytest.skip(f"duplicity's interpreter is missing ({python}): make duplicity")
    return json.loads(subprocess.run([python, "-c", _NAMES], capture_output=True, text=True, check=True).stdout)


def _values(tmp_path):
    files = tmp_path / "inputs"
    write(files / "list.txt", b"a.txt\n")
    write(files / "ca.pem", b"")
    (files / "dir").mkdir()
    d, f = str(files / "dir"), str(files / "list.txt")
    return {
        "--archive-dir": d, "--tempdir": d, "--config-dir": d, "--idr-fakeroot": d,
        "--log-file": str(files / "log.txt"), "--files-from": f, "--include-filelist": f, "--exclude-filelist": f,
        "--file-changed": "a.txt", "--path-to-restore": "a.txt", "--gpg-binary": "gpg",
        "--ssl-cacert-file": str(files / "ca.pem"), "--ssl-cacert-path": d, "--encrypt-secret-keyring": f,
        "--verbosity": "4", "--log-fd": "2", "--restore-time": "now", "--exclude-older-than": "1D",
        "--full-if-older-than": "1D", "--encrypt-key": "DEADBEEF", "--hidden-encrypt-key": "DEADBEEF",
        "--sign-key": "DEADBEEF", "--encrypt-sign-key": "DEADBEEF", "--name": "job", "--file-prefix": "",
        "--gpg-options": "--trust-model always", "--ssh-options": "-oPort=22",
        "--s3-endpoint-url": "http://127.0.0.1:9",
        "--exclude-if-present": ".nobackup", "--exclude": "**/*.tmp", "--include": "**", "--exclude-regexp": "x$",
        "--include-regexp": ".", "--azure-blob-tier": "Cool", "--metadata-sync-mode": "partial",
        "--webdav-headers": "Cookie,a=b", "--s3-region-name": "us-east-1", "--time-separator": "_",
        "--rename": ["a.txt", "b.txt"], "--max-blocksize": "2048", "--volsize": "25", "--timeout": "30",
        "--cf-backend": "pyrax", "--imap-mailbox": "INBOX", "--scp-command": "scp", "--sftp-command": "sftp",
        "--rsync-options": "-v", "--par2-options": "-q", "--swift-storage-policy": "gold",
        "--s3-kms-key-id": "k", "--s3-kms-grant": "g", "--show-changes-in-set": "0",
    }


def test_each_duplicity_option_runs_through_cairn(tmp_path, duplicity_options):
    from cairn import cli_compat
    src, url = tmp_path / "src", f"file://{tmp_path / 'target'}"
    write(src / "a.txt", b"alpha\n")
    cairn("full", "--no-encryption", src, url)
    values = _values(tmp_path)
    failures, refused = {}, []
    for option, nargs in sorted(duplicity_options.items()):
        value = values.get(option, "1")
        given = [] if nargs == 0 else (value if isinstance(value, list) else [value] * nargs)
        r = cairn("collection-status", option, *given, url, check=False)
        err = r.stderr.decode(errors="replace")
        kind = cli_compat.DUPLICITY_OPTIONS[option][0]
        if kind == cli_compat.REFUSED:
            if r.returncode != 23 or f"{option} is not supported by cairn" not in err:
                failures[option] = f"expected a refusal, got {r.returncode}: {err[-300:]}"
            refused.append(option)
        elif option == "--version":
            if r.returncode != 0 or not r.stdout.startswith(b"cairn "):
                failures[option] = r.stdout
        elif r.returncode != 0:
            failures[option] = f"exit {r.returncode}: {err[-300:]}"
        elif kind == cli_compat.NOTICE and err.count(f"cairn: notice: {option} has no effect in cairn: ") != 1:
            failures[option] = f"no single notice line: {err[-300:]}"
    assert not failures, "\n".join(f"{k}: {v}" for k, v in failures.items())
    assert refused == [], refused       # issue 12: none of duplicity's options is a usage error


def test_notices_and_warnings_follow_the_verbosity(tmp_path):
    src, url = tmp_path / "src", f"file://{tmp_path / 'target'}"
    write(src / "a.txt", b"alpha\n")
    cairn("full", src, url)
    args = ("collection-status", "--use-agent", "--s3-use-new-style", url)
    shown = cairn(*args).stderr.decode()
    assert "cairn: notice: --use-agent has no effect in cairn" in shown
    assert "cairn: warning: --s3-use-new-style was removed in duplicity 2.0" in shown
    warnings_only = cairn("-v2", *args).stderr.decode()
    assert "--use-agent" not in warnings_only and "--s3-use-new-style was removed" in warnings_only
    assert cairn("-v0", *args).stderr.decode() == ""
