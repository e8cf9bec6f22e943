# SPDX-License-Identifier: GPL-3.0-or-later
"""The target lock (lock.py) over an in-memory backend: contention, staleness, takeover, refresh."""
import json
import logging
import os
import subprocess
import sys
import threading
import time

import pytest

from cairn import naming
from cairn.backends.base import Backend
from cairn.collection import Collection
from cairn.errors import BackendError, BackendNotFound, ExitCode, LockHeld
from cairn.lock import (Identity, LockLost, TargetLock, is_lock_name, process_command,
                        stale_lock_names)
from cairn.processes import proc_stat

HERE = Identity()                   # this process, as a lock object describes it
OTHER_HOST = Identity(host="db7.example.org", pid=4242, boot_id="0" * 32, pid_ns="pid:[1]")


class MemoryBackend(Backend):
    """Files in a dict; ``on_get`` / ``on_list`` hooks let a test act between two calls."""

    def __init__(self):
        self.url = "mem://"
        self.files = {}
        self.mutex = threading.Lock()
        self.on_get = None
        self.on_list = None
        self.history = []           # the names after every put and delete

    def list(self):
        if self.on_list:
            self.on_list()
        with self.mutex:
            return list(self.files)

    def get(self, name, local_path):
        if self.on_get:
            self.on_get(name)
        with self.mutex:
            if name not in self.files:
                raise BackendNotFound(f"{name} is missing")
            data = self.files[name]
        with open(local_path, "wb") as f:
            f.write(data)

    def put(self, local_path, name):
        with open(local_path, "rb") as f:
            data = f.read()
        with self.mutex:
            self.files[name] = data
            self.history.append(set(self.files))

    def delete(self, names):
        with self.mutex:
            for n in names:
                self.files.pop(n, None)
            self.history.append(set(self.files))

    def locks(self, prefix=""):
        return sorted(n for n in self.list() if is_lock_name(n, prefix))

    def content(self, name):
        return json.loads(self.files[name])


def plant(backend, identity, *, refreshed, prefix="", run_id="feed" * 8, name=None, proc_start=None):
    """A lock object as another writer would have left it."""
    name = name or f"{prefix}cairn-lock.{run_id[:32]}.json"
    backend.files[name] = json.dumps({
        "run_id": run_id, "host": identity.host, "pid": identity.pid, "boot_id": identity.boot_id,
        "pid_ns": identity.pid_ns, "proc_start": proc_start, "started": refreshed - 5,
        "refreshed": refreshed, "command": "backup: cairn full /srv file:///b", "took_over": []}).encode()
    return name


def make(backend, tmp_path, **kw):
    kw.setdefault("retry_delay", (0.0, 0.01))
    return TargetLock(backend, kw.pop("prefix", ""), tmpdir=str(tmp_path), **kw)


def test_second_writer_is_refused_with_23_naming_the_holder(tmp_path):
    be = MemoryBackend()
    a = make(be, tmp_path, command="backup: cairn full /srv")
    a.acquire()
    try:
        b = make(be, tmp_path)
        with pytest.raises(LockHeld) as e:
            b.acquire()
        assert e.value.exit_code == ExitCode.USER_ERROR == 23
        msg = str(e.value)
        assert f"host {HERE.host}, pid {os.getpid()}, started " in msg and "backup: cairn full /srv" in msg
        assert be.locks() == [a.current]          # b removed its own object
        assert not b.held
    finally:
        a.release()
    assert be.locks() == []
    b = make(be, tmp_path)
    b.acquire()
    b.release()


def test_lock_object_says_who_holds_it(tmp_path):
    be = MemoryBackend()
    a = make(be, tmp_path, command="cleanup: cairn cleanup --force file:///b")
    a.acquire()
    try:
        (name,) = be.locks()
        assert name.startswith("cairn-lock.") and name.endswith(".json")
        d = be.content(name)
        assert d["host"] == HERE.host and d["pid"] == os.getpid() and d["run_id"] == a.run_id
        assert d["boot_id"] == HERE.boot_id and d["command"].startswith("cleanup:")
        assert d["started"] <= d["refreshed"] <= time.time()
    finally:
        a.release()


def test_writers_starting_together_never_both_hold(tmp_path):
    """Both put before either lists: both see the other and give way, or one wins the retry."""
    for _round in range(20):
        be = MemoryBackend()
        gate = threading.Barrier(2)
        first = {"n": 0}

        def on_list():
            with be.mutex:
                first["n"] += 1
                n = first["n"]
            if n <= 2:                 # the first listing of each: wait until both have put
                gate.wait(timeout=5)
        be.on_list = on_list
        locks = [make(be, tmp_path / str(i)) for i in range(2)]
        for i in range(2):
            (tmp_path / str(i)).mkdir(exist_ok=True)
        outcome = [None, None]

        def run(i):
            try:
                locks[i].acquire()
                outcome[i] = "held"
            except LockHeld:
                outcome[i] = "refused"
        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert outcome.count("held") <= 1, outcome
        for lk in locks:
            if lk.held:
                lk.release()
        assert be.locks() == []


def test_lock_of_another_host_refuses_until_stale_then_is_taken_over(tmp_path, caplog):
    be = MemoryBackend()
    young = plant(be, OTHER_HOST, refreshed=time.time() - 600)
    with pytest.raises(LockHeld) as e:
        make(be, tmp_path, stale_after=1800).acquire()
    assert "host db7.example.org, pid 4242" in str(e.value)
    assert be.locks() == [young]
    # older than the stale age: taken over with a warning naming it, its object deleted
    be.files.clear()
    old = plant(be, OTHER_HOST, refreshed=time.time() - 1900)
    a = make(be, tmp_path, stale_after=1800)
    with caplog.at_level(logging.WARNING, logger="cairn"):
        a.acquire()
    try:
        assert be.locks() == [a.current]
        assert "db7.example.org, pid 4242" in caplog.text and old in caplog.text
        assert be.content(a.current)["took_over"] == ["feed" * 8]
        assert not a.previous_writer_gone        # by age only: its writer may still run
    finally:
        a.release()


def test_a_shorter_stale_age_takes_over_sooner(tmp_path):
    be = MemoryBackend()
    plant(be, OTHER_HOST, refreshed=time.time() - 120)
    a = make(be, tmp_path, stale_after=60)
    a.acquire()
    a.release()
    assert be.locks() == []


def test_a_clock_ahead_of_ours_makes_a_lock_fresh_not_stale(tmp_path):
    be = MemoryBackend()
    plant(be, OTHER_HOST, refreshed=time.time() + 3600)
    with pytest.raises(LockHeld):
        make(be, tmp_path, stale_after=60).acquire()


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_lock_of_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path, caplog):
    be = MemoryBackend()
    pid = _dead_pid()
    dead = Identity(host=HERE.host, pid=pid, boot_id=HERE.boot_id, pid_ns=HERE.pid_ns)
    name = plant(be, dead, refreshed=time.time())
    a = make(be, tmp_path)
    with caplog.at_level(logging.WARNING, logger="cairn"):
        a.acquire()
    try:
        assert name not in be.files
        assert f"pid {pid}" in caplog.text and "no longer runs" in caplog.text
        assert a.previous_writer_gone
    finally:
        a.release()


def test_a_live_process_on_this_host_holds_and_a_reused_pid_does_not(tmp_path):
    be = MemoryBackend()
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = proc_stat(proc.pid)[1]
        live = Identity(host=HERE.host, pid=proc.pid, boot_id=HERE.boot_id, pid_ns=HERE.pid_ns)
        plant(be, live, refreshed=time.time(), proc_start=start)
        with pytest.raises(LockHeld):
            make(be, tmp_path).acquire()
        # same pid, but another process start time: the pid was reused, the holder is gone
        be.files.clear()
        plant(be, live, refreshed=time.time(), proc_start=start + 1)
        a = make(be, tmp_path)
        a.acquire()
        a.release()
    finally:
        proc.kill()
        proc.wait()


def test_a_lock_left_by_an_earlier_run_of_this_process_is_taken_over(tmp_path):
    """run-job backs up, then prunes, in one process: a backup whose release failed (the target
    was away) must not make the prune refuse with its own pid."""
    be = MemoryBackend()
    first = make(be, tmp_path)
    first.acquire()
    real_delete = be.delete

    def target_away(names):
        raise BackendError("connection refused")
    be.delete = target_away
    first.release()
    be.delete = real_delete
    assert be.locks() == [first.current]
    second = make(be, tmp_path)
    second.acquire()
    try:
        assert be.locks() == [second.current] and second.previous_writer_gone
    finally:
        second.release()


@pytest.mark.parametrize("change", [{"boot_id": "f" * 32}, {"pid_ns": "pid:[99]"}, {"host": "web2"}])
def test_a_pid_is_judged_only_on_this_host_boot_and_pid_namespace(tmp_path, change):
    """A dead-looking pid of another boot, container or host may be a live writer elsewhere."""
    be = MemoryBackend()
    fields = dict(host=HERE.host, pid=_dead_pid(), boot_id=HERE.boot_id, pid_ns=HERE.pid_ns)
    fields.update(change)
    plant(be, Identity(**fields), refreshed=time.time())
    with pytest.raises(LockHeld):
        make(be, tmp_path).acquire()


def test_break_lock_takes_over_a_live_lock_with_a_warning(tmp_path, caplog):
    be = MemoryBackend()
    holder = make(be, tmp_path)
    holder.acquire()
    try:
        taker = make(be, tmp_path, break_lock=True)
        with caplog.at_level(logging.WARNING, logger="cairn"):
            taker.acquire()
        assert "--break-lock" in caplog.text and f"pid {os.getpid()}" in caplog.text
        assert be.locks() == [taker.current]
        assert not taker.previous_writer_gone      # it may still run: leave its files alone
        with pytest.raises(LockLost) as e:        # the old holder must not commit
            holder.check()
        assert e.value.exit_code == 23 and "taken over" in str(e.value)
        taker.release()
    finally:
        holder.release()
    assert be.locks() == []


def test_refresh_notices_a_takeover(tmp_path):
    be = MemoryBackend()
    holder = make(be, tmp_path, refresh_interval=0.02)
    holder.acquire()
    try:
        first = holder.current
        deadline = time.time() + 5
        while holder.current == first and time.time() < deadline:
            time.sleep(0.01)
        assert holder.current != first and first not in be.files      # refreshed: a new object
        taker = make(be, tmp_path, break_lock=True)
        taker.acquire()
        deadline = time.time() + 5
        while holder.lost is None and time.time() < deadline:
            time.sleep(0.01)
        assert holder.lost and "taken over" in holder.lost
        with pytest.raises(LockLost):
            holder.raise_if_lost()                  # what each volume's upload asks
        with pytest.raises(LockLost):
            holder.check()
        taker.release()
    finally:
        holder.release()


def test_a_holder_that_refreshed_after_the_takeover_still_learns_it_lost(tmp_path):
    """The taker deleted the object it saw; the holder had just written a new one."""
    be = MemoryBackend()
    holder = make(be, tmp_path)
    holder.acquire()
    try:
        taker = make(be, tmp_path, break_lock=True)
        taker.acquire()
        holder.current = None
        holder._put_new()                       # as if the holder's refresh came right after
        with pytest.raises(LockLost) as e:
            holder.check()
        assert "taken over by host" in str(e.value)
        taker.release()
    finally:
        holder.release()
    assert be.locks() == []


def test_a_takeover_in_the_middle_of_a_refresh_is_noticed(tmp_path):
    """The taker listed before the holder's new object and deleted the old one right after it
    was put, then finished (its lock and claim are gone): the holder must still know."""
    be = MemoryBackend()
    holder = make(be, tmp_path, refresh_interval=3600)      # refreshed by hand below
    holder.acquire()
    try:
        old = holder.current
        real_put = be.put

        def put_then_the_taker_deletes(local_path, name):
            real_put(local_path, name)
            if name != old:
                be.delete([old])
        be.put = put_then_the_taker_deletes
        holder._refresh()
        assert holder.lost and old in holder.lost
        with pytest.raises(LockLost):
            holder.check()
    finally:
        holder.release()
    assert be.locks() == []


def test_a_taker_sweeps_objects_the_holder_wrote_meanwhile(tmp_path):
    be = MemoryBackend()
    holder = make(be, tmp_path, refresh_interval=3600)
    holder.acquire()
    real_delete = be.delete

    def delete_while_the_holder_refreshes(names):
        real_delete(names)
        if holder.current in names:
            be.delete = real_delete
            holder._put_new()         # its refresh put a new object just as the taker deleted
    be.delete = delete_while_the_holder_refreshes
    taker = make(be, tmp_path, break_lock=True)
    taker.acquire()
    try:
        assert be.locks() == [taker.current]        # the newer object went too
    finally:
        taker.release()
    with pytest.raises(LockLost) as e:              # known without the taker's claim
        holder.check()
    assert "removed" in str(e.value)
    holder.release()


def test_check_fails_when_the_lock_object_was_removed(tmp_path):
    be = MemoryBackend()
    a = make(be, tmp_path)
    a.acquire()
    try:
        a.check()
        be.delete([a.current])
        with pytest.raises(LockLost) as e:
            a.check()
        assert "removed" in str(e.value)
    finally:
        a.release()


def test_refresh_never_leaves_a_moment_without_a_lock_object(tmp_path):
    be = MemoryBackend()
    a = make(be, tmp_path, refresh_interval=0.01)
    a.acquire()
    time.sleep(0.3)
    a.release()
    held = be.history[:-1]                 # until the release
    assert len(held) > 10
    assert all(any(is_lock_name(n) for n in names) for names in held)


def test_a_lock_object_that_vanishes_while_read_makes_us_list_again(tmp_path):
    """A holder's refresh between our listing and our read: its new object must be seen."""
    be = MemoryBackend()
    old = plant(be, OTHER_HOST, refreshed=time.time(), run_id="ab" * 16)

    def rotate(name):
        if name == old:
            be.on_get = None
            be.delete([old])
            plant(be, OTHER_HOST, refreshed=time.time(), run_id="ab" * 16, name="cairn-lock." + "cd" * 16 + ".json")
    be.on_get = rotate
    with pytest.raises(LockHeld) as e:
        make(be, tmp_path).acquire()
    assert "db7.example.org" in str(e.value)


@pytest.mark.parametrize("content", [
    b"{not json", b"[]", b'{"run_id": "x", "host": "h", "pid": 0, "refreshed": 1700000000}',
    b'{"run_id": "x", "host": "h", "pid": -1, "refreshed": 1700000000}',
    b'{"run_id": "x", "host": "h", "pid": 12, "refreshed": NaN}',
    b'{"run_id": "x", "host": "h", "pid": 12, "refreshed": 1e300}',
    b'{"run_id": "x", "host": "h", "pid": 99999999999999999999, "refreshed": 1700000000}'])
def test_an_unreadable_lock_object_refuses_unless_broken(tmp_path, content):
    """Never os.kill() a pid or print a time the target made up; never take such a lock silently."""
    be = MemoryBackend()
    be.files["cairn-lock." + "0" * 32 + ".json"] = content
    with pytest.raises(LockHeld) as e:
        make(be, tmp_path).acquire()
    assert "unreadable" in str(e.value) and "--break-lock" in str(e.value)
    a = make(be, tmp_path, break_lock=True)
    a.acquire()
    a.release()
    assert be.locks() == []


def test_file_prefixes_lock_separately(tmp_path):
    be = MemoryBackend()
    locks = [make(be, tmp_path, prefix=p) for p in ("", "web1-", "web2-")]
    for lk in locks:
        lk.acquire()
    try:
        assert be.locks("web1-") == [locks[1].current]
        assert is_lock_name(locks[1].current, "web1-") and not is_lock_name(locks[1].current, "")
        with pytest.raises(LockHeld):
            make(be, tmp_path, prefix="web1-").acquire()
    finally:
        for lk in locks:
            lk.release()
    assert be.files == {}


def test_lock_objects_are_no_archive_files():
    lock = "cairn-lock." + "0" * 32 + ".json"
    names = [naming.volume_name(1, time=1_700_000_000, suffix=".gpg"),
             naming.manifest_name(time=1_700_000_000, suffix=".gpg"),
             naming.signature_name(time=1_700_000_000, suffix=".gpg"), lock, "p-" + lock]
    assert naming.parse(lock) is None and naming.parse("p-" + lock, "p-") is None
    col = Collection(names)
    assert len(col.chains) == 1 and not col.incomplete and set(col.foreign) == {lock, "p-" + lock}


def test_stale_lock_names_are_what_cleanup_may_delete(tmp_path):
    be = MemoryBackend()
    live = plant(be, OTHER_HOST, refreshed=time.time(), run_id="11" * 16)
    stale = plant(be, OTHER_HOST, refreshed=time.time() - 7200, run_id="22" * 16)
    broken = "cairn-lock." + "33" * 16 + ".json"
    be.files[broken] = b"garbage"
    other_prefix = plant(be, OTHER_HOST, refreshed=time.time() - 7200, run_id="44" * 16, prefix="x-")
    names = be.list()
    assert stale_lock_names(be, names, "", str(tmp_path)) == [stale]
    assert stale_lock_names(be, names, "x-", str(tmp_path)) == [other_prefix]
    assert live in be.files and broken in be.files


def test_release_after_a_failed_acquire_leaves_nothing(tmp_path):
    be = MemoryBackend()

    def boom(name):
        raise KeyboardInterrupt
    plant(be, OTHER_HOST, refreshed=time.time())
    be.on_get = boom
    a = make(be, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        a.acquire()
    assert be.locks() == [n for n in be.files if "feed" in n]


def test_the_command_in_a_lock_object_has_no_password(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/usr/bin/cairn", "full", "/srv", "sftp://u:s3cret-pw@h/b",
                                      "--mirror=ftp://v:other-pw@h2/b"])
    text = process_command("backup")
    assert text.startswith("backup: cairn full /srv sftp://u:")
    assert "s3cret-pw" not in text and "other-pw" not in text
