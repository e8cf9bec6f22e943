# SPDX-License-Identifier: GPL-3.0-or-later
"""Fuzz file names and time strings: names parse or are foreign (None), never an exception;
time strings give an int every formatter can show, or TimeStringError (exit 23)."""
import time

from hypothesis import given
from hypothesis import strategies as st

from hostile import TIME_CODES, documented, fuzz_settings

from cairn import naming, timespec

T1, T2 = 1_795_570_162, 1_795_573_409
GOOD_NAMES = [naming.volume_name(3, time=T1, suffix=".gpg"),
              naming.volume_name(12, start_time=T1, end_time=T2, suffix=".gz"),
              naming.manifest_name(time=T1, partial=True),
              naming.manifest_name(start_time=T1, end_time=T2, suffix=".gpg"),
              naming.signature_name(time=T1, suffix=".gpg"),
              naming.signature_name(start_time=T1, end_time=T2),
              "duplicity-full.20261125T012922Z.jsonstat.gpg",
              "duplicity-full.2002-04-26T04:22:01-07:00.vol1.difftar.gpg",
              "df.ts2vuq.b.dt.g", "di.ts2vuq.ts2yyy.m.z", "dfs.ts2vuq.st", "dns.ts2vuq.ts2yyy.st.p"]
# what a crafted name may put where a time or a volume number goes
NAME_PARTS = st.one_of(
    st.sampled_from(["vol", "99999999999999999999999", "9" * 5000, "\u0661", "\u00b2", "0", "-1", "z" * 40,
                     "zzzzzzzzzzzzzz", "99991231T235959Z", "18000101T000000Z", "21000101T000000Z",
                     "20261301T000000Z", "20260230T000000Z", "2026-11-25T01:29:22+99:99", ".", ".to.",
                     "\udcff", "\0"]),
    st.text(max_size=12),
)


@st.composite
def mutated_names(draw):
    name = draw(st.sampled_from(GOOD_NAMES))
    for _edit in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(name)))
        j = draw(st.integers(i, min(len(name), i + 20)))
        name = name[:i] + draw(NAME_PARTS) + name[j:]
    return name


def _check_parsed(p):
    if p is None:
        return
    for t in (p.time, p.start_time, p.end_time):
        if t is not None:
            assert isinstance(t, int)
            timespec.to_iso(t), timespec.asctime(t), timespec.to_timestr(t)
    if p.volume is not None:
        assert isinstance(p.volume, int) and 0 <= p.volume <= naming.MAX_VOLUME


@fuzz_settings(500)
@given(mutated_names())
def test_mutated_names(name):
    _check_parsed(naming.parse(name))
    _check_parsed(naming.parse(name, prefix="pfx-"))


@fuzz_settings(300)
@given(st.text(max_size=80))
def test_any_text_as_a_name(name):
    _check_parsed(naming.parse(name))


TIME_PARTS = st.one_of(
    st.sampled_from(["now", "0", "1", "9" * 30, "9" * 5000, "\u00b2", "\u0661\u0662", "\uff11", "3D", "3d",
                     "1h78m", "2Y3M", "9" * 20 + "Y", "9" * 5000 + "s", "99999999999999Y", "2026-11-25",
                     "2026/11/25", "11-25-2026", "11/25/2026", "20261125Z", "20261125T012922Z",
                     "2026-11-25T01:29:22Z", "2026-11-25T01:29:22+01:00", "2026-11-25T01:29:22-99:99",
                     "1900-01-01", "2100-01-01", "9999-12-31", "0000-00-00", "2026-02-30", "2026-13-01",
                     "2026-11-25T25:61:61Z", "253402300799", "253402300800", str(2**63), " ", "\n",
                     "T", "Z", ":", "-", "+", "\0", "\udcff"]),
    st.text(max_size=10),
)


@fuzz_settings(600)
@given(st.lists(TIME_PARTS, min_size=1, max_size=3).map("".join))
def test_time_strings(s):
    with documented(TIME_CODES):
        t = timespec.parse(s, now=T2)
        assert isinstance(t, int) and timespec.MIN_TIME <= t <= timespec.MAX_TIME
        timespec.to_iso(t), timespec.asctime(t), timespec.to_timestr(t)


@fuzz_settings(200)
@given(st.integers(min_value=-2**70, max_value=2**70))
def test_formatters_take_any_int(t):
    """Archive mtimes reach the formatters too (list-current-files, verify): any int shows."""
    for text in (timespec.to_iso(t), timespec.asctime(t), timespec.to_timestr(t)):
        assert isinstance(text, str) and text


def test_formatters_at_the_limits():
    assert timespec.to_iso(2**63 - 1) == "9999-12-31T23:59:59Z"
    assert timespec.to_iso(-2**63) == "1900-01-01T00:00:00Z"
    assert timespec.to_timestr(T1) == time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(T1))
