# SPDX-License-Identifier: GPL-3.0-or-later
"""Time strings, file names and manifests (duplicity-format.md §1, §2, §6)."""
import time

import pytest

from cairn import naming, timespec
from cairn.errors import ManifestError, TimeStringError
from cairn.manifest import Manifest, VolumeInfo, quote, unquote

NOW = 1_795_573_409          # 2026-11-25T02:23:29Z


@pytest.fixture
def utc_plus_one(monkeypatch):
    monkeypatch.setenv("TZ", "CET-1CEST,M3.5.0,M10.5.0/3")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("text, expected", [
    ("now", NOW),
    ("1700000000", 1_700_000_000),
    ("2026-11-25T01:29:22Z", 1_795_570_162),
    ("2026-11-25T02:29:22+01:00", 1_795_570_162),
    ("2026-11-24T20:29:22-05:00", 1_795_570_162),
    ("20261125T012922Z", 1_795_570_162),
    ("3D", NOW - 3 * 86400),
    ("1h78m", NOW - 3600 - 78 * 60),
    ("2Y3M", NOW - 2 * 365 * 86400 - 3 * 30 * 86400),
    ("10s", NOW - 10),
    ("1W", NOW - 7 * 86400),
])
def test_time_strings(text, expected):
    assert timespec.parse(text, now=NOW) == expected


def test_local_forms_use_standard_time(utc_plus_one):
    # no zone: local *standard* offset (+01:00 here), even in summer
    assert timespec.parse("2026-07-01T12:00:00") == timespec.parse("2026-07-01T11:00:00Z")
    midnight = timespec.parse("2026-11-25")
    assert time.localtime(midnight)[:6] == (2026, 11, 25, 0, 0, 0)
    for form in ("2026/11/25", "11-25-2026", "11/25/2026", "20261125Z"):
        assert timespec.parse(form) == midnight


@pytest.mark.parametrize("bad", ["3d", "yesterday", "2026-13-01", "1800-01-01", "2026-02-30", "", "5x"])
def test_bad_time_strings(bad):
    with pytest.raises(TimeStringError) as e:
        timespec.parse(bad, now=NOW)
    assert "Bad time string" in str(e.value) and e.value.exit_code == 23


def test_timestr_round_trip():
    assert timespec.to_timestr(1_795_570_162) == "20261125T012922Z"
    assert timespec.from_timestr("20261125T012922Z") == 1_795_570_162
    assert timespec.from_timestr("2026-11-25t02:29:22+01:00") == 1_795_570_162
    assert timespec.to_iso(1_795_570_162) == "2026-11-25T01:29:22Z"


T1, T2 = 1_795_570_162, 1_795_573_409


@pytest.mark.parametrize("name, fields", [
    ("duplicity-full.20261125T012922Z.vol1.difftar.gpg", dict(type="full", volume=1, time=T1, encrypted=True)),
    ("duplicity-full.20261125T012922Z.vol12.difftar.gz", dict(type="full", volume=12, time=T1, compressed=True)),
    ("duplicity-full.20261125T012922Z.vol3.difftar", dict(type="full", volume=3, time=T1)),
    ("duplicity-full.20261125T012922Z.manifest.gpg", dict(type="full", manifest=True, time=T1, encrypted=True)),
    ("duplicity-full.20261125T012922Z.manifest", dict(type="full", manifest=True, time=T1)),
    ("duplicity-full.20261125T012922Z.manifest.part", dict(type="full", manifest=True, time=T1, partial=True)),
    ("duplicity-inc.20261125T012922Z.to.20261125T022329Z.vol2.difftar.gpg",
     dict(type="inc", volume=2, start_time=T1, end_time=T2, encrypted=True)),
    ("duplicity-inc.20261125T012922Z.to.20261125T022329Z.manifest",
     dict(type="inc", manifest=True, start_time=T1, end_time=T2)),
    ("duplicity-full-signatures.20261125T012922Z.sigtar.gz", dict(type="full-sig", time=T1, compressed=True)),
    ("duplicity-full-signatures.20261125T012922Z.sigtar.part", dict(type="full-sig", time=T1, partial=True)),
    ("duplicity-new-signatures.20261125T012922Z.to.20261125T022329Z.sigtar.gpg",
     dict(type="new-sig", start_time=T1, end_time=T2, encrypted=True)),
    ("duplicity-full.20261125T012922Z.jsonstat.gpg", dict(type="jsonstat", time=T1, encrypted=True)),
    ("duplicity-full.2002-04-26T04:22:01-07:00.vol1.difftar.gpg",
     dict(type="full", volume=1, time=1_019_820_121, encrypted=True)),
])
def test_parse_names(name, fields):
    p = naming.parse(name)
    assert p is not None
    for k, v in fields.items():
        assert getattr(p, k) == v, k
    for k in ("encrypted", "compressed", "partial", "manifest"):
        if k not in fields:
            assert getattr(p, k) is False, k


def _b36(n):
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out or "0"


def test_short_names():
    t = _b36(T1)
    p = naming.parse(f"df.{t}.{_b36(11)}.dt.g")
    assert (p.type, p.time, p.volume, p.encrypted) == ("full", T1, 11, True)
    p = naming.parse(f"di.{t}.{_b36(T2)}.m.z")
    assert (p.type, p.manifest, p.start_time, p.end_time, p.compressed) == ("inc", True, T1, T2, True)
    p = naming.parse(f"dns.{t}.{_b36(T2)}.st.p")
    assert (p.type, p.partial) == ("new-sig", True)
    assert naming.parse(f"dfs.{t}.st.g").type == "full-sig"


@pytest.mark.parametrize("name", ["lockfile", "README", ".cairn-tmp.duplicity-full.20261125T012922Z.vol1.difftar.gpg",
                                  "duplicity-full.garbage.vol1.difftar", "xduplicity-full.20261125T012922Z.manifest"])
def test_foreign_names(name):
    assert naming.parse(name) is None


def test_names_round_trip():
    for kw in (dict(time=T1), dict(start_time=T1, end_time=T2)):
        for suffix in ("", ".gpg", ".gz"):
            p = naming.parse(naming.volume_name(7, suffix=suffix, **kw))
            assert p.volume == 7 and (p.time or p.end_time) == (kw.get("time") or T2)
            assert naming.parse(naming.manifest_name(suffix=suffix, **kw)).manifest
            assert naming.parse(naming.signature_name(suffix=suffix, partial=True, **kw)).partial
    assert naming.parse("pfx-" + naming.volume_name(1, time=T1), prefix="pfx-").volume == 1
    assert naming.parse(naming.volume_name(1, time=T1), prefix="pfx-") is None


def test_quoting():
    assert quote(b"plain/name.txt") == b"plain/name.txt"
    assert quote(b"sub/name with space.txt") == b'"sub/name\\x20with\\x20space.txt"'
    assert quote(b"a\nb\"c'd\\e") == b'"a\\x0ab\\x22c\\x27d\\x5ce"'
    assert quote(b"caf\xc3\xa9") == b"caf\xc3\xa9"          # other bytes stay raw
    for raw in (b"x y", b"a\tb\nc", b"q\"'\\", b"\xff\xfe z"):
        assert unquote(quote(raw)) == raw


SPEC_EXAMPLE = (b"Hostname vm\n"
                b"Localdir src\n"
                b"Volume 1:\n"
                b"    StartingPath   .  \n"
                b"    EndingPath     sub/huge.bin 13\n"
                b"    Hash SHA1 d31531ffd9e5b186df6e45528629ccee2001dd99\n"
                b"Volume 2:\n"
                b"    StartingPath   sub/huge.bin 14\n"
                b"    EndingPath     sub/huge.bin 29\n"
                b"    Hash SHA1 94b9000000000000000000000000000000000000\n"
                b"Filelist 3\n"
                b"    changed  a.txt\n"
                b"    deleted  hardlink\n"
                b'    new      "sub/deep/name\\x20with\\x20space.txt"\n')


def test_manifest_layout_is_byte_exact():
    m = Manifest(hostname="vm", localdir=b"src")
    m.add_volume(VolumeInfo(1, (), None, (b"sub", b"huge.bin"), 13,
                            {"SHA1": "d31531ffd9e5b186df6e45528629ccee2001dd99"}))
    m.add_volume(VolumeInfo(2, (b"sub", b"huge.bin"), 14, (b"sub", b"huge.bin"), 29,
                            {"SHA1": "94b9000000000000000000000000000000000000"}))
    m.files_changed = [("changed", (b"a.txt",)), ("deleted", (b"hardlink",)),
                       ("new", (b"sub", b"deep", b"name with space.txt"))]
    assert m.to_bytes() == SPEC_EXAMPLE
    back = Manifest.from_bytes(SPEC_EXAMPLE)
    assert back.to_bytes() == SPEC_EXAMPLE
    assert back.volumes[1].end_block == 13 and back.volumes[1].start_index == ()
    assert back.volumes[2].start_index == (b"sub", b"huge.bin")


def test_manifest_restart_rule_and_errors():
    data = (b"Volume 1:\n    StartingPath   a \n    EndingPath     b \n"
            b"Volume 2:\n    StartingPath   b \n    EndingPath     c \n"
            b"Volume 3:\n    StartingPath   c \n    EndingPath     d \n"
            b"Volume 2:\n    StartingPath   b \n    EndingPath     x \n")
    m = Manifest.from_bytes(data)
    assert sorted(m.volumes) == [1, 2] and m.volumes[2].end_index == (b"x",)
    with pytest.raises(ManifestError):
        Manifest.from_bytes(b"Volume 1:\n    StartingPath   a \n")


def test_volumes_containing():
    m = Manifest()
    m.add_volume(VolumeInfo(1, (), None, (b"b", b"x"), 2, {}))
    m.add_volume(VolumeInfo(2, (b"b", b"x"), 3, (b"d",), None, {}))
    m.add_volume(VolumeInfo(3, (b"e",), None, (b"z",), None, {}))
    assert m.volumes_containing((b"b", b"x")) == [1, 2]
    assert m.volumes_containing((b"c",)) == [2]
    assert m.volumes_containing((b"f", b"g")) == [3]


def test_a_manifest_of_many_files_is_read_without_parsing_its_filelist():
    """A full backup of a million files lists a million in its manifest; every run that read it
    (an incremental, a restore, a listing) held them as tuples, about 500 MiB."""
    import tracemalloc
    head = b"Hostname vm\nVolume 1:\n    StartingPath   . \n    EndingPath     d/f199999 \n"
    lines = b"".join(b"    new      d/f%d\n" % i for i in range(200_000))
    data = head + b"Filelist 200000\n" + lines
    tracemalloc.start()
    try:
        m = Manifest.from_bytes(data)
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * len(data), f"{peak / 2**20:.1f} MiB to read a {len(data) / 2**20:.1f} MiB manifest"
    assert m.volumes[1].end_index == (b"d", b"f199999")
    listed = iter(m.files_changed)
    assert next(listed) == ("new", (b"d", b"f0")) and len(m.files_changed) == 200_000


def test_a_volume_after_the_filelist_is_refused():
    data = (b"Volume 1:\n    StartingPath   a \n    EndingPath     b \nFilelist 1\n    new      a\n"
            b"Volume 2:\n    StartingPath   b \n    EndingPath     c \n")
    with pytest.raises(ManifestError, match="after its Filelist"):
        Manifest.from_bytes(data)
