# SPDX-License-Identifier: GPL-3.0-or-later
"""Real servers on loopback for backend tests, started by the tests and ended by their own PID."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
VENV_BIN = os.path.dirname(sys.executable)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, log_path, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{_tail(log_path)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not listen on 127.0.0.1:{port} within {timeout}s:\n{_tail(log_path)}")


def _tail(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-3000:]
    except OSError:
        return ""


class ServerProcess:
    """A server started with ``argv`` that listens on ``port``; ``stop()`` ends it by PID."""

    def __init__(self, argv, port, log_path, env=None, cwd=None, timeout=60):
        self.argv = argv
        self.port = port
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.timeout = timeout
        self.proc = None

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                     cwd=self.cwd, start_new_session=True)
        log.close()
        wait_port(self.port, self.proc, self.log_path, self.timeout)
        return self

    def stop(self):
        """End the server and everything it started (its own process group, by PID)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def restart(self):
        self.stop()
        return self.start()

    @property
    def log(self):
        return _tail(self.log_path)


def descendants(pid):
    """PIDs of all processes below ``pid`` (from /proc)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def which(name):
    return shutil.which(name) or shutil.which(name, path=VENV_BIN)


# --- sshd ------------------------------------------------------------------------------------

class Sshd(ServerProcess):
    """OpenSSH's sshd on 127.0.0.1 with its own host key and an authorized client key."""

    def __init__(self, workdir):
        self.dir = os.fspath(workdir)
        os.makedirs(self.dir, exist_ok=True)
        os.makedirs("/run/sshd", exist_ok=True)        # privilege separation dir sshd insists on
        self.host_key = os.path.join(self.dir, "host_ed25519")
        self.client_key = os.path.join(self.dir, "client_ed25519")
        for path in (self.host_key, self.client_key):
            if not os.path.exists(path):
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
        with open(self.client_key + ".pub") as f, open(os.path.join(self.dir, "authorized_keys"), "w") as out:
            out.write(f.read())
        port = free_port()
        conf = os.path.join(self.dir, "sshd_config")
        with open(conf, "w") as f:
            f.write(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {self.host_key}
PidFile {self.dir}/sshd.pid
AuthorizedKeysFile {self.dir}/authorized_keys
StrictModes no
PermitRootLogin yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM no
Subsystem sftp internal-sftp
MaxSessions 64
MaxStartups 64
LogLevel VERBOSE
""")
        self.known_hosts = os.path.join(self.dir, "known_hosts")
        with open(self.host_key + ".pub") as f:
            kind, b64 = f.read().split()[:2]
        with open(self.known_hosts, "w") as f:
            f.write(f"[127.0.0.1]:{port} {kind} {b64}\n")
        super().__init__(["/usr/sbin/sshd", "-D", "-e", "-f", conf], port,
                         os.path.join(self.dir, "sshd.log"))

    def stop(self):
        """End sshd and its per-connection children (they leave its process group), by PID."""
        if self.proc is None or self.proc.poll() is not None:
            return
        kids = descendants(self.proc.pid)
        super().stop()
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    @property
    def ssh_options(self):
        return f"-oIdentityFile={self.client_key} -oUserKnownHostsFile={self.known_hosts}"

    def url(self, path, user="root"):
        """An sftp URL of an absolute directory (duplicity's double slash)."""
        return f"sftp://{user}@127.0.0.1:{self.port}/{os.fspath(path)}"


def ensure_password_user(name, password):
    """A local login with a password, for sshd's password authentication (root only)."""
    import pwd
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
    subprocess.run(["chpasswd"], input=f"{name}:{password}\n".encode(), check=True)
    return pwd.getpwnam(name)


# --- an S3-compatible server (moto) ------------------------------------------------------------

S3_ENV = {"AWS_ACCESS_KEY_ID": "cairn-test-key", "AWS_SECRET_ACCESS_KEY": "cairn-test-secret-4411",
          "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


class MotoS3(ServerProcess):
    """moto's standalone server: a real HTTP S3 API on 127.0.0.1."""

    def __init__(self, workdir):
        port = free_port()
        env = dict(os.environ, **S3_ENV)
        super().__init__([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port,
                         os.path.join(os.fspath(workdir), "moto.log"), env=env)

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def client(self):
        import boto3
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"])
