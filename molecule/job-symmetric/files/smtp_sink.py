# SPDX-License-Identifier: GPL-3.0-or-later
"""A loopback SMTP sink for the job-symmetric scenario: the mail the jobs send, caught on the host.

Python's standard library only (the test host has python3 and nothing else to spare). It speaks
enough SMTP for smtplib: EHLO/HELO, AUTH PLAIN and LOGIN (when --auth-file names a file holding
``user:password``; a wrong password gets 535), MAIL, RCPT, DATA (dot-unstuffed), RSET, NOOP and
QUIT. Each message is written to its own file in the spool directory, ``<n>.eml``, under three
headers of the sink's own: X-Sink-Mail-From, X-Sink-Rcpt-To and X-Sink-Auth (the login, never
the password). The file appears whole (renamed into place) before the client gets its 250.

    python3 smtp_sink.py [--host 127.0.0.1] [--port 2525] [--auth-file FILE] SPOOL_DIR
"""
import argparse
import base64
import binascii
import itertools
import os
import socketserver
import threading

MAX_LINE = 1000 * 64        # generous: a header folded badly must still not end the session
MAX_MESSAGE = 10 * 1024 * 1024


def _b64(text):
    try:
        return base64.b64decode(text.strip(), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None


class Handler(socketserver.StreamRequestHandler):
    timeout = 120

    def reply(self, line):
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def readline(self):
        line = self.rfile.readline(MAX_LINE)
        if not line:
            raise EOFError
        return line.decode("utf-8", "replace").rstrip("\r\n")

    def reset(self):
        self.mail_from, self.rcpt_to = None, []

    def handle(self):
        self.reset()
        self.user = None
        self.reply(f"220 {self.server.name} smtp-sink ready")
        try:
            while True:
                line = self.readline()
                verb, _sep, arg = line.partition(" ")
                handler = getattr(self, "do_" + verb.upper(), None)
                if handler is None:
                    self.reply("500 command not recognized")
                elif handler(arg.strip()) is False:
                    return
        except (EOFError, ConnectionError, TimeoutError, OSError):
            return

    def do_HELO(self, arg):     # noqa: N802 - SMTP's verbs
        self.reset()
        self.reply(f"250 {self.server.name}")

    def do_EHLO(self, arg):     # noqa: N802
        self.reset()
        lines = [self.server.name, "8BITMIME", f"SIZE {MAX_MESSAGE}"]
        if self.server.credentials:
            lines.append("AUTH PLAIN LOGIN")
        lines.append("HELP")
        for line in lines[:-1]:
            self.reply(f"250-{line}")
        self.reply(f"250 {lines[-1]}")

    def do_AUTH(self, arg):     # noqa: N802
        if not self.server.credentials:
            return self.reply("502 no AUTH here")
        if self.user is not None:
            return self.reply("503 already authenticated")
        mech, _sep, initial = arg.partition(" ")
        mech = mech.upper()
        if mech == "PLAIN":
            if not initial:
                self.reply("334 ")
                initial = self.readline()
            decoded = _b64(initial)
            parts = decoded.split("\0") if decoded is not None else []
            user, password = (parts[1], parts[2]) if len(parts) == 3 else (None, None)
        elif mech == "LOGIN":
            user = _b64(initial) if initial else None
            if user is None:
                self.reply("334 VXNlcm5hbWU6")        # "Username:"
                user = _b64(self.readline())
            self.reply("334 UGFzc3dvcmQ6")            # "Password:"
            password = _b64(self.readline())
        else:
            return self.reply("504 unrecognized authentication type")
        if user is None or (user, password) != self.server.credentials:
            return self.reply("535 5.7.8 authentication credentials invalid")
        self.user = user
        self.reply("235 2.7.0 authentication successful")

    def do_MAIL(self, arg):     # noqa: N802
        if not arg.upper().startswith("FROM:"):
            return self.reply("501 syntax: MAIL FROM:<address>")
        address = arg[5:].strip().split(" ")[0]
        self.mail_from, self.rcpt_to = address.strip("<>"), []
        self.reply("250 ok")

    def do_RCPT(self, arg):     # noqa: N802
        if self.mail_from is None:
            return self.reply("503 need MAIL first")
        if not arg.upper().startswith("TO:"):
            return self.reply("501 syntax: RCPT TO:<address>")
        self.rcpt_to.append(arg[3:].strip().split(" ")[0].strip("<>"))
        self.reply("250 ok")

    def do_DATA(self, arg):     # noqa: N802
        if self.mail_from is None or not self.rcpt_to:
            return self.reply("503 need MAIL and RCPT first")
        self.reply("354 end data with <CR><LF>.<CR><LF>")
        lines, size = [], 0
        while True:
            raw = self.rfile.readline(MAX_LINE)
            if not raw:
                raise EOFError
            if raw in (b".\r\n", b".\n"):
                break
            if raw.startswith(b"."):            # RFC 5321 4.5.2: the client doubled a leading dot
                raw = raw[1:]
            size += len(raw)
            if size <= MAX_MESSAGE:
                lines.append(raw)
        if size > MAX_MESSAGE:
            self.reset()
            return self.reply("552 message too big")
        head = (f"X-Sink-Mail-From: {self.mail_from}\r\nX-Sink-Rcpt-To: {', '.join(self.rcpt_to)}\r\n"
                f"X-Sink-Auth: {self.user or '-'}\r\n").encode()
        self.server.store(head + b"".join(lines))
        self.reset()
        self.reply("250 ok: queued")

    def do_RSET(self, arg):     # noqa: N802
        self.reset()
        self.reply("250 ok")

    def do_NOOP(self, arg):     # noqa: N802
        self.reply("250 ok")

    def do_QUIT(self, arg):     # noqa: N802
        self.reply("221 bye")
        return False


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address, spool, credentials):
        super().__init__(address, Handler)
        self.name = "smtp-sink.localhost"
        self.spool = spool
        self.credentials = credentials
        self.lock = threading.Lock()
        existing = [int(n[:-4]) for n in os.listdir(spool) if n.endswith(".eml") and n[:-4].isdigit()]
        self.numbers = itertools.count(max(existing, default=0) + 1)

    def store(self, data):
        with self.lock:
            n = next(self.numbers)
        tmp = os.path.join(self.spool, f".{n}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(self.spool, f"{n}.eml"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=2525)
    p.add_argument("--auth-file", help="a file holding user:password; without it no AUTH is offered")
    p.add_argument("spool")
    a = p.parse_args(argv)
    credentials = None
    if a.auth_file:
        with open(a.auth_file, encoding="utf-8") as f:
            user, _sep, password = f.read().rstrip("\n").partition(":")
        credentials = (user, password)
    os.makedirs(a.spool, mode=0o700, exist_ok=True)
    with Server((a.host, a.port), a.spool, credentials) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
