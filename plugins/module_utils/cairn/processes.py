# SPDX-License-Identifier: GPL-3.0-or-later
"""This host's processes, as a lock object or a temp dir records its writer: the boot, the pid
namespace and the start time tell a dead process from a live one, and from a reused pid."""
import os


def read_text(path):
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip() or None
    except OSError:
        return None


def boot_id():
    return read_text("/proc/sys/kernel/random/boot_id")


def pid_namespace(pid="self"):
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def proc_stat(pid="self"):
    """(state, start time in clock ticks since boot) from /proc/PID/stat, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        fields = data.rsplit(b")", 1)[1].split()     # the command name may hold ")" and spaces
        return fields[0].decode(), int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def process_runs(pid, proc_start):
    """Whether process ``pid`` of this host (and pid namespace) still runs as the same process
    (``proc_start``, when known, tells a reused pid)."""
    try:
        os.kill(pid, 0)          # signal 0: only asks whether it exists
    except ProcessLookupError:
        return False
    except OSError:              # EPERM: it exists, another user's
        pass
    stat = proc_stat(pid)
    if stat is None:
        return True
    state, start = stat
    if state in ("Z", "X"):      # killed, not yet reaped
        return False
    return proc_start is None or start == proc_start
