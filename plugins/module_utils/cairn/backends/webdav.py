# SPDX-License-Identifier: GPL-3.0-or-later
"""webdav:// and webdavs:// targets through requests.

URL as duplicity: ``webdav[s]://user[:password]@host[:port]/path/on/the/server`` — the path is
the HTTP path of the target collection. The password comes from the URL or else from
``FTP_PASSWORD`` (duplicity's variable). Basic authentication is sent with every request; when
the server only offers Digest, Digest is used instead. webdavs verifies the server's
certificate against the system CAs, or only against ``--ssl-cacert-file``, or not at all with
``--ssl-no-check-certificate``.

Uploads go to a temporary name with PUT and are then renamed with MOVE (``Overwrite: T``), so
a file appears under its final name only when complete. Each thread has its own HTTP session.
"""
import csv
import logging
import os
import re
import threading
import xml.etree.ElementTree as ET
from urllib.parse import quote, unquote, urlsplit

try:
    import requests
except ImportError as _import_error:   # reported when a target of this kind is opened
    IMPORT_ERROR = _import_error
else:
    IMPORT_ERROR = None

from ..errors import BackendError, BackendNotFound, ExitCode, UserError
from ..redact import redact_url
from .base import (TEMP_PREFIX, Backend, LocalWriteError, ThreadConnections, certificate_error,
                   check_name, error_text, local_write_error, missing_library, split_url)

log = logging.getLogger("cairn")

CHUNK = 1 << 20
PROPFIND_BODY = (b'<?xml version="1.0" encoding="utf-8"?>'
                 b'<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/>'
                 b'</D:prop></D:propfind>')


def parse_headers(text):
    """duplicity's --webdav-headers: comma-separated name,value pairs, CSV-quoted ('Cookie,"a=1,
    b=2"'). A header that could split the request (CR, LF) or an odd count is a usage error; the
    values are never quoted back (a cookie is a credential)."""
    if not text:
        return {}
    try:
        fields = next(csv.reader([text], skipinitialspace=True, strict=True))
    except (csv.Error, StopIteration):
        raise UserError("--webdav-headers: not comma-separated name,value pairs") from None
    if len(fields) % 2:
        raise UserError(f"--webdav-headers: {len(fields)} fields, not name,value pairs")
    headers = {}
    for name, value in zip(fields[::2], fields[1::2]):
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name) or any(c in value for c in "\r\n\0"):
            raise UserError(f"--webdav-headers: {name!r} is not a header name, or its value has a line break")
        headers[name] = value
    return headers


class WebDAVBackend(Backend):
    def __init__(self, url, options):
        self.url = url
        self.options = options
        self.display = redact_url(url)
        parts = split_url(url, "webdav target")
        scheme = parts.scheme.lower()
        if scheme not in ("webdav", "webdavs"):
            raise UserError(f"not a webdav target: {self.display!r}")
        self.https = scheme == "webdavs"
        if not parts.hostname:
            raise UserError(f"no host in webdav target {self.display!r}")
        try:
            port = parts.port
        except ValueError:
            raise UserError(f"bad port in webdav target {self.display!r}") from None
        hostport = parts.netloc.rpartition("@")[2]
        self.host = parts.hostname
        self.port = port or (443 if self.https else 80)
        self.origin = f"{'https' if self.https else 'http'}://{hostport}"
        path = unquote(parts.path or "/")
        if not path.startswith("/"):
            path = "/" + path
        if any(c in path for c in "\r\n\0"):
            raise UserError(f"bad path in webdav target {self.display!r}")
        self.dir_path = path.rstrip("/") + "/"          # the collection, always with a slash
        self.user = unquote(parts.username) if parts.username else None
        if parts.password is not None:
            self.password = unquote(parts.password)
        else:
            self.password = options.secret("FTP_PASSWORD")
        self.verify = True
        if self.https:
            if not options.ssl_verify:
                self.verify = False
                import urllib3
                urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
                log.warning("not verifying the TLS certificate of %s (--ssl-no-check-certificate)",
                            self.host)
            elif options.ssl_cacert_file:
                if not os.path.isfile(options.ssl_cacert_file):
                    raise UserError(f"--ssl-cacert-file {options.ssl_cacert_file} is not a file")
                self.verify = options.ssl_cacert_file
            elif options.ssl_cacert_path:
                if not os.path.isdir(options.ssl_cacert_path):
                    raise UserError(f"--ssl-cacert-path {options.ssl_cacert_path} is not a directory")
                self.verify = options.ssl_cacert_path        # requests: a c_rehash'ed directory
        self.headers = parse_headers(options.webdav_headers)
        self.timeout = (options.timeout, options.timeout)
        self._lock = threading.Lock()
        self._sessions = ThreadConnections()
        self._digest = None            # None: not probed yet; then False (Basic) or True (Digest)
        self._dir_ready = False

    # --- sessions ----------------------------------------------------------------------------

    def _auth(self):
        if self.user is None:
            return None
        password = self.password or ""
        if self._digest:
            return requests.auth.HTTPDigestAuth(self.user, password)
        return requests.auth.HTTPBasicAuth(self.user.encode("utf-8"), password.encode("utf-8"))

    def _new_session(self):
        s = requests.Session()
        s.verify = self.verify
        s.trust_env = False          # no proxies or .netrc picked up behind the user's back
        s.headers["User-Agent"] = "cairn"
        s.headers.update(self.headers)
        s.auth = self._auth()
        return s

    def _session(self):
        s = self._sessions.current()
        if s is not None:
            return s
        with self._lock:
            generation = self._sessions.generation
            if self._digest is None and self.user is not None:
                self._probe_auth()
        s = self._new_session()
        if self._digest:
            # one small request first, so large PUT bodies are never sent twice for a challenge
            r = self._request(s, "PROPFIND", self._url(), "connecting",
                              headers={"Depth": "0"}, data=PROPFIND_BODY)
            r.close()
            if r.status_code == 401:
                raise self._status_error(r, f"login to {self.origin}")
        self._sessions.adopt(s, generation)
        return s

    def _probe_auth(self):
        """Basic unless the server refuses it and offers only Digest (called under the lock)."""
        self._digest = False
        s = self._new_session()
        try:
            r = self._request(s, "PROPFIND", self._url(), "connecting", headers={"Depth": "0"},
                              data=PROPFIND_BODY)
            r.close()
            if r.status_code == 401:
                offered = r.headers.get("WWW-Authenticate", "").lower()
                if "digest" in offered and "basic" not in offered:
                    self._digest = True
                else:
                    raise self._status_error(r, f"login to {self.origin}")
        except BaseException:
            self._digest = None
            raise
        finally:
            s.close()

    def reset(self):
        """Drop this thread's session (its connections may be broken); the next call reconnects."""
        s = self._sessions.forget()
        if s is not None:
            s.close()

    def close(self):
        for s in self._sessions.take_all():
            try:
                s.close()
            except Exception:   # noqa: BLE001 - closing is best effort
                pass

    # --- HTTP --------------------------------------------------------------------------------

    def _url(self, name=None):
        path = self.dir_path if name is None else self.dir_path + name
        return self.origin + quote(path, safe="/")

    def _request(self, s, method, url, what, **kw):
        kw.setdefault("timeout", self.timeout)
        kw.setdefault("allow_redirects", method in ("GET", "HEAD", "PROPFIND"))
        try:
            return s.request(method, url, **kw)
        except requests.exceptions.SSLError as e:
            raise self._ssl_error(e, what) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                requests.exceptions.ChunkedEncodingError) as e:
            raise BackendError(f"{what}: {self._describe(e)}", transient=True) from None
        except requests.exceptions.RequestException as e:
            raise BackendError(f"{what}: {self._describe(e)}") from None

    def _describe(self, e):
        text = error_text(e)
        # requests wraps urllib3's long reprs; keep the part a person can act on
        m = re.search(r"\[Errno -?\d+\] ([^')\"]+)", text)
        if isinstance(e, requests.exceptions.Timeout):
            return f"no answer from {self.host}:{self.port} within {self.options.timeout:g} s"
        if m:
            return f"cannot connect to {self.host}:{self.port}: {m.group(1).strip()}"
        if isinstance(e, requests.exceptions.ConnectionError):
            return f"connection to {self.host}:{self.port} failed: {text}"
        return f"{type(e).__name__}: {text}"

    def _ssl_error(self, e, what):
        text = error_text(e)
        m = re.search(r"certificate verify failed: ([^(]*)", text)
        if m or "CERTIFICATE_VERIFY_FAILED" in text:
            reason = m.group(1).strip().rstrip(".") if m else "verification failed"
            return certificate_error(what, self.host, self.port, reason, self.options)
        return BackendError(f"{what}: TLS error with {self.host}:{self.port}: {text}", transient=True)

    def _status_error(self, r, what):
        code = r.status_code
        msg = f"{what}: HTTP {code} {r.reason or ''}".rstrip()
        if code == 401:
            who = f"user {self.user!r}" if self.user else "no user name in the URL"
            return BackendError(f"{msg}: the server refused the login ({who}; password from the URL "
                                "or FTP_PASSWORD)", ExitCode.BACKEND_PERMISSION)
        if code == 403:
            return BackendError(f"{msg}: permission denied", ExitCode.BACKEND_PERMISSION)
        if code == 404:
            return BackendNotFound(msg)
        if code == 507:
            return BackendError(f"{msg}: no space left on the server", ExitCode.BACKEND_NO_SPACE)
        if code >= 500 or code in (408, 423, 425, 429):
            return BackendError(msg, transient=True)
        return BackendError(msg)

    def _check(self, r, what, ok):
        r.close()
        if r.status_code not in ok:
            raise self._status_error(r, what)
        return r

    # --- operations --------------------------------------------------------------------------

    def list(self):
        s = self._session()
        what = f"listing {self.display}"
        r = self._request(s, "PROPFIND", self._url(), what, headers={"Depth": "1"}, data=PROPFIND_BODY)
        if r.status_code == 404:
            r.close()
            return []
        self._check(r, what, (207,))
        try:
            root = ET.fromstring(r.content)
        except ET.ParseError as e:
            raise BackendError(f"{what}: the server sent a listing that is not XML ({error_text(e)})",
                               transient=True) from None
        names = []
        base = self.dir_path.rstrip("/")
        for resp in root.iter("{DAV:}response"):
            href = resp.findtext("{DAV:}href")
            if not href:
                continue
            if resp.find(".//{DAV:}resourcetype/{DAV:}collection") is not None:
                continue
            try:
                path = unquote(urlsplit(href.strip()).path).rstrip("/")
            except ValueError:
                raise BackendError(f"{what}: the server listed an entry whose href is not a URL") from None
            if path == base or not path:
                continue
            if path.startswith(base + "/"):
                name = path[len(base) + 1:]
                if "/" in name:
                    continue
            else:                          # a server that rewrites hrefs: keep the last part
                name = path.rsplit("/", 1)[-1]
            if name:
                names.append(name)
        return names

    def get(self, name, local_path):
        check_name(name)
        s = self._session()
        what = f"downloading {name} from {self.display}"
        r = self._request(s, "GET", self._url(name), what, stream=True,
                          headers={"Accept-Encoding": "identity"})
        with r:
            if r.status_code != 200:
                raise self._status_error(r, what)
            expected = r.headers.get("Content-Length")
            written = 0
            try:
                f = open(local_path, "wb")
            except OSError as e:
                raise local_write_error(what, local_path, e) from None
            with f:
                try:
                    # raw bytes: never let a Content-Encoding header unpack a stored .gz
                    for block in r.raw.stream(CHUNK, decode_content=False):
                        try:
                            f.write(block)
                        except OSError as e:
                            raise LocalWriteError(e) from None
                        written += len(block)
                except LocalWriteError as e:
                    raise local_write_error(what, local_path, e.error) from None
                except Exception as e:   # noqa: BLE001 - urllib3 errors while streaming the body
                    raise BackendError(f"{what}: the transfer broke off: {type(e).__name__}: {error_text(e)}",
                                       transient=True) from None
        if expected is not None and expected.isdigit() and int(expected) != written:
            raise BackendError(f"{what}: got {written} of {expected} bytes", transient=True)

    def put(self, local_path, name):
        check_name(name)
        s = self._session()
        what = f"uploading {name} to {self.display}"
        self._ensure_collection(s)
        tmp_url = self._url(TEMP_PREFIX + name)
        size = os.path.getsize(local_path)
        with self.open_upload(local_path) as src:
            r = self._request(s, "PUT", tmp_url, what, data=src if size else b"",
                              headers={"Content-Length": str(size)})
        r.close()
        if r.status_code == 409:           # the collection went away under us
            self._dir_ready = False
            raise BackendError(f"{what}: HTTP 409 {r.reason}: the target collection is missing",
                               transient=True)
        try:
            self._check(r, what, (200, 201, 204))
            self._move(s, tmp_url, self._url(name), f"{what} (renaming it from {TEMP_PREFIX}{name})")
        except BackendError:
            self._discard(s, tmp_url)
            raise

    def _move(self, s, src_url, dst_url, what):
        r = self._request(s, "MOVE", src_url, what, headers={"Destination": dst_url, "Overwrite": "T"})
        r.close()
        self._check(r, what, (200, 201, 204))

    def rename(self, old, new):
        check_name(old)
        check_name(new)
        what = f"renaming {old} to {new} on {self.display}"
        try:
            self._move(self._session(), self._url(old), self._url(new), what)
        except BackendNotFound:
            if self.size(new) is None:
                raise

    def _discard(self, s, url):
        try:
            s.request("DELETE", url, timeout=self.timeout, allow_redirects=False).close()
        except Exception:   # noqa: BLE001 - cleanup removes leftovers later
            pass

    def _ensure_collection(self, s):
        if self._dir_ready:
            return
        with self._lock:
            if self._dir_ready:
                return
            self._make_collection(s, self.dir_path)
            self._dir_ready = True

    def _make_collection(self, s, path, depth=0):
        if path == "/" or depth > 64:
            return
        url = self.origin + quote(path, safe="/")
        what = f"creating the collection {path} on {self.origin}"
        r = self._request(s, "PROPFIND", url, what, headers={"Depth": "0"}, data=PROPFIND_BODY)
        r.close()
        if r.status_code == 207:
            return
        if r.status_code in (401, 403):
            raise self._status_error(r, what)
        r = self._request(s, "MKCOL", url, what)
        r.close()
        if r.status_code == 409:           # a parent is missing: make it, then try again
            self._make_collection(s, path.rstrip("/").rsplit("/", 1)[0] + "/", depth + 1)
            r = self._request(s, "MKCOL", url, what)
            r.close()
        if r.status_code not in (200, 201, 405):   # 405: it exists already
            raise self._status_error(r, what)

    def delete(self, names):
        s = self._session()
        for name in names:
            check_name(name)
            what = f"deleting {name} from {self.display}"
            r = self._request(s, "DELETE", self._url(name), what)
            r.close()
            if r.status_code != 404:
                self._check(r, what, (200, 202, 204))

    def size(self, name):
        try:
            check_name(name)
            r = self._request(self._session(), "HEAD", self._url(name), "size",
                              headers={"Accept-Encoding": "identity"})
            r.close()
            value = r.headers.get("Content-Length") if r.status_code == 200 else None
            return int(value) if value is not None and value.isdigit() else None
        except BackendError:
            return None


def from_url(url, options):
    if IMPORT_ERROR is not None:
        raise missing_library(IMPORT_ERROR, "webdav://", "requests", "python3-requests", "python3-requests")
    return WebDAVBackend(url, options)
