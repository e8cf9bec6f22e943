# SPDX-License-Identifier: GPL-3.0-or-later
"""The engine's one exception hierarchy.

Every error carries a message a person can act on and a stable exit code; where duplicity has a
code for the same situation we use it (see docs/format-compatibility.md), so scripts written for
duplicity keep working. Messages never contain secrets: callers pass paths and key ids, never
passphrases.
"""
import errno
import os


class ExitCode:
    OK = 0
    GENERIC = 1            # also: verify found differences
    HOSTNAME_MISMATCH = 3
    NO_MANIFESTS = 4       # no backup found at the target (also interrupted by the user)
    MANIFEST_MISMATCH = 5  # remote manifest differs from the cached one
    BAD_MANIFEST = 6
    RESTORE_TARGET_NOT_EMPTY = 11
    VERIFY_DIR_MISSING = 12
    SOURCE_MISSING = 13
    PATTERN_OUTSIDE_SOURCE = 14
    GLOB_ERROR = 15
    TRAILING_INCLUDE = 16
    INC_WITHOUT_SIGS = 17
    RESTORE_PATH_NOT_FOUND = 19
    NOTHING_RESTORED = 20
    HASH_MISMATCH = 21
    WRONG_SIGNER = 22
    USER_ERROR = 23        # bad command line, bad time string, concurrent run (lock held)
    EXCEPTION = 30
    GPG_FAILED = 31
    SOURCE_PATH_MISMATCH = 42
    ENCRYPTION_MISMATCH = 45
    BACKEND_ERROR = 50
    BACKEND_NOT_FOUND = 51
    BACKEND_PERMISSION = 52
    BACKEND_NO_SPACE = 53
    BACKEND_UPLOAD_VALIDATION = 56
    FILES_FROM_ERROR = 72  # duplicity 3.x: a --files-from path that is not relative to the source
    # cairn's own, outside duplicity's range
    SKIPPED_FILES = 9      # backup complete, but some files could not be read (see warnings)
    UNSAFE_ARCHIVE = 60    # an archive entry tried to escape the restore target
    CORRUPT_ARCHIVE = 61   # a volume that cannot be parsed
    LOCAL_IO = 62          # this host's disk refused: no space, quota, read-only, permission
    RESTORE_INCOMPLETE = 63  # restore went past unusable volumes: the files that needed them are listed
    MIRROR_LAGGING = 64    # backup complete on the primary, but a mirror failed and lags (named in the result)
    # `cairn run-job` (sysexits.h's numbers)
    JOB_HOOK_FAILED = 70   # EX_SOFTWARE: a pre- or post-hook failed
    JOB_LOCKED = 75        # EX_TEMPFAIL: another run of this job is in progress


class CairnError(Exception):
    """Base of all engine errors. ``exit_code`` is what the CLI exits with."""

    exit_code = ExitCode.GENERIC

    def __init__(self, message, exit_code=None):
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self):
        return self.message


class ResumeMismatch(CairnError):
    """An interrupted set cannot be continued (the file its last volume stopped in has changed):
    the backup starts a new set instead; it never reaches the user as an error."""


class UserError(CairnError):
    """Bad options, bad time strings, a restore target that is not empty, ..."""

    exit_code = ExitCode.USER_ERROR


class LockHeld(UserError):
    exit_code = ExitCode.USER_ERROR


class TimeStringError(UserError):
    exit_code = ExitCode.USER_ERROR


class SelectionError(UserError):
    """A selection option that cannot work (pattern outside the source, trailing include)."""

    exit_code = ExitCode.GLOB_ERROR


class SourceError(CairnError):
    exit_code = ExitCode.SOURCE_MISSING


class NoBackupFound(CairnError):
    exit_code = ExitCode.NO_MANIFESTS


class ManifestError(CairnError):
    exit_code = ExitCode.BAD_MANIFEST


class ManifestMismatch(CairnError):
    exit_code = ExitCode.MANIFEST_MISMATCH


class NoSignatures(CairnError):
    exit_code = ExitCode.INC_WITHOUT_SIGS


class HashMismatch(CairnError):
    exit_code = ExitCode.HASH_MISMATCH


class CryptoError(CairnError):
    """gpg failed: wrong passphrase, missing secret key, corrupt ciphertext."""

    exit_code = ExitCode.GPG_FAILED


class BadPassphrase(CryptoError):
    """The passphrase is wrong or missing (symmetric, or the secret key's)."""


class NoSecretKey(CryptoError):
    """No secret key in the GnuPG home can decrypt it (a host that only encrypts)."""


class CorruptCiphertext(CryptoError):
    """Not an OpenPGP message, or a damaged one (a failed integrity check included)."""


class GpgsmNeeded(CryptoError):
    """A file written with gpgsm (.p7m) met a run without --use-gpgsm: gpg cannot read it."""


class WrongSigner(CryptoError):
    exit_code = ExitCode.WRONG_SIGNER


class EncryptionMismatch(CairnError):
    exit_code = ExitCode.ENCRYPTION_MISMATCH


class RestoreError(CairnError):
    exit_code = ExitCode.GENERIC


class UnsafeArchive(RestoreError):
    exit_code = ExitCode.UNSAFE_ARCHIVE


class CorruptArchive(CairnError):
    exit_code = ExitCode.CORRUPT_ARCHIVE


class LocalIOError(CairnError):
    """The local side (restore target, temp dir, archive dir) cannot be written or read."""

    exit_code = ExitCode.LOCAL_IO


# errors of this host's file systems that are the admin's to fix, not bugs
LOCAL_ERRNOS = frozenset((errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO))


def local_io_error(e, places=None):
    """A LocalIOError for an OSError of a local file, else None. The file is named when the
    error knows it, else ``places`` (where it can have been) is."""
    if not isinstance(e, OSError) or e.errno not in LOCAL_ERRNOS:
        return None
    if e.filename is not None:
        return LocalIOError(f"cannot write or read {os.fsdecode(e.filename)}: {e.strerror}")
    return LocalIOError(f"a local file operation failed{f' (in {places})' if places else ''}: {e.strerror}")


class BackendError(CairnError):
    """A target that cannot be reached or refuses an operation. ``transient`` errors are retried."""

    exit_code = ExitCode.BACKEND_ERROR

    def __init__(self, message, exit_code=None, transient=False):
        super().__init__(message, exit_code)
        self.transient = transient


class BackendNotFound(BackendError):
    exit_code = ExitCode.BACKEND_NOT_FOUND
