# SPDX-License-Identifier: GPL-3.0-or-later
"""duplicity 3.2.1's command aliases, run for real on a file:// target."""
import json
import time

from treeutil import cairn, snapshot, write


def test_backup_incr_status_list_restore_verify_by_their_aliases(tmp_path):
    src, url = tmp_path / "src", f"file://{tmp_path / 'target'}"
    write(src / "a.txt", b"alpha\n")
    write(src / "sub" / "b.bin", b"\x00\x01" * 5000)
    cairn("fb", src, url)
    write(src / "c.txt", b"one\n")
    cairn("incr", src, url)
    # a later mtime: like duplicity, an incremental sees a change by mtime (whole seconds)
    write(src / "c.txt", b"two\n", mtime=time.time() + 60)
    cairn("inc", src, url)
    write(src / "d.txt", b"three\n")
    cairn("ib", src, url)
    write(src / "e.txt", b"four\n")
    cairn("bu", src, url)

    status = json.loads(cairn("st", "--json", url).stdout)
    assert status["command"] == "collection-status"
    sets = [s["type"] for s in status["primary_chain"]["sets"]]
    assert sets == ["full", "incremental", "incremental", "incremental", "incremental"], sets

    listing = cairn("ls", url).stdout.decode()
    assert "sub/b.bin" in listing and "e.txt" in listing

    restored = tmp_path / "restored"
    cairn("rb", url, restored)
    assert snapshot(restored) == snapshot(src)
    assert b"0 difference(s) found" in cairn("vb", url, src).stdout

    one = tmp_path / "one"
    cairn("rb", "-r", "c.txt", url, one)
    assert one.read_bytes() == b"two\n"


def test_removal_aliases_list_then_delete(tmp_path):
    src, url = tmp_path / "src", f"file://{tmp_path / 'target'}"
    write(src / "a.txt", b"alpha\n")
    cairn("full", src, url)
    write(src / "a.txt", b"beta\n", mtime=time.time() + 60)    # a change within the second is not one
    cairn("incr", src, url)
    cairn("fb", src, url)
    cairn("incr", src, url)

    assert json.loads(cairn("ri", "--json", "1", url).stdout)["command"] == "remove-all-inc-of-but-n-full"
    r = json.loads(cairn("ri", "--json", "--force", "1", url).stdout)
    assert r["deleted"] and all(s["type"] in ("inc", "incremental") for s in r["sets"])
    r = json.loads(cairn("ra", "--json", "--force", "1", url).stdout)
    assert r["command"] == "remove-all-but-n-full" and r["deleted"]
    r = json.loads(cairn("ro", "--json", "--force", "1D", url).stdout)
    assert r["command"] == "remove-older-than"
    assert json.loads(cairn("cl", "--json", "--force", url).stdout)["command"] == "cleanup"
    restored = tmp_path / "restored"
    cairn("rb", url, restored)
    assert snapshot(restored) == snapshot(src)
