# SPDX-License-Identifier: GPL-3.0-or-later
"""duplicity's time strings (duplicity-format.md §6) and the time forms of file names."""
import calendar
import functools
import re
import time as _time

from .errors import TimeStringError

# Every time parse returns lies in [MIN_TIME, MAX_TIME], which the formatters below can show:
# names carry years 1901-2099, so nothing is older than MIN_TIME; epoch seconds stop at year 9999.
MIN_TIME = calendar.timegm((1900, 1, 1, 0, 0, 0, 0, 0, 0))
MAX_TIME = calendar.timegm((9999, 12, 31, 23, 59, 59, 0, 0, 0))

# ASCII digits only (re.A): "\d" alone also takes other scripts' digits
_UNITS = {"s": 1, "m": 60, "h": 3600, "D": 86400, "W": 7 * 86400, "M": 30 * 86400, "Y": 365 * 86400}
_EPOCH = re.compile(r"^\d+$", re.A)
_INTERVAL = re.compile(r"^(\d+[smhDWMY])+$", re.A)
_INTERVAL_PART = re.compile(r"(\d+)([smhDWMY])", re.A)
# duplicity's ':' (and '-', which 0.6-era names on FAT-like targets carry) between hours, minutes and
# seconds and in the zone; --time-separator C adds C (time_separator below)
TIME_SEPARATOR = ":"


@functools.lru_cache(maxsize=8)
def _w3c_rx(sep):
    c = "[" + re.escape(":-" + (sep if sep not in ":-" else "")) + "]"
    return re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2})" + c + r"(\d{2})" + c + r"(\d{2})(Z|[+-]\d{2}" + c
                      + r"\d{2})?$", re.A)


def time_separator(value):
    """--time-separator / ``time_separator``: the one character that stands for ':' in time
    strings (duplicity 3.2.1 takes any single character; a digit or T could only make every
    time unreadable, so cairn refuses those, and control characters). None (unset): ':'."""
    if value is None:
        return TIME_SEPARATOR
    if not isinstance(value, str) or len(value) != 1:
        raise TimeStringError(f"time_separator (--time-separator) is one character, not {value!r}")
    if value.isdigit() or value in "Tt" or not value.isprintable():
        raise TimeStringError(f"time_separator (--time-separator) {value!r} cannot stand for ':' in a time: "
                              "digits, T and control characters would make times unreadable")
    return value


_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$", re.A)
_DATES = (
    (re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$", re.A), ("y", "m", "d")),
    (re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2})$", re.A), ("y", "m", "d")),
    (re.compile(r"^(\d{1,2})-(\d{1,2})-(\d{4})$", re.A), ("m", "d", "y")),
    (re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$", re.A), ("m", "d", "y")),
    (re.compile(r"^(\d{4})(\d{2})(\d{2})Z$", re.A), ("y", "m", "d")),
)
HINT = ("accepted forms: 'now', epoch seconds, 2026-11-25T01:29:22Z or with +01:00, "
        "20261125T012922Z, intervals like 3D, 1h30m, 2W, 6M, 1Y (units s m h D W M Y), "
        "and dates 2026-11-25, 2026/11/25, 11-25-2026, 11/25/2026")


def _bad(s):
    shown = s if len(s) <= 100 else s[:100] + "..."
    return TimeStringError(f'Bad time string "{shown}": {HINT}')


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


def _w3c(s, sep=TIME_SEPARATOR):
    m = _w3c_rx(sep).match(s)
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


def parse(s, now=None, sep=TIME_SEPARATOR):
    """A duplicity time string -> epoch seconds (int); ``sep``: the --time-separator."""
    if not isinstance(s, str):
        s = str(s)
    s = s.strip()
    now = int(_time.time()) if now is None else int(now)
    if s == "now":
        return now
    if _EPOCH.match(s):
        # the length first: int() of a long digit string is slow, or refused
        if len(s) > len(str(MAX_TIME)) or int(s) > MAX_TIME:
            raise _bad(s)
        return int(s)
    t = _w3c(s, sep)
    if t is not None:
        return t
    if _INTERVAL.match(s):
        # an interval reaching back before MIN_TIME means "before every backup": clamp there
        back = 0
        for n, u in _INTERVAL_PART.findall(s):
            if len(n) > 15:
                return MIN_TIME
            back += int(n) * _UNITS[u]
        return max(now - back, MIN_TIME)
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


_DURATION_UNITS = dict(_UNITS, d=_UNITS["D"], w=_UNITS["W"], y=_UNITS["Y"])
_DURATION = re.compile(r"^(\d+[smhdDwWMyY])+$", re.A)
_DURATION_PART = re.compile(r"(\d+)([smhdDwWMyY])", re.A)


def parse_duration(value):
    """Seconds from a number of seconds (an int, or ASCII digits) or an interval: duplicity's
    units s m h D W M Y (90s, 30m, 1h30m, 7D, 2W, 6M, 1Y; d, w and y in lower case too, which
    job configs use; m is minutes, M months). None or "" gives None. The one parser of
    durations: --lock-stale-after, a job's intervals, a module's min_interval."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TimeStringError(f"not a duration: {value!r} (seconds, or an interval such as 30m, 12h, 7D)")
    if isinstance(value, int):
        if value < 0:
            raise TimeStringError(f"a duration cannot be negative: {value}")
        return value
    text = value.strip()
    if _EPOCH.match(text) and len(text) <= 15:
        return int(text)
    if _DURATION.match(text) and all(len(n) <= 15 for n, _u in _DURATION_PART.findall(text)):
        return sum(int(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text))
    shown = text if len(text) <= 100 else text[:100] + "..."
    raise TimeStringError(f"not a duration: {shown!r} (seconds, or an interval of s m h D W M Y such as "
                          "90s, 30m, 12h, 7D, 2W)")


def _shown_time(t):
    """``t`` within what gmtime/localtime and a four-digit year can show (a crafted archive
    may carry any mtime up to 2**63-1)."""
    return min(max(t, MIN_TIME), MAX_TIME)


def to_timestr(t):
    return _time.strftime("%Y%m%dT%H%M%SZ", _time.gmtime(_shown_time(t)))


def from_timestr(s, sep=TIME_SEPARATOR):
    """A time as found in an archive file name (16-char form or legacy W3C with offset; ``sep``:
    the --time-separator of its time of day and zone). Upper-cased first, as duplicity does."""
    t = _w3c(s.upper(), sep.upper())
    if t is None:
        raise _bad(s)
    return t


def asctime(t):
    return _time.asctime(_time.localtime(_shown_time(t)))


def to_iso(t):
    return _time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime(_shown_time(t)))
