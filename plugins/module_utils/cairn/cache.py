# SPDX-License-Identifier: GPL-3.0-or-later
"""The local archive dir (duplicity's cache): plain manifests and gzipped signatures.

Layout as duplicity's (duplicity-format.md §1), so a user can point both tools at one cache.
Files are fetched from the target on demand, only for the chains an operation needs, and local
files whose remote twin is gone are dropped.
"""
import errno
import fcntl
import hashlib
import os
import shutil

from . import naming
from .crypto import write_gzip
from .errors import LockHeld, ManifestError
from .naming import encoding
from .localdirs import open_new, private_dir, remove_file
from .manifest import Manifest


def default_archive_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "duplicity")


def default_name(url):
    return hashlib.md5(url.encode("utf-8")).hexdigest()


# the cache names files as the target does, with the archive's prefixes (``names``: its NameScheme)
# and without .gpg, as duplicity's cache: a manifest plain, a signature gzipped

def local_manifest_name(s, names=""):
    if s.type == "full":
        return naming.manifest_name(time=s.start_time, prefix=names)
    return naming.manifest_name(start_time=s.start_time, end_time=s.end_time, prefix=names)


def local_signature_name(s, names=""):
    if s.type == "full":
        return naming.signature_name(time=s.start_time, suffix=".gz", prefix=names)
    return naming.signature_name(start_time=s.start_time, end_time=s.end_time, suffix=".gz", prefix=names)


class ArchiveDir:
    """The cache of one target. ``read_only`` (check mode): nothing is created, locked, fetched
    into, or removed here; what an operation fetches goes to a scratch dir inside the run's temp
    dir instead (``open``), which goes with it."""

    def __init__(self, archive_dir, name, read_only=False, names=None):
        self.names = naming.scheme(names)
        self.path = os.path.join(archive_dir or default_archive_dir(), name)
        self.read_only = read_only
        self.exists = private_dir(self.path, "the archive dir", create=not read_only)
        self.store = self.path        # where fetched metadata is kept
        self._lock_fd = None

    def open(self, tmpdir, clean=False):
        """Called with the run's temp dir once it exists; ``clean`` (holding the lock): remove
        the temp files a killed run left here."""
        if self.read_only:
            self.store = os.path.join(tmpdir, "archive-dir")
            os.mkdir(self.store, 0o700)
        elif clean:
            _remove_temp_files(self.path)

    # --- locking (fcntl.lockf, as duplicity's fasteners lock, so the two tools exclude each other)

    def lock(self):
        if self.read_only:
            return
        fd = os.open(os.path.join(self.path, "lockfile"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EACCES, errno.EAGAIN):
                raise LockHeld(f"another backup is running on this archive (lock {self.path}/lockfile "
                               "is held); try again when it has finished") from None
            raise
        self._lock_fd = fd

    def unlock(self):
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- files ---------------------------------------------------------------------------

    def _p(self, name):
        """Where the cached copy of ``name`` is (or would go)."""
        if self.store != self.path and self.exists and os.path.exists(os.path.join(self.path, name)):
            return os.path.join(self.path, name)
        return os.path.join(self.store, name)

    def manifest(self, s, backend, crypto, tmpdir):
        """The parsed manifest of set ``s``, from the cache or fetched and cached."""
        local = self._p(local_manifest_name(s, self.names))
        if not os.path.exists(local):
            if not s.manifest:
                raise ManifestError(f"backup set of {s.end_time} has no manifest")
            fetched = os.path.join(tmpdir, s.manifest)
            backend.get(s.manifest, fetched)
            plain = fetched + ".plain"
            crypto.decode_file(s.manifest, fetched, plain)
            _atomic_move(plain, local)
        with open(local, "rb") as f:
            data = f.read()
        return Manifest.from_bytes(data)

    def signature(self, s, backend, crypto, tmpdir):
        """Path of the local gzipped sigtar of set ``s``, fetched from the target when missing
        (the cache keeps them gzipped whatever the target's encoding, as duplicity does)."""
        local = self._p(local_signature_name(s, self.names))
        if os.path.exists(local):
            return local
        if not s.signature:
            raise ManifestError(f"backup set of {s.end_time} has no signature file")
        fetched = os.path.join(tmpdir, s.signature)
        backend.get(s.signature, fetched)
        if encoding(s.signature) == "gzip":
            gz = fetched
        else:
            plain = fetched + ".plain"
            crypto.decode_file(s.signature, fetched, plain)
            gz = fetched + ".gz"
            write_gzip(plain, gz)
            os.unlink(plain)
        _atomic_move(gz, local)
        return local

    def store_manifest(self, s, plain_path):
        _atomic_copy(plain_path, self._p(local_manifest_name(s, self.names)))

    def store_signature(self, s, gz_path):
        _atomic_copy(gz_path, self._p(local_signature_name(s, self.names)))

    def forget(self, sets):
        if self.read_only:
            return
        for s in sets:
            for name in (local_manifest_name(s, self.names), local_signature_name(s, self.names)):
                try:
                    os.unlink(self._p(name))
                except FileNotFoundError:
                    pass

    def drop_stale(self, collection):
        """Delete cached metadata of sets no longer at the target (as duplicity's sync does)."""
        if self.read_only:
            return
        keep = set()
        for s in collection.sets:
            if s.manifest and s.complete:
                keep.add(local_manifest_name(s, self.names))
            if s.signature:
                keep.add(local_signature_name(s, self.names))
        for name in os.listdir(self.path):
            p = naming.parse(name, self.names)       # another prefix's cached files are not ours
            if p is None or p.partial:
                continue
            if name not in keep and (p.manifest or p.type in ("full-sig", "new-sig")):
                os.unlink(self._p(name))


_TEMP_MARK = ".cairn-tmp."


def _temp_name(dst):
    return f"{dst}{_TEMP_MARK}{os.urandom(6).hex()}"


def _atomic_move(src, dst):
    """``src`` (in the run's private temp dir) becomes ``dst``, whole or not at all. A rename
    replaces whatever is at ``dst`` (a symlink too) without following it."""
    try:
        os.replace(src, dst)
        return
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
    _atomic_copy(src, dst)
    remove_file(src)


def _atomic_copy(src, dst):
    tmp = _temp_name(dst)
    try:
        with open(src, "rb") as fin, open_new(tmp) as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
        os.replace(tmp, dst)
    finally:
        remove_file(tmp)


def _remove_temp_files(path):
    """Temp files that a killed run left in the archive dir (we hold its lock or are alone)."""
    try:
        names = os.listdir(path)
    except OSError:
        return
    for name in names:
        if _TEMP_MARK in name or name.endswith(".cairn-tmp"):
            remove_file(os.path.join(path, name))
