# SPDX-License-Identifier: GPL-3.0-or-later
"""A stand-in for Dropbox's HTTP API v2 on loopback (HTTPS, as the SDK only speaks HTTPS),
written from Dropbox's HTTP API reference: exactly the endpoints the dpbx:// backend calls.

There is no Dropbox emulator. This one keeps files in memory and answers as the reference says:
RPC endpoints take JSON bodies and answer JSON; content endpoints take their argument in the
``Dropbox-API-Arg`` header (upload: body is the data, download: the result comes in the
``Dropbox-API-Result`` header); endpoint errors are HTTP 409 with ``error_summary`` and a tagged
``error``; a bad token is 401. Paths are case-insensitive, the root folder is "" (never "/"),
list_folder pages (``has_more`` + ``cursor``), upload sessions check offsets, and a given
``content_hash`` (Dropbox's: SHA-256 over the SHA-256 of each 4 MiB block) is checked.

Endpoints: files/upload, files/upload_session/start, files/upload_session/append_v2,
files/upload_session/finish, files/download, files/list_folder, files/list_folder/continue,
files/delete_v2, files/get_metadata, files/move_v2, and oauth2/token (refresh tokens).
"""
import base64
import datetime
import hashlib
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

PAGE = 3                    # list_folder entries per page: small, so paging is exercised


def content_hash(data):
    blocks = b"".join(hashlib.sha256(data[i:i + (4 << 20)]).digest() for i in range(0, len(data), 4 << 20))
    return hashlib.sha256(blocks).hexdigest()


class Conflict(Exception):
    pass


class DropboxStandIn:
    def __init__(self, cert, key):
        self.server_cert = cert         # what a client gives --ssl-cacert-file
        self.tokens = set()             # valid access tokens
        self.expired = set()            # tokens answered with expired_access_token
        self.refresh = {}               # refresh token -> (app key, app secret or None)
        self.files = {}                 # lower path -> dict(display, data, rev, modified)
        self.sessions = {}              # session id -> bytearray
        self.calls = []                 # (endpoint, arg) of every request
        self.lock = threading.Lock()
        self.full = False               # answer uploads with insufficient_space
        self._n = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):      # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                outer.handle(self, body)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    # --- answers --------------------------------------------------------------------------------

    @staticmethod
    def _send(h, status, body=b"", content_type="application/json", headers=()):
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)

    def _json(self, h, status, obj, headers=()):
        self._send(h, status, json.dumps(obj).encode(), headers=headers)

    def _error(self, h, summary, error):
        self._json(h, 409, {"error_summary": summary, "error": error})

    def _bad_input(self, h, text):
        self._send(h, 400, text.encode(), content_type="text/plain; charset=utf-8")

    # --- the files --------------------------------------------------------------------------------

    def _meta(self, lower):
        f = self.files[lower]
        return {".tag": "file", "name": f["display"].rsplit("/", 1)[1], "id": "id:" + f["id"],
                "client_modified": f["modified"], "server_modified": f["modified"], "rev": f["rev"],
                "size": len(f["data"]), "path_lower": lower, "path_display": f["display"],
                "is_downloadable": True, "content_hash": content_hash(bytes(f["data"]))}

    def _folders(self):
        out = {}
        for lower, f in self.files.items():
            parts, shown = lower.split("/")[1:-1], f["display"].split("/")[1:-1]
            for i in range(len(parts)):
                out.setdefault("/" + "/".join(parts[:i + 1]), "/" + "/".join(shown[:i + 1]))
        return out

    def _write(self, path, data, mode):
        lower = path.lower()
        tag = mode.get(".tag") if isinstance(mode, dict) else (mode or "add")
        if lower in self._folders():
            raise Conflict("folder")
        if lower in self.files and tag == "add":
            raise Conflict("file")
        self._n += 1
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.files[lower] = {"display": path, "data": bytes(data), "rev": "%015x" % (0x1000 + self._n),
                             "id": "Stand%05d" % self._n, "modified": now}
        return self._meta(lower)

    @staticmethod
    def _valid_path(path):
        return isinstance(path, str) and (path == "" or (path.startswith("/") and not path.endswith("/")))

    # --- dispatch ------------------------------------------------------------------------------------

    def handle(self, h, body):
        endpoint = h.path.split("?", 1)[0]
        if endpoint == "/oauth2/token":
            return self._token(h, body)
        auth = h.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else None
        if token in self.expired:
            return self._json(h, 401, {"error_summary": "expired_access_token/",
                                       "error": {".tag": "expired_access_token"}})
        if token not in self.tokens:
            return self._json(h, 401, {"error_summary": "invalid_access_token/",
                                       "error": {".tag": "invalid_access_token"}})
        content = endpoint in ("/2/files/upload", "/2/files/upload_session/start",
                               "/2/files/upload_session/append_v2", "/2/files/upload_session/finish",
                               "/2/files/download")
        try:
            arg = json.loads(h.headers.get("Dropbox-API-Arg") or "null") if content else json.loads(body or b"null")
        except ValueError:
            return self._bad_input(h, f'Error in call to API function "{endpoint[3:]}": could not decode input as JSON')
        with self.lock:
            self.calls.append((endpoint[3:], arg))
            route = getattr(self, "_" + endpoint[3:].replace("/", "_"), None)
            if route is None:
                return self._send(h, 404, b"Unknown API function", content_type="text/plain")
            return route(h, arg, body)

    def _token(self, h, body):
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        app = self.refresh.get(form.get("refresh_token"))
        if form.get("grant_type") != "refresh_token" or app is None or app[0] != form.get("client_id") or (
                app[1] is not None and app[1] != form.get("client_secret")):
            return self._json(h, 400, {"error": "invalid_grant", "error_description": "refresh token is invalid"})
        with self.lock:
            self._n += 1
            token = "sl.stand-in-%d" % self._n
            self.tokens.add(token)
        self._json(h, 200, {"access_token": token, "token_type": "bearer", "expires_in": 14400})

    def _check_hash(self, h, arg, data):
        given = (arg or {}).get("content_hash")
        if given and given != content_hash(data):
            self._bad_input(h, "Error in call to API function: content_hash mismatch")
            return False
        return True

    def _files_upload(self, h, arg, body):
        if not self._valid_path(arg.get("path")) or not arg["path"]:
            return self._bad_input(h, "Error in call to API function \"files/upload\": request body: path: invalid")
        if not self._check_hash(h, arg, body):
            return None
        if self.full:
            return self._error(h, "path/insufficient_space/", {".tag": "path", "reason": {
                ".tag": "insufficient_space"}, "upload_session_id": "none"})
        try:
            return self._json(h, 200, self._write(arg["path"], body, arg.get("mode")))
        except Conflict as c:
            return self._error(h, "path/conflict/", {".tag": "path", "reason": {
                ".tag": "conflict", "conflict": {".tag": str(c)}}, "upload_session_id": "none"})

    def _files_upload_session_start(self, h, arg, body):
        if not self._check_hash(h, arg, body):
            return None
        self._n += 1
        sid = "pid_upload_session:stand-in-%d" % self._n
        self.sessions[sid] = bytearray(body)
        return self._json(h, 200, {"session_id": sid})

    def _session(self, h, cursor):
        data = self.sessions.get((cursor or {}).get("session_id"))
        if data is None:
            self._error(h, "not_found/", {".tag": "not_found"})
            return None
        if cursor.get("offset") != len(data):
            self._error(h, "incorrect_offset/", {".tag": "incorrect_offset", "correct_offset": len(data)})
            return None
        return data

    def _files_upload_session_append_v2(self, h, arg, body):
        data = self._session(h, arg.get("cursor"))
        if data is None or not self._check_hash(h, arg, body):
            return None
        data += body
        return self._send(h, 200, b"null")

    def _files_upload_session_finish(self, h, arg, body):
        data = self._session(h, arg.get("cursor"))
        if data is None or not self._check_hash(h, arg, body):
            return None
        commit = arg.get("commit") or {}
        if not self._valid_path(commit.get("path")) or not commit["path"]:
            return self._bad_input(h, "Error in call to API function \"files/upload_session/finish\": path: invalid")
        data += body
        del self.sessions[arg["cursor"]["session_id"]]
        try:
            return self._json(h, 200, self._write(commit["path"], data, commit.get("mode")))
        except Conflict as c:
            return self._error(h, "path/conflict/", {".tag": "path", "path": {
                ".tag": "conflict", "conflict": {".tag": str(c)}}})

    def _files_download(self, h, arg, body):
        lower = str(arg.get("path", "")).lower()
        if lower not in self.files:
            return self._error(h, "path/not_found/", {".tag": "path", "path": {".tag": "not_found"}})
        meta = json.dumps(self._meta(lower))
        return self._send(h, 200, self.files[lower]["data"], content_type="application/octet-stream",
                          headers=[("Dropbox-API-Result", meta)])

    def _listing(self, folder):
        folders = self._folders()
        entries = []
        for lower, shown in sorted(folders.items()):
            if lower.rsplit("/", 1)[0] == folder:
                entries.append({".tag": "folder", "name": shown.rsplit("/", 1)[1], "id": "id:dir" + lower,
                                "path_lower": lower, "path_display": shown})
        for lower in sorted(self.files):
            if lower.rsplit("/", 1)[0] == folder:
                entries.append(self._meta(lower))
        return entries

    def _page(self, h, folder, start):
        entries = self._listing(folder)
        more = start + PAGE < len(entries)
        cursor = base64.b64encode(json.dumps([folder, start + PAGE]).encode()).decode()
        return self._json(h, 200, {"entries": entries[start:start + PAGE], "cursor": cursor, "has_more": more})

    def _files_list_folder(self, h, arg, body):
        path = arg.get("path")
        if not self._valid_path(path):
            return self._bad_input(h, "Error in call to API function \"files/list_folder\": request body: path: "
                                   "'%s' did not match pattern '(/(.|[\\r\\n])*)?|id:.*|(ns:[0-9]+(/.*)?)'" % path)
        folder = path.lower()
        if folder and folder not in self._folders():
            kind = "not_folder" if folder in self.files else "not_found"
            return self._error(h, f"path/{kind}/", {".tag": "path", "path": {".tag": kind}})
        return self._page(h, folder, 0)

    def _files_list_folder_continue(self, h, arg, body):
        try:
            folder, start = json.loads(base64.b64decode(arg["cursor"]))
        except (KeyError, ValueError, TypeError):
            return self._error(h, "reset/", {".tag": "reset"})
        return self._page(h, folder, start)

    def _files_get_metadata(self, h, arg, body):
        lower = str(arg.get("path", "")).lower()
        if lower in self.files:
            return self._json(h, 200, self._meta(lower))
        folders = self._folders()
        if lower in folders:
            return self._json(h, 200, {".tag": "folder", "name": folders[lower].rsplit("/", 1)[1],
                                       "id": "id:dir" + lower, "path_lower": lower, "path_display": folders[lower]})
        return self._error(h, "path/not_found/", {".tag": "path", "path": {".tag": "not_found"}})

    def _files_delete_v2(self, h, arg, body):
        lower = str(arg.get("path", "")).lower()
        if lower not in self.files:
            return self._error(h, "path_lookup/not_found/", {".tag": "path_lookup", "path_lookup": {".tag": "not_found"}})
        meta = self._meta(lower)
        del self.files[lower]
        return self._json(h, 200, {"metadata": meta})

    def _files_move_v2(self, h, arg, body):
        src, dst = str(arg.get("from_path", "")).lower(), str(arg.get("to_path", ""))
        if src not in self.files:
            return self._error(h, "from_lookup/not_found/", {".tag": "from_lookup", "from_lookup": {".tag": "not_found"}})
        if dst.lower() in self.files or dst.lower() in self._folders():
            # Dropbox never moves over something (autorename false): to/conflict
            conflict = {".tag": "conflict", "conflict": {".tag": "file"}}
            return self._error(h, "to/conflict/file/", {".tag": "to", "to": conflict})
        f = self.files.pop(src)
        f["display"] = dst
        self.files[dst.lower()] = f
        return self._json(h, 200, {"metadata": self._meta(dst.lower())})

    # --- for the tests ------------------------------------------------------------------------------

    def names(self, folder):
        return sorted(f["display"].rsplit("/", 1)[1] for lower, f in self.files.items()
                      if lower.rsplit("/", 1)[0] == folder.lower())
