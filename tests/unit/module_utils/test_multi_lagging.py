# SPDX-License-Identifier: GPL-3.0-or-later
"""MultiBackend's lag mode (issue 11, item 3): a mirror that fails lags alone for the rest of
the run; the primary failing fails the call unless a mirror stands in."""
import pytest

from cairn.backends import open_backend
from cairn.backends.base import Backend, BackendOptions
from cairn.backends.multi import MultiBackend
from cairn.errors import BackendError, ExitCode, UserError

MARKER = "s3cr3t-MARKER-pw"


class Mem(Backend):
    def __init__(self, url, fail=()):
        self.url = url
        self.files = {}
        self.fail = set(fail)       # method names that raise
        self.calls = []

    def _op(self, method):
        self.calls.append(method)
        if method in self.fail or "*" in self.fail:
            raise BackendError(f"{method} refused by {self.url}: no space left")

    def list(self):
        self._op("list")
        return list(self.files)

    def get(self, name, local_path):
        self._op("get")
        with open(local_path, "wb") as f:
            f.write(self.files[name])

    def put(self, local_path, name):
        self._op("put")
        with open(local_path, "rb") as f:
            self.files[name] = f.read()

    def delete(self, names):
        self._op("delete")
        for n in names:
            self.files.pop(n, None)

    def rename(self, old, new):
        self._op("rename")
        self.files[new] = self.files.pop(old)

    def size(self, name):
        self._op("size")
        return len(self.files[name]) if name in self.files else None


@pytest.fixture(autouse=True)
def _pools_end_with_the_test(monkeypatch):
    """Each MultiBackend a test makes gets its pool shut down (and its threads joined) at the end
    of the test, not whenever it is collected: a later test counting threads must not see them."""
    made = []
    init = MultiBackend.__init__

    def recording(self, *args, **kwargs):
        made.append(self)
        init(self, *args, **kwargs)
    monkeypatch.setattr(MultiBackend, "__init__", recording)
    yield
    for multi in made:
        pool = getattr(multi, "pool", None)
        if pool is not None:
            pool.shutdown(wait=True)


@pytest.fixture
def f(tmp_path):
    p = tmp_path / "data"
    p.write_bytes(b"volume bytes")
    return str(p)


def test_a_failing_mirror_lags_alone_and_gets_nothing_more(f):
    primary, bad, good = Mem("file:///p"), Mem(f"sftp://u:{MARKER}@127.0.0.1:1/m", fail={"put"}), Mem("file:///g")
    multi = MultiBackend([primary, bad, good], onfail="lag")
    multi.put(f, "a")                       # no error: the mirror's failure is not the run's
    bad.fail.clear()                        # even when it would work again, it gets nothing more
    multi.put(f, "b")
    multi.rename("b", "c")
    multi.delete(["a"])
    assert sorted(primary.files) == sorted(good.files) == ["c"]
    assert bad.files == {} and bad.calls == ["put"]
    lag = multi.lagging_targets()
    assert [t["index"] for t in lag] == [1]
    assert lag[0]["url"] == "sftp://u:***@127.0.0.1:1/m"
    assert "no space left" in lag[0]["error"]
    assert MARKER not in repr(lag)


def test_listing_and_sizes_come_from_the_primary_only(f):
    primary, mirror = Mem("file:///p"), Mem("file:///m")
    mirror.files["only-on-the-mirror"] = b"x"
    multi = MultiBackend([primary, mirror], onfail="lag")
    multi.put(f, "v")
    del primary.files["v"]                  # the primary lost a file: a mirror must not hide it
    assert multi.list() == []
    assert multi.size("v") is None
    assert "list" not in mirror.calls and "size" not in mirror.calls


def test_the_primary_failing_fails_the_call(f):
    primary, mirror = Mem("file:///p", fail={"put"}), Mem("file:///m")
    multi = MultiBackend([primary, mirror], onfail="lag")
    with pytest.raises(BackendError, match="file:///p"):
        multi.put(f, "v")
    with pytest.raises(BackendError):
        MultiBackend([Mem("file:///p", fail={"list"}), Mem("file:///m")], onfail="lag").list()
    assert multi.lagging_targets() == []


def test_a_mirror_stands_in_for_a_failing_primary_when_asked(f):
    primary, bad, spare = Mem("file:///p"), Mem("file:///bad", fail={"put"}), Mem("file:///spare")
    multi = MultiBackend([primary, bad, spare], onfail="lag", stand_in=True)
    multi.put(f, "a")                       # bad lags
    primary.fail.add("*")
    multi.put(f, "b")                       # the primary fails: spare stands in, the run goes on
    multi.rename("b", "c")
    assert sorted(multi.list()) == ["a", "c"]
    assert sorted(spare.files) == ["a", "c"]
    assert [t["index"] for t in multi.lagging_targets()] == [1, 0]
    # no healthy mirror left to stand in: the primary's failure is the run's
    spare.fail.add("*")
    with pytest.raises(BackendError):
        multi.put(f, "d")


def test_open_backend_gives_mirrors_lag_mode_and_the_exit_code_is_its_own(tmp_path):
    b = open_backend(f"file://{tmp_path}/p", BackendOptions(), [f"file://{tmp_path}/m"], stand_in=True)
    try:
        assert isinstance(b, MultiBackend) and b.onfail == "lag" and b.stand_in
    finally:
        b.close()
    codes = {v for k, v in vars(ExitCode).items() if k.isupper() and k != "MIRROR_LAGGING"}
    assert ExitCode.MIRROR_LAGGING not in codes and ExitCode.MIRROR_LAGGING not in (0, 1)
    with pytest.raises(UserError):
        MultiBackend([Mem("file:///a")], mode="stripe", onfail="lag")
