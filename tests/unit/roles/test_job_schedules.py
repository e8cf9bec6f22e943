# SPDX-License-Identifier: GPL-3.0-or-later
"""The job role's per-step schedules: the units, cron lines and job config it writes, rendered
with Ansible's own templating (the filters the role uses), and the units its tasks install and
remove, from the tasks' own loop and when expressions. The seed's classic setup (incremental
Monday to Saturday at 01:00, a full on Sundays, a monthly verify with compare) is three timers."""
import json
import os

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

try:
    from ansible.template import trust_as_template
except ImportError:         # ansible-core before 2.19 trusts every string
    def trust_as_template(s):
        return s

ROLE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "job")

CLASSIC = {"name": "web", "source": "/srv/www", "target": "sftp://b@vault//web", "passphrase": "x",
           "schedule": "Mon..Sat *-*-* 01:00", "full_schedule": "Sun *-*-* 01:00",
           "verify_schedule": "*-*-01 05:00", "verify_compare_data": True,
           "cron_schedule": "0 1 * * 1-6", "full_cron_schedule": "0 1 * * 0",
           "verify_cron_schedule": "0 5 1 * *"}


def _load(*path):
    with open(os.path.join(ROLE, *path)) as f:
        return yaml.safe_load(f)


def _vars(job, **more):
    defaults = _load("defaults", "main.yml")
    v = dict(defaults, ansible_managed="managed", inventory_hostname="host1", _cairn_scheduler="systemd",
             ansible_check_mode=False)
    v["cairn_job"] = dict(defaults["cairn_job_defaults"], **job)
    v.update(more)
    return v


def _eval(text, variables):
    return Templar(loader=DataLoader(), variables=variables).template(trust_as_template(text))


def _render(template, job, **more):
    with open(os.path.join(ROLE, "templates", template)) as f:
        return _eval(f.read(), _vars(job, **more))


def _keys(unit):
    """{key: value} of a unit file's lines (the last wins; enough for these units)."""
    return dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))


def _task(tasks_file, name):
    return next(t for t in _load("tasks", tasks_file) if t.get("name") == name)


def _looped(tasks_file, name, jobs, scheduler="systemd"):
    """The items the task acts on: its loop, filtered by its when, over ``jobs``."""
    task = _task(tasks_file, name)
    defaults = _load("defaults", "main.yml")
    jobs = [dict(defaults["cairn_job_defaults"], **j) for j in jobs]
    v = _vars({}, _cairn_present=jobs, _cairn_absent=jobs, _cairn_scheduler=scheduler, _cairn_units={"changed": False})
    items = _eval(task["loop"], v)
    when = task.get("when")
    out = []
    for item in items:
        # ansible-core 2.19 wants a boolean from every conditional; so does this test
        result = True if when is None else _eval("{{ " + " ".join(when.split()) + " }}", dict(v, item=item))
        assert isinstance(result, bool), (when, result)
        if result:
            out.append(item)
    return out


@pytest.mark.parametrize("step,calendar", [("backup", "Mon..Sat *-*-* 01:00"), ("full", "Sun *-*-* 01:00"),
                                           ("verify", "*-*-01 05:00")])
def test_classic_setup_timers_and_services(step, calendar):
    unit = "cairn-web" + ("" if step == "backup" else f"-{step}")
    timer = _keys(_render("cairn-job.timer.j2", CLASSIC, cairn_job_step=step))
    assert timer["OnCalendar"] == calendar and timer["Unit"] == f"{unit}.service"
    assert timer["Persistent"] == "true" and timer["WantedBy"] == "timers.target"
    service = _keys(_render("cairn-job.service.j2", CLASSIC, cairn_job_step=step))
    assert service["ExecStart"] == f"/usr/local/bin/cairn run-job --step {step} --wait 6h /etc/cairn/jobs/web.json"
    assert service["SyslogIdentifier"] == unit
    assert service["EnvironmentFile"] == "/etc/cairn/credentials/web.env"


def test_a_job_without_extra_schedules_renders_as_before():
    timer = _keys(_render("cairn-job.timer.j2", {"name": "db"}))
    assert timer["OnCalendar"] == "daily" and timer["Unit"] == "cairn-db.service"


def test_classic_setup_installs_three_timers_and_removes_the_prune_units():
    installed = _looped("present.yml", "Install the systemd units", [CLASSIC])
    assert sorted(f"{i[0]['name']}-{i[1]}.{i[2]}" for i in installed) == [
        "web-backup.service", "web-backup.timer", "web-full.service", "web-full.timer",
        "web-verify.service", "web-verify.timer"]
    enabled = _looped("present.yml", "Enable and start the timers", [CLASSIC])
    assert sorted(i[1] for i in enabled) == ["backup", "full", "verify"]
    # a schedule taken out of the job (here prune, never given) has its timer stopped and units removed
    stopped = _looped("present.yml", "Stop and disable the timers of unscheduled steps", [CLASSIC])
    assert [i[1] for i in stopped] == ["prune"]
    removed = _looped("present.yml", "Remove the units of unscheduled steps", [CLASSIC])
    assert sorted(tuple(i[1]) for i in removed) == [("prune", "service"), ("prune", "timer")]
    # with the full schedule removed, its units go too
    without_full = dict(CLASSIC, full_schedule=None)
    removed = _looped("present.yml", "Remove the units of unscheduled steps", [without_full])
    assert sorted(tuple(i[1]) for i in removed) == [("full", "service"), ("full", "timer"),
                                                    ("prune", "service"), ("prune", "timer")]
    assert sorted(i[1] for i in _looped("present.yml", "Install the systemd units", [without_full])) == \
        ["backup", "backup", "verify", "verify"]


def test_cron_hosts_write_nothing_as_units():
    assert _looped("present.yml", "Install the systemd units", [CLASSIC], scheduler="cron") == []
    assert _looped("present.yml", "Remove the units of unscheduled steps", [CLASSIC], scheduler="cron") == []


def test_an_absent_job_loses_every_steps_units():
    stopped = _looped("absent.yml", "Stop and disable the timers of absent jobs", [dict(CLASSIC, state="absent")])
    assert stopped == ["cairn-web.timer", "cairn-web-full.timer", "cairn-web-verify.timer", "cairn-web-prune.timer"]
    paths = [i[1] % i[0] for i in _looped("absent.yml", "Remove the units, configuration, credentials, cache, "
                                          "state and metrics of absent jobs", [dict(CLASSIC, state="absent")])]
    for step in ("", "-full", "-verify", "-prune"):
        for kind in ("service", "timer"):
            assert f"/etc/systemd/system/cairn-web{step}.{kind}" in paths


def test_classic_setup_on_cron():
    lines = [line for line in _render("cron.j2", CLASSIC).splitlines() if " root " in line]
    assert lines == [
        f"{when} root /usr/local/bin/cairn run-job --step {step} --wait 6h /etc/cairn/jobs/web.json 2>&1 | "
        f"logger -t cairn-web{tag}"
        for when, step, tag in (("0 1 * * 1-6", "backup", ""), ("0 1 * * 0", "full", "-full"),
                                ("0 5 1 * *", "verify", "-verify"))]


def test_cron_without_extra_schedules_has_one_line_at_a_seeded_minute():
    lines = [line for line in _render("cron.j2", {"name": "db"}).splitlines() if " root " in line]
    assert len(lines) == 1 and lines[0].split()[1:5] == ["3", "*", "*", "*"] and "--step backup" in lines[0]


def test_job_config_carries_mail_and_pings_and_leaves_verify_to_its_timer():
    config = json.loads(_render("job.json.j2", dict(CLASSIC, mail_to=["ops@example.net"], smtp_host="relay",
                                                    smtp_user="u", ping_method="get", ping_exit_code=True,
                                                    verify_sample=500)))
    assert config["verify_interval"] is None     # the verify timer verifies, not every backup
    assert config["verify_compare_data"] is True and config["verify_sample"] == 500
    assert config["mail_to"] == ["ops@example.net"] and config["mail_on"] == ["failure", "verify_failure"]
    assert config["smtp_host"] == "relay" and config["smtp_port"] == 587 and config["smtp_starttls"] is True
    assert config["ping_method"] == "GET" and config["ping_exit_code"] is True and config["ping_start"] is False
    assert "smtp_password" not in config and "x" not in json.dumps(config["args"])
    plain = json.loads(_render("job.json.j2", {"name": "db", "source": "/db", "target": "file:///b"}))
    assert plain["verify_interval"] == "7d" and plain["mail_to"] is None and plain["verify_sample"] is None


def test_smtp_password_goes_to_the_credentials_file_only():
    task = _task("present.yml", "Collect each job's secrets")
    assert task["no_log"] is True
    v = _vars({}, _cairn_job_credentials=[], ansible_loop={"index0": 0})
    v["cairn_job"] = dict(v["cairn_job"], name="web", smtp_password="relay-secret")
    creds = _eval(task["ansible.builtin.set_fact"]["_cairn_job_credentials"], v)
    assert creds[0]["env"]["CAIRN_SMTP_PASSWORD"] == "relay-secret"
    spec = _load("meta", "argument_specs.yml")["argument_specs"]["main"]["options"]["cairn_jobs"]["options"]
    assert spec["smtp_password"]["no_log"] is True


def _errors(job):
    spec = _load("meta", "argument_specs.yml")["argument_specs"]["main"]["options"]
    return ArgumentSpecValidator(spec).validate({"cairn_jobs": [job]}).error_messages


def test_argument_spec_knows_the_new_options():
    assert _errors(dict(CLASSIC, prune_schedule="weekly", prune_cron_schedule="0 6 * * 1", lock_wait="2h",
                        mail_to=["a@b"], mail_on=["success"], mail_from="c@d", smtp_host="h", smtp_port=25,
                        smtp_user="u", smtp_password="p", smtp_starttls=False, smtp_ca_file="/etc/ca.pem",
                        ping_method="GET", ping_start=True, ping_exit_code=True)) == []
    assert _errors({"name": "x", "mail_on": ["sometimes"]})
    assert _errors({"name": "x", "ping_method": "PUT"})


def _check(jobs, scheduler="systemd"):
    """Whether the role's 'Check the jobs' schedules and mail' assert passes for every job."""
    task = _task("main.yml", "Check the jobs' schedules and mail")
    defaults = _load("defaults", "main.yml")
    jobs = [dict(defaults["cairn_job_defaults"], **j) for j in jobs]
    for job in jobs:
        for cond in task["ansible.builtin.assert"]["that"]:
            variables = _vars({}, cairn_job=job, _cairn_all=jobs, _cairn_scheduler=scheduler)
            result = _eval("{{ " + " ".join(cond.split()) + " }}", variables)
            assert isinstance(result, bool), (cond, result)
            if not result:
                return False
    return True


def test_role_checks_schedules_names_and_mail():
    assert _check([CLASSIC]) and _check([CLASSIC], scheduler="cron")
    # cron hosts need each step's cron form
    assert not _check([dict(CLASSIC, verify_cron_schedule=None)], scheduler="cron")
    assert _check([dict(CLASSIC, verify_cron_schedule=None)])
    # a job named like another job's step unit
    assert not _check([CLASSIC, {"name": "web-full"}]) and _check([{"name": "db-full"}])
    assert not _check([dict(CLASSIC, mail_on=["always"])])
    assert not _check([dict(CLASSIC, ping_method="PUT")])
