# SPDX-License-Identifier: GPL-3.0-or-later
"""The transfer layer with fake backends and a fake clock: what is retried, how often, how long
it waits, what a rate limit lets through, and how mirrors and stripes behave."""
import errno
import json

import pytest

from cairn.backends import BackendOptions, open_backend, redact_url
from cairn.backends.base import Backend
from cairn.backends.multi import MultiBackend, from_url as multi_from_url
from cairn.backends.transfer import RateLimiter, RetryingBackend, ThrottledReader, is_transient
from cairn.errors import BackendError, BackendNotFound, ExitCode


class Flaky(Backend):
    """Fails the first ``failures`` calls of every operation with ``exc``."""

    def __init__(self, failures, exc):
        self.url = "flaky://"
        self.failures = failures
        self.exc = exc
        self.calls = 0
        self.resets = 0
        self.files = {}

    def _maybe_fail(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc

    def list(self):
        self._maybe_fail()
        return list(self.files)

    def put(self, local_path, name):
        self._maybe_fail()
        self.files[name] = local_path

    def get(self, name, local_path):
        self._maybe_fail()
        if name not in self.files:
            raise BackendNotFound(name)

    def delete(self, names):
        self._maybe_fail()
        for n in names:
            self.files.pop(n, None)

    def reset(self):
        self.resets += 1


def _retrying(inner, retries=5):
    sleeps = []
    be = RetryingBackend(inner, BackendOptions(num_retries=retries, retry_delay=1.0, env={}), sleep=sleeps.append)
    return be, sleeps


@pytest.mark.parametrize("exc", [BackendError("503 from server", transient=True), ConnectionResetError(),
                                 TimeoutError(), OSError(errno.ECONNREFUSED, "refused"), EOFError()])
def test_transient_failures_are_retried_with_growing_delays(exc):
    inner = Flaky(3, exc)
    be, sleeps = _retrying(inner)
    be.put("/x", "a")
    assert inner.files == {"a": "/x"} and inner.calls == 4 and inner.resets == 3
    assert len(sleeps) == 3 and sleeps[0] < sleeps[2]           # backoff grows (with jitter)
    assert all(0.5 <= s / d <= 1.0 for s, d in zip(sleeps, (1, 2, 4)))
    assert be.retries_used == 3


@pytest.mark.parametrize("exc", [BackendError("denied", ExitCode.BACKEND_PERMISSION), BackendNotFound("gone"),
                                 PermissionError(errno.EACCES, "denied"), FileNotFoundError(2, "nope")])
def test_permanent_failures_are_not_retried(exc):
    inner = Flaky(1, exc)
    be, sleeps = _retrying(inner)
    with pytest.raises(BackendError):
        be.put("/x", "a")
    assert inner.calls == 1 and sleeps == []


@pytest.mark.parametrize("exc", [TypeError("a bug"), KeyError("a bug"), AttributeError("a bug")])
def test_a_bug_is_neither_retried_nor_made_a_server_fault(exc):
    """Only classified errors are retried or relabelled: a TypeError surfaces as itself (exit 30,
    unexpected), not as 'the target failed' (exit 50) after retries."""
    inner = Flaky(1, exc)
    be, sleeps = _retrying(inner)
    with pytest.raises(type(exc)):
        be.put("/x", "a")
    assert inner.calls == 1 and sleeps == []


def test_giving_up_says_how_often_and_keeps_the_exit_code():
    inner = Flaky(100, BackendError("cannot connect to h:22", ExitCode.BACKEND_ERROR, transient=True))
    be, sleeps = _retrying(inner, retries=2)
    with pytest.raises(BackendError) as err:
        be.list()
    assert inner.calls == 3 and len(sleeps) == 2
    assert "after 3 attempts" in err.value.message and "cannot connect to h:22" in err.value.message
    assert err.value.exit_code == ExitCode.BACKEND_ERROR


def test_delays_are_capped():
    inner = Flaky(12, TimeoutError())
    be, sleeps = _retrying(inner, retries=12)
    be.list()
    assert max(sleeps) <= 30.0


def test_is_transient_classification():
    assert is_transient(BackendError("x", transient=True))
    assert not is_transient(BackendError("x"))
    assert not is_transient(BackendNotFound("x"))
    assert is_transient(OSError(errno.EPIPE, "pipe"))
    assert not is_transient(OSError(errno.ENOSPC, "full"))
    assert not is_transient(ValueError("bug"))


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, s):
        self.now += s


def test_rate_limiter_average_is_the_limit():
    clock = FakeClock()
    lim = RateLimiter(1_000_000, clock=clock, sleep=clock.sleep)
    for _chunk in range(200):
        lim.take(65536)
    sent = 200 * 65536
    # only the initial burst goes ahead of the rate
    assert sent / clock.now == pytest.approx(1_000_000, rel=0.02)


def test_throttled_reader_passes_every_byte_through_the_limiter(tmp_path):
    clock = FakeClock()
    lim = RateLimiter(100_000, clock=clock, sleep=clock.sleep)
    p = tmp_path / "f"
    p.write_bytes(b"x" * 500_000)
    with ThrottledReader(open(p, "rb"), lim) as r:
        data = b"".join(iter(lambda: r.read(8192), b""))
    assert len(data) == 500_000
    assert clock.now == pytest.approx((500_000 - lim.burst) / 100_000, rel=0.01)


def test_open_backend_applies_the_limit_to_uploads(tmp_path):
    be = open_backend(f"file://{tmp_path}/t", BackendOptions(max_upload_rate=10_000_000, env={}))
    assert be.inner.throttle is not None
    src = tmp_path / "src"
    src.write_bytes(b"data")
    be.put(str(src), "a")
    assert (tmp_path / "t" / "a").read_bytes() == b"data"


class Store(Backend):
    def __init__(self, name, broken=False):
        self.url = f"mem://{name}"
        self.files = {}
        self.broken = broken

    def _check(self):
        if self.broken:
            raise BackendError(f"{self.url} is down", transient=True)

    def list(self):
        self._check()
        return list(self.files)

    def put(self, local_path, name):
        self._check()
        self.files[name] = local_path

    def get(self, name, local_path):
        self._check()
        if name not in self.files:
            raise BackendNotFound(name)

    def delete(self, names):
        self._check()
        for n in names:
            self.files.pop(n, None)


def test_mirror_writes_everywhere_and_aborts_when_one_fails():
    a, b = Store("a"), Store("b")
    m = MultiBackend([a, b], mode="mirror", onfail="abort")
    m.put("/p", "f1")
    assert a.files == b.files == {"f1": "/p"}
    b.broken = True
    with pytest.raises(BackendError, match="mem://b"):
        m.put("/p", "f2")
    m.close()


def test_mirror_continue_and_reads_fall_back():
    a, b = Store("a", broken=True), Store("b")
    m = MultiBackend([a, b], mode="mirror", onfail="continue")
    m.put("/p", "f1")
    assert b.files == {"f1": "/p"}
    m.get("f1", "/out")                      # a is down: b answers
    assert m.list() == ["f1"]
    m.close()


def test_stripe_round_robin():
    a, b = Store("a"), Store("b")
    m = MultiBackend([a, b], mode="stripe", onfail="abort")
    for i in range(4):
        m.put("/p", f"f{i}")
    assert sorted(a.files) == ["f0", "f2"] and sorted(b.files) == ["f1", "f3"]
    assert sorted(m.list()) == ["f0", "f1", "f2", "f3"]
    m.close()


def test_multi_url_reads_duplicitys_config(tmp_path):
    cfg = tmp_path / "multi.json"
    cfg.write_text(json.dumps([{"url": f"file://{tmp_path}/one"},
                               {"url": f"file://{tmp_path}/two", "env": [{"name": "X", "value": "y"}]}]))
    m = multi_from_url(f"multi://{cfg}?mode=mirror&onfail=abort", BackendOptions(env={}))
    assert (m.mode, m.onfail, len(m.backends)) == ("mirror", "abort", 2)
    src = tmp_path / "src"
    src.write_bytes(b"z")
    m.put(str(src), "f")
    assert (tmp_path / "one" / "f").exists() and (tmp_path / "two" / "f").exists()
    m.close()
    default = multi_from_url(f"multi://{cfg}", BackendOptions(env={}))
    assert (default.mode, default.onfail) == ("stripe", "continue")     # duplicity's defaults
    default.close()


def test_redact_url_hides_passwords():
    assert redact_url("sftp://u:s3cret@h/p") == "sftp://u:***@h/p"
    assert redact_url("b2://key:app@bucket/x") == "b2://key:***@bucket/x"
    assert redact_url("s3://bucket/x") == "s3://bucket/x"
