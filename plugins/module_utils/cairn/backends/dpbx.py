# SPDX-License-Identifier: GPL-3.0-or-later
"""dpbx:// targets: Dropbox, through Dropbox's official Python SDK (``dropbox`` on PyPI).

``dpbx:///some_dir`` as duplicity: the folder ``/some_dir`` of the account (or of the app's
folder, for an app with "App folder" access). Credentials, duplicity's variable first:

- ``DPBX_ACCESS_TOKEN``: an access token (duplicity's only way). Tokens Dropbox issues today
  expire after about four hours, so a nightly job needs the next form;
- ``DPBX_REFRESH_TOKEN`` with ``DPBX_APP_KEY`` (and ``DPBX_APP_SECRET`` unless the token was
  obtained with PKCE): the SDK fetches and renews access tokens itself.

Files up to 8 MiB go up in one files/upload call, larger ones in an upload session (start,
append_v2, finish) of 8 MiB parts; Dropbox makes a file visible only when the upload is
committed, so no temp name is needed. A rename is files/move_v2. The SDK's own retries are off:
the transfer layer retries. Only tested against a loopback stand-in of Dropbox's HTTP API
(docs/backends.md says which endpoints), never against Dropbox itself.
"""
import importlib
import os
import threading
from urllib.parse import unquote

from ..errors import BackendError, BackendNotFound, ExitCode, UserError
from ..redact import redact_url
from .base import Backend, check_name, error_text, local_write_error, read_full, split_url

CHUNK = 8 << 20             # bytes per upload request (Dropbox takes at most 150 MiB per call)
NO_CREDENTIALS = ("dpbx:// needs DPBX_ACCESS_TOKEN (an access token of your Dropbox app), or "
                  "DPBX_REFRESH_TOKEN with DPBX_APP_KEY (and DPBX_APP_SECRET) for tokens that renew "
                  "themselves")


class DropboxBackend(Backend):
    def __init__(self, url, options, folder):
        self.url = url
        self.options = options
        self.folder = folder                # "" (the root) or "/some/dir"
        self.credentials = {"oauth2_access_token": options.secret("DPBX_ACCESS_TOKEN"),
                            "oauth2_refresh_token": options.secret("DPBX_REFRESH_TOKEN"),
                            "app_key": options.secret("DPBX_APP_KEY"),
                            "app_secret": options.secret("DPBX_APP_SECRET")}
        if not self.credentials["oauth2_access_token"] and not (
                self.credentials["oauth2_refresh_token"] and self.credentials["app_key"]):
            raise UserError(NO_CREDENTIALS)
        self.how = "DPBX_ACCESS_TOKEN" if self.credentials["oauth2_access_token"] else "DPBX_REFRESH_TOKEN"
        self.ca_certs = options.ssl_cacert_file
        self._local = threading.local()
        self._lock = threading.Lock()
        self._clients = []

    def _client(self):
        """This thread's client: each has its own HTTP session (connection pool)."""
        client = getattr(self._local, "client", None)
        if client is None:
            import dropbox
            session = dropbox.create_session(ca_certs=self.ca_certs)
            if self.ca_certs:
                # requests lets REQUESTS_CA_BUNDLE override a session's CA file: the option wins
                session.trust_env = False
            # no retries of its own (the transfer layer retries); --timeout per packet
            client = dropbox.Dropbox(max_retries_on_error=0, max_retries_on_rate_limit=0,
                                     timeout=self.options.timeout, session=session,
                                     user_agent="cairn", **self.credentials)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _path(self, name):
        check_name(name)
        return f"{self.folder}/{name}"

    def _where(self):
        return f"dpbx://{self.folder or '/'}"

    def list(self):
        from dropbox import files
        names = []
        try:
            client = self._client()
            answer = client.files_list_folder(self.folder)
            while True:
                names += [e.name for e in answer.entries if isinstance(e, files.FileMetadata)]
                if not answer.has_more:
                    break
                answer = client.files_list_folder_continue(answer.cursor)
        except Exception as e:      # noqa: BLE001 - sorted out by _error
            if _not_found(e, "path"):
                return []
            raise self._error(e, f"cannot list {self._where()}") from None
        return names

    def put(self, local_path, name):
        from dropbox import files
        path = self._path(name)
        mode = files.WriteMode.overwrite
        size = os.path.getsize(local_path)
        try:
            client = self._client()
            with self.open_upload(local_path) as src:
                first = read_full(src, CHUNK)
                if size <= CHUNK:
                    client.files_upload(first, path, mode=mode, mute=True)
                    return
                session = client.files_upload_session_start(first)
                cursor = files.UploadSessionCursor(session_id=session.session_id, offset=len(first))
                while True:
                    data = read_full(src, CHUNK)
                    if not data or cursor.offset + len(data) >= size:    # (not data: it shrank)
                        commit = files.CommitInfo(path=path, mode=mode, mute=True)
                        client.files_upload_session_finish(data, cursor, commit)
                        return
                    client.files_upload_session_append_v2(data, cursor)
                    cursor.offset += len(data)
        except Exception as e:      # noqa: BLE001 - sorted out by _error
            raise self._error(e, f"cannot upload {name} to {self._where()}") from None

    def get(self, name, local_path):
        path = self._path(name)
        try:
            _meta, response = self._client().files_download(path)
        except Exception as e:      # noqa: BLE001 - sorted out by _error
            if _not_found(e, "path"):
                raise BackendNotFound(f"{name} is missing from {self._where()}") from None
            raise self._error(e, f"cannot download {name} from {self._where()}") from None
        try:
            with response, open(local_path, "wb") as out:
                for block in response.iter_content(1 << 20):
                    try:
                        out.write(block)
                    except OSError as e:
                        raise local_write_error(f"cannot download {name}", local_path, e) from None
        except BackendError:
            raise
        except OSError as e:
            if e.errno is not None and not _is_http_error(e):
                raise local_write_error(f"cannot download {name}", local_path, e) from None
            raise self._error(e, f"cannot download {name} from {self._where()}") from None
        except Exception as e:      # noqa: BLE001 - a connection dropped mid-body
            raise self._error(e, f"cannot download {name} from {self._where()}") from None

    def delete(self, names):
        for name in names:
            try:
                self._client().files_delete_v2(self._path(name))
            except Exception as e:      # noqa: BLE001 - sorted out by _error
                if _not_found(e, "path_lookup"):
                    continue
                raise self._error(e, f"cannot delete {name} from {self._where()}") from None

    def rename(self, old, new):
        """files/move_v2; Dropbox will not move over a file, so one in the way goes first."""
        for attempt in (1, 2):
            try:
                self._client().files_move_v2(self._path(old), self._path(new), autorename=False)
                return
            except Exception as e:      # noqa: BLE001 - sorted out by _error
                if _not_found(e, "from_lookup"):
                    if self.size(new) is not None:
                        return
                    raise BackendNotFound(f"{old} is missing from {self._where()}") from None
                if attempt == 1 and _conflict(e):
                    self.delete([new])
                    continue
                raise self._error(e, f"cannot rename {old} to {new} in {self._where()}") from None

    def size(self, name):
        from dropbox import files
        try:
            meta = self._client().files_get_metadata(self._path(name))
        except Exception:   # noqa: BLE001 - size is advisory
            return None
        return meta.size if isinstance(meta, files.FileMetadata) else None

    def reset(self):
        with self._lock:
            clients, self._clients = self._clients, []
        self._local = threading.local()
        for client in clients:
            _close(client)

    def close(self):
        self.reset()

    def _error(self, e, what):
        import requests
        from dropbox import exceptions as dexc
        if isinstance(e, BackendError):
            return e
        if isinstance(e, dexc.AuthError):
            expired = "expired" in str(getattr(e, "error", "")).lower()
            hint = ("; access tokens expire after about four hours: use DPBX_REFRESH_TOKEN with DPBX_APP_KEY"
                    if expired and self.how == "DPBX_ACCESS_TOKEN" else "")
            return BackendError(f"{what}: Dropbox refused the credentials from {self.how}"
                                f"{' (expired)' if expired else ''}{hint}", ExitCode.BACKEND_PERMISSION)
        if isinstance(e, dexc.BadInputError):
            return BackendError(f"{what}: Dropbox refused the request: {error_text(e.message)}",
                                ExitCode.BACKEND_PERMISSION if "token" in str(e.message).lower() else None)
        if isinstance(e, dexc.ApiError):
            summary = str(getattr(e, "user_message_text", None) or e.error)
            if "insufficient_space" in repr(e.error):
                return BackendError(f"{what}: the Dropbox account is full", ExitCode.BACKEND_NO_SPACE)
            if "no_write_permission" in repr(e.error) or "disallowed_name" in repr(e.error):
                return BackendError(f"{what}: Dropbox refused it ({error_text(summary)})",
                                    ExitCode.BACKEND_PERMISSION)
            return BackendError(f"{what}: {error_text(summary)}")
        if isinstance(e, (dexc.RateLimitError, dexc.InternalServerError)):
            return BackendError(f"{what}: {type(e).__name__}", transient=True)
        if isinstance(e, dexc.HttpError):
            status = getattr(e, "status_code", 0) or 0
            return BackendError(f"{what}: HTTP {status}", transient=status >= 500 or status in (408, 429))
        if isinstance(e, (requests.RequestException, OSError)):
            # (requests calls every TLS failure SSLError; only a refused certificate is permanent)
            if isinstance(e, requests.exceptions.SSLError) and "certificate verify failed" in str(e).lower():
                return BackendError(f"{what}: the TLS certificate could not be verified ({error_text(e)})",
                                    ExitCode.BACKEND_PERMISSION)
            return BackendError(f"{what}: {error_text(e)}", transient=True)
        return BackendError(f"{what}: {error_text(e)}")


def _tagged(e, tag):
    """The union member ``tag`` of an ApiError's error (files.DeleteError.path_lookup ...)."""
    from dropbox import exceptions as dexc
    err = getattr(e, "error", None) if isinstance(e, dexc.ApiError) else None
    if err is None or not hasattr(err, f"is_{tag}") or not getattr(err, f"is_{tag}")():
        return None
    return getattr(err, f"get_{tag}")()


def _not_found(e, tag):
    inner = _tagged(e, tag)
    return inner is not None and hasattr(inner, "is_not_found") and inner.is_not_found()


def _conflict(e):
    inner = _tagged(e, "to")
    return inner is not None and hasattr(inner, "is_conflict") and inner.is_conflict()


def _is_http_error(e):
    import requests
    return isinstance(e, (requests.RequestException, ConnectionError))


def _close(client):
    try:
        client.close()
    except Exception:   # noqa: BLE001 - nothing to do about a close that fails
        pass


def from_url(url, options):
    try:
        importlib.import_module("dropbox")      # only to tell a missing library apart
    except ImportError as e:
        raise UserError(f"dpbx:// targets need the Python library dropbox ({e}): pip install dropbox") from None
    parts = split_url(url, "dpbx target", check_port=False)
    if parts.netloc:
        raise UserError(f"a dpbx target is dpbx:///folder (three slashes, no host), not {redact_url(url)!r}")
    folder = unquote(parts.path).strip("/")
    if any(part in (".", "..") for part in folder.split("/")):
        raise UserError(f"the dpbx folder {folder!r} holds . or ..")
    return DropboxBackend(url, options, f"/{folder}" if folder else "")
