# SPDX-License-Identifier: GPL-3.0-or-later
"""An interrupted run ends with exit 4 ("interrupted"), never by the signal itself."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

# The interrupt comes while code run from a string is running: a dataclass or namedtuple being
# made by a module cairn imports lazily (what a SIGINT at the start of a backup hit).
_RUN = """
from cairn import cli

def interrupted(*args, **kwargs):
    exec({code!r})

cli.run = interrupted
cli.main(["collection-status", "file:///nowhere"])
"""


@pytest.mark.parametrize("code", ["raise KeyboardInterrupt",
                                  "import dataclasses\n@dataclasses.dataclass\nclass A:\n    x: int = 1\n"
                                  "raise KeyboardInterrupt"])
def test_an_interrupt_inside_code_from_a_string_is_exit_4(tmp_path, code):
    (tmp_path / "interrupted_run.py").write_text(_RUN.format(code=code))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.path.join(ROOT, "plugins", "module_utils")]))
    # `-m`, as the cairn command runs the CLI
    r = subprocess.run([sys.executable, "-m", "interrupted_run"], env=env, capture_output=True, check=False)
    assert r.returncode == 4, (r.returncode, r.stderr)
    assert r.stderr.strip().endswith(b"cairn: interrupted")


# A signal whose exception lands in a finalizer is printed as "Exception ignored" and lost to the
# code that runs; the run's checks must still see it.
_SWALLOWED = """
import os, signal
from cairn.localdirs import terminate_as_interrupt, restore_signals
from cairn.stages import Abort, Aborted

old = terminate_as_interrupt()

class Finalized:
    def __del__(self):
        os.kill(os.getpid(), signal.{sig})
        for _ in range(100000):     # the handler runs here, inside the finalizer
            pass

Finalized()
print("went on", flush=True)
abort = Abort()
try:
    abort.check()
except Aborted:
    print("stopped by", type(abort.error).__name__, abort.error, flush=True)
restore_signals(old)
print("after the run:", Abort().error, flush=True)
"""


@pytest.mark.parametrize("sig, stopped_by", [("SIGINT", b"stopped by KeyboardInterrupt "),
                                             ("SIGTERM", b"stopped by Terminated signal 15"),
                                             ("SIGHUP", b"stopped by Terminated signal 1")])
def test_a_signal_a_finalizer_swallowed_still_stops_the_run(sig, stopped_by):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "plugins", "module_utils"))
    r = subprocess.run([sys.executable, "-c", _SWALLOWED.format(sig=sig)], env=env, capture_output=True, check=False)
    assert b"Exception ignored in" in r.stderr, r.stderr      # the case: the raise was lost
    assert r.stdout.splitlines() == [b"went on", stopped_by, b"after the run: None"], (r.stdout, r.stderr)
