# SPDX-License-Identifier: GPL-3.0-or-later
"""A connection that drops in the middle of an sftp call is a transient BackendError (retried,
then exit 50), whatever paramiko raises for it: SSHException is not an OSError. CI found
list/get/delete/size letting "Server connection dropped" out as exit 30."""
import pytest

paramiko = pytest.importorskip("paramiko")

from cairn.backends.sftp import SFTPBackend  # noqa: E402
from cairn.errors import BackendError  # noqa: E402

FAILURES = [paramiko.SSHException("Server connection dropped: "), EOFError(), ConnectionResetError(104, "reset"),
            OSError("Socket is closed")]


class DroppedClient:
    """An sftp client whose connection has gone: every call raises ``error``."""

    def __init__(self, error):
        self.error = error

    def __getattr__(self, name):
        def call(*_a, **_k):
            raise self.error
        return call


def backend(error):
    b = SFTPBackend.__new__(SFTPBackend)
    b.host, b.path, b._dir_ready = "127.0.0.1", "target", True
    b._sftp = lambda: DroppedClient(error)
    return b


@pytest.mark.parametrize("error", FAILURES, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("call", ["list", "get", "put", "rename", "delete"])
def test_a_dropped_connection_is_a_transient_backend_error(tmp_path, error, call):
    src = tmp_path / "src"
    src.write_bytes(b"x" * 10)
    args = {"list": (), "get": ("vol1", str(tmp_path / "got")), "put": (str(src), "vol1"),
            "rename": ("a", "b"), "delete": (["vol1"],)}[call]
    with pytest.raises(BackendError) as e:
        getattr(backend(error), call)(*args)
    assert e.value.transient


@pytest.mark.parametrize("error", FAILURES, ids=lambda e: type(e).__name__)
def test_size_of_an_unreachable_file_is_unknown(error):
    assert backend(error).size("vol1") is None
