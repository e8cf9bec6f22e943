# SPDX-License-Identifier: GPL-3.0-or-later
"""run-job's mail and ping helpers (notify.py) and the job's redaction of the SMTP password."""
import pytest

from cairn.job import Job, parse_args
from cairn.notify import build_mail, check_config, ping_url


def test_smtp_password_is_one_of_the_jobs_secrets():
    lines = []
    job = Job({"name": "web", "targets": ["file:///b"]}, env={"CAIRN_SMTP_PASSWORD": "relay-Secret-99"},
              cairn=["true"], log=lines.append)
    job.log("login failed for relay-Secret-99")
    assert lines == ["login failed for ***"] and list(job.tail) == lines


@pytest.mark.parametrize("url,suffix,out", [
    ("https://hc-ping.com/abc-123", "start", "https://hc-ping.com/abc-123/start"),
    ("https://hc-ping.com/abc-123/", "0", "https://hc-ping.com/abc-123/0"),
    ("http://h/ping/x?rid=5", "70", "http://h/ping/x/70?rid=5")])
def test_ping_url_appends_to_the_path(url, suffix, out):
    assert ping_url(url, suffix) == out


@pytest.mark.parametrize("config,problem", [
    ({"mail_on": ["always"]}, "mail_on"), ({"mail_on": "failure"}, "mail_on"), ({"mail_to": "root"}, "mail_to"),
    ({"mail_to": ["root"]}, "mail_to"), ({"ping_method": "PUT"}, "ping_method"), ({"smtp_port": "587"}, "smtp_port"),
    ({"smtp_port": 0}, "smtp_port")])
def test_bad_mail_and_ping_config(config, problem):
    problems = check_config(config)
    assert len(problems) == 1 and problems[0].startswith(problem)


def test_good_config_has_no_problems():
    assert check_config({}) == []
    assert check_config({"mail_to": ["a@b"], "mail_on": ["success"], "ping_method": "get", "smtp_port": 25}) == []


def test_mail_headers():
    msg = build_mail({"mail_to": ["a@example.net", "b@example.net"], "mail_from": "cairn@h"}, "[cairn] h web: success",
                     "body\n")
    assert msg["To"] == "a@example.net, b@example.net" and msg["From"] == "cairn@h"
    assert msg["Auto-Submitted"] == "auto-generated" and msg.get_content() == "body\n"


@pytest.mark.parametrize("argv,parsed", [(["c.json"], ("backup", 0, "c.json")),
                                         (["--step", "verify", "--wait", "6h", "c.json"], ("verify", 21600, "c.json")),
                                         (["c.json", "--step=prune", "--wait=90"], ("prune", 90, "c.json"))])
def test_run_job_command_line(argv, parsed):
    assert parse_args(argv) == parsed


@pytest.mark.parametrize("argv", [[], ["a", "b"], ["--step", "all", "c"], ["--wait", "-1", "c"], ["-x", "c"]])
def test_bad_run_job_command_line(argv):
    with pytest.raises(ValueError):
        parse_args(argv)
