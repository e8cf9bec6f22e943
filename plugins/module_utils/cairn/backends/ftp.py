# SPDX-License-Identifier: GPL-3.0-or-later
"""ftp:// and ftps:// targets (also duplicity's lftp+ftp:// and lftp+ftps://) through ftplib.

URL as duplicity: ``ftp[s]://user[:password]@host[:port]/some_dir``. The path is relative to
the login directory (``ftp://u@host//srv/backup`` for an absolute one); missing directories are
created. The password comes from the URL or else from ``FTP_PASSWORD``; without a user the login
is anonymous. ftps is explicit FTPS (``AUTH TLS`` on the normal port, then ``PROT P`` so data
connections are encrypted too); the certificate is verified against the system CAs, or only
against ``--ssl-cacert-file``, or not at all with ``--ssl-no-check-certificate``. Passive mode
unless ``--ftp-regular``.

Uploads go to a temporary name and are renamed (RNFR/RNTO) when complete; a server that will not
rename over an existing file gets the old one deleted first. Each thread has its own connection.
"""
import ftplib
import logging
import os
import socket
import ssl
import threading
from urllib.parse import unquote

from ..errors import BackendError, BackendNotFound, ExitCode, UserError
from ..redact import redact_text, redact_url
from .base import (TEMP_PREFIX, Backend, LocalWriteError, ThreadConnections, certificate_error, check_name,
                   error_text, local_write_error, split_url)

log = logging.getLogger("cairn")

CHUNK = 1 << 20


class _FTPS(ftplib.FTP_TLS):
    """FTP_TLS whose data connections resume the control connection's TLS session.

    Many servers (vsftpd, ProFTPD, FileZilla Server) refuse data connections that do not, as a
    guard against connection stealing; ftplib does not do it on its own.
    """

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            session = getattr(self.sock, "session", None)
            try:
                conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
            except BaseException:
                conn.close()
                raise
        return conn, size


class FTPBackend(Backend):
    def __init__(self, url, options):
        self.url = url
        self.options = options
        self.display = redact_url(url)
        parts = split_url(url, "ftp target")
        scheme = parts.scheme.lower()
        if scheme.startswith("lftp+"):
            scheme = scheme[len("lftp+"):]
        if scheme not in ("ftp", "ftps"):
            raise UserError(f"not an ftp target: {self.display!r}")
        self.tls = scheme == "ftps"
        if not parts.hostname:
            raise UserError(f"no host in ftp target {self.display!r}")
        try:
            self.port = parts.port or 21
        except ValueError:
            raise UserError(f"bad port in ftp target {self.display!r}") from None
        self.host = parts.hostname
        self.user = unquote(parts.username) if parts.username else "anonymous"
        if parts.password is not None:
            self.password = unquote(parts.password)
        else:
            self.password = options.secret("FTP_PASSWORD") or ""
        # one leading slash: relative to the login directory; two: absolute
        path = unquote(parts.path)
        path = path[1:] if path.startswith("/") else path
        self.path = path.rstrip("/") if path.strip("/") else ("/" if path.startswith("/") else "")
        if any(c in self.path for c in "\r\n\0") or any(c in self.user + self.password for c in "\r\n"):
            raise UserError(f"line breaks in ftp target {self.display!r}")
        self.context = self._ssl_context() if self.tls else None
        self._lock = threading.Lock()
        self._conns = ThreadConnections()
        self._dir_ready = False
        self._mlsd = None             # whether the server lists with MLSD (asked once)
        self._size_ok = True          # whether SIZE works (to check uploads)

    def _ssl_context(self):
        opts = self.options
        if not opts.ssl_verify:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            log.warning("not verifying the TLS certificate of %s (--ssl-no-check-certificate)", self.host)
            return ctx
        try:
            return ssl.create_default_context(cafile=opts.ssl_cacert_file or None,
                                              capath=None if opts.ssl_cacert_file else opts.ssl_cacert_path or None)
        except FileNotFoundError:
            raise UserError(f"--ssl-cacert-file {opts.ssl_cacert_file} does not exist") from None
        except (ssl.SSLError, OSError) as e:
            raise UserError(f"cannot load --ssl-cacert-file {opts.ssl_cacert_file}: {error_text(e)}") from None

    # --- connections -------------------------------------------------------------------------

    def _connect(self):
        where = f"{self.host}:{self.port}"
        timeout = self.options.timeout
        ftp = _FTPS(context=self.context, timeout=timeout) if self.tls else ftplib.FTP(timeout=timeout)
        try:
            try:
                ftp.connect(self.host, self.port, timeout=timeout)
            except (OSError, EOFError) as e:
                raise BackendError(f"cannot connect to {where}: {_reason(e)}", transient=True) from None
            except ftplib.error_temp as e:
                raise BackendError(f"the ftp server {where} is not available: {_reply(e)}",
                                   transient=True) from None
            if self.tls:
                try:
                    ftp.auth()
                except ftplib.error_perm as e:
                    raise BackendError(f"the ftp server {where} does not offer TLS (AUTH TLS: "
                                       f"{_reply(e)}); use ftp:// if that is intended") from None
            try:
                ftp.login(self.user, self.password)
            except ftplib.error_perm as e:
                if _code(e) == "530":
                    raise BackendError(f"ftp login as {self.user!r} to {where} was refused: {_reply(e)} "
                                       "(password from the URL or FTP_PASSWORD)",
                                       ExitCode.BACKEND_PERMISSION) from None
                raise
            if self.tls:
                ftp.prot_p()
            ftp.set_pasv(self.options.ftp_passive)
            return ftp
        except BaseException as e:
            ftp.close()
            if isinstance(e, Exception) and not isinstance(e, BackendError):
                raise self._error(e, f"connecting to {where}") from None
            raise

    def _ftp(self):
        ftp = self._conns.current()
        if ftp is not None and ftp.sock is not None:
            return ftp
        generation = self._conns.generation
        ftp = self._connect()
        self._conns.adopt(ftp, generation)
        return ftp

    def _drop(self):
        """Forget this thread's connection without a goodbye (it may be broken)."""
        ftp = self._conns.forget()
        if ftp is not None:
            try:
                ftp.close()
            except Exception:   # noqa: BLE001 - it is being thrown away
                pass

    def reset(self):
        self._drop()

    def close(self):
        for ftp in self._conns.take_all():
            try:
                ftp.quit()
            except Exception:   # noqa: BLE001 - the server may be gone already
                pass
            try:
                ftp.close()
            except Exception:   # noqa: BLE001
                pass

    # --- errors ------------------------------------------------------------------------------

    def _error(self, e, what, missing=None):
        """A BackendError for ``e``; drops the connection unless the server answered cleanly."""
        if isinstance(e, BackendError):
            return e
        if isinstance(e, ftplib.error_perm):
            code = _code(e)
            if code == "530":
                return BackendError(f"{what}: not logged in: {_reply(e)}", ExitCode.BACKEND_PERMISSION)
            if code == "552":
                return BackendError(f"{what}: {_reply(e)} (no space left?)", ExitCode.BACKEND_NO_SPACE)
            if code == "550" and missing is not None:
                return BackendNotFound(f"{missing}: {_reply(e)}")
            return BackendError(f"{what}: {_reply(e)}")
        if isinstance(e, ftplib.error_temp):
            if _code(e) == "452":
                return BackendError(f"{what}: {_reply(e)} (no space left?)", ExitCode.BACKEND_NO_SPACE)
            if _code(e) == "421":          # the server closes the connection after a 421
                self._drop()
            return BackendError(f"{what}: {_reply(e)}", transient=True)
        self._drop()
        if isinstance(e, ssl.SSLCertVerificationError):
            reason = redact_text(e.verify_message or str(e)).rstrip(".")
            return certificate_error(what, self.host, self.port, reason, self.options)
        if isinstance(e, (ftplib.error_reply, ftplib.error_proto)):
            return BackendError(f"{what}: unexpected answer from the server: {_reply(e)}", transient=True)
        if isinstance(e, (OSError, EOFError)):
            return BackendError(f"{what}: connection to {self.host}:{self.port} failed: {_reason(e)}",
                                transient=True)
        return BackendError(f"{what}: {type(e).__name__}: {error_text(e)}", transient=True)

    # --- operations --------------------------------------------------------------------------

    def _remote(self, name):
        check_name(name)
        if "\r" in name or "\n" in name:
            raise BackendError(f"refusing remote name {name!r}")
        if not self.path:
            return name
        return self.path + name if self.path.endswith("/") else self.path + "/" + name

    def list(self):
        what = f"listing {self.display}"
        ftp = self._ftp()
        try:
            if self._mlsd is None:
                self._mlsd = self._has_mlsd(ftp)
            if self._mlsd:
                try:
                    return [_basename(n) for n, facts in ftp.mlsd(self.path)
                            if facts.get("type", "file").lower() == "file" and _basename(n)]
                except ftplib.error_perm as e:
                    if _code(e) in ("500", "502"):     # advertised but not there after all
                        self._mlsd = False
                    # else a missing directory, in the server's words (550, 501 ...): NLST tells
            try:
                names = ftp.nlst(*([self.path] if self.path else []))
            except (ftplib.error_perm, ftplib.error_temp) as e:
                # an empty or missing directory: many servers answer 450 or 550 to NLST
                if _code(e) in ("450", "550"):
                    return []
                raise
            out = []
            for n in names:
                n = _basename(n)
                if n and n not in (".", ".."):
                    out.append(n)
            return out
        except Exception as e:   # noqa: BLE001 - classified
            raise self._error(e, what) from None

    def _has_mlsd(self, ftp):
        try:
            features = ftp.sendcmd("FEAT")
        except ftplib.error_perm:
            return False
        return any(line.strip().upper().startswith("MLST") for line in features.splitlines()[1:])

    def get(self, name, local_path):
        remote = self._remote(name)
        what = f"downloading {name} from {self.display}"
        ftp = self._ftp()
        try:
            f = open(local_path, "wb")
        except OSError as e:
            raise local_write_error(what, local_path, e) from None

        def write(block):
            try:
                f.write(block)
            except OSError as e:
                raise LocalWriteError(e) from None
        try:
            with f:
                ftp.retrbinary("RETR " + remote, write, blocksize=CHUNK)
        except LocalWriteError as e:
            self._drop()                   # the transfer was abandoned half way
            raise local_write_error(what, local_path, e.error) from None
        except Exception as e:   # noqa: BLE001 - classified
            err = self._error(e, what, missing=f"{name} is missing from {self.display}")
            if isinstance(err, BackendNotFound):
                _unlink(local_path)
            raise err from None

    def put(self, local_path, name):
        final = self._remote(name)
        tmp = self._remote(TEMP_PREFIX + name)
        what = f"uploading {name} to {self.display}"
        ftp = self._ftp()
        self._ensure_dir(ftp)
        size = os.path.getsize(local_path)
        stored = False
        try:
            with self.open_upload(local_path) as src:
                stored = True
                ftp.storbinary("STOR " + tmp, src, blocksize=CHUNK)
            if self._size_ok:
                try:
                    got = ftp.size(tmp)
                except ftplib.error_perm as e:
                    if _code(e) in ("500", "502", "504"):
                        self._size_ok = False
                        got = None
                    else:
                        raise
                if got is not None and got != size:
                    raise BackendError(f"{what}: the server stored {got} of {size} bytes",
                                       ExitCode.BACKEND_UPLOAD_VALIDATION, transient=True)
            _move(ftp, tmp, final)
        except Exception as e:   # noqa: BLE001 - classified
            err = self._error(e, what)
            if stored and self._conns.holds(ftp):
                try:
                    ftp.delete(tmp)
                except Exception:   # noqa: BLE001 - cleanup removes leftovers later
                    pass
            raise err from None

    def rename(self, old, new):
        ftp = self._ftp()
        try:
            _move(ftp, self._remote(old), self._remote(new))
        except ftplib.error_perm as e:
            if _code(e) == "550" and self.size(new) is not None and self.size(old) is None:
                return                 # done already: the answer was lost
            if _code(e) == "550" and self.size(old) is None:
                raise BackendNotFound(f"{old} is missing from {self.display}") from None
            raise self._error(e, f"renaming {old} to {new} on {self.display}") from None
        except Exception as e:   # noqa: BLE001 - classified
            raise self._error(e, f"renaming {old} to {new} on {self.display}") from None

    def _ensure_dir(self, ftp):
        if self._dir_ready or self.path in ("", "/"):
            return
        with self._lock:
            if self._dir_ready:
                return
            cur = "/" if self.path.startswith("/") else ""
            try:
                for part in [p for p in self.path.split("/") if p]:
                    cur = cur + part if cur in ("", "/") else cur + "/" + part
                    try:
                        ftp.mkd(cur)
                    except ftplib.error_perm:
                        pass      # exists already, or may not be made: the upload will tell
            except Exception as e:   # noqa: BLE001 - classified
                raise self._error(e, f"creating {self.path} on {self.host}") from None
            self._dir_ready = True

    def delete(self, names):
        ftp = self._ftp()
        for name in names:
            remote = self._remote(name)
            try:
                ftp.delete(remote)
            except ftplib.error_perm as e:
                if _code(e) == "550":      # gone already
                    continue
                raise self._error(e, f"deleting {name} from {self.display}") from None
            except Exception as e:   # noqa: BLE001 - classified
                raise self._error(e, f"deleting {name} from {self.display}") from None

    def size(self, name):
        try:
            ftp = self._ftp()
            ftp.voidcmd("TYPE I")
            return ftp.size(self._remote(name))
        except ftplib.all_errors + (BackendError,):
            return None


def _move(ftp, src, dst):
    """RNFR/RNTO ``src`` to ``dst``; a server that will not rename over an existing file gets
    it deleted first."""
    _rename_from(ftp, src)
    try:
        ftp.voidcmd("RNTO " + dst)
    except ftplib.error_perm:
        try:
            ftp.delete(dst)
        except ftplib.error_perm as e:
            if _code(e) != "550":
                raise
        _rename_from(ftp, src)
        ftp.voidcmd("RNTO " + dst)


def _rename_from(ftp, path):
    resp = ftp.sendcmd("RNFR " + path)           # 5xx raise error_perm: the source is not there
    if not resp.startswith("3"):
        raise ftplib.error_reply(resp)


def _code(e):
    return str(e)[:3]


def _reply(e):
    return redact_text(str(e).strip()) or type(e).__name__


def _reason(e):
    if isinstance(e, socket.timeout) or isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, EOFError):
        return "the server closed the connection"
    return getattr(e, "strerror", None) or error_text(e)


def _basename(name):
    return name.rstrip("/").rsplit("/", 1)[-1]


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def from_url(url, options):
    return FTPBackend(url, options)
