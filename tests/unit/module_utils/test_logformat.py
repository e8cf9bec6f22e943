# SPDX-License-Identifier: GPL-3.0-or-later
"""duplicity's verbosity words and its machine-readable log record, in isolation."""
import logging

import pytest

from cairn import logformat


@pytest.mark.parametrize("text,level", [("0", 0), ("9", 9), ("4", 4), ("e", 0), ("Error", 0), ("w", 2),
                                        ("warning", 2), ("n", 3), ("NOTICE", 3), ("i", 5), ("info", 5),
                                        ("d", 9), ("debug", 9)])
def test_verbosity_words(text, level):
    assert logformat.parse_verbosity(text) == level


@pytest.mark.parametrize("text", ["10", "-1", "x", "", "infos", "4.5"])
def test_bad_verbosity(text):
    with pytest.raises(ValueError, match="verbosity must be"):
        logformat.parse_verbosity(text)


def test_levels_show_what_duplicity_shows():
    shown = {v: logformat.threshold(v) for v in range(10)}
    assert shown[0] == shown[1] == logging.ERROR and shown[2] == logging.WARNING
    assert shown[3] == shown[4] == logging.INFO       # cairn's notices are logged at INFO
    assert shown[5] == logformat.FILES and shown[9] == logging.DEBUG


def test_machine_record_and_escape():
    rec = logging.LogRecord("cairn", logformat.FILES, __file__, 0, "A we ird'\n2", (), None)
    rec.dup_control = f"4 {logformat.escape(b'we ird' + bytes([39, 10, 0xc3, 0xa9, 0xff]))}"
    assert logformat.MachineFormatter().format(rec) == "INFO 4 'we ird\\x27\\n\\xe9\\udcff'\n. A we ird'\n. 2\n"
    rec = logging.LogRecord("cairn", logging.WARNING, __file__, 0, "", (), None)
    assert logformat.MachineFormatter().format(rec) == "WARNING 1\n"
