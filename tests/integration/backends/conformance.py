# SPDX-License-Identifier: GPL-3.0-or-later
"""What every remote backend must do, against a real server.

``check_interface`` drives the Backend interface directly (atomic put, overwrite, list, get,
delete, a missing file). ``check_cycle`` runs the CLI as a user would: full, incremental,
restore at two points, verify --compare-data, collection-status, a second chain, prune, cleanup.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "engine"))

from treeutil import cairn, diff_snapshots, make_hard_tree, snapshot, write  # noqa: E402

from cairn.backends import BackendOptions, open_raw  # noqa: E402
from cairn.backends.base import TEMP_PREFIX  # noqa: E402
from cairn.errors import BackendError, BackendNotFound  # noqa: E402


def check_interface(url, options, tmp_path):
    """The Backend contract on a real server; returns the backend's listing at the end."""
    options = options or BackendOptions()
    be = open_raw(url, options)
    try:
        src = tmp_path / "payload"
        data = os.urandom(3 * (1 << 20) + 17)
        src.write_bytes(data)
        name = "duplicity-full.20260101T000000Z.vol1.difftar.gpg"
        be.put(str(src), name)
        assert name in be.list()
        assert not [n for n in be.list() if n.startswith(TEMP_PREFIX)], "a temp name was left behind"
        out = tmp_path / "fetched"
        be.get(name, str(out))
        assert out.read_bytes() == data
        # overwrite replaces the whole file
        src.write_bytes(b"short")
        be.put(str(src), name)
        be.get(name, str(out))
        assert out.read_bytes() == b"short"
        # an empty file
        empty = tmp_path / "empty"
        empty.write_bytes(b"")
        be.put(str(empty), "empty-file")
        be.get("empty-file", str(out))
        assert out.read_bytes() == b""
        try:
            be.get("no-such-file", str(tmp_path / "nothing"))
        except BackendNotFound:
            pass
        else:
            raise AssertionError("get of a missing file must raise BackendNotFound")
        # rename: to a new name, over an existing one, again after it was done (a lost answer),
        # and of a missing file
        be.rename(name, "renamed-file")
        listed = be.list()
        assert "renamed-file" in listed and name not in listed
        be.get("renamed-file", str(out))
        assert out.read_bytes() == b"short"
        be.rename("renamed-file", "empty-file")
        be.get("empty-file", str(out))
        assert out.read_bytes() == b"short" and "renamed-file" not in be.list()
        be.rename("renamed-file", "empty-file")
        try:
            be.rename("no-such-file", "another-name")
        except BackendNotFound:
            pass
        else:
            raise AssertionError("rename of a missing file must raise BackendNotFound")
        be.put(str(src), name)
        be.delete([name, "empty-file", "never-existed"])
        assert name not in be.list() and "empty-file" not in be.list()
        for bad in ("../escape", "a/b", ""):
            try:
                be.put(str(src), bad)
            except BackendError:
                pass
            else:
                raise AssertionError(f"put accepted the remote name {bad!r}")
        return be.list()
    finally:
        be.close()


def check_cycle(url, args, tmp_path, env=None):
    """Full, incremental, restore at both points, verify, status, prune, cleanup via the CLI."""
    env = dict(env or {})
    src = tmp_path / "src"
    make_hard_tree(str(src))
    common = ["--archive-dir", tmp_path / "cache", "--volsize", "1", *args]
    full = json.loads(cairn("full", "--json", *common, src, url, env=env).stdout)
    assert full["type"] == "full" and full["volumes"] >= 3
    t1 = full["timestamp"]
    before = snapshot(str(src))
    write(str(src / "plain.txt"), b"changed\n", mtime=1_700_000_000)
    write(str(src / "added.bin"), os.urandom(200_000))
    os.unlink(src / "name with spaces.txt")
    inc = json.loads(cairn("incremental", "--json", *common, src, url, env=env).stdout)
    assert inc["type"] == "incremental" and inc["changed_files"] >= 1 and inc["deleted_files"] == 1
    after = snapshot(str(src))
    # a fresh archive dir: everything comes from the target
    fresh = ["--archive-dir", tmp_path / "cache2", *args]
    for when, expect, name in ((t1, before, "r1"), (inc["timestamp"], after, "r2")):
        dest = tmp_path / name
        cairn("restore", "--time", str(when), *fresh, url, dest, env=env)
        assert diff_snapshots(expect, snapshot(str(dest))) == []
    one = tmp_path / "one"
    cairn("restore", "--path-to-restore", "sub/big.bin", "--time", str(t1), *fresh, url, one, env=env)
    assert one.read_bytes() == (src / "sub" / "big.bin").read_bytes()
    ver = json.loads(cairn("verify", "--compare-data", "--json", *fresh, url, src, env=env).stdout)
    assert ver["differences"] == [] and ver["volumes"] >= 3
    time.sleep(1.1)
    cairn("full", *common, src, url, env=env)
    status = json.loads(cairn("collection-status", "--json", *common, url, env=env).stdout)
    assert [len(c["sets"]) for c in status["chains"]] == [2, 1]
    cairn("remove-all-but-n-full", "1", "--force", *common, url, env=env)
    status = json.loads(cairn("collection-status", "--json", *common, url, env=env).stdout)
    assert [len(c["sets"]) for c in status["chains"]] == [1]
    cairn("cleanup", "--force", *common, url, env=env)
    dest = tmp_path / "r3"
    cairn("restore", *fresh, url, dest, env=env)
    assert diff_snapshots(after, snapshot(str(dest))) == []
    return status


def check_untrusted_certificate(url, written_dir, tmp_path, env):
    """A TLS server whose certificate is not trusted: exit 52 at once (no retries), nothing
    written; with --ssl-no-check-certificate the same backup goes through."""
    src = tmp_path / "src"
    write(str(src / "a"), b"a" * 100)
    common = ["--no-encryption", "--archive-dir", tmp_path / "c"]
    r = cairn("full", *common, src, url, env=env, check=False)
    assert r.returncode == 52, r.stderr
    assert b"certificate" in r.stderr and b"--ssl-cacert-file" in r.stderr
    assert b"retry" not in r.stderr
    assert not os.path.exists(written_dir)
    r = cairn("full", "--json", "--ssl-no-check-certificate", *common, src, url, env=env)
    assert json.loads(r.stdout)["type"] == "full"
