# SPDX-License-Identifier: GPL-3.0-or-later
"""How TreeWriter puts a regular file in place: written without a name (O_TMPFILE) and linked
under its name once data and metadata are complete, so that a restore killed in the middle of a
file leaves neither a truncated file under the real name nor a temp file; where the filesystem
cannot do that, through a temp name and a rename, as before."""
import errno
import os
import subprocess
import sys
import textwrap

import pytest

from cairn import restore
from cairn.archive import DIR, REG, PathInfo

MODULE_UTILS = os.path.dirname(os.path.dirname(restore.__file__))


class _Entry:
    def __init__(self, index, kind, data=b""):
        self.kind = "snapshot"
        self.info = PathInfo(index, kind, 0o640, os.getuid(), os.getgid(), "", "", 1_700_000_000, len(data))
        self._data = data

    def chunks(self):
        return iter([self._data[i:i + 65536] for i in range(0, len(self._data), 65536)])


def _restore(dest, files):
    w = restore.TreeWriter(str(dest), restore_owner=False)
    w.write((), [_Entry((), DIR)])
    for name, data in files:
        w.write((name,), [_Entry((name,), REG, data)])
    w.close()
    return w


def test_files_are_restored_whole_with_their_metadata(tmp_path):
    w = _restore(tmp_path / "t", [(b"a", b"x" * 200_000), (b"b", b"")])
    assert w.unnamed, "this kernel and filesystem have O_TMPFILE and /proc"
    assert (tmp_path / "t" / "a").read_bytes() == b"x" * 200_000
    st = os.stat(tmp_path / "t" / "a")
    assert (st.st_mode & 0o7777, int(st.st_mtime), st.st_nlink) == (0o640, 1_700_000_000, 1)
    assert sorted(os.listdir(tmp_path / "t")) == ["a", "b"]


def test_a_restore_killed_inside_a_file_leaves_nothing_of_it(tmp_path):
    code = textwrap.dedent(f"""
        import os, signal
        from cairn import restore
        from cairn.archive import DIR, REG, PathInfo

        class Entry:
            kind = "snapshot"
            def __init__(self, index, kind, size=0):
                self.info = PathInfo(index, kind, 0o640, 0, 0, "", "", 1_700_000_000, size)
            def chunks(self):
                yield b"half of the file" * 4096
                os.kill(os.getpid(), signal.SIGKILL)
                yield b"the other half"

        w = restore.TreeWriter({str(tmp_path / "t")!r}, restore_owner=False)
        w.write((), [Entry((), DIR)])
        w.write((b"done",), [type("E", (), dict(kind="snapshot", info=PathInfo((b"done",), REG, 0o600, 0, 0,
                "", "", 1, 2), chunks=lambda self: iter([b"ok"])))()])
        w.write((b"big",), [Entry((b"big",), REG, 10 ** 6)])
    """)
    r = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=MODULE_UTILS), check=False)
    assert r.returncode == -9
    assert os.listdir(tmp_path / "t") == ["done"], "a temp file, or part of big under its name, was left"


def test_without_o_tmpfile_files_go_through_a_temp_name(tmp_path, monkeypatch):
    real_open = os.open

    def no_tmpfile(path, flags, *a, **kw):
        if flags & getattr(os, "O_TMPFILE", 0) == os.O_TMPFILE:
            raise OSError(errno.EOPNOTSUPP, "not supported")
        return real_open(path, flags, *a, **kw)
    monkeypatch.setattr(os, "open", no_tmpfile)
    renames = []
    real_rename = os.rename
    monkeypatch.setattr(os, "rename", lambda *a, **kw: renames.append(a[1]) or real_rename(*a, **kw))
    w = _restore(tmp_path / "t", [(b"a", b"data"), (b"b", b"more")])
    assert w.unnamed is False and renames == [b"a", b"b"]
    assert (tmp_path / "t" / "a").read_bytes() == b"data" and sorted(os.listdir(tmp_path / "t")) == ["a", "b"]


@pytest.mark.parametrize("there", ["file", "symlink", "directory"])
def test_a_file_replaces_what_was_at_its_name(tmp_path, there):
    dest = tmp_path / "t"
    dest.mkdir()
    outside = tmp_path / "outside"
    outside.write_bytes(b"not to be touched")
    if there == "file":
        (dest / "a").write_bytes(b"old")
    elif there == "directory":
        (dest / "a" / "below").mkdir(parents=True)
        (dest / "a" / "below" / "f").write_bytes(b"old")
    else:
        os.symlink(outside, dest / "a")
    _restore(dest, [(b"a", b"new")])
    assert not os.path.islink(dest / "a") and (dest / "a").read_bytes() == b"new"
    assert outside.read_bytes() == b"not to be touched"
