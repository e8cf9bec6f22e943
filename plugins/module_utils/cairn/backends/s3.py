# SPDX-License-Identifier: GPL-3.0-or-later
"""s3:// targets (boto3), and gs:// and b2:// through their S3-compatible endpoints.

``s3://bucket[/prefix]``: credentials by boto3's usual chain (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, the config files, an
instance role); ``--s3-endpoint-url`` (or ``AWS_ENDPOINT_URL``) for MinIO, Ceph, Wasabi.
An S3 object appears only when its upload (or multipart upload) is complete, so no temp name
is needed. boto3's own retries are off: the transfer layer retries, with one policy for all.

``gs://bucket[/prefix]`` with HMAC keys: Google Cloud Storage's XML API
(``GS_ACCESS_KEY_ID`` / ``GS_SECRET_ACCESS_KEY``, as duplicity's old gs backend); gcs.py hands
these over and takes every other gs:// target (Google sign-in) itself.
``b2://keyID[:applicationKey]@bucket[/prefix]``: Backblaze B2's S3 API; the key from the URL,
``B2_APPLICATION_KEY`` or duplicity's ``BACKEND_PASSWORD``/``FTP_PASSWORD``; the endpoint from
--s3-endpoint-url, ``https://s3.<region>.backblazeb2.com`` with --s3-region-name, or else
asked from B2's authorize call (duplicity's b2:// names no region).

S3 Object Lock (``--s3-object-lock-mode`` with ``--s3-object-lock-days``): every archive object
written (put, and the copy of a rename) gets that retention; cairn's own scaffolding (lock
objects, unfinished and temporary names), which cairn deletes itself, gets none. On a bucket with
Object Lock enabled a delete never touches an object still under retention or a legal hold: it is
kept and reported. What may go is deleted for good, every version of it (a plain delete on a
versioned bucket would only hide it behind a delete marker).
"""
import dataclasses
import datetime
import logging
from urllib.parse import unquote

try:
    import boto3
    import botocore.config
    import botocore.exceptions
    from boto3.s3.transfer import TransferConfig
except ImportError as _import_error:   # reported when a target of this kind is opened
    IMPORT_ERROR = _import_error
else:
    IMPORT_ERROR = None

from ..errors import BackendError, BackendNotFound, ExitCode, UserError
from ..redact import redact_text, redact_url
from ..naming import UNFINISHED_MARK
from .base import TEMP_PREFIX, Backend, error_text, missing_library, object_key, split_url

log = logging.getLogger("cairn")

MiB = 1 << 20
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "AllAccessDisabled",
           "InvalidToken", "ExpiredToken", "AccountProblem"}
_TRANSIENT = {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "500", "502", "503",
              "504", "RequestTimeTooSkewed", "Throttling", "ThrottlingException"}
_LOCK_NAME_MARK = "cairn-lock."       # lock.py's objects: <file prefix>cairn-lock.<hex>.json


def scaffolding(name):
    """Names cairn writes only to delete them itself later: no Object Lock retention for them."""
    return _LOCK_NAME_MARK in name or UNFINISHED_MARK in name or name.startswith(TEMP_PREFIX)


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


class S3Backend(Backend):
    def __init__(self, url, options, bucket, prefix, *, endpoint_url=None, access_key=None,
                 secret_key=None, session_token=None, batch_delete=True, kind="s3"):
        self.url = url
        self.options = options
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.kind = kind
        self.batch_delete = batch_delete
        env = options.env
        config = botocore.config.Config(
            connect_timeout=options.timeout, read_timeout=options.timeout,
            retries={"total_max_attempts": 1}, max_pool_connections=max(10, 2 * options.s3_multipart_max_procs
                                                                        * options.upload_concurrency))
        # an explicit, minimal environment: a module's no_log credentials win over the process's
        try:
            session = self._session(options, env, access_key, secret_key, session_token)
        except botocore.exceptions.BotoCoreError as e:
            raise UserError(f"cannot set up S3 credentials for {redact_url(url)}: {error_text(e)}") from None
        self.endpoint_url = endpoint_url or options.s3_endpoint_url or env.get("AWS_ENDPOINT_URL") or None
        try:
            self.client = session.client("s3", endpoint_url=self.endpoint_url, config=config,
                                         use_ssl=not options.s3_unencrypted_connection)
        except botocore.exceptions.BotoCoreError as e:
            raise UserError(f"cannot set up the S3 client for {redact_url(url)}: {error_text(e)}") from None
        self._setup_transfer(options)
        self._bucket_checked = False
        self.lock_mode = (options.s3_object_lock_mode or "").upper() or None
        self.lock_days = options.s3_object_lock_days
        self._lock_enabled = None       # the bucket's Object Lock, once asked

    @staticmethod
    def _session(options, env, access_key, secret_key, session_token):
        return boto3.session.Session(
            aws_access_key_id=access_key or env.get("AWS_ACCESS_KEY_ID") or None,
            aws_secret_access_key=secret_key or env.get("AWS_SECRET_ACCESS_KEY") or None,
            aws_session_token=session_token or env.get("AWS_SESSION_TOKEN") or None,
            region_name=options.s3_region_name or env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or None,
            profile_name=env.get("AWS_PROFILE") or None)

    def _setup_transfer(self, options):
        chunk = max(5, options.s3_multipart_chunk_size) * MiB     # S3's minimum part size is 5 MiB
        self.transfer = TransferConfig(multipart_threshold=chunk, multipart_chunksize=chunk,
                                       max_concurrency=max(1, options.s3_multipart_max_procs),
                                       use_threads=True)
        extra = {}
        if options.s3_storage_class:
            extra["StorageClass"] = options.s3_storage_class
        if options.s3_sse:
            extra["ServerSideEncryption"] = options.s3_sse
            if options.s3_kms_key_id:
                extra["SSEKMSKeyId"] = options.s3_kms_key_id
        if options.s3_kms_grant:
            extra["GrantFullControl"] = options.s3_kms_grant
        self.extra = extra

    def _key(self, name):
        return object_key(self.prefix, name)

    def _where(self):
        return f"{self.kind}://{self.bucket}/{self.prefix}".rstrip("/")

    def list(self):
        names = []
        start = f"{self.prefix}/" if self.prefix else ""
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=start, Delimiter="/")
            for page in pages:
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(start):]
                    if name and "/" not in name:
                        names.append(name)
        except botocore.exceptions.ClientError as e:
            if _code(e) == "NoSuchBucket":
                return []
            raise self._error(e, f"cannot list {self._where()}") from None
        except botocore.exceptions.BotoCoreError as e:
            raise self._error(e, f"cannot list {self._where()}") from None
        return names

    def _ensure_bucket(self):
        if self._bucket_checked:
            return
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as e:
            if _code(e) not in ("404", "NoSuchBucket", "NotFound"):
                raise
            log.info("creating bucket %s", self.bucket)
            args = {"Bucket": self.bucket}
            region = self.client.meta.region_name
            if region and region != "us-east-1":
                args["CreateBucketConfiguration"] = {"LocationConstraint": region}
            if self.lock_mode:
                args["ObjectLockEnabledForBucket"] = True
            try:
                self.client.create_bucket(**args)
            except botocore.exceptions.ClientError as e2:
                if _code(e2) not in ("BucketAlreadyOwnedByYou",):
                    raise
        if self.lock_mode and self.bucket_lock_enabled() is False:
            raise self._no_lock_error()
        self._bucket_checked = True

    def _no_lock_error(self):
        return BackendError(
            f"--s3-object-lock-mode needs Object Lock on the bucket {self.bucket}, and it has none: create "
            "the bucket with Object Lock enabled (or let cairn create it), or enable it on the bucket "
            "(versioning on, then put-object-lock-configuration)", ExitCode.USER_ERROR)

    def bucket_lock_enabled(self):
        """True or False as the bucket's Object Lock configuration says; None when it cannot be
        read (no s3:GetBucketObjectLockConfiguration, a store without Object Lock)."""
        if self._lock_enabled is None:
            try:
                conf = self.client.get_object_lock_configuration(Bucket=self.bucket)
                self._lock_enabled = conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
            except botocore.exceptions.ClientError as e:
                if _code(e) == "ObjectLockConfigurationNotFoundError":
                    self._lock_enabled = False
                elif _code(e) == "NoSuchBucket":
                    return False
                else:
                    log.debug("cannot read the Object Lock configuration of %s: %s", self.bucket, _code(e))
                    return None
            except botocore.exceptions.BotoCoreError:
                return None
        return self._lock_enabled

    def _retention(self, name):
        """Object Lock arguments for an upload of ``name`` (none for cairn's scaffolding)."""
        if not self.lock_mode or scaffolding(name):
            return {}
        return {"ObjectLockMode": self.lock_mode,
                "ObjectLockRetainUntilDate": _utcnow() + datetime.timedelta(days=self.lock_days)}

    def put(self, local_path, name):
        key = self._key(name)
        try:
            self._ensure_bucket()
            extra = dict(self.extra, **self._retention(name))
            with self.open_upload(local_path) as src:
                self.client.upload_fileobj(src, self.bucket, key, ExtraArgs=extra or None,
                                           Config=self.transfer)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            if self.lock_mode and _is_no_lock(e):
                raise self._no_lock_error() from None
            raise self._error(e, f"cannot upload {name} to {self._where()}") from None
        except Exception as e:      # s3transfer wraps failures of its threads
            cause = e.__cause__ or e.__context__
            if isinstance(cause, (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError)):
                if self.lock_mode and _is_no_lock(cause):
                    raise self._no_lock_error() from None
                raise self._error(cause, f"cannot upload {name} to {self._where()}") from None
            raise

    def get(self, name, local_path):
        try:
            self.client.download_file(self.bucket, self._key(name), local_path, Config=self.transfer)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            if _code(e) in _NOT_FOUND or _code(e) == "NoSuchBucket":
                raise BackendNotFound(f"{name} is missing from {self._where()}") from None
            raise self._error(e, f"cannot download {name} from {self._where()}") from None

    def delete(self, names):
        names = list(names)
        if names and self.bucket_lock_enabled():
            return self._delete_versions(names)
        keys = [self._key(n) for n in names]
        try:
            if not self.batch_delete:
                for k in keys:
                    self.client.delete_object(Bucket=self.bucket, Key=k)
                return
            for i in range(0, len(keys), 1000):
                batch = keys[i:i + 1000]
                out = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
                errors = [e for e in out.get("Errors", []) if e.get("Code") not in _NOT_FOUND]
                if errors:
                    first = errors[0]
                    raise BackendError(f"cannot delete {first.get('Key')} from {self._where()}: "
                                       f"{first.get('Code')} {first.get('Message', '')}".rstrip(),
                                       transient=first.get("Code") in _TRANSIENT)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            if _code(e) == "NoSuchBucket":
                return
            raise self._error(e, f"cannot delete from {self._where()}") from None

    # --- Object Lock: what a delete may touch --------------------------------------------------

    def _versions(self, names):
        """{name: [(version id, is a delete marker)]} of the given names."""
        by_key = {self._key(n): n for n in names}
        found = {n: [] for n in names}
        if len(names) <= 20:
            prefixes = sorted(by_key)
        else:
            prefixes = [f"{self.prefix}/" if self.prefix else ""]
        paginator = self.client.get_paginator("list_object_versions")
        for prefix in prefixes:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for kind, marker in (("Versions", False), ("DeleteMarkers", True)):
                    for v in page.get(kind, []):
                        name = by_key.get(v["Key"])
                        if name is not None and (v["VersionId"], marker) not in found[name]:
                            found[name].append((v["VersionId"], marker))
        return found

    def _hold_of(self, name, version_id, now):
        """Why this version of ``name`` must stay (a dict as delete reports it), or None."""
        args = {"Bucket": self.bucket, "Key": self._key(name)}
        if version_id and version_id != "null":
            args["VersionId"] = version_id
        try:
            head = self.client.head_object(**args)
        except botocore.exceptions.ClientError as e:
            if _code(e) in _NOT_FOUND or _code(e) == "405":
                return None
            raise
        until = head.get("ObjectLockRetainUntilDate")
        mode = head.get("ObjectLockMode")
        hold = head.get("ObjectLockLegalHoldStatus") == "ON"
        if hold or (until is not None and until > now):
            return {"name": name, "reason": "legal-hold" if hold else "retention",
                    "mode": mode.lower() if mode else None,
                    "retain_until": until.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                    if until is not None else None}
        return None

    def _held(self, versions):
        now = _utcnow()
        held = {}
        for name, found in versions.items():
            for vid, marker in found:
                if marker:
                    continue
                why = self._hold_of(name, vid, now)
                if why is not None:
                    old = held.get(name)
                    if old is None or (why["retain_until"] or "") > (old["retain_until"] or ""):
                        held[name] = why
        return held

    def held(self, names):
        names = list(names)
        if not names or not self.bucket_lock_enabled():
            return {}
        try:
            return self._held(self._versions(names))
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            raise self._error(e, f"cannot read the retention of objects in {self._where()}") from None

    def _delete_versions(self, names):
        """Delete on a bucket with Object Lock: names with a version under retention or a legal
        hold are kept whole (and returned); the others lose every version and delete marker.
        A delete the credentials may not do (write-only hosts) is kept and returned too."""
        try:
            versions = self._versions(names)
            held = self._held(versions)
            doomed = [(n, vid) for n, found in versions.items() if n not in held for vid, _m in found]
            denied = {}
            for i in range(0, len(doomed), 1000):
                batch = doomed[i:i + 1000]
                by_key = {self._key(n): n for n, _v in batch}
                if self.batch_delete:
                    try:
                        out = self.client.delete_objects(Bucket=self.bucket, Delete={
                            "Objects": [{"Key": self._key(n), "VersionId": v} for n, v in batch], "Quiet": True})
                        errors = out.get("Errors", [])
                    except botocore.exceptions.ClientError as e:
                        if _code(e) not in _DENIED:
                            raise
                        errors = [{"Key": self._key(n), "Code": _code(e)} for n, _v in batch]
                else:
                    errors = []
                    for n, v in batch:
                        try:
                            self.client.delete_object(Bucket=self.bucket, Key=self._key(n), VersionId=v)
                        except botocore.exceptions.ClientError as e:
                            errors.append({"Key": self._key(n), "Code": _code(e),
                                           "Message": e.response.get("Error", {}).get("Message", "")})
                for err in errors:
                    code, name = err.get("Code"), by_key.get(err.get("Key"), err.get("Key"))
                    if code in _NOT_FOUND:
                        continue
                    if code in _DENIED:
                        denied.setdefault(name, {"name": name, "reason": "denied", "mode": None,
                                                 "retain_until": None})
                        continue
                    raise BackendError(f"cannot delete {name} from {self._where()}: {code} "
                                       f"{err.get('Message', '')}".rstrip(), transient=code in _TRANSIENT)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            if _code(e) == "NoSuchBucket":
                return None
            raise self._error(e, f"cannot delete from {self._where()}") from None
        if held:
            log.info("kept %d file(s) under S3 Object Lock in %s: %s", len(held), self._where(),
                     ", ".join(f"{n} (until {h['retain_until'] or 'its legal hold is lifted'})"
                               for n, h in sorted(held.items())))
        if denied:
            log.warning("not allowed to delete %d file(s) in %s (write-only credentials?); they stay "
                        "until a run with delete rights (prune or cleanup) removes them: %s",
                        len(denied), self._where(), ", ".join(sorted(denied)))
        kept = dict(denied, **held)
        return [kept[n] for n in sorted(kept)] or None

    def rename(self, old, new):
        """Objects have no rename: a server-side copy (multipart for big ones, with this
        target's storage class and encryption, and its Object Lock retention), then the old
        key goes."""
        try:
            self.client.copy({"Bucket": self.bucket, "Key": self._key(old)}, self.bucket, self._key(new),
                             ExtraArgs=self.extra or None, Config=self.transfer)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            if _code(e) in _NOT_FOUND:
                if self.size(new) is not None:
                    return
                raise BackendNotFound(f"{old} is missing from {self._where()}") from None
            raise self._error(e, f"cannot rename {old} to {new} in {self._where()}") from None
        retention = self._retention(new)
        if retention:
            # a copy's own retention headers need a checksum header some stores insist on even
            # with no body (moto); setting it right after the copy works everywhere
            try:
                self.client.put_object_retention(Bucket=self.bucket, Key=self._key(new), Retention={
                    "Mode": retention["ObjectLockMode"], "RetainUntilDate": retention["ObjectLockRetainUntilDate"]})
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
                if _is_no_lock(e):
                    raise self._no_lock_error() from None
                raise self._error(e, f"cannot set the Object Lock retention of {new} in {self._where()}") from None
        self.delete([old])

    def size(self, name):
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._key(name))["ContentLength"]
        except Exception:   # noqa: BLE001 - size is advisory
            return None

    def close(self):
        self.client.close()

    def _error(self, e, what):
        if isinstance(e, botocore.exceptions.NoCredentialsError):
            # each kind names its own variables: AWS_* mean nothing to a gs:// or b2:// user
            how = {"gs": "GS_ACCESS_KEY_ID and GS_SECRET_ACCESS_KEY (HMAC keys), or GOOGLE_APPLICATION_CREDENTIALS",
                   "b2": "the key ID and application key in the URL or B2_APPLICATION_KEY"}.get(
                self.kind, "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, or an instance role")
            return BackendError(f"{what}: no credentials (set {how})", ExitCode.BACKEND_PERMISSION)
        if isinstance(e, botocore.exceptions.ClientError):
            code = _code(e)
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            msg = redact_text(e.response.get("Error", {}).get("Message") or code)
            if code in _DENIED:
                return BackendError(f"{what}: access denied ({code}: {msg})", ExitCode.BACKEND_PERMISSION)
            if code == "NoSuchBucket":
                return BackendError(f"{what}: the bucket {self.bucket} does not exist",
                                    ExitCode.BACKEND_NOT_FOUND)
            transient = code in _TRANSIENT or (status is not None and status >= 500)
            return BackendError(f"{what}: {code}: {msg}", transient=transient)
        # EndpointConnectionError, ConnectionClosedError, timeouts, incomplete reads
        return BackendError(f"{what}: {error_text(e)}", transient=True)


def _is_no_lock(e):
    """An upload refused because the bucket has no Object Lock ("Bucket is missing Object Lock
    Configuration", "...ObjectLockConfiguration")."""
    if not isinstance(e, botocore.exceptions.ClientError):
        return False
    msg = str(e.response.get("Error", {}).get("Message", "")).lower().replace(" ", "")
    return _code(e) in ("InvalidRequest", "InvalidArgument") and "objectlock" in msg


def _code(e):
    if isinstance(e, botocore.exceptions.ClientError):
        return str(e.response.get("Error", {}).get("Code", ""))
    return ""


def _bucket_and_prefix(url):
    parts = split_url(url, f"{url.split(':', 1)[0]} target")
    bucket = unquote(parts.hostname or "")
    if not bucket:
        raise UserError(f"no bucket in target {redact_url(url)!r}; use {parts.scheme}://bucket[/prefix]")
    return parts, bucket, unquote(parts.path)


def from_url(url, options):
    if IMPORT_ERROR is not None:
        raise missing_library(IMPORT_ERROR, "s3://", "boto3", "python3-boto3", "python3-boto3")
    parts, bucket, prefix = _bucket_and_prefix(url)
    if parts.username or parts.password:
        raise UserError("credentials do not belong in an s3:// URL; use AWS_ACCESS_KEY_ID and "
                        "AWS_SECRET_ACCESS_KEY (or a profile)")
    return S3Backend(url, options, bucket, prefix)


def from_gs_url(url, options):
    """gs:// with HMAC keys (gcs.py sends every other gs:// target to Google's own client)."""
    if IMPORT_ERROR is not None:
        raise missing_library(IMPORT_ERROR, "gs:// (with HMAC keys)", "boto3", "python3-boto3", "python3-boto3")
    parts, bucket, prefix = _bucket_and_prefix(url)
    env = options.env
    if not env.get("GS_ACCESS_KEY_ID") or not env.get("GS_SECRET_ACCESS_KEY"):
        # without both, boto3 would fall back to AWS_* keys and send them to Google
        raise UserError("gs:// with HMAC keys needs both GS_ACCESS_KEY_ID and GS_SECRET_ACCESS_KEY; or sign in "
                        "with a service account key file (GOOGLE_APPLICATION_CREDENTIALS) or gcloud's "
                        "application default credentials instead")
    return S3Backend(url, options, bucket, prefix,
                     endpoint_url=options.s3_endpoint_url or "https://storage.googleapis.com",
                     access_key=env.get("GS_ACCESS_KEY_ID"), secret_key=env.get("GS_SECRET_ACCESS_KEY"),
                     batch_delete=False, kind="gs")     # GCS's XML API has no multi-object delete


# B2's native API, asked once for the account's S3 endpoint when the command line names none
B2_API_URL = "https://api.backblazeb2.com"


def from_b2_url(url, options):
    parts = split_url(url, "b2 target")
    bucket = unquote(parts.hostname or "")
    key_id = unquote(parts.username) if parts.username else (
        options.secret("B2_APPLICATION_KEY_ID") or options.secret("B2_ACCOUNT_ID"))
    # duplicity's b2 backend takes the key from the URL, else BACKEND_PASSWORD or FTP_PASSWORD
    app_key = unquote(parts.password) if parts.password else (
        options.secret("B2_APPLICATION_KEY") or options.secret("BACKEND_PASSWORD") or options.secret("FTP_PASSWORD"))
    if not bucket or not key_id or not app_key:
        # (the form is spelled out without "keyID:key@": messages are redacted as URLs)
        raise UserError("a b2 target is b2://KEYID@BUCKET[/prefix] with the application key as the URL's "
                        "password or in B2_APPLICATION_KEY (or BACKEND_PASSWORD); the key ID may come "
                        "from B2_APPLICATION_KEY_ID instead")
    endpoint = options.s3_endpoint_url
    if not endpoint and options.s3_region_name:
        endpoint = f"https://s3.{options.s3_region_name}.backblazeb2.com"
    if not endpoint:
        # duplicity's b2:// needs no region: B2's authorize call names the account's S3 endpoint
        endpoint = b2_s3_endpoint(key_id, app_key, options)
    if not options.s3_region_name:
        # B2 checks the region in the signature: s3.<region>.backblazeb2.com
        host = (split_url(endpoint, "B2 S3 endpoint").hostname or "").split(".")
        if len(host) > 3 and host[0] == "s3" and host[-2:] == ["backblazeb2", "com"]:
            options = dataclasses.replace(options, s3_region_name=host[1])
    return S3Backend(url, options, bucket, unquote(parts.path), endpoint_url=endpoint,
                     access_key=key_id, secret_key=app_key, kind="b2")


def b2_s3_endpoint(key_id, app_key, options):
    """The S3 endpoint of the account the key belongs to (``s3ApiUrl`` of b2_authorize_account).
    ``CAIRN_B2_API_URL`` points the call elsewhere: the tests' stand-in on loopback."""
    try:
        import requests
    except ImportError as e:
        raise missing_library(e, "b2:// (without --s3-region-name)", "requests", "python3-requests",
                              "python3-requests") from None
    base = (options.env.get("CAIRN_B2_API_URL") or B2_API_URL).rstrip("/")
    try:
        r = requests.get(f"{base}/b2api/v3/b2_authorize_account", auth=(key_id, app_key),
                         timeout=options.timeout)
    except requests.RequestException as e:
        raise BackendError(f"cannot reach Backblaze B2 to find the bucket's S3 endpoint: {error_text(e)}; "
                           "or give it with --s3-endpoint-url or --s3-region-name", transient=True) from None
    if r.status_code in (401, 403):
        raise BackendError("Backblaze B2 refused the application key (key ID and key do not match, or the "
                           "key was deleted)", ExitCode.BACKEND_PERMISSION)
    try:
        r.raise_for_status()
        answer = r.json()
        endpoint = answer["apiInfo"]["storageApi"]["s3ApiUrl"] if "apiInfo" in answer else answer["s3ApiUrl"]
    except (ValueError, KeyError, TypeError, requests.RequestException):
        raise BackendError(f"Backblaze B2's authorize call answered {r.status_code} without an S3 endpoint; "
                           "give it with --s3-endpoint-url or --s3-region-name",
                           transient=r.status_code >= 500) from None
    if answer.get("accountId") and answer.get("accountId") == key_id:
        raise UserError("B2's S3 API does not take the account's master application key: create an "
                        "application key (Backblaze web UI, App Keys) and use its key ID and key")
    return endpoint
