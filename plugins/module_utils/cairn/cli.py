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
import select
import sys
import threading
import time
import traceback

from . import api, options, timespec
from . import logformat
from .cli_compat import (COMMAND_ALIASES, OrderedRule as _Rule, VersionAction, add_duplicity_compat,
                         flush_compat_messages, warn_old_url)
from .backends import secrets_of
from .errors import CairnError, ExitCode, UserError
from .logs import quiet_libraries
from .manifest import quote as manifest_quote
from .redact import RedactingFilter, Secrets, redact_data, redact_text, redact_url
from .retention import RetentionPolicy

log = logging.getLogger("cairn")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UserError(f"command line error: {message} (see cairn --help)")


def build_parser():
    p = _Parser(prog="cairn", description="duplicity-compatible encrypted incremental backups",
                epilog="Exit codes follow duplicity's; see docs/cli.md.")
    p.add_argument("args", nargs="*", help="command and its arguments, as with duplicity")
    p.add_argument("-V", "--version", action=VersionAction)
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("--progress", action="store_true", default=None, help="force the progress display")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    # target and cache
    p.add_argument("--archive-dir")
    p.add_argument("--name")
    p.add_argument("--tempdir")
    p.add_argument("--file-prefix", default="")
    p.add_argument("--file-prefix-archive", default="", help="after --file-prefix in the names of volumes")
    p.add_argument("--file-prefix-manifest", default="", help="after --file-prefix in the names of manifests")
    p.add_argument("--file-prefix-signature", default="", help="after --file-prefix in the names of signatures")
    p.add_argument("--time-separator", type=_time_separator, default=timespec.TIME_SEPARATOR, metavar="CHAR",
                   help="stands for ':' in the time strings given (-t, remove-older-than ...) and in the "
                        "times of old long file names")
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
    p.add_argument("--use-gpgsm", action="store_true",
                   help="encrypt with gpgsm (X.509 certificates, S/MIME) to the --encrypt-key "
                        "certificates; files end in .p7m (duplicity's --use-gpgsm)")
    p.add_argument("--openpgp-engine", choices=("builtin", "gpg"), default="builtin",
                   help="who writes and reads symmetric messages: cairn itself (default; no gpg process, "
                        "one key derivation per run) or gpg")
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
    p.add_argument("--azure-max-connections", type=int, metavar="N")
    p.add_argument("--azure-max-block-size", type=int, metavar="BYTES")
    p.add_argument("--azure-max-single-put-size", type=int, metavar="BYTES")
    p.add_argument("--webdav-headers", metavar="NAME,VALUE,...",
                   help="extra WebDAV request headers as CSV pairs, e.g. 'Cookie,session=...'")
    p.add_argument("--ssl-no-check-certificate", action="store_true")
    p.add_argument("--ssl-cacert-file")
    p.add_argument("--ssl-cacert-path", metavar="DIR", help="a directory of c_rehash'ed CA certificates")
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
    p.add_argument("--compare-data-sample", type=_positive_count, metavar="N",
                   help="verify --compare-data: compare the content of N files picked at random (the "
                        "metadata of every file, and every volume, are still checked)")
    p.add_argument("--stored-size", action="store_true",
                   help="collection-status --json: also the bytes each chain takes at the target "
                        "(one size request per file)")
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
    add_duplicity_compat(p)
    _output_options(p)
    _run_options(p)
    return p


def _run_options(p):
    """duplicity's selection and run-behaviour options (docs/cli.md, "Selection and run behaviour")."""
    p.add_argument("--files-from", metavar="FILE",
                   help="back up only these paths (one a line, relative to the source) and their parents")
    for mode in ("globbing", "literal", "regexp", "ignorecase", "strictcase"):
        # mode switches: they act on the --include/--exclude(-filelist) after them, so they
        # keep their place in the ordered rules
        p.add_argument("--filter-" + mode, dest="filter_" + mode, action=_Rule, nargs=0,
                       help="read the patterns after this as " + mode if mode in ("globbing", "literal", "regexp")
                       else f"match the patterns after this {'ignoring' if mode == 'ignorecase' else 'minding'} case")
    p.add_argument("--copy-links", action="store_true", help="back up what symlinks point to, not the links")
    p.add_argument("--dry-run", action="store_true",
                   help="backup: count and print statistics, write nothing; restore: write nothing")
    p.add_argument("--ignore-errors", action="store_true",
                   help="unreadable files (backup) and unusable volumes (restore) still warn but exit 0")
    p.add_argument("--full-if-n-inc", type=int, metavar="N",
                   help="a full backup when the last chain already has N incrementals")
    p.add_argument("--skip-if-no-change", action="store_true",
                   help="an incremental backup that would store no change stores nothing")
    p.add_argument("--compression", dest="compression", action="store_true", default=None,
                   help="compress volumes (the default)")
    p.add_argument("--no-compression", dest="compression", action="store_false",
                   help="store volumes uncompressed (gpg --compress-algo none; unencrypted: no gzip)")
    p.add_argument("--concurrency", type=int, metavar="N",
                   help="duplicity's transfers in parallel: volumes uploading at once (0: cairn's default)")


def _output_options(p):
    """duplicity's output options: how much is said, where its logs go and in which format."""
    p.add_argument("-v", "--verbosity", type=_verbosity, default=logformat.DEFAULT, metavar="LEVEL",
                   help="0-9 or error, warning, notice (default), info (one line per file), debug")
    p.add_argument("--log-timestamp", action="store_true", help="prefix messages with the time and level")
    p.add_argument("--log-file", metavar="FILE", help="append duplicity's machine-readable log to FILE")
    p.add_argument("--log-fd", type=int, metavar="N", help="write duplicity's machine-readable log to descriptor N")
    p.add_argument("--jsonstat", action="store_true", help="print the backup statistics as JSON too")
    p.add_argument("--show-changes-in-set", type=int, metavar="N",
                   help="collection-status: the files changed in the Nth backup set from the newest (0)")
    p.add_argument("--file-changed", metavar="PATH", help="collection-status: the sets that changed PATH")
    p.add_argument("--files-changed", dest="files_changed", action="store_true", default=True,
                   help="list the files changed in each set's manifest (the default)")
    p.add_argument("--no-files-changed", dest="files_changed", action="store_false")


def _time_separator(text):
    try:
        return timespec.time_separator(text)
    except CairnError as e:
        raise argparse.ArgumentTypeError(e.message) from None


def _positive_count(text):
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"a number of files (1 or more), not {text!r}")
    return n


def _verbosity(text):
    try:
        return logformat.parse_verbosity(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


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
                         "exclude_other_filesystems", "filter_globbing", "filter_literal", "filter_regexp",
                         "filter_ignorecase", "filter_strictcase"))


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
    flush_compat_messages(ns)
    warn_old_url(url)
    return options.target_options(_mapping(ns, target=url), os.environ, writing=writing, ask=_ask_passphrase)


def _time(ns):
    """-t/--time, or --current-time as duplicity takes it (the time of "now"); None: the clock's."""
    return _parse_time(ns, ns.time) if ns.time else ns.current_time


def _parse_time(ns, value):
    """A time string (--time-separator in it), relative ones counted back from --current-time."""
    return timespec.parse(value, now=ns.current_time, sep=ns.time_separator)


def _is_url(s):
    return "://" in s


def _split_command(args):
    if args and args[0] in COMMAND_ALIASES:
        return COMMAND_ALIASES[args[0]], args[1:]
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
    mode = {"full": "full", "incremental": "incremental"}.get(command, "auto")
    opts = options.backup_options(_mapping(ns, source=src, mode=mode))
    result = api.backup(_target(ns, url, writing=True), opts, progress=progress,
                        on_file=_file_lines(ns, out, _backup_line))
    if ns.jsonstat and not ns.json:
        _say(out, json.dumps(jsonstat(result, src, url), indent=4))
    if not ns.json and not ns.no_print_statistics:
        _say(out, _stats_text(result) + "\n")     # duplicity's block ends with an empty line
    for t in result.get("lagging_targets") or ():     # exit 64: complete on the others
        _say(_RedactedOutput(sys.stderr, out.secrets), f"cairn: target {t['url']} is lagging (the next backup "
                                                       f"brings it up to date): {t['error']}")
    return result, result["exit_code"]


def _restore(command, ns, args, out, progress):
    url, dest = _want(args, 2, "restore [--time T] [-r PATH] TARGET_URL DEST")
    if ns.dry_run:
        return _restore_dry_run(ns, url, dest, out)
    result = api.restore(_target(ns, url), dest, time=_time(ns), path=ns.path, force=ns.force,
                         numeric_owner=ns.numeric_owner, restore_owner=False if ns.no_restore_ownership else None,
                         progress=progress, on_file=_file_lines(ns, out, _restore_line), rename=ns.rename or ())
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
    if ns.ignore_errors:      # the losses are said above; the run counts as done
        _say(_RedactedOutput(sys.stderr, out.secrets), "cairn: IGNORED_ERROR: restore incomplete (--ignore-errors)")
        return result, ExitCode.OK
    return result, ExitCode.RESTORE_INCOMPLETE


def _restore_dry_run(ns, url, dest, out):
    """duplicity's restore --dry-run: the target's checks (exit 11 for a non-empty one), then
    what would be restored; nothing is written. A path not in the backup is exit 0 with a
    notice, as duplicity 3.2.1 does."""
    from .restore import check_target
    check_target(dest, ns.force)
    try:
        result = api.plan_restore(_target(ns, url, writing=False), time=_time(ns), path=ns.path, limit=0)
    except CairnError as e:
        if e.exit_code != ExitCode.RESTORE_PATH_NOT_FOUND:
            raise
        _say(out, f"Nothing to restore: {e.message}")
        return {"dry_run": True, "files": 0, "dest": dest}, ExitCode.OK
    result.update(dry_run=True, dest=dest)
    if not ns.json:
        _say(out, f"Would restore {result['files']} file(s) of the backup of {result['time']} into {dest} "
                  "(dry run: nothing written)")
    return result, ExitCode.OK


def _printable(text):
    """A file name on one line: control characters (a newline in a name) escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _verify(command, ns, args, out, progress):
    url, src = _want(args, 2, "verify [--compare-data] TARGET_URL SOURCE_DIR")
    if ns.compare_data_sample is not None and not ns.compare_data:
        raise UserError("command line error: --compare-data-sample goes with --compare-data")
    result = api.verify(_target(ns, url), src, time=_time(ns), path=ns.path, compare_data=ns.compare_data,
                        rules=options.selection_rules(_mapping(ns)), progress=progress,
                        data_sample=ns.compare_data_sample)
    if not ns.json:
        for d in result["differences"]:
            _say(out, f"Difference found: {d['message']}")
        of = f" of {result['files_in_backup']} in the backup" if result["files_in_backup"] is not None else ""
        sampled = (f" (the data of {result['data_compared']} picked at random)"
                   if result["data_sample"] is not None else "")
        _say(out, f"Verify complete: {result['compared']} file(s) compared{of}{sampled}, "
                  f"{len(result['differences'])} difference(s) found.")
    return result, ExitCode.GENERIC if result["differences"] else ExitCode.OK


def _collection_status(command, ns, args, out, progress):
    (url,) = _want(args, 1, "collection-status TARGET_URL")
    if ns.show_changes_in_set is not None or ns.file_changed is not None:
        return _changes(ns, url, out)
    result = api.status(_target(ns, url), stored_size=ns.stored_size)
    if not ns.json:
        out.write(format_status(result), logformat.FILES,
                  f"{logformat.CODE_COLLECTION_STATUS} {_status_control(result)}")
    return result, ExitCode.OK


def _list_current_files(command, ns, args, out, progress):
    (url,) = _want(args, 1, "list-current-files [--time T] TARGET_URL")
    # printed while the signatures are read: a million files never sit in memory at once
    with api.files_at(_target(ns, url), _time(ns)) as (infos, t):
        if ns.json:
            _json_file_list(out, command, t, infos)
            return None, ExitCode.OK
        for i in infos:
            line = timespec.asctime(i.mtime).encode() + b" " + i.relpath + b"\n"
            out.write_bytes(line, logformat.FILES, f"{logformat.CODE_FILE_LIST} {timespec.to_timestr(i.mtime)} "
                                                   f"{logformat.escape(i.relpath)} {i.type}")
    return None, ExitCode.OK


def _json_file_list(out, command, set_time, infos):
    """list-current-files --json, written one file at a time: the document run() would print,
    without holding every entry (each string redacted, as there)."""
    def put(text):
        out._put(out.stream.write, text)

    def dump(value):
        return json.dumps(redact_data(value, out.secrets))

    put('{\n  "time": ' + dump(timespec.to_iso(set_time)) + ',\n  "files": [')
    sep = "\n    "
    for i in infos:
        put(sep + dump({"path": os.fsdecode(i.relpath), "type": i.type, "mtime": timespec.to_iso(i.mtime),
                        "size": i.size, "mode": i.mode}))
        sep = ",\n    "
    put(("\n  " if sep != "\n    " else "") + '],\n  "command": ' + dump(command) + ',\n  "exit_code": '
        + str(int(ExitCode.OK)) + "\n}\n")


def _count(command, arg):
    try:
        return int(arg)
    except ValueError:
        raise UserError(f"command line error: {command} needs a number, got {arg!r}") from None


def _remove(command, ns, args, out, progress):
    """duplicity's remove-older-than, remove-all-but-n-full, remove-all-inc-of-but-n-full."""
    arg, url = _want(args, 2, f"{command} {'TIME' if command == 'remove-older-than' else 'N'} [--force] TARGET_URL")
    if command == "remove-older-than":
        policy = RetentionPolicy(older_than=_parse_time(ns, arg))
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
    policy = RetentionPolicy(older_than=_parse_time(ns, ns.older_than) if ns.older_than else None,
                             keep_full=ns.keep_full, keep_full_with_incrementals=ns.keep_full_with_incrementals,
                             cleanup=ns.cleanup)
    if policy.empty:
        raise UserError("command line error: prune needs --older-than, --keep-full, "
                        "--keep-full-with-incrementals or --cleanup")
    return _prune_with(policy, ns, url, out)


def _prune_with(policy, ns, url, out):
    if ns.b2_hide_files:
        raise UserError("command line error: --b2-hide-files is not supported by cairn's commands that delete: "
                        "cairn deletes B2 files for good, it does not hide them")
    # --dry-run wins over --force, as with duplicity: the list only
    result = api.prune(_target(ns, url), policy, force=ns.force and not ns.dry_run)
    if not ns.json:
        _print_prune(result, out)
    return result, ExitCode.OK


def _replicate(command, ns, args, out, progress):
    """duplicity 0.8's replicate: the sets TARGET_URL lacks, copied byte for byte from SOURCE_URL."""
    src_url, dst_url = _want(args, 2, "replicate [--time T] [--newer-than T] SOURCE_URL TARGET_URL")
    if ns.dry_run:
        raise UserError("replicate has no --dry-run: collection-status of both targets shows what it would copy")
    if ns.encrypt_key or ns.hidden_encrypt_key or ns.sign_key:
        raise UserError("replicate copies the files as they are (same keys on both targets); re-encrypting "
                        "for other keys (--encrypt-key, --hidden-encrypt-key, --sign-key) is not offered: "
                        "restore and back up again for that")
    if ns.mirror:
        raise UserError("replicate copies to one TARGET_URL; --mirror is for backups")
    newer = _parse_time(ns, ns.newer_than) if ns.newer_than else None
    result = api.replicate(_target(ns, src_url), _target(ns, dst_url), time=_time(ns), newer_than=newer)
    if not ns.json:
        for s in result["sets_copied"]:
            _say(out, f"Replicated backup set: {s['type']} {s['time']}")
        _say(out, f"Replicate complete: {len(result['sets_copied'])} set(s), {result['files_copied']} file(s), "
                  f"{result['bytes_copied']} bytes copied; {len(result['sets_skipped'])} set(s) already there.")
    return result, ExitCode.OK


HANDLERS = {
    "replicate": _replicate,
    "full": _backup, "incremental": _backup, "backup": _backup,
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
    end = r["timestamp"] + r["duration"]
    lines = ["--------------[ Backup Statistics ]--------------",
             f"StartTime {r['timestamp']:.2f} ({timespec.asctime(r['timestamp'])})",
             f"EndTime {end:.2f} ({timespec.asctime(end)})",
             f"ElapsedTime {r['duration']:.2f} ({r['duration']:.2f} seconds)",
             f"SourceFiles {r['source_files']}",
             f"SourceFileSize {r['source_bytes']} ({_human(r['source_bytes'])})",
             f"NewFiles {r['new_files']}",
             f"NewFileSize {r.get('new_bytes', 0)} ({_human(r.get('new_bytes', 0))})",
             f"DeletedFiles {r['deleted_files']}",
             f"ChangedFiles {r['changed_files']}",
             f"ChangedFileSize {r.get('changed_bytes', 0)} ({_human(r.get('changed_bytes', 0))})",
             # duplicity's own is always 0: the delta sizes are in RawDeltaSize
             "ChangedDeltaSize 0 (0 bytes)",
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


def jsonstat(r, source, url):
    """duplicity 3.2's --jsonstat document (its field names and nesting) from a backup result.
    cairn writes no .jsonstat file to the target, so every set's entry in local_json_stat
    is "N/A", as duplicity's are for sets written without --jsonstat."""
    r = dict(r)
    for key in ("errors", "bytes_stored", "source_files", "source_bytes", "new_files", "deleted_files",
                "changed_files", "delta_entries", "raw_delta_bytes"):
        r.setdefault(key, 0)        # a run that stored nothing (--dry-run) may not count them all
    start, elapsed = float(r["timestamp"]), float(r["duration"])
    full = r.get("chain_start_timestamp", r["timestamp"])
    before = r.get("chain_sets_before", 0)
    return {
        "Filename": None, "StartTime": start, "EndTime": start + elapsed, "ElapsedTime": elapsed,
        "Errors": r["errors"], "TotalDestinationSizeChange": r["bytes_stored"],
        "SourceFiles": r["source_files"], "SourceFileSize": r["source_bytes"],
        "NewFiles": r["new_files"], "NewFileSize": r.get("new_bytes", 0),
        "DeletedFiles": r["deleted_files"],
        "ChangedFiles": r["changed_files"], "ChangedFileSize": r.get("changed_bytes", 0), "ChangedDeltaSize": 0,
        "DeltaEntries": r["delta_entries"], "RawDeltaSize": r["raw_delta_bytes"],
        "StartTime_str": timespec.to_timestr(start), "EndTime_str": timespec.to_timestr(start + elapsed),
        "backup_meta": {
            "action": "full" if r["type"] == "full" else "inc", "skipped_inc": False,
            "time_full_bkp": int(full), "time_full_bkp_str": timespec.to_timestr(full),
            "no_of_inc": max(before - 1, 0), "concurrency": 0,
            "target": redact_url(url), "source": source,
            "local_json_stat": ["N/A"] * max(before, 1),
        },
    }


# --- duplicity's verbosity 5: one line per file --------------------------------------------------

def _backup_line(kind, relpath, ftype):
    return (kind.encode() + b" " + relpath + b"\n",
            f"{logformat.FILE_CODES[kind]} {logformat.escape(relpath)}")


def _restore_line(relpath, ftype):
    return (b"Writing " + relpath + b" of type " + ftype.encode() + b"\n",
            f"{logformat.CODE_FILE_RESTORED} {logformat.escape(relpath)} {ftype}")


def _file_lines(ns, out, line):
    """The engine's per-file callback at verbosity 5 and more (None below it: the engine then
    does no work for it): each file's line on stdout (not with --json) and in the log."""
    if ns.verbosity < logformat.INFO:
        return None
    lock = threading.Lock()     # the engine may call from its worker threads

    def on_file(*event):
        data, control = line(*event)
        with lock:
            out.write_bytes(data, logformat.FILES, control, echo=not ns.json)
    return on_file


# --- collection-status --show-changes-in-set, --file-changed ------------------------------------

def _status_control(st):
    """The machine-readable summary duplicity puts in collection-status's log record."""
    lines = ["", "backend BackendWrapper", "archive-dir (. dir)"]
    chains = [(f"chain-no-sig {i}", c) for i, c in enumerate(st["secondary_chains"])]
    if st["primary_chain"] is not None:
        chains.append(("chain-complete", st["primary_chain"]))
    for head, c in chains:
        lines.append(head)
        for s in c["sets"]:
            lines.append(f" {'full' if s['type'] == 'full' else 'inc'} {timespec.to_timestr(s['timestamp'])} "
                         f"{s['volumes']} {'enc' if s['encrypted'] else 'noenc'}")
    lines += [f"orphaned-sets-num {len(st['orphaned_sets'])}", f"incomplete-sets-num {len(st['incomplete_sets'])}"]
    return "\n".join(lines)


def _changes(ns, url, out):
    """duplicity 3.2's collection-status --show-changes-in-set N (N = 0: the newest set) and
    --file-changed PATH, from the sets' manifests."""
    sets = api.set_changes(_target(ns, url))
    result = {"sets": len(sets)}
    control = str(logformat.CODE_COLLECTION_STATUS)
    if ns.show_changes_in_set is not None:
        n = ns.show_changes_in_set
        if not 0 <= n < len(sets):
            raise UserError(f"--show-changes-in-set {n}: the target has {len(sets)} backup set(s) "
                            f"(0 is the newest)")
        s = sets[len(sets) - 1 - n]
        result.update(set=dict(s, changes=[{"type": k, "path": os.fsdecode(p)} for k, p in s["changes"]]))
        if not ns.json:
            # duplicity shows each path as its manifest has it (quoted), in a column as wide as
            # the longest one in bytes, each padded in characters
            shown = [(manifest_quote(p), k) for k, p in s["changes"]]
            width = max([5] + [len(p) for p, _k in shown])
            text = ["-------------------------", f" Backup set time: {timespec.asctime(s['timestamp'])}",
                    f"Total number of changes: {len(shown)}", f"{'File:':<{width}}  {'Type of file change:':>20}"]
            text += [f"{os.fsdecode(p):<{width}}  {k:>20}" for p, k in shown]
            out.write_bytes(os.fsencode("\n".join(text + ["-------------------------"]) + "\n"), logformat.FILES,
                            control)
    if ns.file_changed is not None:
        want = os.fsencode(ns.file_changed.strip("/")) or b"."
        found = [(s, k) for s in sets for k, p in s["changes"] if p == want]
        result.update(file=ns.file_changed, changes=[{"time": s["time"], "type": s["type"], "change": k}
                                                     for s, k in found])
        if not ns.json:
            text = ["-------------------------", f"File: {want!r}", f"Total number of backup: {len(found)}",
                    "%20s   %30s  %20s" % ("Type of backup set:", "Time:", "Type of file change:")]
            # duplicity shows the change as a bytes literal (b'New'): kept, tools may match it
            text += ["%20s   %30s  %20s" % ("Full" if s["type"] == "full" else "Incremental",
                                            timespec.asctime(s["timestamp"]), repr(k.capitalize().encode()))
                     for s, k in found]
            _say_as(out, text + ["-------------------------"], control)
    return result, ExitCode.OK


def _say_as(out, lines, control):
    """Lines printed as one record of the machine-readable log, with its code."""
    out.write("\n".join(lines) + "\n", logformat.FILES, control)


# options whose values start with a dash ("-oPort=22", "--homedir ..."): joined to their
# option with "=" so that argparse does not read the value as an option of its own
_DASH_VALUED = ("--ssh-options", "--gpg-options", "--rsync-options", "--par2-options")


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


def run(argv, secrets=None, logs=None):
    """One command line; ``logs`` (a _LogSetup) is main()'s, else this run makes and undoes one."""
    ns = build_parser().parse_intermixed_args(_join_dash_values(argv))
    command, args = _split_command(ns.args)
    progress = _Progress(sys.stderr.isatty() if ns.progress is None else ns.progress)
    secrets = secrets if secrets is not None else Secrets()
    own_logs = logs is None
    logs = _LogSetup(secrets) if own_logs else logs
    try:
        logs.apply(ns)
        if ns.rename and command != "restore":
            # duplicity renames in every command, and a backup so loses what FROM names: not here
            log.info("cairn: notice: --rename applies to restore only; %s ignores it", command)
        out = _RedactedOutput(sys.stdout, secrets, logs)
        try:
            result, rc = HANDLERS[command](command, ns, args, out, progress)
        finally:
            progress.done()
        if ns.json and result is not None:
            result = dict(result)
            result.setdefault("command", command)
            result["exit_code"] = rc
            # each string redacted on its own: redacting the whole document could cut across values
            out._put(out.stream.write, json.dumps(redact_data(result, secrets), indent=2, default=str) + "\n")
    finally:
        if own_logs:
            logs.close()
    return rc


class _RedactedOutput:
    """stdout whose text passes the redaction (file names as bytes, ``write_bytes``, do not);
    each write is also a record of the machine-readable log (``logs``, a _LogSetup), at
    duplicity's notice unless said otherwise, and gets --log-timestamp's prefix. A reader that
    goes away (``cairn list-current-files URL | head -1``) ends the output, not the run, as
    with duplicity (exit status unchanged)."""

    def __init__(self, stream, secrets, logs=None):
        self.stream = stream
        self.secrets = secrets
        self.logs = logs
        self._text_pending = False

    def write(self, text, levelno=logging.INFO, control=None):
        text = redact_text(text, self.secrets)
        if self.logs is not None:
            self.logs.record(levelno, text.removesuffix("\n"), control)
            if self.logs.timestamps:
                text = logformat.stamp(levelno, text)
        self._text_pending = True
        return self._put(self.stream.write, text)

    def write_bytes(self, data, levelno=logging.INFO, control=None, echo=True):
        """A line holding a file name, written as its bytes."""
        if self.logs is not None:
            self.logs.record(levelno, os.fsdecode(data).removesuffix("\n"), control)
            if self.logs.timestamps:
                data = logformat.stamp(levelno, "").encode() + data
        if not echo:
            return
        buf = getattr(self.stream, "buffer", None)
        if buf is None:
            self._put(self.stream.write, os.fsdecode(data))
            return
        if self._text_pending:      # text still in the text layer's buffer goes out first
            self._text_pending = False
            self._put(self.stream.flush)
        self._put(buf.write, data)

    def _put(self, write, *args):
        try:
            return write(*args)
        except BrokenPipeError:
            _stdout_gone(self.stream)
            return None

    def __getattr__(self, name):      # buffer, flush, ...
        return getattr(self.stream, name)


def _stdout_gone(stream=None):
    """The reader of ``stream`` (stdout) went away: what is still written goes nowhere, and the
    interpreter's last flush does not fail (exit 120) or print a traceback."""
    stream = stream if stream is not None else sys.stdout
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass    # not a file (a test's StringIO): nothing is flushed at exit


def _stdout_closed():
    """Whether stdout is a pipe or socket whose reader has gone (poll reports an error)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _fd, events in poller.poll(0))
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False


class _LogSetup:
    """This run's messages as duplicity's output options ask: the verbosity of stderr's
    messages, --log-timestamp, and the machine-readable log of --log-file and --log-fd. Every
    handler it adds redacts (the one redaction); ``close()`` undoes everything."""

    def __init__(self, secrets, stderr_handlers=()):
        self.secrets = secrets
        self.stderr_handlers = list(stderr_handlers)
        self.verbosity = logformat.DEFAULT
        self.timestamps = False
        self.machine = []
        self._undo = []

    def apply(self, ns):
        self.verbosity = ns.verbosity
        self.timestamps = ns.log_timestamp
        level = logformat.threshold(self.verbosity)
        root = logging.getLogger()
        if level < root.level:      # debug: let the engine's debug records be made at all
            self._undo.append(lambda old=root.level: root.setLevel(old))
            root.setLevel(level)
        for h in self.stderr_handlers:
            self._undo.append(lambda h=h, old=h.level, fmt=h.formatter: (h.setLevel(old), h.setFormatter(fmt)))
            h.setLevel(level)
            if self.timestamps:
                h.setFormatter(logformat.TimestampFormatter())
        for opener, where in ((logformat.open_log_file, ns.log_file), (logformat.open_log_fd, ns.log_fd)):
            if where is None:
                continue
            try:
                handler = opener(where)
            except (OSError, ValueError) as e:
                raise UserError(f"cannot write the log to {where}: {getattr(e, 'strerror', None) or e}") from None
            handler.setFormatter(logformat.MachineFormatter())
            handler.setLevel(level)
            handler.addFilter(RedactingFilter(self.secrets))
            root.addHandler(handler)
            self.machine.append(handler)

    def record(self, levelno, message, control=None):
        """A record of the command's own output: in the machine-readable log whatever the
        verbosity, as duplicity's statistics, status and file lists are."""
        if not self.machine:
            return
        rec = logging.LogRecord("cairn", levelno, __file__, 0, message, (), None)
        rec.dup_control = control
        for handler in self.machine:
            handler.handle(rec)

    def error(self, message, code):
        self.record(logging.ERROR, message, str(int(code)))

    def close(self):
        root = logging.getLogger()
        for handler in self.machine:
            root.removeHandler(handler)
            try:
                handler.close()
                handler.stream.close()      # the fd's stream does not close the descriptor
            except OSError:
                pass
        self.machine = []
        while self._undo:
            self._undo.pop()()


def _say(stream, text):
    stream.write(f"{text}\n")


def run_secrets(argv, env):
    """What this run must never show: the passwords of the URLs on its command line (the
    target, --mirror, a multi:// config's entries) and the credentials in its environment."""
    urls, header_values = [], []
    for i, arg in enumerate(argv):
        if arg == "--webdav-headers" and i + 1 < len(argv):
            header_values += _webdav_header_values(argv[i + 1])   # a cookie or token is a credential
        if arg.startswith("--") and "=" in arg:
            option, arg = arg.split("=", 1)
            if option == "--webdav-headers":
                header_values += _webdav_header_values(arg)
        if "://" in arg:
            urls.append(arg)
    return secrets_of(urls, env) | Secrets(header_values)


def _webdav_header_values(text):
    """A header's value and, for cookies (``a=1; b=2``), each value in it."""
    from .backends.webdav import parse_headers
    try:
        values = list(parse_headers(text).values())
    except UserError:       # refused with its own message when the target opens
        return []
    parts = [p.split("=", 1)[1].strip() for v in values for p in v.split(";") if "=" in p]
    return values + [p for p in parts if len(p) >= 4]


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


def _unexpected(e, logs, secrets):
    if logs.verbosity >= logformat.DEBUG:
        _say(sys.stderr, redact_text(traceback.format_exc().rstrip("\n"), secrets))
    message = f"unexpected error: {type(e).__name__}: {redact_text(e, secrets)}"
    _say(sys.stderr, f"cairn: {message}")
    logs.error(message, ExitCode.EXCEPTION)
    return ExitCode.EXCEPTION


def _forget_interrupt():
    """CPython (3.8 to 3.13 at least) remembers a KeyboardInterrupt that ends code run from a
    string by exec() or eval() -- dataclasses and namedtuple make their methods so, at import
    time, and cairn imports some modules lazily -- and under ``python -m`` it then ends the
    process by SIGINT after it has exited, whatever the exit code: "interrupted" would end as
    signal 2, not exit 4. The next such string run clears that memory (documented exit codes
    are the contract here, so it is cleared on purpose)."""
    exec("")  # noqa: S102  # pylint: disable=exec-used  # an empty string: nothing runs; see above


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    quiet_libraries()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run-job"]:
        from .job import main as run_job
        raise SystemExit(run_job(argv[1:]))
    if argv[:1] == ["duply-import"]:
        from .duply import main as duply_import
        raise SystemExit(duply_import(argv[1:]))
    if argv[:1] == ["job"]:
        from .hostjob import main as host_job
        raise SystemExit(host_job(argv[1:]))
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
    logs = _LogSetup(secrets, handlers)
    try:
        code = run(argv, secrets, logs)
    except CairnError as e:
        _say(sys.stderr, f"cairn: {redact_text(e.message, secrets)}")
        logs.error(redact_text(e.message, secrets), e.exit_code)
        code = e.exit_code
    except KeyboardInterrupt:
        _forget_interrupt()
        _say(sys.stderr, "cairn: interrupted")
        logs.error("interrupted", ExitCode.NO_MANIFESTS)
        code = ExitCode.NO_MANIFESTS
    except BrokenPipeError as e:
        if _stdout_closed():    # stdout's reader went away: the end of the output, quietly
            _stdout_gone()
            code = ExitCode.OK
        else:
            code = _unexpected(e, logs, secrets)
    except Exception as e:   # a bug: say so plainly, traceback only when asked for (-v9)
        code = _unexpected(e, logs, secrets)
    finally:
        logs.close()
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _stdout_gone()
        threading.excepthook = thread_hook
        logging.captureWarnings(False)
        for handler in handlers:
            handler.removeFilter(redacting)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
