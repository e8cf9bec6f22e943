# SPDX-License-Identifier: GPL-3.0-or-later
"""The playbooks' report templates, rendered with Jinja2 as Ansible's template lookup does."""
import os

import jinja2

TEMPLATES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "playbooks", "templates")


def _render(name, **context):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), trim_blocks=True, undefined=jinja2.StrictUndefined)
    return env.get_template(name).render(**context)


def test_backup_summary_says_why_a_job_failed():
    rows = [
        {"host": "web1", "job": "www", "ok": True,
         "state": {"last_type": "incremental", "last_bytes": 1234, "last_duration": 2.5, "last_message": ""}},
        {"host": "db1", "job": "pg", "ok": False,
         "state": {"last_exit_code": 50, "last_message": "backup failed with exit 50: cannot connect to nas:22"}},
        {"host": "db2", "job": "pg", "ok": False, "state": {}},
    ]
    lines = _render("backup_summary.j2", _rows=rows).splitlines()
    assert lines[1].split() == ["web1", "www", "ok", "incremental", "1234", "2.5"]
    assert lines[2].split()[:3] == ["db1", "pg", "FAILED"]
    assert lines[3] == "  why: backup failed with exit 50: cannot connect to nas:22"
    assert lines[4].split()[:3] == ["db2", "pg", "FAILED"]
    assert "journalctl -u cairn-pg" in lines[5]
    assert len(lines) == 6
