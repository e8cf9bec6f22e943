# SPDX-License-Identifier: GPL-3.0-or-later
"""duplicity 3.2.1's command line as cairn takes it: its command aliases, and one table that
classifies every option of duplicity's (implemented, notice-only, refused, removed) with the
argparse actions that give the notices, refusals and warnings, and --version in duplicity's
form. cli.py builds its parser with ``add_duplicity_compat``."""
import argparse
import atexit
import logging
import os
import sys
import tempfile

from . import __version__, options
from .errors import UserError

log = logging.getLogger("cairn")


class OrderedRule(argparse.Action):
    """Selection options keep their command-line order in one list."""

    def __call__(self, parser, ns, values, option_string=None):
        kind = self.dest.replace("_", "-")
        rules = getattr(ns, "rules", None) or []
        rules.append((kind, values))
        ns.rules = rules


# --- duplicity's command line: every command, alias and option ---------------------------------

# the duplicity whose command line cairn takes (--version says it under the name `duplicity`)
DUPLICITY_VERSION = "3.2.1"

# duplicity 3.2.1's command aliases (duplicity.cli_data.CommandAliases)
COMMAND_ALIASES = {
    "bu": "backup", "cl": "cleanup", "st": "collection-status", "fb": "full",
    "incr": "incremental", "inc": "incremental", "ib": "incremental", "ls": "list-current-files",
    "ra": "remove-all-but-n-full", "ri": "remove-all-inc-of-but-n-full", "ro": "remove-older-than",
    "rb": "restore", "vb": "verify",
}

IMPLEMENTED, NOTICE, REFUSED, REMOVED = "implemented", "notice", "refused", "removed"

# Every option of duplicity 3.2.1 (duplicity.cli_data.OptionKwargs), of its removed 0.7/0.8-era
# options (cli_data.removed_options) and of the two it renamed in 2.0, classified so none is
# forgotten (a test walks duplicity's own table against this one):
#   IMPLEMENTED  the parser maps it onto cairn's feature (the second field says how)
#   NOTICE       accepted with its arity, one line on stderr names it and why it has no effect
#   REFUSED      exit 23: accepting it would claim something cairn does not do
#   REMOVED      gone from duplicity 2.0+, still in duply confs: accepted with a warning
# For NOTICE, REFUSED and REMOVED the third field is the option's arity (values it takes).
# Notices name the option only, never its value (--webdav-headers may carry a cookie).
DUPLICITY_OPTIONS = {
    "--allow-source-mismatch": (IMPLEMENTED, "as duplicity's"),
    "--archive-dir": (IMPLEMENTED, "the local cache of manifests and signatures"),
    "--asynchronous-upload": (IMPLEMENTED, "uploads always run concurrently (--upload-concurrency)"),
    "--azure-blob-tier": (IMPLEMENTED, "tier of each blob written"),
    "--azure-max-block-size": (IMPLEMENTED, "bytes per block of a blob uploaded in blocks (default 4 MiB)"),
    "--azure-max-connections": (IMPLEMENTED, "requests per blob transfer (default 4; blobs at once: "
                                             "--upload-concurrency)"),
    "--azure-max-single-put-size": (IMPLEMENTED, "one Put Blob up to this many bytes, blocks above (default 8 MiB)"),
    "--b2-hide-files": (NOTICE, "cairn deletes B2 files for good; it is refused by the commands that delete "
                                "(cleanup, remove-*, prune)", 0),
    "--backend-retry-delay": (IMPLEMENTED, "first wait before a retry (doubles up to 30 s)"),
    "--cf-backend": (NOTICE, "cairn has no Rackspace Cloud Files backend", 1),
    "--check-remote": (NOTICE, "cairn always reads the target's file list and syncs its cache from it", 0),
    "--compare-data": (IMPLEMENTED, "verify compares file contents too"),
    "--compression": (IMPLEMENTED, "run options"),
    "--concurrency": (IMPLEMENTED, "run options"),
    "--config-dir": (NOTICE, "cairn keeps no configuration files there (its cache is --archive-dir)", 1),
    "--copy-blocksize": (NOTICE, "cairn's transfers choose their own block sizes", 1),
    "--copy-links": (IMPLEMENTED, "run options"),
    "--current-time": (IMPLEMENTED, "epoch seconds taken as now: the time of the set a backup writes (after "
                                    "the last set's, or exit 23), and what relative times and restore count from"),
    "--dry-run": (IMPLEMENTED, "run options"),
    "--encrypt-key": (IMPLEMENTED, "public-key encryption to this key (repeatable)"),
    "--encrypt-secret-keyring": (NOTICE, "gpg 2.1 and later keep secret keys in the GnuPG home: set GNUPGHOME",
                                 1),
    "--encrypt-sign-key": (IMPLEMENTED, "--encrypt-key and --sign-key with the same key"),
    "--encryption": (IMPLEMENTED, "the default; undoes an earlier --no-encryption"),
    "--exclude": (IMPLEMENTED, "selection, in command-line order"),
    "--exclude-device-files": (IMPLEMENTED, "selection"),
    "--exclude-filelist": (IMPLEMENTED, "selection"),
    "--exclude-if-present": (IMPLEMENTED, "selection"),
    "--exclude-older-than": (IMPLEMENTED, "selection"),
    "--exclude-other-filesystems": (IMPLEMENTED, "selection"),
    "--exclude-regexp": (IMPLEMENTED, "selection"),
    "--file-changed": (IMPLEMENTED, "output"),
    "--file-prefix": (IMPLEMENTED, "prefix of every file written and read"),
    "--file-prefix-archive": (IMPLEMENTED, "prefix of volume names, after --file-prefix, written and read"),
    "--file-prefix-jsonstat": (NOTICE, "cairn writes no jsonstat file to the target", 1),
    "--file-prefix-manifest": (IMPLEMENTED, "prefix of manifest names, after --file-prefix, written and read "
                                            "(the cache's too)"),
    "--file-prefix-signature": (IMPLEMENTED, "prefix of signature names, after --file-prefix, written and read "
                                             "(the cache's too)"),
    "--files-changed": (IMPLEMENTED, "output"),
    "--files-from": (IMPLEMENTED, "run options"),
    "--filter-globbing": (IMPLEMENTED, "run options"),
    "--filter-ignorecase": (IMPLEMENTED, "run options"),
    "--filter-literal": (IMPLEMENTED, "run options"),
    "--filter-regexp": (IMPLEMENTED, "run options"),
    "--filter-strictcase": (IMPLEMENTED, "run options"),
    "--force": (IMPLEMENTED, "cleanup and remove-* delete (else they list)"),
    "--ftp-passive": (IMPLEMENTED, "the default"),
    "--ftp-regular": (IMPLEMENTED, "active FTP"),
    "--full-if-n-inc": (IMPLEMENTED, "run options"),
    "--full-if-older-than": (IMPLEMENTED, "as duplicity's"),
    "--gpg-binary": (IMPLEMENTED, "the gpg to run"),
    "--gpg-options": (IMPLEMENTED, "more gpg options"),
    "--hidden-encrypt-key": (IMPLEMENTED, "public-key encryption, recipient hidden"),
    "--idr-fakeroot": (NOTICE, "cairn has no IDrive backend", 1),
    "--ignore-errors": (IMPLEMENTED, "run options"),
    "--imap-full-address": (NOTICE, "cairn has no IMAP backend", 0),
    "--imap-mailbox": (NOTICE, "cairn has no IMAP backend", 1),
    "--include": (IMPLEMENTED, "selection, in command-line order"),
    "--include-filelist": (IMPLEMENTED, "selection"),
    "--include-regexp": (IMPLEMENTED, "selection"),
    "--jsonstat": (IMPLEMENTED, "output"),
    "--log-fd": (IMPLEMENTED, "output"),
    "--log-file": (IMPLEMENTED, "output"),
    "--log-timestamp": (IMPLEMENTED, "output"),
    "--max-blocksize": (IMPLEMENTED, "librsync block size cap"),
    "--metadata-sync-mode": (NOTICE, "cairn fetches from the target only the metadata its cache lacks", 1),
    "--mf-purge": (NOTICE, "cairn has no MediaFire backend", 0),
    "--mp-segment-size": (NOTICE, "cairn has no Swift backend (S3 uploads use --s3-multipart-chunk-size)", 1),
    "--name": (IMPLEMENTED, "name of the cache under --archive-dir"),
    "--no-check-remote": (NOTICE, "cairn always reads the target's file list and syncs its cache from it", 0),
    "--no-compression": (IMPLEMENTED, "run options"),
    "--no-encryption": (IMPLEMENTED, "plain volumes"),
    "--no-files-changed": (IMPLEMENTED, "output"),
    "--no-print-statistics": (IMPLEMENTED, "no statistics after a backup"),
    "--no-restore-ownership": (IMPLEMENTED, "restore keeps the restoring user as owner"),
    "--null-separator": (IMPLEMENTED, "NUL-separated filelists"),
    "--num-retries": (IMPLEMENTED, "retries of a failed transfer"),
    "--numeric-owner": (IMPLEMENTED, "restore owners by number, not by name"),
    "--par2-options": (NOTICE, "cairn has no par2 wrapper backend", 1),
    "--par2-redundancy": (NOTICE, "cairn has no par2 wrapper backend", 1),
    "--par2-volumes": (NOTICE, "cairn has no par2 wrapper backend", 1),
    "--path-to-restore": (IMPLEMENTED, "restore, verify, list one path"),
    "--print-statistics": (IMPLEMENTED, "the default"),
    "--progress": (IMPLEMENTED, "progress line on stderr"),
    "--progress-rate": (NOTICE, "cairn's progress line is rewritten at most twice a second", 1),
    "--pydevd": (NOTICE, "a debugger hook of duplicity's", 0),
    "--rename": (IMPLEMENTED, "restore writes FROM (and what is below it) at TO, a relative path in the "
                              "target (TO with '..' or absolute: exit 23); other commands ignore it with a notice"),
    "--restore-ownership": (IMPLEMENTED, "the default (as root); undoes --no-restore-ownership"),
    "--restore-time": (IMPLEMENTED, "-t, --time: restore, verify, list as of that time"),
    "--rsync-options": (NOTICE, "cairn has no rsync backend", 1),
    "--s3-endpoint-url": (IMPLEMENTED, "S3-compatible endpoint"),
    "--s3-kms-grant": (IMPLEMENTED, "x-amz-grant-full-control"),
    "--s3-kms-key-id": (IMPLEMENTED, "SSE-KMS key"),
    "--s3-multipart-chunk-size": (IMPLEMENTED, "MiB per part"),
    "--s3-multipart-max-procs": (IMPLEMENTED, "parts in flight"),
    "--s3-region-name": (IMPLEMENTED, "S3 region"),
    "--s3-unencrypted-connection": (IMPLEMENTED, "plain HTTP to the endpoint"),
    "--s3-use-deep-archive": (IMPLEMENTED, "storage class DEEP_ARCHIVE"),
    "--s3-use-glacier": (IMPLEMENTED, "storage class GLACIER"),
    "--s3-use-glacier-ir": (IMPLEMENTED, "storage class GLACIER_IR"),
    "--s3-use-ia": (IMPLEMENTED, "storage class STANDARD_IA"),
    "--s3-use-onezone-ia": (IMPLEMENTED, "storage class ONEZONE_IA"),
    "--s3-use-rrs": (IMPLEMENTED, "storage class REDUCED_REDUNDANCY"),
    "--s3-use-server-side-encryption": (IMPLEMENTED, "SSE-S3"),
    "--s3-use-server-side-kms-encryption": (IMPLEMENTED, "SSE-KMS"),
    "--scp-command": (NOTICE, "cairn speaks SFTP/SCP itself; use --ssh-options", 1),
    "--sftp-command": (NOTICE, "cairn speaks SFTP itself; use --ssh-options", 1),
    "--show-changes-in-set": (IMPLEMENTED, "output"),
    "--sign-key": (IMPLEMENTED, "sign with this key"),
    "--skip-if-no-change": (IMPLEMENTED, "run options"),
    "--skip-volume": (NOTICE, "duplicity's debugging hook; cairn's restore goes past a volume it cannot read "
                              "and names what was lost (exit 63)", 1),
    "--ssh-askpass": (NOTICE, "cairn never prompts for an SSH password: keys, the URL's password or "
                              "FTP_PASSWORD", 0),
    "--ssh-options": (IMPLEMENTED, "-oIdentityFile, -oPort, -oUserKnownHostsFile ..."),
    "--ssl-cacert-file": (IMPLEMENTED, "CA bundle for webdavs/ftps"),
    "--ssl-cacert-path": (IMPLEMENTED, "a directory of c_rehash'ed CA files for webdavs/ftps"),
    "--ssl-no-check-certificate": (IMPLEMENTED, "no certificate check (webdavs, ftps)"),
    "--swift-storage-policy": (NOTICE, "cairn has no Swift backend", 1),
    "--tempdir": (IMPLEMENTED, "where temporary files go"),
    "--time-separator": (IMPLEMENTED, "the character for ':' in time strings given (-t, remove-older-than ...) "
                                      "and in old long file names read"),
    "--timeout": (IMPLEMENTED, "network timeout"),
    "--use-agent": (NOTICE, "cairn hands gpg the passphrase itself and never leaves it in gpg-agent", 0),
    "--use-gpgsm": (IMPLEMENTED, "encrypt and decrypt with gpgsm (X.509, S/MIME) to the --encrypt-key "
                                 "certificates; files end in .p7m"),
    "--verbosity": (IMPLEMENTED, "output"),
    "--version": (IMPLEMENTED, "duplicity's form under the name duplicity"),
    "--volsize": (IMPLEMENTED, "volume size in MiB"),
    "--webdav-headers": (IMPLEMENTED, "extra request headers, CSV name,value pairs (e.g. Cookie,name=value)"),
    # renamed in duplicity 2.0 (it refuses the old names); cairn keeps the old spelling working
    "--file-to-restore": (IMPLEMENTED, "the 0.8 name of --path-to-restore (duply's fetch uses it)"),
    "--do-not-restore-ownership": (IMPLEMENTED, "the 0.8 name of --no-restore-ownership"),
    # removed in duplicity 2.0, still in duply confs and in duply's calls for older versions
    "--exclude-globbing-filelist": (REMOVED, "read as --exclude-filelist (which globs since 0.7)", 1),
    "--include-globbing-filelist": (REMOVED, "read as --include-filelist (which globs since 0.7)", 1),
    "--exclude-filelist-stdin": (REMOVED, "read as --exclude-filelist of standard input", 0),
    "--include-filelist-stdin": (REMOVED, "read as --include-filelist of standard input", 0),
    "--s3-use-new-style": (REMOVED, "ignored: cairn always uses new-style (virtual-host or path) S3 "
                                    "addressing as boto3 does", 0),
    "--s3-european-buckets": (REMOVED, "ignored: a bucket's region comes from --s3-region-name or the bucket", 0),
    "--s3-use-multiprocessing": (REMOVED, "ignored: parts upload concurrently (--s3-multipart-max-procs)", 0),
    "--s3-multipart-max-timeout": (REMOVED, "ignored: transfers time out after --timeout", 1),
    "--old-filenames": (REMOVED, "ignored: cairn writes duplicity's current file names", 0),
    "--short-filenames": (REMOVED, "ignored: cairn writes duplicity's current file names", 0),
    "--gio": (REMOVED, "ignored: cairn has no GIO backend; the URL's scheme chooses the backend", 0),
}

# the removed options that are real selection filelists: the rule kind each one adds
_REMOVED_RULES = {"--exclude-globbing-filelist": "exclude-filelist", "--include-globbing-filelist": "include-filelist",
                  "--exclude-filelist-stdin": "exclude-filelist", "--include-filelist-stdin": "include-filelist"}

# duplicity 0.7's URL forms of S3, read as s3:// (with a warning)
OLD_URL_SCHEMES = ("s3+http", "boto3+s3")


def _once(ns, option):
    """True the first time ``option`` is seen in this parse (one line per option, however often given)."""
    seen = getattr(ns, "_compat_seen", None)
    if seen is None:
        seen = set()
        setattr(ns, "_compat_seen", seen)
    if option in seen:
        return False
    seen.add(option)
    return True


def _later(ns, level, text):
    """A message of the parse, logged once the run's verbosity and log files are set up
    (by _target, which every command calls first): -v0 keeps notices and warnings quiet."""
    ns._compat_messages = (getattr(ns, "_compat_messages", None) or []) + [(level, text)]


def flush_compat_messages(ns):
    for level, text in getattr(ns, "_compat_messages", None) or ():
        log.log(level, text)
    ns._compat_messages = []


class _Notice(argparse.Action):
    """An option of duplicity's that has no effect in cairn: its values are dropped unseen."""

    def __call__(self, parser, ns, values, option_string=None):
        if _once(ns, self.dest):
            _later(ns, logging.INFO, f"cairn: notice: {self.dest} has no effect in cairn: "
                                     f"{DUPLICITY_OPTIONS[self.dest][1]}")
        if self.dest == "--b2-hide-files":
            ns.b2_hide_files = True


class _Refused(argparse.Action):
    def __call__(self, parser, ns, values, option_string=None):
        raise UserError(f"command line error: {self.dest} is not supported by cairn: {DUPLICITY_OPTIONS[self.dest][1]}")


class _Removed(OrderedRule):
    """A 0.7/0.8-era option: a warning, and the selection filelist it stands for where it is one."""

    def __call__(self, parser, ns, values, option_string=None):
        option = self.dest
        if _once(ns, option):
            _later(ns, logging.WARNING,
                   f"cairn: warning: {option} was removed in duplicity 2.0; {DUPLICITY_OPTIONS[option][1]}")
        kind = _REMOVED_RULES.get(option)
        if kind is None:
            return
        if self.nargs == 0:
            values = _stdin_filelist(option)
        ns.rules = (getattr(ns, "rules", None) or []) + [(kind, values)]


def _stdin_filelist(option):
    """Standard input, read once into a private file that the selection can read like any filelist."""
    if sys.stdin is None or sys.stdin.isatty():
        raise UserError(f"command line error: {option} reads the filelist from standard input, "
                        "which is a terminal (or closed)")
    data = sys.stdin.buffer.read()
    fd, path = tempfile.mkstemp(prefix="cairn-filelist-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    atexit.register(_unlink_quietly, path)
    return path


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


class _EncryptSignKey(argparse.Action):
    """duplicity's --encrypt-sign-key: encrypt to the key and sign with it."""

    def __call__(self, parser, ns, values, option_string=None):
        ns.encrypt_key = list(ns.encrypt_key or ()) + [values]
        ns.sign_key = values


class VersionAction(argparse.Action):
    """duplicity's version line under duplicity's name (wrappers such as duply parse it), cairn's otherwise."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser, ns, values, option_string=None):
        sys.stdout.write(version_line(sys.argv[0]) + "\n")     # stdout, as argparse's and duplicity's
        sys.stdout.flush()
        parser.exit()


def version_line(program):
    if os.path.basename(program or "") == "duplicity":
        return f"duplicity {DUPLICITY_VERSION} (cairn {__version__})"
    return f"cairn {__version__} (duplicity {DUPLICITY_VERSION} compatible)"


def _epoch_seconds(value):
    try:
        return options.current_time({"current_time": value})
    except UserError as e:
        raise argparse.ArgumentTypeError(e.message) from None


def add_duplicity_compat(p):
    """duplicity's options that cairn takes for its command line's sake only: notices, refusals,
    the removed options, and the few that map onto cairn's options under another shape."""
    p.add_argument("--encryption", dest="no_encryption", action="store_false")
    p.add_argument("--encrypt-sign-key", action=_EncryptSignKey, metavar="KEY")
    p.add_argument("--restore-ownership", dest="no_restore_ownership", action="store_false")
    p.add_argument("--backend-retry-delay", dest="retry_delay", type=float, metavar="SECONDS",
                   help="first wait before retrying a transfer (doubles, up to 30 s)")
    p.add_argument("--current-time", dest="current_time", type=_epoch_seconds, metavar="SECONDS",
                   help="take this time (epoch seconds) as now: the new set's time, and what relative times "
                        "count back from (duplicity's test hook)")
    p.add_argument("--rename", dest="rename", nargs=2, action="append", metavar=("FROM", "TO"),
                   help="restore: write the backup's path FROM (and what is in it) at TO, relative to the "
                        "restore target (repeatable)")
    p.set_defaults(b2_hide_files=False)
    actions = {NOTICE: _Notice, REFUSED: _Refused, REMOVED: _Removed}
    for option, entry in DUPLICITY_OPTIONS.items():
        if entry[0] in actions:
            p.add_argument(option, dest=option, action=actions[entry[0]], nargs=None if entry[2] == 1 else entry[2],
                           default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def warn_old_url(url):
    """duplicity 0.7's s3+http:// and boto3+s3:// read as s3:// (the backends accept them too)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in OLD_URL_SCHEMES:
        log.warning("cairn: warning: %s:// is duplicity 0.7's form of s3://; read as s3://", scheme)
