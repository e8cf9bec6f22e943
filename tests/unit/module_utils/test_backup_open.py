# SPDX-License-Identifier: GPL-3.0-or-later
"""A file swapped for a FIFO (or anything else) between the scan and the read must not hang
the backup or be stored as a regular file (issue 9, finding 10)."""
import os
import threading

import pytest

from cairn.backup import _open_for_backup


def _open_within(path, seconds=5):
    result = {}

    def run():
        try:
            result["fd"] = _open_for_backup(path)
        except OSError as e:
            result["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"opening {path} blocked"
    return result


@pytest.mark.parametrize("kind", ["fifo", "dir", "symlink"])
def test_what_is_no_longer_a_regular_file_is_refused_at_once(tmp_path, kind):
    path = tmp_path / "was-a-file"
    if kind == "fifo":
        os.mkfifo(path)          # nobody will ever open its write end
    elif kind == "dir":
        path.mkdir()
    else:
        (tmp_path / "real").write_bytes(b"x")
        os.symlink(tmp_path / "real", path)
    result = _open_within(str(path))
    assert "error" in result and "fd" not in result


def test_a_regular_file_opens_blocking(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"data")
    fd = _open_within(str(path))["fd"]
    try:
        assert os.get_blocking(fd) and os.read(fd, 10) == b"data"
    finally:
        os.close(fd)
