# SPDX-License-Identifier: GPL-3.0-or-later
"""A chain's sets are merged from their first entries: every set's first fetch starts before
any set's data is read, so the incremental's key derivation and hash pass run beside the
full's instead of after it."""
import io
import tarfile
from concurrent.futures import Future
from types import SimpleNamespace

import pytest

from cairn import restore


def _tar(names):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 2
            t.addfile(info, io.BytesIO(b"hi"))
    return out.getvalue()


class _Reader:
    def __init__(self, name, data, log):
        self.name, self.data, self.log = name, io.BytesIO(data), log

    def read(self, n=-1):
        self.log.append(("read", self.name))
        return self.data.read(n)

    def close(self):
        pass


class _Fetcher:
    """VolumeFetcher's contract: fetches start when its generator is first advanced."""

    def __init__(self, volumes):
        self.volumes = volumes          # name -> tar bytes
        self.log = []

    def fetched(self, volumes):
        for name, _sha1 in volumes:
            self.log.append(("fetch", name))
            done = Future()
            done.set_result(None)
            yield name, _Reader(name, self.volumes[name], self.log), done

    def stream(self, volumes):
        for name, reader, _fut in self.fetched(volumes):
            yield name, reader


def _refs(*names):
    return [SimpleNamespace(name=n, sha1=None, present=True,
                            info=SimpleNamespace(start_index=(), end_index=())) for n in names]


@pytest.mark.parametrize("lenient", [False, True])
def test_every_set_is_fetching_before_any_is_read(lenient):
    fetcher = _Fetcher({"full": _tar(["snapshot/a", "snapshot/b"]), "inc": _tar(["snapshot/b"])})

    def members(name):
        return (restore.lenient_set_members(fetcher, _refs(name), print) if lenient
                else restore.set_members(fetcher, _refs(name)))

    full, inc = restore.started(members("full")), restore.started(members("inc"))
    assert fetcher.log == [("fetch", "full"), ("fetch", "inc")]
    assert [m.index for m, _read in full] == [(b"a",), (b"b",)]
    assert [m.index for m, _read in inc] == [(b"b",)]
    assert ("read", "full") in fetcher.log


def test_a_set_with_no_volume_to_read_is_empty():
    fetcher = _Fetcher({})
    assert list(restore.started(restore.set_members(fetcher, []))) == []
    assert list(restore.started(restore.lenient_set_members(fetcher, [], print))) == []
