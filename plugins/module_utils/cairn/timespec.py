# SPDX-License-Identifier: GPL-3.0-or-later
"""duplicity's time strings (duplicity-format.md §6) and the time forms of file names."""
import calendar
import re
import time as _time

from .errors import TimeStringError

_UNITS = {"s": 1, "m": 60, "h": 3600, "D": 86400, "W": 7 * 86400, "M": 30 * 86400, "Y": 365 * 86400}
_INTERVAL = re.compile(r"^(\d+[smhDWMY])+$")
_INTERVAL_PART = re.compile(r"(\d+)([smhDWMY])")
_W3C = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2})[:-](\d{2})[:-](\d{2})(Z|[+-]\d{2}[:-]\d{2})?$")
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$")
_DATES = (
    (re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$"), ("y", "m", "d")),
    (re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2})$"), ("y", "m", "d")),
    (re.compile(r"^(\d{1,2})-(\d{1,2})-(\d{4})$"), ("m", "d", "y")),
    (re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$"), ("m", "d", "y")),
    (re.compile(r"^(\d{4})(\d{2})(\d{2})Z$"), ("y", "m", "d")),
)
HINT = ("accepted forms: 'now', epoch seconds, 2026-11-25T01:29:22Z or with +01:00, "
        "20261125T012922Z, intervals like 3D, 1h30m, 2W, 6M, 1Y (units s m h D W M Y), "
        "and dates 2026-11-25, 2026/11/25, 11-25-2026, 11/25/2026")


def _bad(s):
    return TimeStringError(f'Bad time string "{s}": {HINT}')


def _check_year(y, s):
    if not 1901 <= y <= 2099:
        raise _bad(s)


def _local_offset():
    """Seconds east of UTC of local standard time (duplicity ignores DST here)."""
    return -_time.timezone


def _utc(y, mo, d, h, mi, sec, s):
    _check_year(y, s)
    try:
        return calendar.timegm((y, mo, d, h, mi, sec, 0, 0, 0)) if _valid(y, mo, d, h, mi, sec) else None
    except (ValueError, OverflowError):
        return None


def _valid(y, mo, d, h, mi, sec):
    if not (1 <= mo <= 12 and 0 <= h <= 23 and 0 <= mi <= 59 and 0 <= sec <= 61):
        return False
    return 1 <= d <= calendar.monthrange(y, mo)[1]


def _w3c(s):
    m = _W3C.match(s)
    if m:
        y, mo, d, h, mi, sec = (int(x) for x in m.groups()[:6])
        t = _utc(y, mo, d, h, mi, sec, s)
        if t is None:
            return None
        zone = m.group(7)
        if zone is None:
            return t - _local_offset()
        if zone == "Z":
            return t
        sign = 1 if zone[0] == "+" else -1
        return t - sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    m = _COMPACT.match(s)
    if m:
        return _utc(*(int(x) for x in m.groups()), s)
    return None


def parse(s, now=None):
    """A duplicity time string -> epoch seconds (int)."""
    if not isinstance(s, str):
        s = str(s)
    s = s.strip()
    now = int(_time.time()) if now is None else int(now)
    if s == "now":
        return now
    if s.isdigit():
        return int(s)
    t = _w3c(s)
    if t is not None:
        return t
    if _INTERVAL.match(s):
        return now - sum(int(n) * _UNITS[u] for n, u in _INTERVAL_PART.findall(s))
    for rx, order in _DATES:
        m = rx.match(s)
        if m:
            parts = dict(zip(order, (int(x) for x in m.groups())))
            _check_year(parts["y"], s)
            if not _valid(parts["y"], parts["m"], parts["d"], 0, 0, 0):
                raise _bad(s)
            # local midnight, even with the trailing Z (as duplicity does)
            return int(_time.mktime((parts["y"], parts["m"], parts["d"], 0, 0, 0, 0, 0, -1)))
    raise _bad(s)


def to_timestr(t):
    return _time.strftime("%Y%m%dT%H%M%SZ", _time.gmtime(t))


def from_timestr(s):
    """A time as found in an archive file name (16-char form or legacy W3C with offset)."""
    t = _w3c(s.upper())
    if t is None:
        raise _bad(s)
    return t


def asctime(t):
    return _time.asctime(_time.localtime(t))


def to_iso(t):
    return _time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime(t))
