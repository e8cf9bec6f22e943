# SPDX-License-Identifier: GPL-3.0-or-later
"""The progress line appears on a terminal and nowhere else; --json is one document."""
import json
import os
import pty
import subprocess
import sys

from treeutil import PASSPHRASE, ROOT, cairn, write


def _tree(src, n=3000):
    for i in range(n):
        write(os.path.join(src, f"d{i % 30}", f"f{i}"), b"x" * 100)


def test_progress_only_on_a_terminal(tmp_path):
    src = str(tmp_path / "src")
    _tree(src)
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "plugins", "module_utils"), PASSPHRASE=PASSPHRASE)
    # a pseudo-terminal as stderr: the progress line is drawn with carriage returns
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "cairn.cli", "full", "--no-encryption",
                             "--archive-dir", str(tmp_path / "c1"), "--no-print-statistics",
                             src, f"file://{tmp_path}/t1"], env=env, stdout=subprocess.DEVNULL,
                            stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    seen = b""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        seen += data
    assert proc.wait() == 0
    os.close(master)
    assert b"\r" in seen and b"files" in seen
    # a pipe: silent apart from the log line
    r = cairn("full", "--no-encryption", "--archive-dir", tmp_path / "c2", "--no-print-statistics",
              src, f"file://{tmp_path}/t2")
    assert b"\r" not in r.stderr


def test_json_documents(tmp_path):
    src = str(tmp_path / "src")
    _tree(src, 10)
    url = f"file://{tmp_path}/t"
    common = ["--no-encryption", "--archive-dir", tmp_path / "c"]
    b = json.loads(cairn("full", "--json", *common, src, url).stdout)
    assert b["type"] == "full" and b["exit_code"] == 0 and b["new_files"] == 10 + 10 + 1
    assert b["volumes"] == 1 and b["bytes_stored"] > 0 and b["time"].endswith("Z")
    st = json.loads(cairn("collection-status", "--json", *common, url).stdout)
    assert len(st["chains"]) == 1 and st["last_full"] == b["time"] and st["last_full_age"] >= 0
    ls = json.loads(cairn("list-current-files", "--json", *common, url).stdout)
    assert len(ls["files"]) == 21 and ls["files"][0]["path"] == "."
    r = json.loads(cairn("restore", "--json", *common, url, tmp_path / "out").stdout)
    assert r["files"] == 21
