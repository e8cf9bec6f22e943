# SPDX-License-Identifier: GPL-3.0-or-later
"""duplicity's verbosity levels and log formats, for the CLI (no printing here).

duplicity's levels are 0 error, 2 warning, 3 notice (its default), 5 info, 9 debug; a message
shows when its level is at most the verbosity. cairn's messages go through the logging module,
so each level is a logging level: cairn's engine logs what duplicity shows at notice with
logging.INFO, and the per-file lines of verbosity 5 have a level of their own below it.

The machine-readable format (--log-file, --log-fd) is what deja-dup and log shippers parse:
a line "LEVEL CODE [EXTRA]", the message's lines each prefixed ". ", then a blank line.
"""
import logging
import os

ERROR, WARNING, NOTICE, INFO, DEBUG = 0, 2, 3, 5, 9
DEFAULT = NOTICE

# the logging level of the per-file lines (duplicity's INFO): below logging.INFO, which is
# what cairn's engine logs its notices with
FILES = 15
logging.addLevelName(FILES, "FILES")

_NAMES = {"e": ERROR, "error": ERROR, "w": WARNING, "warning": WARNING, "n": NOTICE, "notice": NOTICE,
          "i": INFO, "info": INFO, "d": DEBUG, "debug": DEBUG}

# duplicity's message codes that cairn emits (its InfoCode values, as its log files show them)
CODE_GENERIC = 1
CODE_COLLECTION_STATUS = 3
CODE_FILE_NEW, CODE_FILE_CHANGED, CODE_FILE_DELETED = 4, 5, 6
CODE_FILE_RESTORED = 7
CODE_FILE_LIST = 10
FILE_CODES = {"A": CODE_FILE_NEW, "M": CODE_FILE_CHANGED, "D": CODE_FILE_DELETED}


def parse_verbosity(text):
    """0-9, or a level's name or first letter, as duplicity reads -v; ValueError otherwise."""
    t = str(text).strip().lower()
    if t in _NAMES:
        return _NAMES[t]
    if t.isdigit() and 0 <= int(t) <= 9:
        return int(t)
    raise ValueError("verbosity must be a digit 0-9, one of the letters e, w, n, i, d, or one of the "
                     f"words error, warning, notice, info, debug (not {text!r})")


def threshold(verbosity):
    """The lowest logging level shown at a duplicity verbosity."""
    if verbosity >= DEBUG:
        return logging.DEBUG
    if verbosity >= INFO:
        return FILES
    if verbosity >= NOTICE:
        return logging.INFO
    if verbosity >= WARNING:
        return logging.WARNING
    return logging.ERROR


def level_name(levelno):
    """duplicity's name of a logging level, as the machine format and --log-timestamp print it."""
    if levelno >= logging.ERROR:
        return "ERROR"
    if levelno >= logging.WARNING:
        return "WARNING"
    if levelno >= logging.INFO:
        return "NOTICE"
    if levelno >= FILES:
        return "INFO"
    return "DEBUG"


def escape(relpath):
    """A path as duplicity's control lines quote it: in single quotes, non-ASCII characters,
    control characters and the quote itself as Python escapes (so one path is one token)."""
    text = os.fsdecode(relpath) if isinstance(relpath, bytes) else relpath
    return "'" + text.encode("unicode_escape", "backslashreplace").decode("ascii").replace("'", "\\x27") + "'"


def control(record):
    """The "CODE [EXTRA]" of a record: set by the CLI on its own records, 1 for the others."""
    return getattr(record, "dup_control", None) or str(CODE_GENERIC)


class MachineFormatter(logging.Formatter):
    """duplicity's machine-readable record: "LEVEL CODE", ". "-prefixed message lines, and
    (with the handler's newline) a blank line after each record."""

    def format(self, record):
        message = record.getMessage()
        if record.exc_text:
            message = f"{message}\n{record.exc_text}" if message else record.exc_text
        head = f"{level_name(record.levelno)} {control(record)}"
        if message:
            head += ("\n" + message).replace("\n", "\n. ")
        return head + "\n"


class TimestampFormatter(logging.Formatter):
    """--log-timestamp: duplicity's "2026-12-02 05:55:09,078 NOTICE " prefix."""

    def format(self, record):
        return f"{self.formatTime(record)} {level_name(record.levelno):<6} {super().format(record)}"


def stamp(levelno, text, now=None):
    """The --log-timestamp prefix on a text printed outside the logging module (stdout)."""
    record = logging.LogRecord("cairn", levelno, "", 0, text, (), None)
    if now is not None:
        record.created = now
        record.msecs = (now - int(now)) * 1000
    return TimestampFormatter().format(record)


def open_log_file(path):
    """A handler appending to --log-file (as duplicity does), created readable by its owner only:
    log lines name paths and hosts."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    return logging.StreamHandler(os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace"))


def open_log_fd(fd):
    """A handler writing to an inherited descriptor (--log-fd); the descriptor stays open."""
    try:
        os.fstat(fd)
    except OSError as e:
        raise ValueError(f"--log-fd {fd}: {e.strerror}") from None
    stream = open(fd, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    return logging.StreamHandler(stream)
