# SPDX-License-Identifier: GPL-3.0-or-later
"""Fuzz the tar reader (difftars and sigtars): data or a documented error, never a crash."""
import gzip
import io
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hostile import (ARCHIVE_CODES, MANIFEST_CODES, MAX_MTIME, NAME_COMPONENT, check_member, consume,
                     damaged, documented, fuzz_settings, tar_streams)

from cairn import archive, backup
from cairn.errors import CairnError


@fuzz_settings(600)
@given(tar_streams())
def test_crafted_tar_streams(stream):
    with documented(ARCHIVE_CODES):
        consume(stream)


@fuzz_settings(300)
@given(st.binary(max_size=3000))
def test_raw_bytes(stream):
    with documented(ARCHIVE_CODES):
        consume(stream)


@fuzz_settings(200)
@given(st.lists(st.tuples(NAME_COMPONENT, st.integers(0, 2**40)), min_size=1, max_size=4))
def test_raw_bytes_after_a_good_header(parts):
    """Headers our writer makes, followed by garbage where data or the next header should be."""
    stream = b""
    for name, n in parts:
        info = archive.PathInfo((name or b"x",), archive.REG, 0o644, n % 2**32, 0, "", "", n, 0)
        stream += archive.header("snapshot/" + os.fsdecode(name or b"x"), info, n % 5000)
        stream += os.urandom(n % 700)
    with documented(ARCHIVE_CODES):
        consume(stream)


_KINDS = st.sampled_from([archive.REG, archive.DIR, archive.SYM, archive.FIFO, archive.CHR, archive.BLK])


@st.composite
def path_infos(draw):
    index = tuple(draw(st.lists(NAME_COMPONENT.filter(lambda c: c not in (b"", b".", b"..")
                                                      and b"\0" not in c), min_size=1, max_size=3)))
    kind = draw(_KINDS)
    info = archive.PathInfo(index, kind, draw(st.integers(0, 0o7777)), draw(st.integers(0, 2**32 - 1)),
                            draw(st.integers(0, 2**32 - 1)), draw(st.sampled_from(["", "root", "us\u00e9r"])),
                            draw(st.sampled_from(["", "staff"])), draw(st.integers(0, 2**40)), 0)
    if kind == archive.SYM:
        info.linkname = draw(st.sampled_from([b"target", b"../up", b"\xff\xfe" * 70, b"x" * 150]))
    elif kind in (archive.CHR, archive.BLK):
        info.devmajor, info.devminor = draw(st.integers(0, 2**21 - 1)), draw(st.integers(0, 2**21 - 1))
    return info


@fuzz_settings(300)
@given(st.lists(st.tuples(path_infos(), st.binary(max_size=600)), min_size=1, max_size=4), st.data())
def test_written_archives_read_back_or_fail_cleanly(entries, data):
    """What the writer makes reads back as written; damaged, it reads or fails documented."""
    stream = b""
    for info, content in entries:
        content = content if info.type == archive.REG else b""
        stream += archive.header(archive.entry_name("snapshot", info.index), info, len(content))
        stream += content + archive.padding(len(content))
    stream += archive.end_of_archive(len(stream))
    got = consume(stream)
    assert len(got) == len(entries)
    for m, (info, content) in zip(got, entries):
        want = (info.index, info.type, info.mode, info.uid, info.gid, info.uname, info.gname,
                info.mtime, info.linkname, info.devmajor, info.devminor)
        have = (m.index, m.info.type, m.info.mode, m.info.uid, m.info.gid, m.info.uname, m.info.gname,
                m.info.mtime, m.info.linkname, m.info.devmajor, m.info.devminor)
        assert have == want
    with documented(ARCHIVE_CODES):
        consume(data.draw(damaged(stream)))


@pytest.fixture(scope="module")
def sig_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("sigtars")


# a signature file that cannot be read is an unreadable manifest (6); names that escape stay 60
SIGNATURE_CODES = ARCHIVE_CODES | MANIFEST_CODES


@fuzz_settings(200)
@given(tar_streams())
def test_sigtars_through_the_signature_reader(sig_dir, stream):
    """Signature files (gzipped sigtars) go through the same reader during a backup."""
    path = os.path.join(sig_dir, "duplicity-full-signatures.20261125T012922Z.sigtar.gz")
    with open(path, "wb") as f:
        f.write(gzip.compress(stream, compresslevel=1))
    with documented(SIGNATURE_CODES):
        for e in backup._sig_stream(path, 0):
            assert e.info is None or 0 <= e.info.mtime <= MAX_MTIME


@fuzz_settings(100)
@given(st.binary(max_size=200), st.integers(0, 4))
def test_short_reads_change_nothing(prefix_bytes, step):
    """A stream that returns fewer bytes than asked (a pipe) reads like a whole one."""
    stream = prefix_bytes + archive.end_of_archive(len(prefix_bytes))

    class Trickle(io.RawIOBase):
        def __init__(self, data):
            self.buf = io.BytesIO(data)

        def readable(self):
            return True

        def read(self, n=-1):
            return self.buf.read(min(n, step + 1) if n >= 0 else n)

    def outcome(f):
        try:
            return [(m.name, m.size) for m, _read in archive.read_members(f)]
        except CairnError as e:
            return type(e)

    assert outcome(Trickle(stream)) == outcome(io.BytesIO(stream))


def test_check_member_rejects_what_it_should():
    """The invariant checker itself: a PathInfo restore could not use fails it."""
    m = archive.Member("snapshot", (b"a",), info=archive.PathInfo((b"a",), archive.REG, uid=2**40))
    with pytest.raises(AssertionError):
        check_member(m)


@pytest.mark.parametrize("damage", ["not-gzip", "truncated"])
def test_damaged_gzip_of_a_signature_file(tmp_path, damage):
    body = b"".join(archive.header(f"snapshot/f{i}", archive.PathInfo((b"f%d" % i,), archive.REG), 3000)
                    + os.urandom(3000) + archive.padding(3000) for i in range(20))
    gz = gzip.compress(body + archive.end_of_archive(len(body)))
    path = tmp_path / "duplicity-full-signatures.20261125T012922Z.sigtar.gz"
    path.write_bytes(b"not gzip at all" if damage == "not-gzip" else gz[:len(gz) // 2])
    with pytest.raises(CairnError) as e:
        list(backup._sig_stream(str(path), 0))
    assert e.value.exit_code in SIGNATURE_CODES
