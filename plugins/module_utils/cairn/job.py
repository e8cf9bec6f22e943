# SPDX-License-Identifier: GPL-3.0-or-later
"""`cairn run-job CONFIG.json`: one scheduled backup job, as a systemd service or cron runs it.

What a sysadmin's backup script does, in one place: a lock so runs never overlap, the pre-hook,
the backup to every target, retention, a periodic verify, the post-hook, node_exporter textfile
metrics, and a ping to a heartbeat URL on success or a failure URL on failure. Each step runs
the `cairn` CLI with --json, so a job does exactly what the same command line would.

The config (written by the cairn.backup.job role) holds no secrets: those come from the
environment (systemd's EnvironmentFile=, or ``credentials_file`` read here for cron).
Exit status: 0 when the backup succeeded (or finished with unreadable files: 9 is reported
in the metrics and the heartbeat, not as a failure), else the failing step's code; 64 when the
backup completed but a mirror target lags (retention and verify still run on the others, the
failure URL is pinged naming it); 70 when a hook failed; 75 when another run of the job holds
the lock (errors.ExitCode) past ``--wait``; 23 for a bad command line or config. The state file's
``targets`` and the ``cairn_backup_target_*`` metrics say per target (redacted URL) whether it is
up to date or lagging, and since when.

    cairn run-job [--step backup|full|verify|prune] [--wait DURATION] CONFIG.json

``--step`` (the job role's timers, one per schedule): ``backup`` (default) is the whole run above;
``full`` the same with a forced full; ``verify`` only the verify (with the job's
``verify_compare_data``); ``prune`` only the retention. Hooks, the ``/start`` ping and the
heartbeat on success belong to the backup steps; every step pings the failure URL and mails
(``mail_on``) its result. ``--wait``: a run that finds the job's lock held waits for it this long
(seconds, or 30m, 6h) before giving up with 75 (default 0: give up at once), so that the job's
timers, which may fire together, run one after the other instead of failing.
"""
import collections
import fcntl
import json
import os
import subprocess
import sys
import time
from urllib.parse import urlsplit

from . import notify
from .backends import secrets_of
from .crypto import agent_running, stop_agent
from .errors import ExitCode, TimeStringError
from .redact import Secrets, redact_data, redact_text, redact_url
from .timespec import parse_duration

SUCCEEDED = (ExitCode.OK, ExitCode.SKIPPED_FILES)   # 9: complete, some files unreadable (reported)
COMPLETED = SUCCEEDED + (ExitCode.MIRROR_LAGGING,)   # 64: complete on the primary, a mirror lags
STEPS = ("backup", "full", "verify", "prune")
BACKUP_STEPS = ("backup", "full")
LOG_TAIL = 40       # the run's last log lines a mail carries


def load_env_file(path):
    """KEY=VALUE lines as systemd's EnvironmentFile= reads them: in double quotes a backslash
    escapes the next character; in single quotes nothing is special; no variable expansion."""
    env = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";")) or "=" not in line:
                continue
            key, value = line.split("=", 1)
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == "'":
                value = value[1:-1]
            elif len(value) >= 2 and value[0] == value[-1] == '"':
                out, chars = [], iter(value[1:-1])
                for c in chars:
                    out.append(next(chars, "") if c == "\\" else c)
                value = "".join(out)
            env[key.strip()] = value
    return env


class Job:
    def __init__(self, config, env=None, cairn=None, log=None):
        self.c = config
        self.name = config["name"]
        self.env = dict(os.environ if env is None else env)
        # the names (never the values) of what the job itself sets: `cairn job --preview` lists them
        self.env_from_job = set()
        cred = config.get("credentials_file")
        if cred and os.path.exists(cred):
            for k, v in load_env_file(cred).items():
                self.env.setdefault(k, v)
                self.env_from_job.add(k)
        if config.get("gnupg_home"):
            self.env.setdefault("GNUPGHOME", config["gnupg_home"])
            self.env_from_job.add("GNUPGHOME")
        if cairn is None:       # this very engine, wherever it is installed
            cairn = [sys.executable, "-m", "cairn.cli"]
            here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            self.env["PYTHONPATH"] = os.pathsep.join(p for p in (here, self.env.get("PYTHONPATH")) if p)
        self.cairn = cairn
        self.secrets = _job_secrets(config, self.env)
        self._sink = log or _log_stderr
        self.state_file = config.get("state_file") or f"/var/lib/cairn/{self.name}.json"
        self.last_error = ""
        self.tail = collections.deque(maxlen=LOG_TAIL)

    def log(self, message):
        """Every line the job writes (journal, syslog) passes the redaction with its secrets."""
        line = redact_text(message, self.secrets)
        self.tail.append(line)
        self._sink(line)

    # --- steps ---------------------------------------------------------------------------------

    # The job's command lines, built here only: `run-job` runs them with --json, `cairn job`
    # (hostjob.py) as they are, so both read the same archive dir, cache name, args and selection.

    def common(self, machine=True):
        args = ["--archive-dir", self.c.get("archive_dir", "/var/cache/cairn"), "--name", self.name]
        if machine:
            args += ["--no-progress", "--json"]
        return args + list(self.c.get("args", []))

    def selection_args(self):
        return ["--exclude-filelist", self.c["filelist"]] if self.c.get("filelist") else []

    def backup_args(self, mode=None, target=None, machine=True):
        """The backup: to the first target with the others as mirrors, or to ``target`` alone."""
        targets = self.c["targets"]
        mode = mode or self.c.get("mode")
        args = ([mode] if mode else []) + self.common(machine)
        if self.c.get("full_if_older_than"):
            args += ["--full-if-older-than", self.c["full_if_older_than"]]
        args += self.selection_args()
        if target is None:
            for mirror in targets[1:]:
                args += ["--mirror", mirror]
        return [*args, self.c["source"], target or targets[0]]

    def retention_args(self):
        """The job's retention as `cairn prune` options (empty: none configured)."""
        keep = self.c.get("retention") or {}
        args = []
        for key in ("older_than", "keep_full", "keep_full_with_incrementals"):
            if keep.get(key):
                args += [f"--{key.replace('_', '-')}", str(keep[key])]
        if keep.get("cleanup"):
            args.append("--cleanup")
        return args

    def verify_args(self, target=None, compare_data=None, machine=True):
        """Verify with the job's selection, so that what the job excludes is no difference."""
        args = ["verify", *self.common(machine)]
        if self.c.get("verify_compare_data") if compare_data is None else compare_data:
            args.append("--compare-data")
            if self.c.get("verify_sample"):
                args += ["--compare-data-sample", str(self.c["verify_sample"])]
        return [*args, *self.selection_args(), target or self.c["targets"][0], self.c["source"]]

    def cli(self, *args):
        r = subprocess.run([*self.cairn, *args], env=self.env, capture_output=True, text=True, check=False)
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        for line in lines:
            self.log(line)
        # the engine's last word on a failure, for the state file (redacted again: it is stored)
        self.last_error = redact_text(lines[-1].strip(), self.secrets)[:500] if r.returncode not in COMPLETED and lines else ""
        try:
            result = json.loads(r.stdout) if r.stdout.strip() else {}
        except ValueError:
            result = {"output": r.stdout[-2000:]}
        return r.returncode, result

    def hook(self, which, status=None, exit_code=None):
        cmd = self.c.get(which)
        if not cmd:
            return 0
        env = dict(self.env, CAIRN_JOB=self.name)
        if status is not None:
            env["CAIRN_JOB_STATUS"] = status
        if exit_code is not None:       # the run's exit status so far (duply's CMD_ERR for post scripts)
            env["CAIRN_JOB_EXIT"] = str(int(exit_code))
        self.log(f"{which}: {cmd}")
        return subprocess.run(["/bin/sh", "-c", cmd], env=env, check=False).returncode

    def backup(self):
        return self.cli(*self.backup_args())

    def prune(self, skip=()):
        """The job's retention, as one policy per target (`cairn prune`: the engine's one
        RetentionPolicy, which the prune module applies too); not on the lagging ``skip``."""
        args = self.retention_args()
        if not args:
            return ExitCode.OK
        for target in self.c["targets"]:
            if redact_url(target) in skip:
                continue
            code, _result = self.cli("prune", *args, "--force", *self.common(), target)
            if code != ExitCode.OK:
                return code
        return ExitCode.OK

    def _failed(self, step, code):
        return f"{step} failed with exit {code}" + (f": {self.last_error}" if self.last_error else "")

    def verify_due(self, state, now):
        every = parse_duration(self.c.get("verify_interval"))
        return bool(every) and now - (state.get("last_verify") or 0) >= every

    def verify(self, state):
        """Verify; record the result in ``state``; return (exit code, failure message or "")."""
        code, res = self.cli(*self.verify_args())
        now = int(time.time())
        state.update(last_verify_run=now, last_verify_exit_code=code, verify_failed=code != ExitCode.OK)
        if code == ExitCode.OK:
            state["last_verify"] = now
            return code, ""
        n_diff = len(res.get("differences", []))
        return code, (f"verify failed with exit {code}: {n_diff} difference(s)" if n_diff
                      else self._failed("verify", code))

    # --- reporting -----------------------------------------------------------------------------

    def read_state(self):
        return self.read_state_of(self.c)

    @staticmethod
    def read_state_of(config):
        try:
            with open(config.get("state_file") or f"/var/lib/cairn/{config['name']}.json", encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def write_state(self, state):
        state = redact_data(state, self.secrets)      # the file is world-readable (0644)
        _atomic_write(self.state_file, json.dumps(state, indent=1, sort_keys=True) + "\n", 0o644)

    def write_metrics(self, state):
        path = self.c.get("metrics_file")
        if not path:
            return
        label = f'job="{_escape_label(redact_text(self.name, self.secrets))}"'
        rows = [
            ("cairn_backup_last_run_timestamp_seconds", "gauge", "Start of the last run.", state.get("last_run")),
            ("cairn_backup_last_success_timestamp_seconds", "gauge", "End of the last successful backup.",
             state.get("last_success")),
            ("cairn_backup_last_duration_seconds", "gauge", "Duration of the last run.", state.get("last_duration")),
            ("cairn_backup_last_bytes_stored", "gauge", "Bytes written to the target by the last backup.",
             state.get("last_bytes")),
            ("cairn_backup_last_exit_code", "gauge", "Exit status of the last run (0 = success).",
             state.get("last_exit_code")),
            ("cairn_backup_failed", "gauge", "1 when the last run failed.", 1 if state.get("failed") else 0),
            ("cairn_backup_last_warnings", "gauge", "Files the last backup could not read.", state.get("last_warnings")),
            ("cairn_verify_last_success_timestamp_seconds", "gauge", "End of the last successful verify.",
             state.get("last_verify")),
            ("cairn_verify_failed", "gauge", "1 when the last verify failed.",
             None if state.get("verify_failed") is None else int(bool(state["verify_failed"]))),
            ("cairn_prune_last_success_timestamp_seconds", "gauge", "End of the last successful prune step.",
             state.get("last_prune")),
            ("cairn_prune_failed", "gauge", "1 when the last prune step failed.",
             None if state.get("prune_failed") is None else int(bool(state["prune_failed"]))),
        ]
        out = []
        for metric, kind, help_text, value in rows:
            if value is None:
                continue
            out.append(f"# HELP {metric} {help_text}\n# TYPE {metric} {kind}\n{metric}{{{label}}} {value}\n")
        targets = state.get("targets") or {}
        now = int(time.time())
        for metric, help_text, value in (
                ("cairn_backup_target_lagging", "1 when the target missed the last backup (a failed mirror).",
                 lambda t: 1 if t.get("status") == "lagging" else 0),
                ("cairn_backup_target_last_success_timestamp_seconds", "End of the last backup the target got.",
                 lambda t: t.get("last_success")),
                ("cairn_backup_target_lag_seconds", "Seconds since the target last got a backup.",
                 lambda t: now - t["last_success"] if t.get("last_success") else None)):
            lines = [f'{metric}{{{label},target="{_escape_label(redact_text(url, self.secrets))}"}} {value(t)}\n'
                     for url, t in sorted(targets.items()) if value(t) is not None]
            if lines:
                out.append(f"# HELP {metric} {help_text}\n# TYPE {metric} gauge\n" + "".join(lines))
        _atomic_write(path, "".join(out), 0o644)

    def ping(self, url, body):
        if not url:
            return
        error = notify.ping(url, redact_text(body, self.secrets), self.c.get("ping_method") or "POST")
        if error is not None:
            self.log(f"could not reach {redact_url(url, keep_path=False)}: {error}")

    def report(self, step, kind, code, summary):
        """The end of a run: pings and mail. ``kind``: success, failure or verify_failure."""
        hb = self.c.get("heartbeat_url")
        if self.c.get("ping_exit_code") and hb:
            # healthchecks.io: <url>/0 is success, any other number a failure with that status;
            # the verify and prune steps report only their failures (their success is no heartbeat)
            if kind != "success" or step in BACKUP_STEPS:
                self.ping(notify.ping_url(hb, str(int(code))), summary)
        elif kind == "success":
            if step in BACKUP_STEPS:
                self.ping(hb, summary)
        else:
            self.ping(self.c.get("failure_url"), summary)
        self.mail(step, kind, summary)

    def mail(self, step, kind, summary):
        to = self.c.get("mail_to") or []
        if not to or kind not in (self.c.get("mail_on") or notify.DEFAULT_MAIL_ON):
            return
        label = {"success": "success", "failure": "FAILURE", "verify_failure": "verify FAILED"}[kind]
        subject = f"[cairn] {os.uname().nodename} {self.name}: {label}" + ("" if step == "backup" else f" ({step})")
        body = summary + "\n\nThe run's last log lines:\n\n" + "\n".join(self.tail) + "\n"
        msg = notify.build_mail(self.c, redact_text(subject, self.secrets), redact_text(body, self.secrets))
        error = notify.send_mail(self.c, self.env, msg)
        if error is not None:
            self.log(f"could not send the mail to {', '.join(to)}: {error}")

    # --- the run -------------------------------------------------------------------------------

    def run(self, step="backup", wait=0):
        lock_path = self.c.get("lock_file") or f"/run/lock/cairn-{self.name}.lock"
        os.makedirs(os.path.dirname(lock_path), exist_ok=True)
        lock = open(lock_path, "w")      # noqa: SIM115 - held for the whole run
        if not _lock_within(lock, wait, lambda: self.log(
                f"job {self.name}: another run holds {lock_path}; the {step} step waits up to {wait} s for it")):
            self.log(f"job {self.name}: another run holds {lock_path}; not starting a second one")
            lock.close()
            return ExitCode.JOB_LOCKED
        # gpg starts a gpg-agent for the keyring and leaves it running. One this run started is
        # this run's to end: under systemd it would keep the unit "deactivating" until systemd
        # kills it, and under cron it would linger for good.
        home = self.env.get("GNUPGHOME")
        agent_was_running = agent_running(home)
        try:
            return self._run(step) if step in BACKUP_STEPS else self._run_step(step)
        finally:
            if not agent_was_running:
                stop_agent(home)
            lock.close()

    def _run(self, step="backup"):
        started = time.time()
        if self.c.get("ping_start") and self.c.get("heartbeat_url"):
            self.ping(notify.ping_url(self.c["heartbeat_url"], "start"), f"cairn job {self.name}: {step} started")
        state = self.read_state()
        state.update(last_run=int(started))
        code, message, result = 0, "", {}
        verify_failed = False
        if self.hook("pre_hook") != 0:
            code, message = ExitCode.JOB_HOOK_FAILED, "the pre-hook failed"
        lagging = {}
        if code == 0:
            code, result = self.cli(*self.backup_args(mode="full" if step == "full" else None))
            if code not in COMPLETED:
                message = self._failed("backup", code)
        if code in COMPLETED:
            state.update(last_bytes=result.get("bytes_stored"), last_type=result.get("type"),
                         last_warnings=len(result.get("warnings", [])) + result.get("errors", 0))
            lagging = self._lagging(result.get("lagging_targets") or ())
            self._target_states(state, lagging, int(time.time()))
            prune_code = self.prune(skip=lagging)
            if prune_code != ExitCode.OK:
                code, message = prune_code, self._failed("retention", prune_code)
        if code in COMPLETED and self.verify_due(state, started):
            vcode, vmessage = self.verify(state)
            if vcode != ExitCode.OK:
                code, message, verify_failed = vcode, vmessage, True
        if code == ExitCode.MIRROR_LAGGING:
            message = "lagging target(s): " + "; ".join(f"{u}: {e}" for u, e in lagging.items())
        status = "success" if code in COMPLETED else "failure"
        if self.hook("post_hook", status, code) != 0 and status == "success":
            code, message, status = ExitCode.JOB_HOOK_FAILED, "the post-hook failed", "failure"
        finished = time.time()
        state.update(last_exit_code=code, last_duration=round(finished - started, 3), failed=status != "success",
                     last_message=message)
        if status == "success":
            state["last_success"] = int(finished)
        if status == "success" and code == ExitCode.MIRROR_LAGGING:
            status = "lagging"
        self.write_state(state)
        self.write_metrics(state)
        summary = (f"cairn job {self.name} on {os.uname().nodename}: {status}"
                   + (f" ({message})" if message else "")
                   + f", {result.get('type', '-')} backup, {result.get('bytes_stored', 0)} bytes, "
                   f"{state['last_duration']} s")
        self.log(summary)
        code = ExitCode.OK if status == "success" else code or ExitCode.GENERIC
        self.report(step, "success" if status == "success" else "verify_failure" if verify_failed else "failure",
                    code, summary)
        return code

    def _run_step(self, step):
        """The verify or the prune step alone (their own timers): no hooks, no backup."""
        started = time.time()
        state = self.read_state()
        if step == "verify":
            code, message = self.verify(state)
        else:
            lagging = {url for url, t in (state.get("targets") or {}).items() if t.get("status") == "lagging"}
            code = self.prune(skip=lagging)
            message = "" if code == ExitCode.OK else self._failed("retention", code)
            now = int(time.time())
            state.update(last_prune_run=now, last_prune_exit_code=code, prune_failed=code != ExitCode.OK)
            if code == ExitCode.OK:
                state["last_prune"] = now
        self.write_state(state)
        self.write_metrics(state)
        ok = code == ExitCode.OK
        summary = (f"cairn job {self.name} on {os.uname().nodename}: {step} {'success' if ok else 'failure'}"
                   + (f" ({message})" if message else "") + f", {round(time.time() - started, 3)} s")
        self.log(summary)
        self.report(step, "success" if ok else "verify_failure" if step == "verify" else "failure", code, summary)
        return code

    def _lagging(self, reported):
        """{redacted URL of the job's target: error} of the targets the backup reports lagging
        (matched by their index in the job's target list, else by their redacted URL)."""
        targets = self.c["targets"]
        out = {}
        for t in reported:
            i = t.get("index")
            url = redact_url(targets[i]) if isinstance(i, int) and 0 <= i < len(targets) else t.get("url")
            out[url] = t.get("error")
        return out

    def _target_states(self, state, lagging, now):
        """state["targets"]: per target (redacted URL) its status (ok or lagging), the error that
        made it lag, since when it lags, and the end of the last backup it got."""
        old = state.get("targets") or {}
        out = {}
        for target in self.c["targets"]:
            url = redact_url(target)
            entry = dict(old.get(url) or {})
            if url in lagging:
                entry.update(status="lagging", error=lagging[url], lagging_since=entry.get("lagging_since") or now)
            else:
                entry.update(status="ok", error=None, lagging_since=None, last_success=now)
            out[url] = entry
        state["targets"] = out


def _lock_within(lock, wait, on_wait):
    """flock ``lock``, waiting up to ``wait`` seconds (polling: flock itself has no timeout);
    ``on_wait`` is called once when it has to wait. False when it did not get the lock."""
    deadline = time.monotonic() + (wait or 0)
    waited = False
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            if not waited:
                on_wait()
                waited = True
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))


def _log_stderr(msg):
    # the journal (systemd) or syslog (cron) takes stderr
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def _escape_label(value):
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _job_secrets(config, env):
    """What a job's log, state file, metrics and pings must never show: the passwords of its
    targets, the credentials in its environment, and its ping URLs' paths and queries
    (heartbeat services put the check's secret token there)."""
    targets = [t for t in config.get("targets") or [] if isinstance(t, str)]
    pings = [u for u in (config.get("heartbeat_url"), config.get("failure_url")) if isinstance(u, str) and u]
    smtp_password = env.get(notify.SMTP_PASSWORD_ENV)
    values = []
    for url in pings:
        values.append(url)
        try:
            parts = urlsplit(url)
            values += [part for part in (parts.path, parts.query) if len(part) >= 8]   # shorter: no token
        except ValueError:
            pass
    return secrets_of(targets + pings, env) | Secrets(values + ([smtp_password] if smtp_password else []))


def _atomic_write(path, text, mode):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


USAGE = "usage: cairn run-job [--step backup|full|verify|prune] [--wait DURATION] /etc/cairn/jobs/NAME.json"


def parse_args(argv):
    """(step, wait seconds, config path); raises ValueError with the message for the admin."""
    step, wait, rest = "backup", 0, []
    it = iter(argv)
    for a in it:
        key, eq, value = a.partition("=")
        if key in ("--step", "--wait"):
            value = value if eq else next(it, None)
            if not value:
                raise ValueError(f"{key} needs a value")
            if key == "--step":
                if value not in STEPS:
                    raise ValueError(f"--step must be one of {', '.join(STEPS)}, not {value!r}")
                step = value
            else:
                try:
                    wait = parse_duration(value)
                except TimeStringError as e:
                    raise ValueError(f"--wait: {e}") from None
        elif a.startswith("-"):
            raise ValueError(f"unknown option {a}")
        else:
            rest.append(a)
    if len(rest) != 1:
        raise ValueError("one job config is needed")
    return step, wait, rest[0]


def main(argv):
    try:
        step, wait, path = parse_args(argv)
    except ValueError as e:
        _log_stderr(f"cairn run-job: {e}\n{USAGE}")
        return ExitCode.USER_ERROR
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        _log_stderr(redact_text(f"cairn run-job: cannot read {path}: {e}"))
        return ExitCode.USER_ERROR
    try:
        parse_duration(config.get("verify_interval"))
    except TimeStringError as e:
        _log_stderr(f"cairn run-job: {path}: verify_interval: {e}")
        return ExitCode.USER_ERROR
    sample = config.get("verify_sample")
    if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int) or sample < 1):
        _log_stderr(f"cairn run-job: {path}: verify_sample is a number of files (1 or more), not {sample!r}")
        return ExitCode.USER_ERROR
    problems = notify.check_config(config)
    if problems:
        _log_stderr(f"cairn run-job: {path}: " + "; ".join(problems))
        return ExitCode.USER_ERROR
    return Job(config).run(step, wait)


__all__ = ["Job", "load_env_file", "main"]
