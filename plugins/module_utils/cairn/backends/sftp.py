# SPDX-License-Identifier: GPL-3.0-or-later
"""sftp:// targets through paramiko.

URL as duplicity: ``sftp://user[:password]@host[:port]/relative/dir`` (relative to the login
directory) or ``sftp://user@host//absolute/dir``. Authentication: keys named by
``-oIdentityFile=`` in --ssh-options or ~/.ssh/config, the ssh agent, the default keys, then a
password from the URL or ``FTP_PASSWORD``. Host keys must be in known_hosts (the user's, or
``-oUserKnownHostsFile=``) unless accepting new ones was asked for; a changed key always fails.

Speed: duplicity's paramiko backend sends one 32 KiB write and waits for its answer. Here
writes are pipelined, reads prefetched, the SSH window is large, and each upload thread has its
own SFTP channel over one connection.
"""
import errno
import logging
import os
import shlex
import socket
import stat
import threading
from urllib.parse import unquote

try:
    import paramiko
except ImportError as _import_error:   # reported when a target of this kind is opened
    IMPORT_ERROR = _import_error
else:
    IMPORT_ERROR = None

from ..errors import BackendError, BackendNotFound, ExitCode, UserError
from ..redact import redact_url
from .base import TEMP_PREFIX, Backend, check_name, error_text, missing_library, split_url

log = logging.getLogger("cairn")

WINDOW = 64 << 20
MAX_PACKET = 256 << 10     # the server caps it at what it supports
# how long close() waits for a connection's thread once its socket is closed (it ends at its
# next read, well under a second)
THREAD_END_WAIT = 10
CHUNK = 1 << 20
# what an sftp call raises when the connection fails: paramiko's SSHException ("Server
# connection dropped") is no OSError, and a channel closed mid-reply is an EOFError
_FAILURES = (OSError, EOFError) + ((paramiko.SSHException,) if IMPORT_ERROR is None else ())


def _end(transport):
    """Close a paramiko connection and wait for its thread. Transport.close() returns before the
    thread has ended (paramiko's workaround for its issue 520), and a thread still decrypting a
    packet while the process exits races OpenSSL's exit handler: glibc aborts with "double free
    or corruption", most likely what ended a `cairn job NAME info` over sftp once."""
    transport.close()
    if transport.is_alive() and transport is not threading.current_thread():
        transport.join(THREAD_END_WAIT)


def parse_ssh_options(text):
    """{'identityfile': [...], 'userknownhostsfile': ..., 'port': ..., ...} from -oKey=Value forms."""
    opts = {"identityfile": []}
    tokens = shlex.split(text or "")
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "-o" and i + 1 < len(tokens):
            i += 1
            tok = "-o" + tokens[i]
        if tok == "-i" and i + 1 < len(tokens):
            i += 1
            opts["identityfile"].append(tokens[i])
        elif tok.startswith("-o"):
            key, sep, value = tok[2:].partition("=")
            if not sep:
                key, _sp, value = tok[2:].partition(" ")
            key = key.strip().lower()
            if key == "identityfile":
                opts["identityfile"].append(value)
            else:
                opts[key] = value
        elif tok.startswith("-i") and len(tok) > 2:
            opts["identityfile"].append(tok[2:])
        elif tok.startswith("-p") and len(tok) > 2:
            opts["port"] = tok[2:]
        i += 1
    return opts


class SFTPBackend(Backend):
    def __init__(self, url, options):
        self.url = url
        self.options = options
        parts = split_url(url, "sftp target")
        if not parts.hostname:
            raise UserError(f"no host in sftp target {redact_url(url)!r}")
        ssh = parse_ssh_options(options.ssh_options)
        config = _ssh_config(parts.hostname)
        self.host = config.get("hostname", parts.hostname)
        try:
            self.port = int(parts.port or ssh.get("port") or config.get("port") or 22)
        except ValueError:
            raise UserError(f"bad port for sftp target {redact_url(url)!r} in --ssh-options or ~/.ssh/config") from None
        self.user = unquote(parts.username) if parts.username else ssh.get("user") or config.get("user") \
            or _login_name()
        self.password = unquote(parts.password) if parts.password else options.secret("FTP_PASSWORD")
        self.key_files = [os.path.expanduser(k) for k in ssh["identityfile"] + config.get("identityfile", [])]
        self.known_hosts = os.path.expanduser(ssh.get("userknownhostsfile")
                                              or config.get("userknownhostsfile", "~/.ssh/known_hosts").split()[0])
        strict = ssh.get("stricthostkeychecking", config.get("stricthostkeychecking", "yes")).lower()
        self.accept_new = options.ssh_accept_new_host_key or strict in ("no", "accept-new", "off")
        # duplicity: one leading slash = relative to the login dir, two = absolute
        path = unquote(parts.path)
        self.path = path[1:] if path.startswith("/") else path
        self.path = self.path.rstrip("/") if self.path not in ("/", "") else self.path
        self._lock = threading.Lock()
        self._transport = None
        self._local = threading.local()
        self._dir_ready = False

    # --- connection ------------------------------------------------------------------------

    def _connect(self):
        timeout = self.options.timeout
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as e:
            raise BackendError(f"cannot connect to {self.host}:{self.port}: {e.strerror or error_text(e)}",
                               transient=True) from None
        t = paramiko.Transport(sock, default_window_size=WINDOW, default_max_packet_size=MAX_PACKET)
        t.banner_timeout = t.auth_timeout = timeout
        try:
            t.start_client(timeout=timeout)
            self._check_host_key(t.get_remote_server_key())
            self._authenticate(t)
        except BackendError:
            _end(t)
            raise
        except paramiko.AuthenticationException:
            _end(t)
            raise BackendError(f"sftp login as {self.user!r} to {self.host}:{self.port} was refused "
                               "(no key or password accepted)", ExitCode.BACKEND_PERMISSION) from None
        except (paramiko.SSHException, OSError, EOFError) as e:
            _end(t)
            raise BackendError(f"ssh connection to {self.host}:{self.port} failed: {error_text(e)}",
                               transient=True) from None
        t.set_keepalive(30)
        return t

    def _host_id(self):
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def _check_host_key(self, key):
        known = paramiko.HostKeys()
        for path in (self.known_hosts, "/etc/ssh/ssh_known_hosts"):
            try:
                known.load(path)
            except FileNotFoundError:
                pass
            except (OSError, paramiko.SSHException) as e:
                raise BackendError(f"cannot read known hosts file {path}: {error_text(e)}") from None
        host_id = self._host_id()
        entry = known.lookup(host_id)
        if entry is not None and key.get_name() in entry:
            if entry[key.get_name()] == key:
                return
            raise BackendError(f"the host key of {host_id} does NOT match {self.known_hosts}: "
                               "it changed, or someone is in the middle; refusing to connect",
                               ExitCode.BACKEND_PERMISSION)
        if not self.accept_new:
            raise BackendError(f"the host key of {host_id} ({key.get_name()} "
                               f"{key.fingerprint}) is not in {self.known_hosts}; add it "
                               "(ssh-keyscan), or accept it once with --ssh-accept-new-host-key",
                               ExitCode.BACKEND_PERMISSION)
        log.warning("adding the host key of %s (%s %s) to %s", host_id, key.get_name(), key.fingerprint,
                    self.known_hosts)
        os.makedirs(os.path.dirname(self.known_hosts) or ".", mode=0o700, exist_ok=True)
        with open(self.known_hosts, "a", encoding="ascii") as f:
            f.write(f"{host_id} {key.get_name()} {key.get_base64()}\n")

    def _authenticate(self, t):
        tried = []
        for path in self.key_files:
            pkey = _load_key(path)
            try:
                t.auth_publickey(self.user, pkey)
                return
            except paramiko.AuthenticationException:
                tried.append(path)
        try:
            agent = paramiko.Agent()
            for key in agent.get_keys():
                try:
                    t.auth_publickey(self.user, key)
                    return
                except paramiko.AuthenticationException:
                    pass
        except paramiko.SSHException:
            pass
        if not self.key_files:
            for name in ("id_ed25519", "id_ecdsa", "id_rsa"):
                path = os.path.expanduser(f"~/.ssh/{name}")
                if os.path.exists(path):
                    try:
                        t.auth_publickey(self.user, _load_key(path))
                        return
                    except (paramiko.AuthenticationException, BackendError):
                        pass
        if self.password is not None:
            t.auth_password(self.user, self.password)    # raises AuthenticationException
            return
        raise paramiko.AuthenticationException()

    def _sftp(self):
        mine = getattr(self._local, "pair", None)
        with self._lock:
            if self._transport is None or not self._transport.is_active():
                if self._transport is not None:
                    _end(self._transport)
                self._transport = None
                self._transport = self._connect()
            transport = self._transport
        if mine is not None and mine[0] is transport:
            return mine[1]
        try:
            client = paramiko.SFTPClient.from_transport(transport, window_size=WINDOW,
                                                        max_packet_size=MAX_PACKET)
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise BackendError(f"cannot open an sftp session on {self.host}: {error_text(e)}",
                               transient=True) from None
        if client is None:
            raise BackendError(f"the server {self.host} refused the sftp subsystem")
        client.get_channel().settimeout(self.options.timeout)
        self._local.pair = (transport, client)
        return client

    def reset(self):
        """After a failure in this thread: drop this thread's channel. The shared connection is
        dropped only when it is dead, so other threads' transfers on it go on."""
        mine = getattr(self._local, "pair", None)
        self._local.pair = None
        if mine is not None:
            try:
                mine[1].close()
            except Exception:   # noqa: BLE001 - closing a broken channel may fail too
                pass
        with self._lock:
            if self._transport is not None and not self._transport.is_active():
                _end(self._transport)
                self._transport = None

    def close(self):
        with self._lock:
            t, self._transport = self._transport, None
        if t is not None:
            _end(t)

    # --- operations ------------------------------------------------------------------------

    def _remote(self, name):
        check_name(name)
        if not self.path:
            return name
        return self.path + "/" + name if not self.path.endswith("/") else self.path + name

    def _ensure_dir(self, sftp):
        if self._dir_ready or not self.path:
            return
        parts = self.path.split("/")
        prefix = "/" if self.path.startswith("/") else ""
        cur = prefix
        for p in [x for x in parts if x]:
            cur = cur + p if cur in ("", "/") else cur + "/" + p
            try:
                st = sftp.stat(cur)
            except FileNotFoundError:
                try:
                    sftp.mkdir(cur)
                except OSError:
                    sftp.stat(cur)       # created meanwhile by another thread
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise BackendError(f"{cur} on {self.host} is not a directory")
        self._dir_ready = True

    def list(self):
        sftp = self._sftp()
        try:
            entries = sftp.listdir_attr(self.path or ".")
        except FileNotFoundError:
            return []
        except _FAILURES as e:
            raise self._error(e, f"cannot list {self.path or '.'} on {self.host}") from None
        return [e.filename for e in entries if e.st_mode is None or stat.S_ISREG(e.st_mode)]

    def get(self, name, local_path):
        sftp = self._sftp()
        remote = self._remote(name)
        try:
            with open(local_path, "wb") as f:
                sftp.getfo(remote, f, **_PREFETCH_LIMIT)
        except FileNotFoundError:
            raise BackendNotFound(f"{name} is missing from {self.host}:{self.path}") from None
        except _FAILURES as e:
            raise self._error(e, f"cannot download {name} from {self.host}") from None

    def put(self, local_path, name):
        sftp = self._sftp()
        remote = self._remote(name)
        tmp = self._remote(TEMP_PREFIX + name)
        try:
            self._ensure_dir(sftp)
            with self.open_upload(local_path) as src, sftp.open(tmp, "wb") as dst:
                dst.set_pipelined(True)
                for block in iter(lambda: src.read(CHUNK), b""):
                    dst.write(block)
            size = os.path.getsize(local_path)
            stored = sftp.stat(tmp).st_size
            if stored != size:
                raise BackendError(f"upload of {name} to {self.host} is incomplete ({stored} of {size} "
                                   "bytes)", ExitCode.BACKEND_UPLOAD_VALIDATION, transient=True)
            _move(sftp, tmp, remote)
        except BackendError:
            self._discard(sftp, tmp)
            raise
        except _FAILURES as e:
            self._discard(sftp, tmp)
            raise self._error(e, f"cannot upload {name} to {self.host}") from None

    def rename(self, old, new):
        sftp = self._sftp()
        try:
            _move(sftp, self._remote(old), self._remote(new))
        except FileNotFoundError:
            if self.size(new) is not None:
                return
            raise BackendNotFound(f"{old} is missing from {self.host}:{self.path}") from None
        except _FAILURES as e:
            raise self._error(e, f"cannot rename {old} to {new} on {self.host}") from None

    def _discard(self, sftp, path):
        try:
            sftp.remove(path)
        except Exception:   # noqa: BLE001 - the connection may be gone; cleanup removes it later
            pass

    def delete(self, names):
        sftp = self._sftp()
        for name in names:
            try:
                sftp.remove(self._remote(name))
            except FileNotFoundError:
                pass
            except _FAILURES as e:
                raise self._error(e, f"cannot delete {name} on {self.host}") from None

    def size(self, name):
        try:
            return self._sftp().stat(self._remote(name)).st_size
        except (*_FAILURES, BackendError):
            return None

    def _error(self, e, what):
        if isinstance(e, PermissionError) or getattr(e, "errno", None) in (errno.EACCES, errno.EPERM):
            return BackendError(f"{what}: permission denied", ExitCode.BACKEND_PERMISSION)
        if isinstance(e, (paramiko.SSHException, EOFError, socket.timeout, ConnectionError)) \
                or getattr(e, "errno", None) is None:
            return BackendError(f"{what}: {error_text(e)}", transient=True)
        return BackendError(f"{what}: {e.strerror or error_text(e)}", transient=e.errno in (errno.EIO, errno.ECONNRESET))


def _load_key(path):
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key_file(path)
        except FileNotFoundError:
            raise BackendError(f"ssh identity file {path} does not exist") from None
        except paramiko.PasswordRequiredException:
            raise BackendError(f"ssh identity file {path} is encrypted; load it into ssh-agent "
                               "instead") from None
        except (paramiko.SSHException, ValueError):
            continue
    raise BackendError(f"ssh identity file {path} is not a private key paramiko can read")


def _ssh_config(host):
    path = os.path.expanduser("~/.ssh/config")
    if not os.path.exists(path):
        return {}
    try:
        cfg = paramiko.SSHConfig.from_path(path)
        found = cfg.lookup(host)
    except Exception:   # noqa: BLE001 - a broken ssh config is ssh's problem, not ours
        return {}
    if found.get("hostname") == host:
        found.pop("hostname")
    return found


def _login_name():
    import getpass
    return getpass.getuser()


def _prefetch_limit():
    """Cap on outstanding read requests, where paramiko has the option (3.3 and later; Debian
    12's 2.12 prefetches the whole file at once, which works too)."""
    import inspect
    if IMPORT_ERROR is None and "max_concurrent_prefetch_requests" in inspect.signature(
            paramiko.SFTPClient.getfo).parameters:
        return {"max_concurrent_prefetch_requests": 64}
    return {}


_PREFETCH_LIMIT = _prefetch_limit()


def from_url(url, options):
    if IMPORT_ERROR is not None:
        raise missing_library(IMPORT_ERROR, "sftp://", "paramiko", "python3-paramiko", "python3-paramiko")
    return SFTPBackend(url, options)


def _move(sftp, src, dst):
    """Rename ``src`` to ``dst``, replacing it: atomically where the server has OpenSSH's
    posix-rename, else by removing ``dst`` first."""
    try:
        sftp.posix_rename(src, dst)
    except OSError:
        sftp.stat(src)                 # FileNotFoundError when the source is what is missing
        try:
            sftp.remove(dst)
        except FileNotFoundError:
            pass
        sftp.rename(src, dst)
