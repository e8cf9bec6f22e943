# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet playbooks restore, verify, prune and status run `cairn job NAME ...` on each host:
ansible-playbook on localhost (two inventory hosts, local connection) over a job written as
the job role writes it, with args (--file-prefix) that a playbook which lost them could not
read the archive without, a selection, and the passphrase only in the credentials file."""
import glob
import json
import os
import subprocess
import sys
import tempfile

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BIN = os.path.dirname(sys.executable)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration", "engine"))
from test_hostjob import SECRET, job, make_job  # noqa: E402
from treeutil import write  # noqa: E402

pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(BIN, "ansible-playbook")),
                                reason="needs ansible-playbook")


@pytest.fixture
def fleet(tmp_path):
    """web1 holds the job (prefixed archive names, excludes, retention keep_full 1); web2 none."""
    cdir, config = make_job(tmp_path, target=f"file://{tmp_path}/t1", retention={"keep_full": 1},
                            args=["--file-prefix", "pfx-"])
    cairn = tmp_path / "cairn"
    cairn.write_text(f"#!/bin/sh\nPYTHONPATH={ROOT}/plugins/module_utils exec {sys.executable} -m cairn.cli \"$@\"\n")
    os.chmod(cairn, 0o755)
    (tmp_path / "web2-jobs").mkdir(mode=0o700)
    common = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
              "cairn_job_bin": str(cairn)}
    inventory = {"all": {"hosts": {
        "web1": dict(common, cairn_job_config_dir=str(cdir),
                     cairn_jobs=[{"name": "web", "source": config["source"], "target": config["targets"][0],
                                  "passphrase": SECRET}]),
        "web2": dict(common, cairn_job_config_dir=str(tmp_path / "web2-jobs"), cairn_jobs=[])}}}
    inv = tmp_path / "inventory.yml"
    inv.write_text(yaml.safe_dump(inventory))
    os.chmod(inv, 0o600)
    assert job(cdir, "web", "bkp")[0] == 0
    return tmp_path, cdir, config, inv


def play(inv, name, *args):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_LOCALHOST_WARNING="0")
    env.pop("PASSPHRASE", None)
    r = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", str(inv), *args,
                        os.path.join(ROOT, "playbooks", name)], cwd=ROOT, env=env, capture_output=True, text=True,
                       check=False)
    assert SECRET not in r.stdout + r.stderr
    return r


def test_restore_on_the_same_host_and_onto_another(fleet):
    tmp, _cdir, _config, inv = fleet
    r = play(inv, "restore.yml", "-e", "restore_from=web1", "-e", "restore_job=web", "-e", f"restore_dest={tmp}/r1")
    assert r.returncode == 0, r.stdout[-4000:]
    assert (tmp / "r1" / "keep" / "a.txt").read_text() == "alpha\n" and not (tmp / "r1" / "keep" / "junk.tmp").exists()
    assert "file(s) of web1's web" in r.stdout
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "*cairn-restore")))
    r = play(inv, "restore.yml", "-e", "restore_from=web1", "-e", "restore_to=web2", "-e", "restore_job=web",
             "-e", "restore_path=other/b.txt", "-e", f"restore_dest={tmp}/b.txt", "-e", "restore_time=now")
    assert r.returncode == 0, r.stdout[-4000:]
    assert (tmp / "b.txt").read_text() == "beta\n"
    assert (tmp / "cache" / "restore-web1-web").is_dir()         # its own cache, not web2's jobs'
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "*cairn-restore"))) == before   # the copy is gone


def test_verify_with_the_jobs_args_and_selection(fleet):
    tmp, _cdir, _config, inv = fleet
    r = play(inv, "verify.yml", "-e", "verify_compare_data=true")
    assert r.returncode == 0, r.stdout[-4000:]
    assert "0 difference(s) against the source" in r.stdout
    write(str(tmp / "src" / "other" / "b.txt"), b"changed\n")
    r = play(inv, "verify.yml", "-e", "verify_compare_data=true")
    assert r.returncode != 0 and "web differ" in r.stdout


def test_prune_plans_in_check_mode_and_deletes_otherwise(fleet):
    tmp, cdir, config, inv = fleet
    assert job(cdir, "web", "full")[0] == 0
    names = sorted(os.listdir(tmp / "t1"))
    assert all(n.startswith("pfx-") for n in names)
    r = play(inv, "prune.yml", "--check", "--diff")
    assert r.returncode == 0, r.stdout[-4000:]
    assert "changed=1" in r.stdout and "pfx-duplicity-full." in r.stdout
    assert sorted(os.listdir(tmp / "t1")) == names
    r = play(inv, "prune.yml")
    assert r.returncode == 0 and "changed=1" in r.stdout, r.stdout[-4000:]
    assert len(os.listdir(tmp / "t1")) < len(names)
    r = play(inv, "prune.yml")
    assert r.returncode == 0 and "changed=0" in r.stdout


def test_status_reports_every_job(fleet):
    tmp, cdir, _config, inv = fleet
    r = subprocess.run([os.path.join(tmp, "cairn"), "run-job", str(cdir / "web.json")], capture_output=True,
                       check=False, env={k: v for k, v in os.environ.items() if k != "PASSPHRASE"})
    assert r.returncode == 0, r.stderr
    report = tmp / "status.json"
    r = play(inv, "status.yml", "-e", f"cairn_status_report={report}")
    assert r.returncode == 0, r.stdout[-4000:]
    rows = json.loads(report.read_text())
    assert [(x["host"], x["job"]) for x in rows] == [("web1", "web")]
    row = rows[0]
    assert row["error"] is None and row["chains"] == 1 and row["chain_length"] == 2
    assert row["stored_bytes"] > 0 and row["last_verify"] and row["last_run_failed"] is False


@pytest.mark.parametrize("playbook", ["verify.yml", "prune.yml", "status.yml"])
def test_a_job_missing_on_its_host_is_reported_without_its_secrets(fleet, playbook):
    """A failed loop item is printed whole: the loops go over job names, never the entries."""
    tmp, _cdir, _config, inv = fleet
    inventory = yaml.safe_load(inv.read_text())
    inventory["all"]["hosts"]["web1"]["cairn_jobs"].append({"name": "ghost", "source": "/x", "target": "file:///x",
                                                            "passphrase": SECRET})
    inv.write_text(yaml.safe_dump(inventory))
    r = play(inv, playbook, "-e", f"cairn_status_report={tmp}/status.json")     # play() checks for SECRET
    assert "no job ghost in" in r.stdout, r.stdout[-3000:]
    if playbook != "status.yml":
        assert r.returncode != 0
