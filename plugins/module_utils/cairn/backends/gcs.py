# SPDX-License-Identifier: GPL-3.0-or-later
"""gs:// targets: Google Cloud Storage, signed in the ways Google's own tools are.

``gs://bucket[/prefix]``; credentials, first match wins:

1. HMAC keys ``GS_ACCESS_KEY_ID`` / ``GS_SECRET_ACCESS_KEY``: GCS's S3-compatible XML API
   through boto3 (s3.py), as before;
2. ``GOOGLE_APPLICATION_CREDENTIALS``: a key file (a service account's JSON key, or any
   credentials file Google's libraries read), as duplicity's Google backends and gcloud take it;
3. gcloud's application default credentials (``gcloud auth application-default login``):
   ``$CLOUDSDK_CONFIG/application_default_credentials.json``, by default under ``~/.config/gcloud``.

2 and 3 go through Google's ``google-cloud-storage`` client (its JSON API): it signs in, refreshes
tokens and uploads (resumable for large volumes) the way Google maintains; our own code would
only trail it. ``--s3-endpoint-url`` or ``STORAGE_EMULATOR_HOST`` points it at another
endpoint (an emulator). The client's own retries are off: the transfer layer retries.
An object appears only when its upload is complete, so no temp name is needed.
"""
import importlib
import json
import logging
import os
import threading
from urllib.parse import unquote

from ..errors import BackendError, BackendNotFound, ExitCode, UserError
from ..redact import redact_url
from .base import Backend, FullReads, error_text, local_write_error, object_key, split_url

log = logging.getLogger("cairn")

SCOPES = ("https://www.googleapis.com/auth/devstorage.read_write",)
NO_CREDENTIALS = ("gs:// needs credentials: GS_ACCESS_KEY_ID and GS_SECRET_ACCESS_KEY (HMAC keys), "
                  "GOOGLE_APPLICATION_CREDENTIALS (the path of a service account's JSON key file), or "
                  "gcloud's application default credentials (gcloud auth application-default login)")
# fields of Google credential files that are secrets (a service account key, a user's refresh token)
SECRET_FIELDS = ("private_key", "private_key_id", "client_secret", "refresh_token")


def adc_file(env):
    """Where gcloud keeps the application default credentials for the user of ``env``."""
    config = env.get("CLOUDSDK_CONFIG")
    if not config:
        home = env.get("HOME") or os.path.expanduser("~")
        config = os.path.join(home, ".config", "gcloud")
    return os.path.join(config, "application_default_credentials.json")


def credential_file(env):
    """(path, how it was found) of the Google credentials file for ``env``, or (None, None)."""
    path = env.get("GOOGLE_APPLICATION_CREDENTIALS")
    if path:
        return path, "GOOGLE_APPLICATION_CREDENTIALS"
    path = adc_file(env)
    if os.path.isfile(path):
        return path, "gcloud's application default credentials"
    return None, None


def file_secrets(env):
    """The secret values inside the Google credentials file ``env`` leads to (for redaction):
    the private key (whole and line by line), its id, a client secret, a refresh token."""
    if env.get("GS_ACCESS_KEY_ID") and env.get("GS_SECRET_ACCESS_KEY"):
        return []
    path, _how = credential_file(env)
    if not path:
        return []
    try:
        with open(path, encoding="utf-8") as f:
            info = json.loads(f.read(1 << 20))
    except (OSError, ValueError):
        return []
    if not isinstance(info, dict):
        return []
    out = []
    for name in SECRET_FIELDS:
        value = info.get(name)
        if isinstance(value, str) and value:
            out.append(value)
            if name == "private_key":
                out += [line for line in value.splitlines() if "-----" not in line and len(line) > 16]
    return out


class GcsBackend(Backend):
    def __init__(self, url, options, bucket, prefix, credentials, project, how):
        self.url = url
        self.options = options
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        self.project = project
        self.how = how
        self.credentials = credentials
        endpoint = options.s3_endpoint_url or options.env.get("STORAGE_EMULATOR_HOST") or None
        if endpoint and "://" not in endpoint:
            endpoint = "http://" + endpoint          # STORAGE_EMULATOR_HOST is often host:port
        self.client_options = {"api_endpoint": endpoint} if endpoint else None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._clients = []
        self._bucket_checked = False

    def _conn(self):
        """This thread's (client, bucket): each client has its own HTTP session, as Google
        advises for threads."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            from google.cloud import storage
            client = storage.Client(project=self.project or "-", credentials=self.credentials,
                                    client_options=self.client_options)
            conn = self._local.conn = (client, client.bucket(self.bucket_name))
            with self._lock:
                self._clients.append(client)
        return conn

    @property
    def client(self):
        return self._conn()[0]

    @property
    def bucket(self):
        return self._conn()[1]

    def _key(self, name):
        return object_key(self.prefix, name)

    def _where(self):
        return f"gs://{self.bucket_name}/{self.prefix}".rstrip("/")

    def list(self):
        start = f"{self.prefix}/" if self.prefix else ""
        names = []
        try:
            for blob in self.client.list_blobs(self.bucket, prefix=start, delimiter="/",
                                               timeout=self.options.timeout, retry=None):
                name = blob.name[len(start):]
                if name and "/" not in name:
                    names.append(name)
        except Exception as e:      # noqa: BLE001 - sorted out by _error
            if _status(e) == 404:
                return []
            raise self._error(e, f"cannot list {self._where()}") from None
        return names

    def _ensure_bucket(self):
        if self._bucket_checked:
            return
        from google.api_core import exceptions as gexc
        try:
            exists = self.bucket.exists(timeout=self.options.timeout, retry=None)
        except gexc.Forbidden:
            # keys with object rights only (roles/storage.objectAdmin) may not read the bucket;
            # the upload itself tells whether it is there
            exists = True
        if not exists:
            if not self.project:
                raise BackendError(f"the bucket {self.bucket_name} does not exist, and without a project "
                                   "(project_id in the key file, or GOOGLE_CLOUD_PROJECT) it cannot be created",
                                   ExitCode.BACKEND_NOT_FOUND)
            log.info("creating bucket %s", self.bucket_name)
            try:
                self.client.create_bucket(self.bucket_name, project=self.project,
                                          timeout=self.options.timeout, retry=None)
            except gexc.Conflict:       # made meanwhile by another run
                pass
        self._bucket_checked = True

    def put(self, local_path, name):
        key = self._key(name)
        try:
            self._ensure_bucket()
            with self.open_upload(local_path) as src:
                # (the client takes a short read for the end of the file)
                self.bucket.blob(key).upload_from_file(FullReads(src), size=os.path.getsize(local_path),
                                                       timeout=self.options.timeout, retry=None)
        except Exception as e:      # noqa: BLE001 - sorted out by _error
            raise self._error(e, f"cannot upload {name} to {self._where()}") from None

    def get(self, name, local_path):
        key = self._key(name)
        try:
            with open(local_path, "wb") as out:
                self.bucket.blob(key).download_to_file(out, timeout=self.options.timeout, retry=None)
        except OSError as e:
            if not _is_library_error(e):
                raise local_write_error(f"cannot download {name}", local_path, e) from None
            raise self._error(e, f"cannot download {name} from {self._where()}") from None
        except Exception as e:      # noqa: BLE001 - sorted out by _error
            if _status(e) == 404:
                raise BackendNotFound(f"{name} is missing from {self._where()}") from None
            raise self._error(e, f"cannot download {name} from {self._where()}") from None

    def delete(self, names):
        for name in names:
            try:
                self.bucket.blob(self._key(name)).delete(timeout=self.options.timeout, retry=None)
            except Exception as e:      # noqa: BLE001 - sorted out by _error
                if _status(e) == 404:
                    continue
                raise self._error(e, f"cannot delete {name} from {self._where()}") from None

    def rename(self, old, new):
        """Objects have no rename: a server-side copy, then the old object goes."""
        try:
            self.bucket.copy_blob(self.bucket.blob(self._key(old)), self.bucket, self._key(new),
                                  timeout=self.options.timeout, retry=None)
        except Exception as e:      # noqa: BLE001 - sorted out by _error
            if _status(e) == 404:
                if self.size(new) is not None:
                    return
                raise BackendNotFound(f"{old} is missing from {self._where()}") from None
            raise self._error(e, f"cannot rename {old} to {new} in {self._where()}") from None
        self.delete([old])

    def size(self, name):
        try:
            blob = self.bucket.get_blob(self._key(name), timeout=self.options.timeout, retry=None)
        except Exception:   # noqa: BLE001 - size is advisory
            return None
        return None if blob is None else blob.size

    def reset(self):
        with self._lock:
            clients, self._clients = self._clients, []
        self._local = threading.local()
        for client in clients:
            try:
                client.close()
            except Exception:   # noqa: BLE001 - nothing to do about a close that fails
                pass

    def close(self):
        self.reset()

    def _error(self, e, what):
        import requests
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as aexc
        if isinstance(e, BackendError):
            return e
        if isinstance(e, aexc.RefreshError):
            # the token endpoint refused the key (wrong, revoked, expired refresh token)
            if getattr(e, "retryable", False):
                return BackendError(f"{what}: signing in to Google failed: {error_text(e)}", transient=True)
            return BackendError(f"{what}: Google refused the credentials from {self.how}: {error_text(e)}",
                                ExitCode.BACKEND_PERMISSION)
        if isinstance(e, aexc.TransportError):
            return BackendError(f"{what}: cannot reach Google's sign-in: {error_text(e)}", transient=True)
        if isinstance(e, (gexc.Unauthorized, gexc.Forbidden)):
            return BackendError(f"{what}: access denied for the credentials from {self.how} "
                                f"({error_text(e)})", ExitCode.BACKEND_PERMISSION)
        if isinstance(e, gexc.NotFound):
            return BackendError(f"{what}: the bucket {self.bucket_name} does not exist",
                                ExitCode.BACKEND_NOT_FOUND)
        if isinstance(e, gexc.GoogleAPICallError):
            status = _status(e) or 0
            return BackendError(f"{what}: {error_text(e)}", transient=status >= 500 or status in (408, 429))
        if isinstance(e, (requests.RequestException, OSError, ConnectionError)) or "timeout" in type(e).__name__.lower():
            return BackendError(f"{what}: {error_text(e)}", transient=True)
        return BackendError(f"{what}: {error_text(e)}")


def _status(e):
    code = getattr(e, "code", None)
    return code if isinstance(code, int) else None


def _is_library_error(e):
    """An OSError raised by the HTTP stack (a dropped connection), not by writing the file."""
    import requests
    return isinstance(e, (ConnectionError, requests.RequestException)) or e.errno is None


def _missing(error):
    # (no distribution packages it for Debian or RHEL: pip only)
    return UserError(f"gs:// with Google sign-in needs the Python library google-cloud-storage ({error}): "
                     "pip install google-cloud-storage; or use HMAC keys (GS_ACCESS_KEY_ID, GS_SECRET_ACCESS_KEY)")


def _load_credentials(options):
    path, how = credential_file(options.env)
    if not path:
        raise UserError(NO_CREDENTIALS)
    try:
        from google.auth import exceptions as aexc
    except ImportError as e:
        raise _missing(e) from None
    if not os.path.isfile(path):
        raise UserError(f"the Google credentials file {path} ({how}) does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            info = json.loads(f.read(1 << 20))
    except (OSError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) else "it is not JSON"
        raise UserError(f"cannot use the Google credentials file {path} ({how}): {reason}") from None
    kind = info.get("type") if isinstance(info, dict) else None
    # only the two kinds a backup host is given, each by its own loader: a file of another
    # kind (external_account runs programs or fetches URLs it names) is refused, not trusted
    try:
        if kind == "service_account":
            from google.oauth2 import service_account
            credentials = service_account.Credentials.from_service_account_info(info, scopes=list(SCOPES))
            project = info.get("project_id")
        elif kind == "authorized_user":
            from google.oauth2.credentials import Credentials
            credentials = Credentials.from_authorized_user_info(info, scopes=list(SCOPES))
            project = info.get("quota_project_id")
            # (google-auth always posts a user's refresh token to Google; the tests' loopback
            # stand-in of Google's token endpoint is named here, never by a user)
            if options.env.get("CAIRN_GOOGLE_TOKEN_URI"):
                credentials = credentials.with_token_uri(options.env["CAIRN_GOOGLE_TOKEN_URI"])
        else:
            raise UserError(f"cannot use the Google credentials file {path} ({how}): its type is {kind!r}; "
                            "cairn takes a service account key (service_account) or gcloud's application "
                            "default credentials (authorized_user)")
    except (ValueError, KeyError, aexc.GoogleAuthError) as e:
        # (its text names the missing field or the problem, never the key; redacted all the same)
        raise UserError(f"cannot use the Google credentials file {path} ({how}): {error_text(e)}") from None
    project = project or options.env.get("GOOGLE_CLOUD_PROJECT") or options.env.get("CLOUDSDK_CORE_PROJECT")
    return credentials, project, f"{how} ({path})"


def from_url(url, options):
    env = options.env
    if env.get("GS_ACCESS_KEY_ID") or env.get("GS_SECRET_ACCESS_KEY"):
        from .s3 import from_gs_url         # HMAC keys: the S3-compatible XML API, as before
        return from_gs_url(url, options)
    parts = split_url(url, "gs target")
    bucket = unquote(parts.hostname or "")
    if not bucket:
        raise UserError(f"no bucket in target {redact_url(url)!r}; use gs://bucket[/prefix]")
    if parts.username or parts.password:
        raise UserError("credentials do not belong in a gs:// URL; use GOOGLE_APPLICATION_CREDENTIALS "
                        "or GS_ACCESS_KEY_ID and GS_SECRET_ACCESS_KEY")
    credentials, project, how = _load_credentials(options)
    try:
        importlib.import_module("google.cloud.storage")    # only to tell a missing library apart
    except ImportError as e:
        raise _missing(e) from None
    return GcsBackend(url, options, bucket, unquote(parts.path), credentials, project, how)
