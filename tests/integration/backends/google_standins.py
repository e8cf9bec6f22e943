# SPDX-License-Identifier: GPL-3.0-or-later
"""Google Cloud Storage on loopback for the gs:// tests: the GCS emulator (PyPI
``gcp-storage-emulator``, a real HTTP server of GCS's JSON API) and a stand-in for Google's
OAuth 2.0 token endpoint that checks what it is sent as Google's does: a service account's
JWT signed with its key, or a user's refresh token with its client secret."""
import base64
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from servers import ServerProcess, VENV_BIN, free_port

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"


class GcsEmulator(ServerProcess):
    def __init__(self, workdir):
        port = free_port()
        argv = [os.path.join(VENV_BIN, "gcp-storage-emulator"), "start", "--host", "127.0.0.1",
                "--port", str(port), "--in-memory"]
        if not os.path.exists(argv[0]):
            argv[0:1] = [sys.executable, "-m", "gcp_storage_emulator"]
        super().__init__(argv, port, os.path.join(os.fspath(workdir), "gcs-emulator.log"))

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage
        return storage.Client(project="cairn-test", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.endpoint})


def _b64(data):
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


class TokenServer:
    """Google's token endpoint on loopback: grants an access token for a JWT signed by a known
    service account key (``grant_type=jwt-bearer``) or for a known refresh token; refuses the
    rest with ``invalid_grant``, as Google does."""

    def __init__(self):
        self.service_accounts = {}      # client_email -> public key
        self.refresh_tokens = {}        # refresh token -> (client_id, client_secret)
        self.granted = []               # (kind, who, scope) per token handed out
        self.refused = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):      # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                form = {k: v[0] for k, v in parse_qs(body).items()}
                who = outer.check(form)
                if who is None:
                    outer.refused += 1
                    self._answer(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
                else:
                    self._answer(200, {"access_token": f"ya29.stand-in-{len(outer.granted)}", "expires_in": 3600,
                                       "token_type": "Bearer"})

            def _answer(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def check(self, form):
        if form.get("grant_type") == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            try:
                head, payload, sig = form["assertion"].split(".")
                claims = json.loads(_b64(payload))
                key = self.service_accounts[claims["iss"]]
                key.verify(_b64(sig), f"{head}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
            except (KeyError, ValueError, InvalidSignature):
                return None
            # (google-auth names Google's token URL as the audience wherever it posts the JWT)
            if claims.get("aud") not in (self.uri, GOOGLE_TOKEN_URI) or claims.get("exp", 0) < time.time():
                return None
            self.granted.append(("service_account", claims["iss"], claims.get("scope")))
            return claims["iss"]
        if form.get("grant_type") == "refresh_token":
            client = self.refresh_tokens.get(form.get("refresh_token"))
            if client is None or client != (form.get("client_id"), form.get("client_secret")):
                return None
            self.granted.append(("authorized_user", form["client_id"], form.get("scope")))
            return form["client_id"]
        return None

    def service_account(self, path, email="backup@cairn-test.iam.gserviceaccount.com", known=True):
        """Write a service account key file (as the Cloud console gives it) to ``path``."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        if known:
            self.service_accounts[email] = key.public_key()
        info = {"type": "service_account", "project_id": "cairn-test", "private_key_id": os.urandom(20).hex(),
                "private_key": pem, "client_email": email, "client_id": "1234567890",
                "auth_uri": "http://127.0.0.1:1/auth", "token_uri": self.uri}
        with open(path, "w") as f:
            json.dump(info, f)
        return info

    def authorized_user(self, path):
        """Write gcloud's application default credentials (a user's refresh token) to ``path``."""
        info = {"type": "authorized_user", "client_id": "cairn-client.apps.googleusercontent.com",
                "client_secret": "Gc-client-" + os.urandom(8).hex(), "refresh_token": "1//rt-" + os.urandom(12).hex(),
                "quota_project_id": "cairn-test", "token_uri": self.uri}
        self.refresh_tokens[info["refresh_token"]] = (info["client_id"], info["client_secret"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(info, f)
        return info

    def close(self):
        self.server.shutdown()
        self.server.server_close()
