# SPDX-License-Identifier: GPL-3.0-or-later
"""Typed options, and the one builder from a plain mapping to them.

Every front end (the CLI's parsed arguments, a module's params, a job's config) speaks the same
vocabulary, the module option names: ``target``, ``mirror_targets``, ``passphrase_file``,
``encrypt_keys``, ``volsize``, ``full_if_older_than`` ... and turns it into typed options here,
so an option means the same whichever front end sets it and none of them can lack one.
Durations (``lock_stale_after``, a job's intervals) and time strings go through timespec.
"""
import calendar
import os
import shlex
from dataclasses import dataclass, field, replace

from . import timespec
from .naming import NameScheme
from .backends.base import BackendOptions
from .crypto import CryptoOptions, check_gpgsm_options
from .errors import UserError
from .lock import DEFAULT_STALE_AFTER


@dataclass
class TargetOptions:
    """Where the archive is and how to read/write it: shared by every operation."""

    url: str
    crypto: CryptoOptions = field(default_factory=CryptoOptions)
    archive_dir: str = None
    name: str = None
    tempdir: str = None
    file_prefix: str = ""              # every file's name starts with it (cairn's locks too)
    # after file_prefix in the names of volumes, manifests, signatures (duplicity's per-kind prefixes)
    file_prefix_archive: str = ""
    file_prefix_manifest: str = ""
    file_prefix_signature: str = ""
    time_separator: str = timespec.TIME_SEPARATOR   # ':' in the times of 0.6-era long names
    backend: BackendOptions = field(default_factory=BackendOptions)
    mirrors: list = field(default_factory=list)    # more URLs that get every file too
    mirror_stand_in: bool = False      # a healthy mirror takes over when the primary fails
    # the target lock of writers (lock.py): seconds without a refresh before another run takes
    # it over, and whether to take over any lock at once
    lock_stale_after: int = DEFAULT_STALE_AFTER
    break_lock: bool = False
    # check mode: nothing local or remote is created, changed or removed
    read_only: bool = False

    @property
    def names(self):
        """The NameScheme of this archive's file names (naming.py), what every name goes through."""
        return NameScheme(self.file_prefix or "", self.file_prefix_archive or "", self.file_prefix_manifest or "",
                          self.file_prefix_signature or "", self.time_separator or timespec.TIME_SEPARATOR)


@dataclass
class BackupOptions:
    source: str
    mode: str = "auto"                 # auto | full | incremental
    full_if_older_than: int = None     # epoch seconds: a full is due when the last is older
    volsize: int = 200                 # MiB
    rules: list = field(default_factory=list)   # selection rules, see selection.Selection
    allow_source_mismatch: bool = False
    max_blocksize: int = 0
    jobs: int = 0                      # parallel gpg processes; 0 = number of CPUs
    adaptive_compression: bool = True  # no compression for data that does not compress
    compress_level: int = 3            # gpg -z; None = gpg's default (6), as duplicity
    # duplicity's selection and run behaviour (--files-from, --copy-links, ...)
    files_from: str = None             # only these paths (relative to the source) and their parents
    null_separator: bool = False       # filelists and files_from: NUL-separated
    copy_links: bool = False           # back up what symlinks point to, under the link's name
    full_if_n_inc: int = None          # a full when the last chain has this many incrementals
    skip_if_no_change: bool = False    # an incremental with no change stores nothing
    dry_run: bool = False              # plan and count, write nothing
    ignore_errors: bool = False        # files that could not be read do not make the exit code 9
    files_changed: bool = True         # the manifest lists the files changed (--no-files-changed: not)
    current_time: int = None           # epoch seconds: the set's time instead of the clock's (--current-time)


# option name -> the environment variable duplicity users know the credential by
CREDENTIAL_ENV = {
    "target_password": "FTP_PASSWORD",
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "aws_session_token": "AWS_SESSION_TOKEN",
    "azure_connection_string": "AZURE_CONNECTION_STRING",
    "azure_account_name": "AZURE_ACCOUNT_NAME",
    "azure_account_key": "AZURE_ACCOUNT_KEY",
    "azure_sas_token": "AZURE_SHARED_ACCESS_SIGNATURE",
}

# option name -> BackendOptions field, where they differ
_BACKEND_FIELDS = {"s3_server_side_encryption": "s3_sse", "validate_certs": "ssl_verify",
                   "ca_cert_file": "ssl_cacert_file"}
_BACKEND_DEFAULTS = BackendOptions(env={})


def _given(m, key):
    value = m.get(key)
    return value not in (None, "", [], ())


def read_passphrase_file(path):
    """The first line of a passphrase file (as duplicity's --passphrase-file... and gpg read it)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().rstrip("\r\n")
    except OSError as e:
        raise UserError(f"cannot read the passphrase file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"the passphrase file {path} is not UTF-8 text") from None


def backend_options(m, env):
    """BackendOptions: ``env`` (the process environment or a job's), then ``backend_env``, then
    the named credentials (``target_password`` ... as FTP_PASSWORD ...)."""
    merged = dict(env)
    merged.update({str(k): str(v) for k, v in (m.get("backend_env") or {}).items()})
    for option, name in CREDENTIAL_ENV.items():
        if _given(m, option):
            merged[name] = m[option]
    values = {}
    for name in BackendOptions.__dataclass_fields__:
        option = next((o for o, f in _BACKEND_FIELDS.items() if f == name), name)
        if name != "env" and m.get(option) is not None:
            values[name] = m[option]
    if isinstance(values.get("ssh_options"), (list, tuple)):
        values["ssh_options"] = " ".join(values["ssh_options"])
    # duplicity's --concurrency N: N transfers beside the volume being built; 0 (its default,
    # transfers in turn) keeps cairn's own upload concurrency
    concurrency = _count(m, "concurrency", minimum=0)
    if concurrency:
        values["upload_concurrency"] = concurrency
    return BackendOptions(env=merged, **values)


OBJECT_LOCK_MODES = ("governance", "compliance")


def _object_lock(m):
    """``s3_object_lock_mode`` and ``s3_object_lock_days``: both or neither."""
    mode, days = m.get("s3_object_lock_mode"), m.get("s3_object_lock_days")
    if mode in (None, "") and days in (None, ""):
        return {}
    if mode in (None, "") or days in (None, ""):
        raise UserError("S3 Object Lock needs both s3_object_lock_mode (--s3-object-lock-mode governance|"
                        "compliance) and s3_object_lock_days (--s3-object-lock-days N), not only "
                        + ("the mode" if days in (None, "") else "the days"))
    mode = str(mode).lower()
    if mode not in OBJECT_LOCK_MODES:
        raise UserError(f"s3_object_lock_mode (--s3-object-lock-mode) is governance or compliance, not {mode!r}")
    try:
        n = int(str(days))
    except ValueError:
        n = 0
    if isinstance(days, bool) or n <= 0:
        raise UserError(f"s3_object_lock_days (--s3-object-lock-days) must be a positive number of days, "
                        f"not {days!r}")
    return {"s3_object_lock_mode": mode, "s3_object_lock_days": n}


def crypto_options(m, env, *, writing=False, ask=None):
    """CryptoOptions. The passphrase: ``passphrase``, else ``passphrase_file``, else PASSPHRASE
    in ``env``, else ``ask()`` (a terminal prompt) when writing with symmetric encryption."""
    gpgsm = bool(m.get("use_gpgsm"))
    if m.get("no_encryption"):
        if _given(m, "encrypt_keys") or _given(m, "hidden_encrypt_keys"):
            raise UserError("no_encryption and encryption keys exclude each other")
        if gpgsm:
            raise UserError("use_gpgsm (--use-gpgsm) encrypts with gpgsm: it cannot go with "
                            "no_encryption (--no-encryption)")
        return CryptoOptions(mode="none", compress=m.get("compression") is not False)
    recipients = tuple(m.get("encrypt_keys") or ())
    hidden = tuple(m.get("hidden_encrypt_keys") or ())
    if gpgsm:
        check_gpgsm_options(CryptoOptions(mode="pubkey", hidden_recipients=hidden, sign_key=m.get("sign_key") or None))
        if writing and not recipients:
            # gpgsm encrypts to certificates only (duplicity would run `gpgsm --symmetric`, which fails)
            raise UserError("use_gpgsm (--use-gpgsm) needs the recipients' certificates: give encrypt_keys "
                            "(--encrypt-key FINGERPRINT); gpgsm has no symmetric encryption")
    pubkey = bool(recipients or hidden)
    if _given(m, "passphrase") and _given(m, "passphrase_file"):
        raise UserError("passphrase and passphrase_file exclude each other")
    if _given(m, "passphrase"):
        passphrase = m["passphrase"]
    elif _given(m, "passphrase_file"):
        passphrase = read_passphrase_file(m["passphrase_file"])
    else:
        passphrase = env.get("PASSPHRASE")
    if passphrase is None and writing and not pubkey:
        if ask is None:
            raise UserError("no passphrase: set PASSPHRASE, use a passphrase file, give encryption keys "
                            "for public-key encryption, or turn encryption off")
        passphrase = ask()
    gpg_options = m.get("gpg_options") or ()
    if isinstance(gpg_options, str):
        gpg_options = shlex.split(gpg_options)
    return CryptoOptions(mode="pubkey" if pubkey else "symmetric", passphrase=passphrase,
                         sign_passphrase=m.get("sign_passphrase") or env.get("SIGN_PASSPHRASE") or passphrase,
                         recipients=recipients, hidden_recipients=hidden, sign_key=m.get("sign_key") or None,
                         gnupg_home=m.get("gnupg_home") or env.get("GNUPGHOME") or None,
                         gpg_options=tuple(gpg_options), gpg_binary=m.get("gpg_binary") or "gpg",
                         openpgp_engine=m.get("openpgp_engine") or "builtin",
                         compress=m.get("compression") is not False, use_gpgsm=gpgsm)


def target_options(m, env=None, *, writing=False, ask=None):
    """TargetOptions from a mapping of option names (see the module docstring).

    ``env``: where credentials and PASSPHRASE/GNUPGHOME come from (default: this process's
    environment); ``writing``: the operation writes (a symmetric passphrase is then required);
    ``ask``: how to ask for a missing passphrase (the CLI on a terminal), else an error.
    """
    env = os.environ if env is None else env
    if not _given(m, "target"):
        raise UserError("no target URL")
    stale = DEFAULT_STALE_AFTER if m.get("lock_stale_after") in (None, "") else timespec.parse_duration(
        m["lock_stale_after"])
    if stale <= 0:
        raise UserError("lock_stale_after (--lock-stale-after) must be a positive duration")
    return TargetOptions(
        url=m["target"], crypto=crypto_options(m, env, writing=writing, ask=ask),
        archive_dir=m.get("archive_dir") or None, name=m.get("name") or None, tempdir=m.get("tempdir") or None,
        file_prefix=m.get("file_prefix") or "", file_prefix_archive=m.get("file_prefix_archive") or "",
        file_prefix_manifest=m.get("file_prefix_manifest") or "",
        file_prefix_signature=m.get("file_prefix_signature") or "", time_separator=time_separator(m),
        backend=replace(backend_options(m, env), **_object_lock(m)),
        mirrors=list(m.get("mirror_targets") or ()), mirror_stand_in=bool(m.get("mirror_stand_in")),
        lock_stale_after=stale,
        break_lock=bool(m.get("break_lock")), read_only=bool(m.get("read_only")))


def time_separator(m):
    """``time_separator``: the character standing for ':' in time strings (default ':')."""
    return timespec.time_separator(m.get("time_separator") or None)


def selection_rules(m):
    """The ordered selection rules (first match wins, as duplicity's): ``rules`` [(kind, value)]
    as given (the CLI keeps its command-line order there), then ``selection`` (ordered
    "+ glob"/"- glob" lines, as a duply exclude file), ``includes``, ``excludes``,
    ``include_regexps``, ``exclude_regexps``, ``include_filelist``, ``exclude_filelist``,
    ``exclude_if_present``, ``exclude_older_than``, ``exclude_device_files`` and
    ``exclude_other_filesystems``."""
    rules = list(m.get("rules") or ())
    for line in m.get("selection") or ():
        sign, _sp, glob = str(line).partition(" ")
        if sign not in ("+", "-") or not glob.strip():
            raise UserError(f"a selection line is '+ GLOB' or '- GLOB', not {line!r}")
        rules.append(("include" if sign == "+" else "exclude", glob.strip()))
    for key, kind in (("includes", "include"), ("excludes", "exclude"), ("include_regexps", "include-regexp"),
                      ("exclude_regexps", "exclude-regexp"), ("exclude_if_present", "exclude-if-present")):
        rules += [(kind, v) for v in m.get(key) or ()]
    for key in ("include_filelist", "exclude_filelist", "exclude_older_than"):
        if _given(m, key):
            rules.append((key.replace("_", "-"), m[key]))
    for key in ("exclude_device_files", "exclude_other_filesystems"):
        if m.get(key):
            rules.append((key.replace("_", "-"), None))
    out = []
    for kind, value in rules:
        if kind == "exclude-older-than" and isinstance(value, str):
            value = timespec.parse(value, now=current_time(m), sep=time_separator(m))
        elif kind in ("exclude-device-files", "exclude-other-filesystems") or kind.startswith("filter-"):
            value = None          # flags: the CLI's argparse hands over an empty list
        out.append((kind, value))
    return out


def _count(m, key, minimum):
    """An integer option (None when unset), at least ``minimum``."""
    value = m.get(key)
    if value in (None, ""):
        return None
    try:
        n = int(str(value))
    except ValueError:
        n = None
    if isinstance(value, bool) or n is None or n < minimum:
        raise UserError(f"{key} (--{key.replace('_', '-')}) must be a whole number of at least {minimum}, "
                        f"not {value!r}")
    return n


_NAMES_END = calendar.timegm((2100, 1, 1, 0, 0, 0, 0, 0, 0))


def current_time(m):
    """``current_time`` (epoch seconds), duplicity's --current-time: the time a backup stamps its
    set with and relative times count back from; None = the clock."""
    value = m.get("current_time")
    if value in (None, ""):
        return None
    try:
        t = int(value)
    except (TypeError, ValueError):
        raise UserError(f"current_time must be whole seconds since the epoch, not {value!r}") from None
    if not 0 <= t < _NAMES_END:     # a set's time must fit the years file names carry
        raise UserError(f"current_time {t} is out of range: 0 (1970) to {_NAMES_END - 1} (end of 2099)")
    return t


def backup_options(m):
    """BackupOptions from a mapping: ``source``, ``mode``, ``full_if_older_than`` (a time
    string), ``volsize``, the selection (see selection_rules), ``allow_source_mismatch``,
    ``max_blocksize``, ``jobs``, ``adaptive_compression``, ``compress_level``, ``files_from``,
    ``null_separator``, ``copy_links``, ``full_if_n_inc``, ``skip_if_no_change``, ``dry_run``,
    ``ignore_errors``, ``current_time``."""
    if not _given(m, "source"):
        raise UserError("no source directory")
    defaults = BackupOptions(source="")
    full_if = m.get("full_if_older_than")
    now = current_time(m)

    def pick(key):
        value = m.get(key)
        return getattr(defaults, key) if value is None else value
    return BackupOptions(
        source=m["source"], mode=m.get("mode") or "auto",
        full_if_older_than=timespec.parse(full_if, now=now, sep=time_separator(m)) if full_if not in (None, "") else None,
        volsize=pick("volsize"), rules=selection_rules(m), allow_source_mismatch=bool(m.get("allow_source_mismatch")),
        max_blocksize=pick("max_blocksize"), jobs=pick("jobs"), adaptive_compression=pick("adaptive_compression"),
        compress_level=pick("compress_level"), files_from=m.get("files_from") or None,
        null_separator=bool(m.get("null_separator")), copy_links=bool(m.get("copy_links")),
        full_if_n_inc=_count(m, "full_if_n_inc", minimum=0), skip_if_no_change=bool(m.get("skip_if_no_change")),
        dry_run=bool(m.get("dry_run")), ignore_errors=bool(m.get("ignore_errors")),
        files_changed=m.get("files_changed") is not False, current_time=now)
