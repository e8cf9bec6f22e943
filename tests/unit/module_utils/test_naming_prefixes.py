# SPDX-License-Identifier: GPL-3.0-or-later
"""File names under duplicity's per-kind prefixes, and --time-separator in times and long names."""
import calendar

import pytest

from cairn import naming, options, timespec
from cairn.collection import Collection
from cairn.errors import TimeStringError

T1 = calendar.timegm((2024, 1, 2, 3, 4, 5, 0, 0, 0))
T2 = T1 + 3600
NS = naming.NameScheme(file="P-", archive="a-", manifest="m-", signature="s-")


def test_names_are_written_as_duplicitys_with_each_kinds_prefix():
    assert naming.volume_name(1, time=T1, suffix=".gpg", prefix=NS) == \
        "P-a-duplicity-full.20240102T030405Z.vol1.difftar.gpg"
    assert naming.volume_name(2, start_time=T1, end_time=T2, prefix=NS) == \
        "P-a-duplicity-inc.20240102T030405Z.to.20240102T040405Z.vol2.difftar"
    assert naming.manifest_name(time=T1, prefix=NS) == "P-m-duplicity-full.20240102T030405Z.manifest"
    assert naming.manifest_name(start_time=T1, end_time=T2, partial=True, prefix=NS) == \
        "P-m-duplicity-inc.20240102T030405Z.to.20240102T040405Z.manifest.part"
    assert naming.signature_name(time=T1, suffix=".gz", prefix=NS) == \
        "P-s-duplicity-full-signatures.20240102T030405Z.sigtar.gz"
    assert naming.signature_name(start_time=T1, end_time=T2, prefix=NS) == \
        "P-s-duplicity-new-signatures.20240102T030405Z.to.20240102T040405Z.sigtar"
    # a plain string is the file prefix alone, as before
    assert naming.volume_name(1, time=T1, prefix="P-") == "P-duplicity-full.20240102T030405Z.vol1.difftar"
    assert naming.volume_name(1, time=T1) == "duplicity-full.20240102T030405Z.vol1.difftar"


@pytest.mark.parametrize("name,kind,manifest", [
    ("P-a-duplicity-full.20240102T030405Z.vol1.difftar.gpg", "full", False),
    ("P-m-duplicity-full.20240102T030405Z.manifest.gpg", "full", True),
    ("P-s-duplicity-full-signatures.20240102T030405Z.sigtar.gpg", "full-sig", False),
    ("P-a-duplicity-inc.20240102T030405Z.to.20240102T040405Z.vol3.difftar.gz", "inc", False),
    ("P-m-duplicity-inc.20240102T030405Z.to.20240102T040405Z.manifest", "inc", True),
    ("P-s-duplicity-new-signatures.20240102T030405Z.to.20240102T040405Z.sigtar.gz", "new-sig", False),
    # short names take the same prefixes
    ("P-a-df.s6m5ut.1.dt.g", "full", False),
    ("P-m-df.s6m5ut.m.g", "full", True),
    ("P-s-dfs.s6m5ut.st.g", "full-sig", False),
    ("P-a-di.s6m5ut.s6m8mt.2.dt.z", "inc", False),
    ("P-m-di.s6m5ut.s6m8mt.m", "inc", True),
    ("P-s-dns.s6m5ut.s6m8mt.st.z", "new-sig", False),
])
def test_each_kind_is_read_under_its_own_prefixes_only(name, kind, manifest):
    p = naming.parse(name, NS)
    assert p is not None and (p.type, p.manifest) == (kind, manifest)
    assert naming.parse(name) is None and naming.parse(name, "P-") is None
    # another kind's prefix, or none after the file prefix: not this archive's
    head = name[:4]
    for other in ("P-a-", "P-m-", "P-s-", "P-"):
        if other != head:
            assert naming.parse(other + name[4:], NS) is None, other + name[4:]
    assert naming.parse(name[2:], NS) is None       # without the file prefix


def test_a_prefix_may_be_any_text_and_empty_ones_are_duplicitys_defaults():
    ns = naming.NameScheme(file="", archive="vol.", manifest="", signature="sig_")
    assert naming.parse("vol.duplicity-full.20240102T030405Z.vol1.difftar", ns).volume == 1
    assert naming.parse("duplicity-full.20240102T030405Z.manifest", ns).manifest
    assert naming.parse("duplicity-full.20240102T030405Z.vol1.difftar", ns) is None
    assert naming.parse("sig_duplicity-full-signatures.20240102T030405Z.sigtar", ns).type == "full-sig"
    assert naming.parse("duplicity-full-signatures.20240102T030405Z.sigtar", ns) is None


def test_unfinished_files_take_the_mark_after_the_file_prefix_and_are_found_by_the_scheme():
    final = naming.volume_name(1, time=T1, prefix=NS)
    temp = naming.unfinished_name(final, NS)
    assert temp == "P-cairn-unfinished.a-duplicity-full.20240102T030405Z.vol1.difftar"
    assert naming.finished_name(temp, NS) == final
    assert naming.unfinished_of(temp, NS) == final
    # another archive's (other per-kind prefixes, same file prefix) is not ours to finish or delete
    other = naming.NameScheme(file="P-", archive="b-", manifest="n-", signature="t-")
    assert naming.unfinished_of(temp, other) is None
    col = Collection([temp, naming.manifest_name(time=T1, prefix=NS)], other)
    assert col.unfinished == {} and temp in col.foreign
    col = Collection([temp, naming.manifest_name(time=T1, prefix=NS)], NS)
    assert col.unfinished == {final: temp}


def test_a_collection_reads_a_prefixed_chain_and_leaves_the_rest_foreign():
    names = [naming.volume_name(1, time=T1, suffix=".gpg", prefix=NS),
             naming.manifest_name(time=T1, suffix=".gpg", prefix=NS),
             naming.signature_name(time=T1, suffix=".gpg", prefix=NS),
             naming.volume_name(1, start_time=T1, end_time=T2, suffix=".gpg", prefix=NS),
             naming.manifest_name(start_time=T1, end_time=T2, suffix=".gpg", prefix=NS),
             naming.signature_name(start_time=T1, end_time=T2, suffix=".gpg", prefix=NS),
             "README", "P-duplicity-full.20240102T030405Z.vol2.difftar.gpg",
             "P-m-duplicity-full.20240102T030405Z.vol2.difftar.gpg"]
    col = Collection(names, NS)
    (chain,) = col.chains
    assert [(s.type, s.end_time, sorted(s.volumes)) for s in chain.sets] == [("full", T1, [1]), ("inc", T2, [1])]
    assert all(s.signature for s in chain.sets)
    assert sorted(col.foreign) == sorted(names[6:])
    assert not col.incomplete and not col.orphaned and not col.orphaned_signatures


def test_target_options_carry_the_prefixes_and_the_separator():
    t = options.target_options({"target": "file:///x", "no_encryption": True, "file_prefix": "P-",
                                "file_prefix_archive": "a-", "file_prefix_manifest": "m-",
                                "file_prefix_signature": "s-", "time_separator": "_"}, {})
    assert t.names == naming.NameScheme("P-", "a-", "m-", "s-", "_")
    t = options.target_options({"target": "file:///x", "no_encryption": True}, {})
    assert t.names == naming.NameScheme() and t.names.time_separator == ":"
    with pytest.raises(TimeStringError, match="one character"):
        options.target_options({"target": "file:///x", "no_encryption": True, "time_separator": "::"}, {})


def test_time_separator_in_time_strings():
    colon = timespec.parse("2024-01-02T04:04:05+01:00")
    assert colon == T1
    assert timespec.parse("2024-01-02T04_04_05+01_00", sep="_") == T1
    assert timespec.parse("2024-01-02T03_04_05Z", sep="_") == T1
    assert timespec.parse("2024-01-02T04.04.05+01.00", sep=".") == T1
    with pytest.raises(TimeStringError):
        timespec.parse("2024-01-02T04_04_05+01_00")
    # the other forms do not change
    assert timespec.parse("20240102T030405Z", sep="_") == T1
    assert timespec.parse("1D", now=T2, sep="_") == T2 - 86400


@pytest.mark.parametrize("value", ["", "::", "0", "9", "T", "t", "\n", "\x00"])
def test_nonsense_separators_are_refused(value):
    with pytest.raises(TimeStringError):
        timespec.time_separator(value)


@pytest.mark.parametrize("value", [":", "_", "-", ".", "+", "h", " "])
def test_separators_duplicity_reads_with_are_taken(value):
    assert timespec.time_separator(value) == value


def test_long_names_with_a_time_separator():
    name = "duplicity-inc.2024-01-02T04_04_05+01_00.to.2024-01-02T05_04_05+01_00.vol1.difftar.gpg"
    assert naming.parse(name) is None
    p = naming.parse(name, naming.NameScheme(time_separator="_"))
    assert (p.type, p.start_time, p.end_time, p.volume) == ("inc", T1, T2, 1)
    # duplicity upper-cases a long time before reading it: a letter separator matches either case
    p = naming.parse("duplicity-full.2024-01-02t03h04h05z.manifest", naming.NameScheme(time_separator="h"))
    assert (p.type, p.time, p.manifest) == ("full", T1, True)
    # with the file prefixes too
    ns = naming.NameScheme(file="P-", manifest="m-", time_separator=".")
    assert naming.parse("P-m-duplicity-full.2024-01-02T04.04.05+01.00.manifest", ns).time == T1
