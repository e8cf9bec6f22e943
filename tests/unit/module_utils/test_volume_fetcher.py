# SPDX-License-Identifier: GPL-3.0-or-later
"""The restore's volume fetcher with a fake target and a fake gpg: every set of a chain gets its
first volume decrypting at once, however far the full set reads ahead."""
import threading

from cairn.restore import VolumeFetcher


class Target:
    def __init__(self, tmp_path):
        self.dir = tmp_path

    def local_path(self, name):
        path = self.dir / name
        path.write_bytes(b"encrypted")
        return str(path)


class SlowGpg:
    """Decrypts nothing until released; records which volumes it has started on."""

    def __init__(self):
        self.started = {}
        self.release = threading.Event()

    def decode_file(self, name, src, out, follow=False):
        assert follow            # restore parses a volume while it is being decrypted
        self.started.setdefault(name, threading.Event()).set()
        self.release.wait(30)
        with open(out, "wb") as f:
            f.write(name.encode())

    def wait_started(self, name, timeout):
        return self.started.setdefault(name, threading.Event()).wait(timeout)


def test_the_incremental_sets_head_volume_does_not_queue_behind_the_full_sets_read_ahead(tmp_path):
    gpg = SlowGpg()
    fetcher = VolumeFetcher(Target(tmp_path), gpg, str(tmp_path), streams=2)
    full = fetcher.stream([("full.vol1.difftar.gpg", None), ("full.vol2.difftar.gpg", None)])
    inc = fetcher.stream([("inc.vol1.difftar.gpg", None)])
    try:
        name, full_reader = next(full)         # submits vol1 and reads ahead vol2
        assert name == "full.vol1.difftar.gpg"
        _name, inc_reader = next(inc)
        # both full volumes are busy decrypting; the merge needs the incremental's first one
        # now, and it must be under way rather than waiting for a free worker
        assert gpg.wait_started("full.vol1.difftar.gpg", 10) and gpg.wait_started("full.vol2.difftar.gpg", 10)
        assert gpg.wait_started("inc.vol1.difftar.gpg", 10)
        gpg.release.set()
        assert full_reader.read() == b"full.vol1.difftar.gpg"
        assert inc_reader.read() == b"inc.vol1.difftar.gpg"
    finally:
        gpg.release.set()
        full.close()
        inc.close()
        fetcher.close()
