# SPDX-License-Identifier: GPL-3.0-or-later
"""The `cairn` command: duplicity's command lines over the engine, plus --json.

    cairn [full|incremental] [options] SOURCE_DIR TARGET_URL
    cairn restore [options] TARGET_URL DEST_DIR
    cairn verify [--compare-data] [options] TARGET_URL SOURCE_DIR
    cairn collection-status|list-current-files|cleanup [options] TARGET_URL
    cairn remove-older-than TIME | remove-all-but-n-full N | remove-all-inc-of-but-n-full N [--force] TARGET_URL
    cairn prune [--older-than TIME] [--keep-full N] [--keep-full-with-incrementals N] [--cleanup] [--force] TARGET_URL
    cairn replicate [--time TIME] [--newer-than TIME] SOURCE_URL TARGET_URL

Secrets come from the environment (PASSPHRASE, SIGN_PASSPHRASE) or --passphrase-file, never argv.
"""
import argparse
import getpass
import io
import json
import logging
import os
import sys
import threading
import time
import traceback

from . import __version__, api, options, timespec
from .backends import secrets_of
from .errors import CairnError, ExitCode, UserError
from .logs import quiet_libraries
from .redact import RedactingFilter, Secrets, redact_data, redact_text
from .retention import RetentionPolicy

log = logging.getLogger("cairn")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UserError(f"command line error: {message} (see cairn --help)")


class _Rule(argparse.Action):
    """Selection options keep their command-line order in one list."""

    def __call__(self, parser, ns, values, option_string=None):
        kind = self.dest.replace("_", "-")
        rules = getattr(ns, "rules", None) or []
        rules.append((kind, values))
        ns.rules = rules


def build_parser():
    p = _Parser(prog="cairn", description="duplicity-compatible encrypted incremental backups",
                epilog="Exit codes follow duplicity's; see docs/cli.md.")
    p.add_argument("args", nargs="*", help="command and its arguments, as with duplicity")
    p.add_argument("--version", action="version", version=f"cairn {__version__}")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("--progress", action="store_true", default=None, help="force the progress display")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("-v", "--verbosity", default="notice")
    # target and cache
    p.add_argument("--archive-dir")
    p.add_argument("--name")
    p.add_argument("--tempdir")
    p.add_argument("--file-prefix", default="")
    # the target lock of writers (backup, cleanup, remove-*)
    p.add_argument("--break-lock", action="store_true",
                   help="take over the target lock of another run, even a live one (warns naming it)")
    p.add_argument("--lock-stale-after", metavar="TIME",
                   help="take over a target lock not refreshed for this long (seconds, or 30m, 2h; default 30m)")
    # encryption
    p.add_argument("--no-encryption", action="store_true")
    p.add_argument("--encrypt-key", action="append", default=[])
    p.add_argument("--hidden-encrypt-key", action="append", default=[])
    p.add_argument("--sign-key")
    p.add_argument("--gpg-options", default="")
    p.add_argument("--gpg-binary", default="gpg")
    p.add_argument("--passphrase-file", help="read the passphrase from this file (first line)")
    # backup
    p.add_argument("--volsize", type=int, default=200)
    p.add_argument("--full-if-older-than")
    p.add_argument("--allow-source-mismatch", action="store_true")
    p.add_argument("--max-blocksize", type=int, default=0)
    p.add_argument("--jobs", type=int, default=0, help="parallel gpg processes (default: CPUs)")
    p.add_argument("--no-adaptive-compression", action="store_true",
                   help="always let gpg compress, even data that does not compress")
    p.add_argument("--compress-level", type=int, default=3,
                   help="gpg compression level 0-9 (default 3; duplicity leaves gpg's 6)")
    p.add_argument("--asynchronous-upload", action="store_true", help="accepted; uploads are always concurrent")
    # remote targets and the transfer layer (duplicity's names where it has one)
    p.add_argument("--mirror", action="append", default=[], metavar="URL",
                   help="another target that gets every file too (repeatable); one that fails lags "
                        "alone (exit 64) and the next backup brings it up to date")
    p.add_argument("--mirror-stand-in", action="store_true",
                   help="when the target fails, a healthy --mirror takes its place (the target then lags)")
    p.add_argument("--num-retries", type=int, default=5, help="retries of a failed transfer (default 5)")
    p.add_argument("--timeout", type=float, default=30, help="network timeout in seconds (default 30)")
    p.add_argument("--max-upload-rate", type=_rate, metavar="BYTES/S",
                   help="limit all uploads together to this rate (suffixes K, M: 1024-based)")
    p.add_argument("--upload-concurrency", type=int, default=4, help="volumes uploading at once (default 4)")
    p.add_argument("--ssh-options", action="append", default=[],
                   help='e.g. "-oIdentityFile=KEY -oUserKnownHostsFile=F -oPort=N" (repeatable)')
    p.add_argument("--ssh-accept-new-host-key", action="store_true",
                   help="trust and record an sftp host key not yet in known_hosts")
    p.add_argument("--s3-endpoint-url")
    p.add_argument("--s3-region-name")
    p.add_argument("--s3-storage-class", help="STANDARD, STANDARD_IA, ONEZONE_IA, GLACIER_IR, ...")
    for flag, cls in _S3_CLASS_FLAGS.items():
        p.add_argument(flag, dest="s3_storage_class", action="store_const", const=cls)
    p.add_argument("--s3-use-server-side-encryption", dest="s3_sse", action="store_const", const="AES256")
    p.add_argument("--s3-use-server-side-kms-encryption", dest="s3_sse", action="store_const", const="aws:kms")
    p.add_argument("--s3-kms-key-id")
    p.add_argument("--s3-kms-grant", help="grantee given full control of each object (x-amz-grant-full-control)")
    p.add_argument("--s3-unencrypted-connection", action="store_true", help="plain HTTP to the S3 endpoint")
    p.add_argument("--s3-multipart-chunk-size", type=int, default=20, help="MiB")
    p.add_argument("--s3-multipart-max-procs", type=int, default=4)
    p.add_argument("--s3-object-lock-mode", metavar="governance|compliance",
                   help="S3 Object Lock retention of every object written (with --s3-object-lock-days)")
    p.add_argument("--s3-object-lock-days", metavar="N", help="days of S3 Object Lock retention")
    p.add_argument("--azure-blob-tier")
    p.add_argument("--ssl-no-check-certificate", action="store_true")
    p.add_argument("--ssl-cacert-file")
    p.add_argument("--ftp-passive", dest="ftp_passive", action="store_true", default=True)
    p.add_argument("--ftp-regular", dest="ftp_passive", action="store_false")
    p.add_argument("--no-print-statistics", action="store_true")
    p.add_argument("--print-statistics", action="store_true")
    # restore / verify / list
    p.add_argument("-t", "--time", "--restore-time", dest="time")
    p.add_argument("--file-to-restore", dest="path")
    p.add_argument("-r", "--path-to-restore", dest="path")
    p.add_argument("--force", action="store_true")
    p.add_argument("--newer-than", metavar="TIME", help="replicate: only the sets that end after TIME")
    # prune (cairn's own command: a whole retention policy at once)
    p.add_argument("--older-than", metavar="TIME", help="prune: remove chains that ended before TIME")
    p.add_argument("--keep-full", type=int, metavar="N", help="prune: keep the N newest chains")
    p.add_argument("--keep-full-with-incrementals", type=int, metavar="N",
                   help="prune: older chains than the N newest keep only their full backup")
    p.add_argument("--cleanup", action="store_true", help="prune: also what cleanup removes")
    p.add_argument("--compare-data", action="store_true")
    p.add_argument("--numeric-owner", action="store_true")
    p.add_argument("--no-restore-ownership", "--do-not-restore-ownership", dest="no_restore_ownership",
                   action="store_true")
    # selection
    for opt in ("include", "exclude", "include-filelist", "exclude-filelist", "include-regexp",
                "exclude-regexp", "exclude-if-present"):
        p.add_argument("--" + opt, dest=opt.replace("-", "_"), action=_Rule)
    p.add_argument("--exclude-older-than", dest="exclude_older_than", action=_Rule)
    p.add_argument("--exclude-device-files", dest="exclude_device_files", action=_Rule, nargs=0)
    p.add_argument("--exclude-other-filesystems", dest="exclude_other_filesystems", action=_Rule, nargs=0)
    p.add_argument("--null-separator", action="store_true")
    return p


_S3_CLASS_FLAGS = {"--s3-use-rrs": "REDUCED_REDUNDANCY", "--s3-use-ia": "STANDARD_IA",
                   "--s3-use-onezone-ia": "ONEZONE_IA", "--s3-use-glacier": "GLACIER",
                   "--s3-use-glacier-ir": "GLACIER_IR", "--s3-use-deep-archive": "DEEP_ARCHIVE"}


def _rate(text):
    units = {"": 1, "K": 1024, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] in units and t[-1:] else ""
    try:
        value = float(t[:-1] if unit else t) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a rate in bytes/s: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("the upload rate must be positive")
    return int(value)


# CLI destinations -> the options vocabulary of options.py, where the names differ
_OPTION_NAMES = {"mirror": "mirror_targets", "encrypt_key": "encrypt_keys", "hidden_encrypt_key": "hidden_encrypt_keys",
                 "s3_sse": "s3_server_side_encryption", "ssl_cacert_file": "ca_cert_file"}


# selection options: argparse keeps them, in command-line order, in ns.rules only
_RULE_DESTS = frozenset(("include", "exclude", "include_filelist", "exclude_filelist", "include_regexp",
                         "exclude_regexp", "exclude_if_present", "exclude_older_than", "exclude_device_files",
                         "exclude_other_filesystems"))


def _mapping(ns, **extra):
    """The parsed command line as a mapping of option names (options.py's vocabulary)."""
    m = {_OPTION_NAMES.get(k, k): v for k, v in vars(ns).items() if k not in _RULE_DESTS}
    m.update(validate_certs=not ns.ssl_no_check_certificate,
             adaptive_compression=not ns.no_adaptive_compression, **extra)
    return m


def _ask_passphrase():
    if not sys.stdin.isatty():
        raise UserError("no passphrase: set PASSPHRASE, use --passphrase-file, or --encrypt-key for "
                        "public-key encryption, or --no-encryption")
    return getpass.getpass("GnuPG passphrase: ")


def _target(ns, url, writing=False):
    return options.target_options(_mapping(ns, target=url), os.environ, writing=writing, ask=_ask_passphrase)


def _time(ns):
    return timespec.parse(ns.time) if ns.time else None


def _is_url(s):
    return "://" in s


def _split_command(args):
    if args and args[0] in HANDLERS:
        return args[0], args[1:]
    if len(args) == 2:
        if _is_url(args[1]) and not _is_url(args[0]):
            return "backup", args
        if _is_url(args[0]) and not _is_url(args[1]):
            return "restore", args
    raise UserError("command line error: expected a command (full, incremental, restore, verify, "
                    "collection-status, ...) or SOURCE_DIR TARGET_URL")


def _want(args, n, usage):
    if len(args) != n:
        raise UserError(f"command line error: usage: cairn {usage}")
    return args


# --- the commands: each takes (ns, args, out, progress) and returns (result, exit code) ----------

def _backup(command, ns, args, out, progress):
    src, url = _want(args, 2, f"{command} SOURCE_DIR TARGET_URL")
    mode = {"full": "full", "incremental": "incremental", "inc": "incremental"}.get(command, "auto")
    opts = options.backup_options(_mapping(ns, source=src, mode=mode))
    result = api.backup(_target(ns, url, writing=True), opts, progress=progress)
    if not ns.json and not ns.no_print_statistics:
        _say(out, _stats_text(result))
    for t in result.get("lagging_targets") or ():     # exit 64: complete on the others
        _say(_RedactedOutput(sys.stderr, out.secrets), f"cairn: target {t['url']} is lagging (the next backup "
                                                       f"brings it up to date): {t['error']}")
    return result, result["exit_code"]


def _restore(command, ns, args, out, progress):
    url, dest = _want(args, 2, "restore [--time T] [-r PATH] TARGET_URL DEST")
    result = api.restore(_target(ns, url), dest, time=_time(ns), path=ns.path, force=ns.force,
                         numeric_owner=ns.numeric_owner, restore_owner=False if ns.no_restore_ownership else None,
                         progress=progress)
    if not result["incomplete"]:
        return result, ExitCode.OK
    if not ns.json:     # the JSON document has the same lists
        err = _RedactedOutput(sys.stderr, out.secrets)
        for v in result["lost_volumes"]:
            _say(err, f"cairn: volume {v['volume']} could not be used (it held {_printable(v['first_path'])} "
                      f"to {_printable(v['last_path'])}): {v['reason']}")
        for p in result["lost"]:
            _say(err, f"cairn: lost: {_printable(p['path'])} ({p['what']}; needed {p['volume']})")
        if result["lost_count"]:
            _say(err, f"cairn: restore incomplete: {result['lost_count']} path(s) could not be restored; "
                      "every other file was")
        else:
            _say(err, f"cairn: restore incomplete: {len(result['lost_volumes'])} volume(s) could not be used "
                      "and the backup's signatures name no path in them; what they held may be missing")
    return result, ExitCode.RESTORE_INCOMPLETE


def _printable(text):
    """A file name on one line: control characters (a newline in a name) escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _verify(command, ns, args, out, progress):
    url, src = _want(args, 2, "verify [--compare-data] TARGET_URL SOURCE_DIR")
    result = api.verify(_target(ns, url), src, time=_time(ns), path=ns.path, compare_data=ns.compare_data,
                        rules=options.selection_rules(_mapping(ns)), progress=progress)
    if not ns.json:
        for d in result["differences"]:
            _say(out, f"Difference found: {d['message']}")
        of = f" of {result['files_in_backup']} in the backup" if result["files_in_backup"] is not None else ""
        _say(out, f"Verify complete: {result['compared']} file(s) compared{of}, "
                  f"{len(result['differences'])} difference(s) found.")
    return result, ExitCode.GENERIC if result["differences"] else ExitCode.OK


def _collection_status(command, ns, args, out, progress):
    (url,) = _want(args, 1, "collection-status TARGET_URL")
    result = api.status(_target(ns, url))
    if not ns.json:
        out.write(format_status(result))
    return result, ExitCode.OK


def _list_current_files(command, ns, args, out, progress):
    (url,) = _want(args, 1, "list-current-files [--time T] TARGET_URL")
    infos, t = api.list_files(_target(ns, url), _time(ns))
    if ns.json:
        return {"time": timespec.to_iso(t), "files": [
            {"path": os.fsdecode(i.relpath), "type": i.type, "mtime": timespec.to_iso(i.mtime),
             "size": i.size, "mode": i.mode} for i in infos]}, ExitCode.OK
    buf = getattr(out, "buffer", None)
    for i in infos:
        line = timespec.asctime(i.mtime).encode() + b" " + i.relpath + b"\n"
        if buf is not None:
            buf.write(line)
        else:
            out.write(os.fsdecode(line))
    return None, ExitCode.OK


def _count(command, arg):
    try:
        return int(arg)
    except ValueError:
        raise UserError(f"command line error: {command} needs a number, got {arg!r}") from None


def _remove(command, ns, args, out, progress):
    """duplicity's remove-older-than, remove-all-but-n-full, remove-all-inc-of-but-n-full."""
    arg, url = _want(args, 2, f"{command} {'TIME' if command == 'remove-older-than' else 'N'} [--force] TARGET_URL")
    if command == "remove-older-than":
        policy = RetentionPolicy(older_than=timespec.parse(arg))
    elif command == "remove-all-but-n-full":
        policy = RetentionPolicy(keep_full=_count(command, arg))
    else:
        policy = RetentionPolicy(keep_full_with_incrementals=_count(command, arg))
    return _prune_with(policy, ns, url, out)


def _cleanup(command, ns, args, out, progress):
    (url,) = _want(args, 1, "cleanup [--force] TARGET_URL")
    return _prune_with(RetentionPolicy(cleanup=True), ns, url, out)


def _prune(command, ns, args, out, progress):
    """cairn's own: a whole retention policy in one run (what run-job and the prune module do)."""
    (url,) = _want(args, 1, "prune [--older-than TIME] [--keep-full N] [--keep-full-with-incrementals N] "
                            "[--cleanup] [--force] TARGET_URL")
    policy = RetentionPolicy(older_than=timespec.parse(ns.older_than) if ns.older_than else None,
                             keep_full=ns.keep_full, keep_full_with_incrementals=ns.keep_full_with_incrementals,
                             cleanup=ns.cleanup)
    if policy.empty:
        raise UserError("command line error: prune needs --older-than, --keep-full, "
                        "--keep-full-with-incrementals or --cleanup")
    return _prune_with(policy, ns, url, out)


def _prune_with(policy, ns, url, out):
    result = api.prune(_target(ns, url), policy, force=ns.force)
    if not ns.json:
        _print_prune(result, out)
    return result, ExitCode.OK


def _replicate(command, ns, args, out, progress):
    """duplicity 0.8's replicate: the sets TARGET_URL lacks, copied byte for byte from SOURCE_URL."""
    src_url, dst_url = _want(args, 2, "replicate [--time T] [--newer-than T] SOURCE_URL TARGET_URL")
    if ns.encrypt_key or ns.hidden_encrypt_key or ns.sign_key:
        raise UserError("replicate copies the files as they are (same keys on both targets); re-encrypting "
                        "for other keys (--encrypt-key, --hidden-encrypt-key, --sign-key) is not offered: "
                        "restore and back up again for that")
    if ns.mirror:
        raise UserError("replicate copies to one TARGET_URL; --mirror is for backups")
    newer = timespec.parse(ns.newer_than) if ns.newer_than else None
    result = api.replicate(_target(ns, src_url), _target(ns, dst_url), time=_time(ns), newer_than=newer)
    if not ns.json:
        for s in result["sets_copied"]:
            _say(out, f"Replicated backup set: {s['type']} {s['time']}")
        _say(out, f"Replicate complete: {len(result['sets_copied'])} set(s), {result['files_copied']} file(s), "
                  f"{result['bytes_copied']} bytes copied; {len(result['sets_skipped'])} set(s) already there.")
    return result, ExitCode.OK


HANDLERS = {
    "replicate": _replicate,
    "full": _backup, "incremental": _backup, "inc": _backup, "backup": _backup,
    "restore": _restore,
    "verify": _verify,
    "collection-status": _collection_status,
    "list-current-files": _list_current_files,
    "remove-older-than": _remove, "remove-all-but-n-full": _remove, "remove-all-inc-of-but-n-full": _remove,
    "cleanup": _cleanup,
    "prune": _prune,
}


# --- text output -----------------------------------------------------------------------------------

def format_status(st):
    """duplicity's collection-status text (3.x wording), from api.status()'s plain data."""
    out = io.StringIO()
    w = out.write
    chains = st["chains"]
    if chains:
        w(f"Last full backup date: {timespec.asctime(st['last_full_timestamp'])}\n")
    else:
        w("Last full backup date: none\n")
    w("Collection Status\n-----------------\n")
    # duplicity names its backend class here; cairn's backends all sit in its one wrapper too
    w("Connecting with backend: BackendWrapper\n")
    w(f"Archive dir: {st['archive_dir']}\n\n")
    secondary = st["secondary_chains"]
    w(f"Found {len(secondary)} secondary backup chain(s).\n")
    for i, c in enumerate(secondary, 1):
        w(f"Secondary chain {i} of {len(secondary)}:\n")
        _chain_text(w, c)
    w("\n")
    if chains:
        w("Found primary backup chain with matching signature chain:\n")
        _chain_text(w, st["primary_chain"])
    else:
        w("No backup chains with active signatures found\n")
    if st["orphaned_sets"] or st["incomplete_sets"]:
        w(f"Also found {len(st['orphaned_sets'])} backup set(s) not part of any chain,\n")
        w(f"and {len(st['incomplete_sets'])} incomplete backup set(s).\n")
        w('These may be deleted by running duplicity with the "cleanup" command.\n')
    else:
        w("No orphaned or incomplete backup sets found.\n")
    return out.getvalue()


def _chain_text(w, c):
    w("-------------------------\n")
    w(f"Chain start time: {timespec.asctime(c['start_timestamp'])}\n")
    w(f"Chain end time: {timespec.asctime(c['end_timestamp'])}\n")
    w(f"Number of contained backup sets: {len(c['sets'])}\n")
    w(f"Total number of contained volumes: {c['volumes']}\n")
    w("%20s   %30s   %15s\n" % ("Type of backup set:", "Time:", "Num volumes:"))
    for s in c["sets"]:
        w("%20s   %30s   %15s\n" % ("Full" if s["type"] == "full" else "Incremental",
                                    timespec.asctime(s["timestamp"]), s["volumes"]))
    w("-------------------------\n")


class _Progress:
    """One status line on a terminal, rewritten at most twice a second; silent otherwise."""

    def __init__(self, enabled):
        self.enabled = enabled
        self.last = 0.0
        self.start = time.time()

    def __call__(self, stats):
        if not self.enabled:
            return
        now = time.time()
        if now - self.last < 0.5:
            return
        self.last = now
        if isinstance(stats, int):
            text = f"{stats} files"
        else:
            text = (f"{stats.source_files} files, {stats.source_bytes / 1e6:.1f} MB scanned, "
                    f"{stats.new_files} new, {stats.changed_files} changed")
        sys.stderr.write(f"\r{text}, {now - self.start:.0f}s\x1b[K")
        sys.stderr.flush()

    def done(self):
        if self.enabled and self.last:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _stats_text(r):
    lines = ["--------------[ Backup Statistics ]--------------",
             f"StartTime {r['timestamp']:.2f} ({timespec.asctime(r['timestamp'])})",
             f"ElapsedTime {r['duration']:.2f} ({r['duration']:.2f} seconds)",
             f"SourceFiles {r['source_files']}",
             f"SourceFileSize {r['source_bytes']} ({_human(r['source_bytes'])})",
             f"NewFiles {r['new_files']}",
             f"DeletedFiles {r['deleted_files']}",
             f"ChangedFiles {r['changed_files']}",
             f"DeltaEntries {r['delta_entries']}",
             f"RawDeltaSize {r['raw_delta_bytes']} ({_human(r['raw_delta_bytes'])})",
             f"TotalDestinationSizeChange {r['bytes_stored']} ({_human(r['bytes_stored'])})",
             f"Errors {r['errors']}",
             "-------------------------------------------------"]
    return "\n".join(lines)


def _human(n):
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.2f} {unit}"
        n /= 1024


# options whose values start with a dash ("-oPort=22", "--homedir ..."): joined to their
# option with "=" so that argparse does not read the value as an option of its own
_DASH_VALUED = ("--ssh-options", "--gpg-options")


def _join_dash_values(argv):
    out = []
    it = iter(argv)
    for a in it:
        if a in _DASH_VALUED:
            value = next(it, None)
            out.append(a if value is None else f"{a}={value}")
        else:
            out.append(a)
    return out


def run(argv, secrets=None):
    ns = build_parser().parse_intermixed_args(_join_dash_values(argv))
    command, args = _split_command(ns.args)
    progress = _Progress(sys.stderr.isatty() if ns.progress is None else ns.progress)
    secrets = secrets if secrets is not None else Secrets()
    out = _RedactedOutput(sys.stdout, secrets)
    try:
        result, rc = HANDLERS[command](command, ns, args, out, progress)
    finally:
        progress.done()
    if ns.json and result is not None:
        result = dict(result)
        result.setdefault("command", command)
        result["exit_code"] = rc
        # each string redacted on its own: redacting the whole document could cut across values
        out.stream.write(json.dumps(redact_data(result, secrets), indent=2, default=str) + "\n")
    return rc


class _RedactedOutput:
    """stdout whose text passes the redaction; ``buffer`` (file names as bytes) does not."""

    def __init__(self, stream, secrets):
        self.stream = stream
        self.secrets = secrets

    def write(self, text):
        return self.stream.write(redact_text(text, self.secrets))

    def __getattr__(self, name):      # buffer, flush, ...
        return getattr(self.stream, name)


def _say(stream, text):
    stream.write(f"{text}\n")


def run_secrets(argv, env):
    """What this run must never show: the passwords of the URLs on its command line (the
    target, --mirror, a multi:// config's entries) and the credentials in its environment."""
    urls = []
    for arg in argv:
        if arg.startswith("--") and "=" in arg:
            arg = arg.split("=", 1)[1]
        if "://" in arg:
            urls.append(arg)
    return secrets_of(urls, env)


def _print_prune(result, out):
    _print_kept(result, out)
    if not result["files"]:
        _say(out, "No old backup sets found, nothing deleted.")
        return
    verb = "Deleting" if result["deleted"] else "Would delete"
    for s in result["sets"]:
        _say(out, f"{verb} backup set: {s['type']} {s['time']}")
    for name in result["files"]:
        _say(out, f"  {name}")
    if not result["deleted"]:
        _say(out, "Run again with --force to actually delete.")


def _print_kept(result, out):
    """What S3 Object Lock keeps (retention, legal hold): never deleted, said so."""
    verb = "Keeping" if result["deleted"] or not result["would_delete"] else "Would keep"
    for s in result.get("kept_sets") or ():
        _say(out, f"{verb} backup set under S3 Object Lock: {s['type']} {s['time']}")
    for k in result.get("skipped") or ():
        why = {"retention": f"retention ({k['mode']}) until {k['retain_until']}", "legal-hold": "legal hold",
               "set-kept": "kept with its set", "denied": "not allowed to delete"}.get(k["reason"], k["reason"])
        _say(out, f"  skipped {k['name']}: {why}")


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    quiet_libraries()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run-job"]:
        from .job import main as run_job
        raise SystemExit(run_job(argv[1:]))
    debug = "-v9" in argv or "--verbosity=debug" in argv
    # everything this run prints, logs or lets a library log passes the redaction with the
    # secrets of this run; undone at the end, so nothing of it outlives the run
    try:
        secrets = run_secrets(argv, os.environ)
    except Exception:   # noqa: BLE001 - a bug here must not stop the run; URLs are still redacted
        secrets = Secrets()
    redacting = RedactingFilter(secrets)
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(redacting)
    logging.captureWarnings(True)
    thread_hook = threading.excepthook
    threading.excepthook = lambda args: _say(sys.stderr, redact_text("".join(traceback.format_exception(
        args.exc_type, args.exc_value, args.exc_traceback)).rstrip("\n"), secrets))
    try:
        code = run(argv, secrets)
    except CairnError as e:
        _say(sys.stderr, f"cairn: {redact_text(e.message, secrets)}")
        code = e.exit_code
    except KeyboardInterrupt:
        _say(sys.stderr, "cairn: interrupted")
        code = ExitCode.NO_MANIFESTS
    except Exception as e:   # a bug: say so plainly, traceback only when asked for
        if debug:
            _say(sys.stderr, redact_text(traceback.format_exc().rstrip("\n"), secrets))
        _say(sys.stderr, f"cairn: unexpected error: {type(e).__name__}: {redact_text(e, secrets)}")
        code = ExitCode.EXCEPTION
    finally:
        threading.excepthook = thread_hook
        logging.captureWarnings(False)
        for handler in handlers:
            handler.removeFilter(redacting)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
