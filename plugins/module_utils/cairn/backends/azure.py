# SPDX-License-Identifier: GPL-3.0-or-later
"""azure:// targets: Azure Blob Storage (azure-storage-blob).

``azure://container[/prefix]``, as duplicity. Credentials come from the environment under
duplicity's names, first match wins:

1. ``AZURE_CONNECTION_STRING`` (``AccountName=...;AccountKey=...`` or ``...;SharedAccessSignature=...``;
   a ``BlobEndpoint=...`` inside it points at another endpoint),
2. ``AZURE_ACCOUNT_NAME`` + ``AZURE_ACCOUNT_KEY``,
3. ``AZURE_ACCOUNT_NAME`` + ``AZURE_SHARED_ACCESS_SIGNATURE``.

``AZURE_ACCOUNT_URL`` overrides the endpoint (``https://<account>.blob.core.windows.net`` by default),
e.g. ``http://127.0.0.1:10000/devstoreaccount1`` for Azurite. The container is created when missing.

Files are block blobs. A block blob's content becomes visible only when the whole upload is
committed (one Put Blob, or Put Block List after all blocks), so a volume appears under its final
name only when complete and no temp name is needed. The SDK's own retries are off: the transfer
layer retries, with one policy for all backends. Account keys and SAS tokens never appear in a
message: errors are reduced to a status and an error code, and every message is redacted.
"""
import errno
import logging
import os
import re
import threading
import time
from urllib.parse import unquote, urlsplit

try:
    from azure.core.credentials import AzureNamedKeyCredential
    from azure.core.exceptions import (AzureError, ClientAuthenticationError, HttpResponseError,
                                       ResourceExistsError, ResourceNotFoundError, ServiceRequestError,
                                       ServiceResponseError)
    from azure.storage.blob import BlobPrefix, BlobServiceClient, BlobType, StandardBlobTier
    from requests import Session
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry
except ImportError as _import_error:   # reported when a target of this kind is opened
    IMPORT_ERROR = _import_error
else:
    IMPORT_ERROR = None

from ..errors import BackendError, BackendNotFound, ExitCode, UserError
from ..redact import Secrets, redact_text, redact_url
from .base import Backend, local_write_error, missing_library, object_key, split_url

log = logging.getLogger("cairn")

MiB = 1 << 20
# transfers of one blob run this many requests at once, whatever --upload-concurrency says
BLOB_CONCURRENCY = 4
SINGLE_PUT_MAX = 8 * MiB        # up to this size one Put Blob; above, 4 MiB blocks + Put Block List
BLOCK_SIZE = 4 * MiB
# Azure container names: 3-63 of [a-z0-9-], starting and ending with a letter or digit
_CONTAINER_RE = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*$")
_TRANSIENT_STATUS = {408, 429}


class AzureBackend(Backend):
    def __init__(self, url, options, container, prefix, *, account_url, credential=None,
                 connection_string=None, secrets=()):
        self.url = url
        self.options = options
        self._concurrency = options.azure_max_connections or BLOB_CONCURRENCY   # per blob transfer
        self.container = container
        self.prefix = prefix.strip("/")
        self._account_url = account_url
        self._credential = credential
        self._connection_string = connection_string
        self._secrets = Secrets(secrets)
        self._lock = threading.Lock()
        self._service = None
        self._client = None
        self._stale = []             # clients dropped by reset(), closed by close()
        self._container_checked = False
        tier = options.azure_blob_tier
        if tier:
            tiers = {t.value.lower(): t for t in StandardBlobTier}
            if tier.lower() not in tiers:
                raise UserError(f"unknown Azure blob tier {tier!r}; use one of "
                                f"{', '.join(t.value for t in StandardBlobTier)}")
            self.tier = tiers[tier.lower()]
        else:
            self.tier = None

    # --- the client ---------------------------------------------------------------------------

    def _container_client(self):
        with self._lock:
            if self._client is None:
                self._service = self._new_service()
                self._client = self._service.get_container_client(self.container)
            return self._client

    def _new_service(self):
        # one session per client with a pool big enough for every upload's concurrent requests,
        # and urllib3's retries off like the SDK's (the transfer layer retries)
        session = Session()
        pool = max(10, self._concurrency * max(1, self.options.upload_concurrency) + 2)
        adapter = HTTPAdapter(
            pool_connections=4, pool_maxsize=pool,
            max_retries=Retry(total=False, redirect=False, raise_on_status=False))
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        kwargs = dict(session=session, retry_total=0, connection_timeout=self.options.timeout,
                      read_timeout=self.options.timeout, logging_enable=False,
                      max_single_put_size=self.options.azure_max_single_put_size or SINGLE_PUT_MAX,
                      max_block_size=self.options.azure_max_block_size or BLOCK_SIZE,
                      max_single_get_size=32 * MiB, max_chunk_get_size=BLOCK_SIZE)
        try:
            if self._connection_string is not None:
                return BlobServiceClient.from_connection_string(self._connection_string, **kwargs)
            return BlobServiceClient(self._account_url, credential=self._credential, **kwargs)
        except (ValueError, TypeError, AzureError) as e:
            raise UserError(self._redact(f"cannot set up the Azure client for {self._where()}: {e}")) from None

    def reset(self):
        # Other threads may still be using the old client; it is closed at close().
        with self._lock:
            if self._service is not None:
                self._stale.append(self._service)
            self._service = None
            self._client = None

    def close(self):
        with self._lock:
            services = self._stale + ([self._service] if self._service is not None else [])
            self._stale = []
            self._service = None
            self._client = None
        for s in services:
            try:
                s.close()
            except Exception:   # noqa: BLE001 - closing is best effort
                pass

    # --- names --------------------------------------------------------------------------------

    def _blob_name(self, name):
        return object_key(self.prefix, name)

    def _where(self):
        return f"azure://{self.container}/{self.prefix}".rstrip("/")

    # --- operations ---------------------------------------------------------------------------

    def list(self):
        start = f"{self.prefix}/" if self.prefix else ""
        names = []
        try:
            # walk_blobs with a delimiter: only the direct children, "subdirectories" come back
            # as BlobPrefix items and are skipped
            for item in self._container_client().walk_blobs(name_starts_with=start or None, delimiter="/"):
                if isinstance(item, BlobPrefix):
                    continue
                name = item.name[len(start):]
                if name and "/" not in name:
                    names.append(name)
        except AzureError as e:
            if isinstance(e, ResourceNotFoundError) and _code_of(e) == "ContainerNotFound":
                return []                  # no container yet: nothing there
            raise self._error(e, f"cannot list {self._where()}") from None
        return names

    def _ensure_container(self):
        if self._container_checked:
            return
        try:
            self._container_client().create_container()
            log.info("created Azure container %s", self.container)
        except ResourceExistsError:
            pass
        except HttpResponseError as e:
            # A SAS scoped to the container may not create containers, though the container is
            # there; go on, and a missing container shows as the upload's own error.
            if e.status_code != 403:
                raise
            log.debug("cannot create Azure container %s (%s); assuming it exists", self.container,
                      _code_of(e) or "403")
        self._container_checked = True

    def put(self, local_path, name):
        blob_name = self._blob_name(name)
        try:
            self._ensure_container()
            blob = self._container_client().get_blob_client(blob_name)
            try:
                size = os.path.getsize(local_path)
                src = self.open_upload(local_path)
            except OSError as e:
                raise BackendError(f"cannot read {local_path}: {e.strerror}") from None
            with src:
                # A block blob is committed only when complete (Put Blob, or Put Block List once
                # every block is uploaded): readers never see a partial volume under its name.
                blob.upload_blob(src, length=size, blob_type=BlobType.BLOCKBLOB, overwrite=True,
                                 max_concurrency=self._concurrency, standard_blob_tier=self.tier)
        except AzureError as e:
            raise self._error(e, f"cannot upload {name} to {self._where()}") from None

    def get(self, name, local_path):
        blob_name = self._blob_name(name)
        try:
            downloader = self._container_client().download_blob(blob_name, max_concurrency=self._concurrency)
            try:
                f = open(local_path, "wb")
            except OSError as e:
                raise local_write_error(f"downloading {name}", local_path, e) from None
            with f:
                try:
                    downloader.readinto(f)
                except OSError as e:
                    if e.errno == errno.ENOSPC:
                        raise local_write_error(f"downloading {name}", local_path, e) from None
                    raise
        except ResourceNotFoundError:
            raise BackendNotFound(f"{name} is missing from {self._where()}") from None
        except AzureError as e:
            raise self._error(e, f"cannot download {name} from {self._where()}") from None

    def delete(self, names):
        client = self._container_client()
        for name in names:
            blob_name = self._blob_name(name)
            try:
                client.delete_blob(blob_name)
            except ResourceNotFoundError:
                pass
            except AzureError as e:
                raise self._error(e, f"cannot delete {name} from {self._where()}") from None

    def rename(self, old, new):
        """Blobs have no rename: a copy within the account (waited for), then the old blob goes."""
        container = self._container_client()
        source = container.get_blob_client(self._blob_name(old))
        try:
            copy = container.get_blob_client(self._blob_name(new)).start_copy_from_url(source.url)
            status = copy.get("copy_status")
            deadline = time.monotonic() + max(60.0, self.options.timeout * 10)
            while status == "pending":
                if time.monotonic() > deadline:
                    raise BackendError(f"renaming {old} to {new} in {self._where()}: the copy did not "
                                       "finish in time", transient=True)
                time.sleep(0.2)
                status = container.get_blob_client(self._blob_name(new)).get_blob_properties().copy.status
            if status != "success":
                raise BackendError(f"renaming {old} to {new} in {self._where()}: the copy ended {status}",
                                   transient=True)
        except ResourceNotFoundError:
            if self.size(new) is not None:
                return
            raise BackendNotFound(f"{old} is missing from {self._where()}") from None
        except AzureError as e:
            raise self._error(e, f"cannot rename {old} to {new} in {self._where()}") from None
        self.delete([old])

    def size(self, name):
        try:
            return self._container_client().get_blob_client(self._blob_name(name)).get_blob_properties().size
        except Exception:   # noqa: BLE001 - size is advisory
            return None

    # --- errors -------------------------------------------------------------------------------

    def _redact(self, text):
        return redact_text(text, self._secrets)

    def _error(self, e, what):
        """A BackendError for an azure-core exception; never the exception's full text."""
        if isinstance(e, ClientAuthenticationError) or (
                isinstance(e, HttpResponseError) and e.status_code in (401, 403)):
            detail = _code_of(e) or "authentication failed"
            return BackendError(self._redact(
                f"{what}: access denied ({detail}); check AZURE_CONNECTION_STRING, AZURE_ACCOUNT_NAME "
                "and AZURE_ACCOUNT_KEY or AZURE_SHARED_ACCESS_SIGNATURE"), ExitCode.BACKEND_PERMISSION)
        if isinstance(e, (ServiceRequestError, ServiceResponseError)):
            # connection refused or reset, DNS, timeouts: worth retrying
            return BackendError(self._redact(f"{what}: {type(e).__name__}: {_first_line(e)}"), transient=True)
        if isinstance(e, HttpResponseError):
            status = e.status_code
            code = _code_of(e)
            transient = status is None or status >= 500 or status in _TRANSIENT_STATUS
            if isinstance(e, ResourceNotFoundError):
                return BackendError(self._redact(f"{what}: not found ({code or status})"),
                                    ExitCode.BACKEND_NOT_FOUND)
            head = f"HTTP {status}" if status else type(e).__name__
            reason = _first_line(e)
            text = f"{what}: {head}" + (f" {code}" if code else "") + (f": {reason}" if reason else "")
            return BackendError(self._redact(text), transient=transient)
        return BackendError(self._redact(f"{what}: {type(e).__name__}: {_first_line(e)}"))


def _code_of(e):
    code = getattr(e, "error_code", None)
    if code is None:
        return ""
    return str(getattr(code, "value", code))


def _first_line(e):
    text = getattr(e, "reason", None) if isinstance(e, HttpResponseError) else None
    text = getattr(e, "message", None) or text or str(e) or ""
    return str(text).strip().splitlines()[0] if str(text).strip() else ""


def parse_connection_string(text):
    """``Key=Value;Key=Value`` into a dict with lower-case keys (values may contain '=')."""
    out = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise UserError("AZURE_CONNECTION_STRING is not a list of Key=Value pairs separated by ';'")
        out[key.strip().lower()] = value.strip()
    return out


def _sas_secrets(sas):
    """The SAS token and its signature (the part that grants access), for redaction."""
    if not sas:
        return []
    out = [sas, sas.lstrip("?")]
    m = re.search(r"(?:^|[?&])sig=([^&]+)", sas)
    if m:
        out += [m.group(1), unquote(m.group(1))]
    return out


def from_url(url, options):
    if IMPORT_ERROR is not None:
        raise missing_library(IMPORT_ERROR, "azure://", "azure-storage-blob", "python3-azure-storage-blob", "python3-azure-sdk")
    parts = split_url(url, "azure target")
    if parts.username or parts.password:
        raise UserError("credentials do not belong in an azure:// URL; use AZURE_CONNECTION_STRING, "
                        "or AZURE_ACCOUNT_NAME with AZURE_ACCOUNT_KEY or AZURE_SHARED_ACCESS_SIGNATURE")
    container = unquote(parts.netloc)
    prefix = unquote(parts.path)
    if parts.query or parts.fragment:
        raise UserError(f"an azure target is azure://container[/prefix]; {redact_url(url)!r} has a query or fragment")
    if not container:
        raise UserError(f"no container in target {redact_url(url)!r}; use azure://container[/prefix]")
    if not _CONTAINER_RE.match(container) and container not in ("$root", "$web"):
        raise UserError(f"{container!r} is not a valid Azure container name (3-63 characters: lower-case "
                        "letters, digits and single hyphens, starting and ending with a letter or digit)")
    if any(seg in (".", "..") for seg in prefix.split("/")):
        raise UserError(f"the prefix in {redact_url(url)!r} may not contain '.' or '..'")

    account_url = options.secret("AZURE_ACCOUNT_URL")
    conn = options.secret("AZURE_CONNECTION_STRING")
    name = options.secret("AZURE_ACCOUNT_NAME")
    key = options.secret("AZURE_ACCOUNT_KEY")
    sas = options.secret("AZURE_SHARED_ACCESS_SIGNATURE")
    secrets = [conn, key, *_sas_secrets(sas)]
    if account_url:
        secrets += _sas_secrets(split_url(account_url, "AZURE_ACCOUNT_URL").query)
    credential = None
    if conn:
        cs = parse_connection_string(conn)
        secrets += [cs.get("accountkey"), *_sas_secrets(cs.get("sharedaccesssignature"))]
        if cs.get("usedevelopmentstorage", "").lower() == "true" and not account_url:
            # the SDK knows the emulator's well-known account and endpoint
            return AzureBackend(url, options, container, prefix, account_url=None, connection_string=conn,
                                secrets=secrets)
        name = cs.get("accountname")
        if cs.get("accountkey"):
            if not name:
                raise UserError("AZURE_CONNECTION_STRING has an AccountKey but no AccountName")
            credential = AzureNamedKeyCredential(name, cs["accountkey"])
        elif cs.get("sharedaccesssignature"):
            credential = cs["sharedaccesssignature"].lstrip("?")
        account_url = account_url or cs.get("blobendpoint")
        if not account_url:
            if not name:
                raise UserError("AZURE_CONNECTION_STRING names no AccountName and no BlobEndpoint")
            scheme = cs.get("defaultendpointsprotocol", "https")
            suffix = cs.get("endpointsuffix", "core.windows.net")
            account_url = f"{scheme}://{name}.blob.{suffix}"
    else:
        if key and name:
            credential = AzureNamedKeyCredential(name, key)
        elif sas:
            credential = sas.lstrip("?")
        if credential is None and not (account_url and "sig=" in (urlsplit(account_url).query or "")):
            raise UserError("no Azure credentials: set AZURE_CONNECTION_STRING, or AZURE_ACCOUNT_NAME with "
                            "AZURE_ACCOUNT_KEY or AZURE_SHARED_ACCESS_SIGNATURE")
        if not account_url:
            if not name:
                raise UserError("set AZURE_ACCOUNT_NAME (or AZURE_ACCOUNT_URL) to say which storage account")
            account_url = f"https://{name}.blob.core.windows.net"
    return AzureBackend(url, options, container, prefix, account_url=account_url.rstrip("/"),
                        credential=credential, secrets=secrets)
