# SPDX-License-Identifier: GPL-3.0-or-later
"""Fuzz the manifest parser: any bytes give a Manifest or ManifestError (exit 6)."""
from hypothesis import given
from hypothesis import strategies as st

from hostile import MANIFEST_CODES, NAME_COMPONENT, damaged, documented, fuzz_settings

from cairn.manifest import Manifest, VolumeInfo

INDEX = st.lists(NAME_COMPONENT.filter(lambda c: c not in (b"", b".")), max_size=3).map(tuple)
BLOCK = st.one_of(st.none(), st.integers(1, 10**6))
HEX40 = st.binary(min_size=20, max_size=20).map(bytes.hex)


@st.composite
def manifests(draw):
    m = Manifest(hostname=draw(st.one_of(st.none(), st.sampled_from(["vm", "host.example", "h\u00f6st"]))),
                 localdir=draw(st.one_of(st.none(), st.sampled_from([b"/srv/data", b"src", b"a b\xff"]))))
    for n in range(1, draw(st.integers(1, 4)) + 1):
        m.add_volume(VolumeInfo(n, draw(INDEX), draw(BLOCK), draw(INDEX), draw(BLOCK), {"SHA1": draw(HEX40)}))
    m.files_changed = draw(st.lists(st.tuples(st.sampled_from(["new", "changed", "deleted"]),
                                              INDEX.filter(bool)), max_size=3))
    return m


def _check(m):
    assert m.volumes, "a manifest without volumes is refused"
    for n, vi in m.volumes.items():
        assert isinstance(n, int) and n >= 1 and vi.number == n
        assert isinstance(vi.start_index, tuple) and isinstance(vi.end_index, tuple)
        for algo, value in vi.hashes.items():
            assert algo.isascii() and value.isascii()
            int(value, 16)
        m.volumes_containing(vi.start_index)
    assert m.hostname is None or isinstance(m.hostname, str)
    m.to_bytes()


@fuzz_settings(400)
@given(manifests())
def test_written_manifests_read_back(m):
    back = Manifest.from_bytes(m.to_bytes())
    assert back.to_bytes() == m.to_bytes()
    assert back.volumes == m.volumes


# lines a crafted manifest may hold
HOSTILE_LINES = st.one_of(
    st.sampled_from([b"Volume 1:", b"Volume 0:", b"Volume -1:", b"Volume 99999999999999999999:",
                     b"Volume x:", b"Volume " + b"9" * 5000 + b":", b"Volume \xff:", b"Volume 1_0:",
                     b"Volume \xd9\xa1:", b"Volume", b"Volume 2",
                     b"    StartingPath   .  ", b"    StartingPath", b"    EndingPath     a 99999999999999999999999",
                     b"    EndingPath     a " + b"9" * 5000, b"    EndingPath     a -1", b"    EndingPath     a x",
                     b'    StartingPath   "unterminated', b'    StartingPath   "\\xzz\\x"', b"    EndingPath     \xff\xfe 3",
                     b"    Hash SHA1 \xff\xfe", b"    Hash SHA1 not-hex", b"    Hash SHA1", b"    Hash",
                     b"    Hash \xff abc", b"    Hash SHA1 " + b"a" * 39, b"    Hash MD5 " + b"0" * 32,
                     b"    Hash SHA1 " + b"F" * 40, b"Hostname \xff\xfe", b"Localdir \xff", b"Localdir \"a\\x20b\"",
                     b"Filelist 3", b"Filelist x", b"Filelist " + b"9" * 5000, b"    new      \xff",
                     b"    bogus    a", b"", b"\r", b"\0", b"volume 1:", b"VOLUME 1:"]),
    st.binary(max_size=60).filter(lambda b: b"\n" not in b),
)


@fuzz_settings(500)
@given(manifests(), st.lists(st.tuples(st.integers(0, 40), st.booleans(), HOSTILE_LINES), min_size=1, max_size=3))
def test_hostile_lines(m, edits):
    """A good manifest with lines replaced or inserted."""
    lines = m.to_bytes().split(b"\n")
    for at, replace, line in edits:
        at %= len(lines)
        lines[at:at + replace] = [line]
    with documented(MANIFEST_CODES):
        _check(Manifest.from_bytes(b"\n".join(lines)))


@fuzz_settings(300)
@given(manifests(), st.data())
def test_damaged_manifests(m, data):
    with documented(MANIFEST_CODES):
        _check(Manifest.from_bytes(data.draw(damaged(m.to_bytes()))))


@fuzz_settings(200)
@given(st.binary(max_size=2000))
def test_raw_bytes(raw):
    with documented(MANIFEST_CODES):
        _check(Manifest.from_bytes(raw))
