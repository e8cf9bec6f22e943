# SPDX-License-Identifier: GPL-3.0-or-later
"""Every changelog fragment is what antsibull-changelog accepts: known sections, lists of text."""
import os

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHANGELOGS = os.path.join(ROOT, "changelogs")
FRAGMENTS = sorted(os.listdir(os.path.join(CHANGELOGS, "fragments")))


def _sections():
    with open(os.path.join(CHANGELOGS, "config.yaml")) as f:
        config = yaml.safe_load(f)
    return ({name for name, _title in config["sections"]}
            | {config.get("trivial_section_name", "trivial"), config.get("prelude_section_name", "release_summary")})


@pytest.mark.parametrize("name", FRAGMENTS)
def test_fragment(name):
    assert name.endswith((".yml", ".yaml")), f"{name}: fragments are YAML files"
    with open(os.path.join(CHANGELOGS, "fragments", name)) as f:
        data = yaml.safe_load(f)
    assert isinstance(data, dict) and data, f"{name}: a mapping of section to entries"
    unknown = set(data) - _sections()
    assert not unknown, f"{name}: unknown section(s) {sorted(unknown)}"
    for section, entries in data.items():
        assert isinstance(entries, list) and entries, f"{name}: {section} is a list of entries"
        assert all(isinstance(e, str) and e.strip() for e in entries), f"{name}: {section} entries are text"
