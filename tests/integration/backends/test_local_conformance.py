# SPDX-License-Identifier: GPL-3.0-or-later
"""The conformance checks on file:// (the reference backend), so the checks themselves are tested."""
from conformance import check_cycle, check_interface


def test_file_interface(tmp_path):
    assert check_interface(f"file://{tmp_path}/t", None, tmp_path) == []


def test_file_cycle(tmp_path):
    check_cycle(f"file://{tmp_path}/t", ["--no-encryption"], tmp_path)
