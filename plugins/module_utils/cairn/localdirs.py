# SPDX-License-Identifier: GPL-3.0-or-later
"""This host's private directories: the temp dir of a run and the archive dir (cache).

Both hold plaintext (volumes being built, manifests with every file name), so both must be
ours alone: created 0700, and refused when another user could replace or read into them (a
directory owned by someone else, or a parent writable by others without the sticky bit).
A run's temp dir carries a marker naming its process, so a later run can remove the temp dirs
of runs that died (SIGKILL, power loss) instead of leaving their plaintext for good.
"""
import os
import shutil
import stat
import tempfile

from .errors import UserError, local_io_error
from .processes import boot_id, pid_namespace, proc_stat, process_runs

TEMP_PREFIX = "cairn-"
_MARKER = ".cairn-run"       # in each temp dir: "pid starttime bootid pidns"


class UnsafeLocalDir(UserError):
    """A directory another user controls (exit 23: a setting to fix, not a failure of ours)."""


def _who(uid):
    try:
        import pwd
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (KeyError, ImportError):
        return f"uid {uid}"


def check_parent(path, what):
    """``path`` may hold our private directory: owned by us or root, and not writable by
    others unless sticky (as /tmp is), so nobody else can rename or replace what we put in it."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise local_io_error(e, what) or UserError(f"cannot use {path} for {what}: {e.strerror}") from None
    me = os.geteuid()
    if st.st_uid not in (me, 0):
        raise UnsafeLocalDir(f"refusing {path} for {what}: it belongs to {_who(st.st_uid)}, not to this "
                             f"user or root, who alone could then replace what cairn keeps there")
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise UnsafeLocalDir(f"refusing {path} for {what}: other users may write to it "
                             f"(mode {stat.S_IMODE(st.st_mode):04o}, no sticky bit); use a private directory")


def check_private(path, what):
    """``path`` is a real directory (not a symlink), ours, and not writable by others."""
    try:
        st = os.lstat(path)
    except OSError as e:
        raise local_io_error(e, what) or UserError(f"cannot use {path} for {what}: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeLocalDir(f"refusing {path} for {what}: it is not a directory"
                             + (" but a symlink" if stat.S_ISLNK(st.st_mode) else ""))
    if st.st_uid != os.geteuid():
        raise UnsafeLocalDir(f"refusing {path} for {what}: it belongs to {_who(st.st_uid)}, not to this user")
    if st.st_mode & 0o022:
        raise UnsafeLocalDir(f"refusing {path} for {what}: other users may write to it "
                             f"(mode {stat.S_IMODE(st.st_mode):04o}); chmod go-w it")


def private_dir(path, what, create=True):
    """Make ``path`` (0700, its missing parents with the default mode) and check it and its
    parent; returns whether it exists. With ``create`` False only an existing one is checked."""
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    if not os.path.lexists(path):
        if not create:
            return False
        try:
            os.makedirs(parent, exist_ok=True)
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError as e:
            raise local_io_error(e, what) or UserError(f"cannot create {path} for {what}: {e.strerror}") from None
    check_parent(parent, what)
    check_private(path, what)
    return True


def remove_file(path):
    """Remove a file that may already be gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def open_new(path, mode=0o600):
    """A new file for writing that cannot be a planted symlink or an existing file."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode),
                     "wb")


# --- a run's temp dir --------------------------------------------------------------------------

def run_marker():
    """What names this process across hosts' reboots, pid reuse and pid namespaces."""
    stat = proc_stat()
    return f"{os.getpid()} {stat[1] if stat else None} {boot_id() or '-'} {pid_namespace() or '-'}"


def marker_is_dead(text):
    """Whether the process a run_marker() text names has certainly ended. Unknown (another
    pid namespace, garbled text) is alive: only what is certain to be dead is removed."""
    parts = text.split()
    if len(parts) != 4 or not parts[0].isdigit():
        return False
    pid, start, boot, ns = parts
    here = boot_id() or "-"
    if ns != (pid_namespace() or "-"):
        return boot != here and boot != "-"
    if boot != here:
        return True
    return not process_runs(int(pid), int(start) if start.isdigit() else None)


def make_tempdir(parent=None):
    """A fresh private temp dir for one run (0700, with its run marker), after removing the
    temp dirs that runs of this user left when they died."""
    parent = os.path.abspath(parent or tempfile.gettempdir())
    check_parent(parent, "the temp dir")
    remove_dead_tempdirs(parent)
    try:
        path = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=parent)
        with open_new(os.path.join(path, _MARKER)) as f:
            f.write(run_marker().encode())
    except OSError as e:
        raise local_io_error(e, f"the temp dir {parent}") or UserError(
            f"cannot create a temp dir in {parent}: {e.strerror}") from None
    return path


def remove_dead_tempdirs(parent):
    """Remove our temp dirs under ``parent`` whose run is gone; returns how many."""
    removed = 0
    try:
        names = os.listdir(parent)
    except OSError:
        return 0
    me = os.geteuid()
    for name in names:
        if not name.startswith(TEMP_PREFIX):
            continue
        path = os.path.join(parent, name)
        try:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != me:
                continue
            fd = os.open(os.path.join(path, _MARKER), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as f:
                text = f.read(256).decode("ascii", "replace")
        except OSError:
            continue          # not ours, or not a run's temp dir: leave it
        if marker_is_dead(text):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


# --- signals -----------------------------------------------------------------------------------

class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: unwound like ^C (a BaseException, so no ``except Exception`` in the
    engine swallows it), and reported as an interrupted run."""


# The signals this process got while its handlers were set. A handler raises in the main thread
# wherever it is; when that is inside a finalizer or a weakref callback, Python prints "Exception
# ignored" and goes on as if nothing came. The runs' checks (stages.Abort.check) look here too,
# so such a signal still stops the run and is reported as the interruption it was.
_received = []


def _raise_terminated(signum, _frame):
    _received.append(signum)
    raise Terminated(f"signal {signum}")


def _raise_interrupt(signum, _frame):
    _received.append(signum)
    raise KeyboardInterrupt


def signal_received():
    """The interruption (KeyboardInterrupt, or Terminated) for the first signal a handler of
    terminate_as_interrupt got, or None."""
    if not _received:         # every entry of a walk asks: nothing but this test on that path
        return None
    import signal
    signum = _received[0]
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(f"signal {signum}")


def terminate_as_interrupt():
    """Make SIGINT, SIGTERM and SIGHUP unwind the main thread and be seen by signal_received();
    returns what to restore_signals() with. A no-op outside the main thread (signal handlers can
    only be set there). A signal the caller ignores or handles itself is left as it is."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        return None
    old = {}
    for sig, handler in ((signal.SIGINT, _raise_interrupt), (signal.SIGTERM, _raise_terminated),
                         (signal.SIGHUP, _raise_terminated)):
        current = signal.getsignal(sig)
        if current in (signal.SIG_DFL, None) or current is signal.default_int_handler:
            old[sig] = signal.signal(sig, handler)
    return old


def restore_signals(old):
    import signal
    for sig, handler in (old or {}).items():
        signal.signal(sig, handler)
    if old:
        _received.clear()
