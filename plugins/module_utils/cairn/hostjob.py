# SPDX-License-Identifier: GPL-3.0-or-later
"""`cairn job [NAME [COMMAND[_COMMAND...] [ARGS]]]`: duply's vocabulary over a job the
cairn.backup.job role wrote (/etc/cairn/jobs/NAME.json).

An on-call admin (or a fleet playbook) gets what the timer's `cairn run-job` gets: the job's
credentials file, GNUPGHOME, archive dir, cache name, args and selection, from job.Job, which
builds every command line of a job. Each step runs the `cairn` CLI; its output is passed
through and the exit code of a failing step is the command's. Secrets reach the steps by
environment only; --preview prints the command lines with none of them.

    cairn job                          the jobs, their last result and the age of their last success
    cairn job NAME backup              pre-hook, backup (to every target), post-hook
    cairn job NAME bkp|full|incr       backup without hooks (type automatic, full, incremental)
    cairn job NAME status              collection-status
    cairn job NAME list [TIME]         list-current-files
    cairn job NAME verify              verify with the job's selection (--compare-data: with the data)
    cairn job NAME restore DEST [TIME]
    cairn job NAME fetch PATH DEST [TIME]
    cairn job NAME purge [AGE]         remove-older-than the job's retention.older_than
    cairn job NAME purgeFull [N]       remove-all-but-n-full the job's retention.keep_full
    cairn job NAME purgeIncr [N]       remove-all-inc-of-but-n-full retention.keep_full_with_incrementals
    cairn job NAME cleanup
    cairn job NAME prune               the job's whole retention and cleanup, on every target
    cairn job NAME info                status with stored sizes and the job's state, as JSON
    cairn job NAME backup_verify_purge a chain: stops at the first step that fails

Options (anywhere): --force (purge*, cleanup, prune delete only with it; restore and fetch
overwrite), --preview (print the command lines, run nothing), --target N|URL (the Nth of the
job's targets, or one of them by URL; default the first), --compare-data (verify), --json (each
step's JSON result, gathered in one document), --config-dir DIR (default $CAIRN_JOB_DIR or
/etc/cairn/jobs).
"""
import fcntl
import json
import os
import re
import shlex
import subprocess
import sys
import time

from .crypto import agent_running, stop_agent
from .errors import CairnError, ExitCode, UserError
from .job import COMPLETED, Job
from .redact import redact_text, redact_url

DEFAULT_DIR = "/etc/cairn/jobs"
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")     # the job role's rule; also keeps NAME inside the dir

# duply's command names (and its dashed spellings) -> ours; the number of positional arguments
# each step takes (min, max)
ALIASES = {"purge-full": "purgeFull", "purge-incr": "purgeIncr", "incremental": "incr"}
ARGS = {"backup": (0, 0), "bkp": (0, 0), "full": (0, 0), "incr": (0, 0), "status": (0, 0), "list": (0, 1),
        "verify": (0, 0), "restore": (1, 2), "fetch": (2, 3), "purge": (0, 1), "purgeFull": (0, 1),
        "purgeIncr": (0, 1), "cleanup": (0, 0), "prune": (0, 0), "info": (0, 0)}
WRITES = frozenset(("backup", "bkp", "full", "incr", "purge", "purgeFull", "purgeIncr", "cleanup", "prune"))


def _usage():
    return __doc__.split("\n\n", 2)[2].rstrip()


class Options:
    def __init__(self):
        self.config_dir = os.environ.get("CAIRN_JOB_DIR") or DEFAULT_DIR
        self.force = self.preview = self.compare_data = self.json = False
        self.target = None
        self.positional = []


def parse(argv):
    o = Options()
    it = iter(argv)
    for a in it:
        key, eq, value = a.partition("=")
        if a in ("-h", "--help"):
            raise _Help()
        if key in ("--config-dir", "--target"):
            value = value if eq else next(it, None)
            if not value:
                raise UserError(f"command line error: {key} needs a value (see cairn job --help)")
            setattr(o, key[2:].replace("-", "_"), value)
        elif a in ("--force", "--preview", "--compare-data", "--json"):
            setattr(o, a[2:].replace("-", "_"), True)
        elif a.startswith("--"):
            raise UserError(f"command line error: cairn job has no option {a} (see cairn job --help)")
        else:
            o.positional.append(a)
    return o


class _Help(Exception):
    pass


def load(config_dir, name):
    if not NAME_RE.match(name):
        raise UserError(f"cairn job: {name!r} is not a job name (letters, digits, '.', '_', '-')")
    path = os.path.join(config_dir, name + ".json")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except FileNotFoundError:
        known = ", ".join(job_names(config_dir)) or "none"
        raise UserError(f"cairn job: no job {name} in {config_dir} (jobs: {known})") from None
    except (OSError, ValueError) as e:
        raise UserError(redact_text(f"cairn job: cannot read {path}: {e}")) from None
    if not isinstance(config, dict) or not config.get("targets") or not config.get("source"):
        raise UserError(f"cairn job: {path} is not a job config (no source or targets)")
    config.setdefault("name", name)
    return config


def job_names(config_dir):
    try:
        names = os.listdir(config_dir)
    except OSError as e:
        raise UserError(f"cairn job: cannot read the job directory {config_dir}: {e.strerror}") from None
    return sorted(n[:-5] for n in names if n.endswith(".json") and NAME_RE.match(n[:-5]))


# --- the table of jobs -------------------------------------------------------------------------

def _age(seconds):
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit} ago"
    return f"{max(seconds, 0)}s ago"


def table(config_dir, out):
    now = int(time.time())
    rows = [("JOB", "LAST RUN", "RESULT", "LAST SUCCESS", "LAST VERIFY", "TARGET")]
    for name in job_names(config_dir):
        try:
            config = load(config_dir, name)
        except CairnError as e:
            rows.append((name, "-", f"unreadable: {e.message}", "-", "-", "-"))
            continue
        # the state file only: the table needs no credentials
        st = Job.read_state_of(config)

        def ago(key, st=st):
            return _age(now - st[key]) if isinstance(st.get(key), (int, float)) else "-"
        if not st.get("last_run"):
            result = "never run"
        elif st.get("failed"):
            result = f"FAILED (exit {st.get('last_exit_code')})"
        else:
            result = "ok" if not st.get("last_exit_code") else f"ok (exit {st.get('last_exit_code')})"
        rows.append((name, ago("last_run"), result, ago("last_success"), ago("last_verify"),
                     redact_url(config["targets"][0])))
    if len(rows) == 1:
        out.write(f"no jobs in {config_dir}\n")
        return ExitCode.OK
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] + "\n")
    return ExitCode.OK


# --- one job's commands --------------------------------------------------------------------------

class HostJob:
    """The steps of `cairn job NAME ...` over one job.Job."""

    def __init__(self, job, o, out=None):
        self.job = job
        self.o = o
        self.out = out or sys.stdout
        self.results = []

    def target(self):
        targets = self.job.c["targets"]
        t = self.o.target
        if t is None:
            return targets[0]
        if t.isdigit() and 1 <= int(t) <= len(targets):
            return targets[int(t) - 1]
        if t in targets:
            return t
        raise UserError(f"cairn job {self.job.name}: --target is a number from 1 to {len(targets)} or one of "
                        "the job's target URLs")

    def common(self):
        return self.job.common(machine=self.o.json)

    def _time(self, args, i):
        return ["--time", args[i]] if len(args) > i else []

    def _force(self):
        return ["--force"] if self.o.force else []

    def _retention(self, key, given, what):
        if given:
            return given
        value = (self.job.c.get("retention") or {}).get(key)
        if not value:
            raise UserError(f"cairn job {self.job.name}: the job has no retention.{key}; give {what} on the "
                            "command line")
        return str(value)

    def command_lines(self, step, args):
        """[(target, cairn argv)] of one step (``run_step`` runs the hooks around a backup)."""
        j, t = self.job, self.target()
        if step in ("backup", "bkp", "full", "incr"):
            mode = {"full": "full", "incr": "incremental"}.get(step)
            # the job's backup goes to all its targets (mirrors), as run-job's; --target: to that one
            only = t if self.o.target else None
            return [(t, j.backup_args(mode=mode, target=only, machine=self.o.json))]
        if step == "status":
            return [(t, ["collection-status", *self.common(), t])]
        if step == "list":
            return [(t, ["list-current-files", *self._time(args, 0), *self.common(), t])]
        if step == "verify":
            return [(t, j.verify_args(target=t, compare_data=self.o.compare_data or None, machine=self.o.json))]
        if step == "restore":
            return [(t, ["restore", *self._time(args, 1), *self._force(), *self.common(), t, args[0]])]
        if step == "fetch":
            return [(t, ["restore", "--file-to-restore", args[0], *self._time(args, 2), *self._force(),
                         *self.common(), t, args[1]])]
        if step == "purge":
            age = self._retention("older_than", args[0] if args else None, "the age (purge 6M)")
            return [(t, ["remove-older-than", age, *self._force(), *self.common(), t])]
        if step == "purgeFull":
            n = self._retention("keep_full", args[0] if args else None, "how many full backups to keep")
            return [(t, ["remove-all-but-n-full", n, *self._force(), *self.common(), t])]
        if step == "purgeIncr":
            n = self._retention("keep_full_with_incrementals", args[0] if args else None,
                                "how many full backups keep their incrementals")
            return [(t, ["remove-all-inc-of-but-n-full", n, *self._force(), *self.common(), t])]
        if step == "cleanup":
            return [(t, ["cleanup", *self._force(), *self.common(), t])]
        if step == "prune":
            # the retention run-job applies, plus cleanup; on every target unless --target names one
            policy = [a for a in j.retention_args() if a != "--cleanup"] + ["--cleanup"]
            targets = [t] if self.o.target else j.c["targets"]
            return [(u, ["prune", *policy, *self._force(), *self.common(), u]) for u in targets]
        raise UserError(f"cairn job: unknown command {step}")

    def preview(self, steps):
        env = sorted(k for k in self.job.env if k in self.job.env_from_job)
        self.out.write(f"# job {self.job.name}: environment from its config and credentials file: "
                       f"{', '.join(env) or 'none'} (values not shown)\n")
        for step, args in steps:
            if step == "backup" and self.job.c.get("pre_hook"):
                self.out.write(redact_text(f"pre-hook: {self.job.c['pre_hook']}", self.job.secrets) + "\n")
            if step != "info":
                for _target, argv in self.command_lines(step, args):
                    self.out.write(redact_text("cairn " + shlex.join(argv), self.job.secrets) + "\n")
            else:
                self.out.write(f"(in-process) status of {redact_url(self.target())} with stored sizes\n")
            if step == "backup" and self.job.c.get("post_hook"):
                self.out.write(redact_text(f"post-hook: {self.job.c['post_hook']}", self.job.secrets) + "\n")
        return ExitCode.OK

    def run_cli(self, step, target, argv):
        if not self.o.json:
            self.out.flush()
            return subprocess.run([*self.job.cairn, *argv], env=self.job.env, check=False).returncode
        r = subprocess.run([*self.job.cairn, *argv], env=self.job.env, stdout=subprocess.PIPE, text=True,
                           check=False)
        try:
            result = json.loads(r.stdout) if r.stdout.strip() else None
        except ValueError:
            result = {"output": redact_text(r.stdout[-2000:], self.job.secrets)}
        self.results.append({"step": step, "target": redact_url(target), "exit_code": r.returncode,
                             "result": result})
        return r.returncode

    def run_step(self, step, args):
        if step == "info":
            return self.info()
        if step == "backup" and self.job.hook("pre_hook") != 0:
            self.job.log(f"job {self.job.name}: the pre-hook failed; nothing backed up")
            self.job.hook("post_hook", "failure", ExitCode.JOB_HOOK_FAILED)
            return ExitCode.JOB_HOOK_FAILED
        code = ExitCode.OK
        for target, argv in self.command_lines(step, args):
            code = self.run_cli(step, target, argv)
            if code not in COMPLETED:
                break
        if step == "backup":
            status = "success" if code in COMPLETED else "failure"
            if self.job.hook("post_hook", status, code) != 0 and status == "success":
                return ExitCode.JOB_HOOK_FAILED
        return code

    def info(self):
        """The backup_info module's view (chains, ages, stored size) and the job's state, as
        JSON: the CLI's collection-status --stored-size with the job's arguments."""
        t = self.target()
        code, st = self.job.cli("collection-status", "--stored-size", *self.job.common(), t)
        if code != ExitCode.OK:
            # (its messages went to stderr through the job's redacting log)
            self.results.append({"step": "info", "target": redact_url(t), "exit_code": code, "result": st})
            return code
        st["chain_length"] = len(st["chains"][-1]["sets"]) if st["chains"] else 0
        state = self.job.read_state()
        st["state"] = {k: state.get(k) for k in ("last_run", "last_success", "last_verify", "failed",
                                                 "last_exit_code", "last_message", "last_type")}
        self.results.append({"step": "info", "target": redact_url(t), "exit_code": 0, "result": st})
        if not self.o.json:
            self.out.write(json.dumps(st, indent=2, default=str) + "\n")
        return ExitCode.OK


def _steps(command, args):
    names = [ALIASES.get(s, s) for s in command.split("_")]
    unknown = [s for s in names if s not in ARGS]
    if unknown or not command:
        raise UserError(f"cairn job: unknown command {'_'.join(unknown) or command!r}; commands: "
                        f"{', '.join(ARGS)}, or several joined with '_' (backup_verify_purge)")
    # as duply's: the arguments go to the steps that take some (restore DEST, purge AGE, ...)
    takers = [s for s in names if ARGS[s][1] > 0]
    if args and not takers:
        raise UserError(f"cairn job: {command} takes no arguments, got {' '.join(args)}")
    for s in takers:
        lo, hi = ARGS[s]
        if not lo <= len(args) <= hi:
            raise UserError(f"cairn job: {s} takes {lo} to {hi} argument(s), got {len(args)} (see cairn job --help)")
    return [(s, args if ARGS[s][1] else []) for s in names]


def _lock(job):
    """The job's run lock, so a step that writes never runs beside the timer's run."""
    path = job.c.get("lock_file") or f"/run/lock/cairn-{job.name}.lock"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    lock = open(path, "w")      # noqa: SIM115 - held until the command ends
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    return lock


def run(argv, out=None):
    out = out or sys.stdout
    o = parse(argv)
    if not o.positional:
        return table(o.config_dir, out)
    name, command, args = o.positional[0], (o.positional[1:2] or [""])[0], o.positional[2:]
    if not command:
        raise UserError(f"cairn job: what to do with {name}? commands: {', '.join(ARGS)} (see cairn job --help)")
    steps = _steps(command, args)
    job = Job(load(o.config_dir, name))
    h = HostJob(job, o, out)
    if o.preview:
        return h.preview(steps)
    lock = None
    if any(s in WRITES for s, _a in steps):
        lock = _lock(job)
        if lock is None:
            job.log(f"cairn job {name}: another run of the job holds its lock; try again when it has ended")
            return ExitCode.JOB_LOCKED
    home = job.env.get("GNUPGHOME")
    agent_was_running = agent_running(home)   # one this command starts is its to end, as run-job's
    worst = ExitCode.OK
    try:
        for step, step_args in steps:
            code = h.run_step(step, step_args)
            if code not in COMPLETED:
                worst = code
                break
            worst = worst or code
    finally:
        if not agent_was_running:
            stop_agent(home)
        if lock is not None:
            lock.close()
    if o.json:
        out.write(json.dumps({"job": name, "exit_code": worst, "steps": h.results}, indent=2, default=str) + "\n")
    return worst


def main(argv):
    try:
        return run(argv)
    except _Help:
        sys.stdout.write("usage:\n" + _usage() + "\n")
        return ExitCode.OK
    except CairnError as e:
        sys.stderr.write(redact_text(e.message) + "\n")
        return e.exit_code


__all__ = ["main", "run"]
