# SPDX-License-Identifier: GPL-3.0-or-later
"""file:// targets: a directory on a local or mounted filesystem."""
import errno
import os
import shutil
from urllib.parse import unquote

from ..errors import BackendError, BackendNotFound, ExitCode
from ..redact import redact_url
from .base import TEMP_PREFIX, Backend, split_url


class LocalBackend(Backend):
    def __init__(self, path, url=None):
        self.path = path
        self.url = url or "file://" + path

    @classmethod
    def from_url(cls, url, options=None):
        parts = split_url(url, check_port=False)
        # duplicity accepts file:///abs and file://relative
        path = unquote(parts.netloc + parts.path) if parts.netloc else unquote(parts.path)
        if not path:
            raise BackendError(f"no path in target URL {redact_url(url)!r}", ExitCode.USER_ERROR)
        return cls(os.path.abspath(path), url)

    def _full(self, name):
        if "/" in name or name in ("", ".", ".."):
            raise BackendError(f"refusing remote name {name!r}")
        return os.path.join(self.path, name)

    def _ensure_dir(self):
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as e:
            raise _error(e, f"cannot create target directory {self.path}") from None

    def list(self):
        try:
            with os.scandir(self.path) as it:
                return [e.name for e in it if e.is_file(follow_symlinks=True)]
        except FileNotFoundError:
            return []
        except OSError as e:
            raise _error(e, f"cannot list {self.path}") from None

    def get(self, name, local_path):
        try:
            shutil.copyfile(self._full(name), local_path)
        except FileNotFoundError:
            raise BackendNotFound(f"{name} is missing from {self.path}") from None
        except OSError as e:
            raise _error(e, f"cannot read {name} from {self.path}") from None

    def put(self, local_path, name):
        self._ensure_dir()
        final = self._full(name)
        tmp = os.path.join(self.path, TEMP_PREFIX + name)
        try:
            with self.open_upload(local_path) as src, open(tmp, "wb") as dst:
                if self.throttle is None:
                    _copy_in_kernel(src, dst)
                else:
                    shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(tmp, final)
            _fsync_dir(self.path)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise _error(e, f"cannot write {name} to {self.path}") from None

    def delete(self, names):
        for name in names:
            try:
                os.unlink(self._full(name))
            except FileNotFoundError:
                pass
            except OSError as e:
                raise _error(e, f"cannot delete {name} from {self.path}") from None
        _fsync_dir(self.path)

    def rename(self, old, new):
        try:
            os.replace(self._full(old), self._full(new))
        except FileNotFoundError:
            if os.path.exists(self._full(new)):
                return
            raise BackendNotFound(f"{old} is missing from {self.path}") from None
        except OSError as e:
            raise _error(e, f"cannot rename {old} to {new} in {self.path}") from None
        _fsync_dir(self.path)

    def local_path(self, name):
        return self._full(name)

    def size(self, name):
        try:
            return os.stat(self._full(name)).st_size
        except OSError:
            return None


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _error(e, what):
    code = {errno.EACCES: ExitCode.BACKEND_PERMISSION, errno.EPERM: ExitCode.BACKEND_PERMISSION,
            errno.ENOSPC: ExitCode.BACKEND_NO_SPACE, errno.ENOENT: ExitCode.BACKEND_NOT_FOUND}.get(e.errno)
    return BackendError(f"{what}: {e.strerror}", code)


def _copy_in_kernel(src, dst):
    """Copy one open file into another without passing the bytes through this process
    (copy_file_range: a reflink or an in-kernel copy), falling back to read and write where
    the kernel or the file systems do not have it."""
    if hasattr(os, "copy_file_range"):
        try:
            while os.copy_file_range(src.fileno(), dst.fileno(), 1 << 30):
                pass
            return
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF):
                raise
            # nothing written yet is not certain: start over from the beginning of both
            src.seek(0)
            dst.seek(0)
            dst.truncate()
    shutil.copyfileobj(src, dst, 1 << 20)
