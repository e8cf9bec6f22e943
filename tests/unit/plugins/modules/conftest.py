# SPDX-License-Identifier: GPL-3.0-or-later
"""Run a module's main() in-process over a faked engine: its arguments in, its exit_json or
fail_json out (community.general's pattern)."""
import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
# `make setup` links the checkout as ansible_collections/cairn/backup here
sys.path.insert(0, os.path.join(ROOT, ".ansible", "collections"))

from ansible.module_utils import basic  # noqa: E402


class ModuleExit(Exception):
    def __init__(self, result, failed):
        super().__init__(result)
        self.result = result
        self.failed = failed


@pytest.fixture
def run_module(monkeypatch):
    def run(module, args, check_mode=False, diff=False):
        args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
        payload = json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()
        monkeypatch.setattr(basic, "_ANSIBLE_ARGS", payload)
        if hasattr(basic, "_ANSIBLE_PROFILE"):
            monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy")

        # the module's own warnings, recorded per run: Ansible's global list behaves otherwise
        # once a test in the same process has loaded the controller's templating
        warnings = []
        monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, text: warnings.append(text))

        def exit_json(self, **kw):
            raise ModuleExit(dict(kw, warnings=list(warnings)), False)

        def fail_json(self, msg, **kw):
            raise ModuleExit(dict(kw, msg=msg), True)
        monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
        monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
        with pytest.raises(ModuleExit) as done:
            module.main()
        return done.value
    return run


class Calls:
    """A fake engine function: records its calls, answers with ``result`` (or raises it)."""

    def __init__(self, result=None):
        self.result = result
        self.calls = []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


@pytest.fixture
def fake(monkeypatch):
    """fake(api, "backup", result): replace an engine entry point, get its Calls back."""
    def install(api, name, result=None):
        calls = Calls(result)
        monkeypatch.setattr(api, name, calls)
        return calls
    return install
