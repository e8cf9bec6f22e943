# SPDX-License-Identifier: GPL-3.0-or-later
"""The job role's ordered `selection`: filelist.j2 writes it as it is, and argument validation
refuses it together with includes/excludes (rendered with Jinja2 as Ansible's template module
does; validated with the argument spec validator Ansible runs for meta/argument_specs.yml)."""
import os

import jinja2
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

ROLE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "job")


def _filelist(job):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(ROLE, "templates")), trim_blocks=True,
                             undefined=jinja2.StrictUndefined)
    job = dict({"includes": [], "excludes": []}, **job)
    return env.get_template("filelist.j2").render(cairn_job=job, ansible_managed="managed").splitlines()[2:]


def _errors(job):
    with open(os.path.join(ROLE, "meta", "argument_specs.yml")) as f:
        spec = yaml.safe_load(f)["argument_specs"]["main"]["options"]
    return ArgumentSpecValidator(spec).validate({"cairn_jobs": [job]}).error_messages


def test_filelist_writes_selection_in_order():
    lines = _filelist({"name": "w", "selection": ["- /srv/a/tmp", "+ /srv/a", "- **.log", "+ /srv/b", "- **"]})
    assert lines == ["- /srv/a/tmp", "+ /srv/a", "- **.log", "+ /srv/b", "- **"]


def test_filelist_without_selection_is_unchanged():
    assert _filelist({"name": "w", "selection": [], "excludes": ["**.tmp"], "includes": ["/srv"]}) == \
        ["- **.tmp", "+ /srv", "- **"]
    assert _filelist({"name": "w", "excludes": ["/x"]}) == ["- /x"]


def test_selection_is_a_list_of_strings():
    assert _errors({"name": "x", "selection": ["+ /a", "- **"]}) == []


def test_selection_not_together_with_includes_or_excludes():
    for other in ("includes", "excludes"):
        errors = _errors({"name": "x", "selection": ["- **"], other: ["/a"]})
        assert errors and "mutually exclusive" in errors[0]
