# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs every integration target with ansible-playbook against localhost, the ad-hoc calls,
and proves the passphrase never shows up in results, -vvv output or any process's argv."""
import glob
import json
import os
import secrets
import subprocess
import sys
import threading

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
TARGETS = sorted(os.path.basename(os.path.dirname(os.path.dirname(p)))
                 for p in glob.glob(os.path.join(ROOT, "tests/integration/targets/*/tasks/main.yml")))


def _env():
    return dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                ANSIBLE_FORCE_COLOR="0", ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")


def _playbook(tmp_path, target, passphrase, extra_args=()):
    work = tmp_path / "work"
    work.mkdir()
    play = tmp_path / "play.yml"
    play.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        f"    - ansible.builtin.include_tasks: {ROOT}/tests/integration/targets/{target}/tasks/main.yml\n")
    variables = tmp_path / "vars.json"
    variables.write_text(json.dumps({
        "cairn_test_dir": str(work), "cairn_test_passphrase": passphrase,
        "cairn_duplicity": os.environ.get("CAIRN_DUPLICITY", "") if os.path.exists(os.environ.get("CAIRN_DUPLICITY", "/nonexistent")) else "",
        "ansible_python_interpreter": sys.executable}))
    os.chmod(variables, 0o600)
    return subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           "-e", f"@{variables}", *extra_args, str(play)],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, check=False)


@pytest.mark.parametrize("target", TARGETS)
def test_integration_target(tmp_path, gnupghome, target):
    r = _playbook(tmp_path, target, "pass-" + secrets.token_hex(8))
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert "failed=0" in r.stdout


def test_passphrase_never_appears(tmp_path, gnupghome):
    """-vvv output, results, and the argv of every process during the run."""
    passphrase = "never-show-" + secrets.token_hex(12)
    seen = []
    stop = threading.Event()

    def watch():
        needle = passphrase.encode()
        while not stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        if needle in f.read():
                            seen.append(pid)
                except OSError:
                    pass
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        r = _playbook(tmp_path, "backup", passphrase, ["-vvv"])
    finally:
        stop.set()
        t.join()
    assert r.returncode == 0, r.stdout[-4000:]
    assert "AnsiballZ_backup.py" in r.stdout and "\"bytes_stored\"" in r.stdout     # results were printed
    assert passphrase not in r.stdout and passphrase not in r.stderr
    assert seen == [], f"passphrase in the argv of process(es) {seen}"


def test_ad_hoc_restore_and_backup_info(tmp_path, gnupghome):
    src = tmp_path / "src"
    (src / "etc" / "nginx").mkdir(parents=True)
    (src / "etc" / "nginx" / "nginx.conf").write_text("worker_processes 4;\n")
    pf = tmp_path / "passphrase"
    pf.write_text("ad hoc passphrase\n")
    os.chmod(pf, 0o600)
    common = f"target=file://{tmp_path}/target passphrase_file={pf} archive_dir={tmp_path}/cache"

    def adhoc(module, args):
        return subprocess.run([os.path.join(BIN, "ansible"), "localhost", "-i", "localhost,", "-c", "local",
                               "-e", f"ansible_python_interpreter={sys.executable}", "-m", module,
                               "-a", f"{common} {args}", "-o"],
                              cwd=ROOT, env=_env(), capture_output=True, text=True, check=False)
    r = adhoc("cairn.backup.backup", f"source={src}")
    assert r.returncode == 0 and "CHANGED" in r.stdout, r.stdout + r.stderr
    r = adhoc("cairn.backup.restore", f"path=etc/nginx dest={tmp_path}/nginx time=now")
    assert r.returncode == 0 and "CHANGED" in r.stdout, r.stdout + r.stderr
    assert (tmp_path / "nginx" / "nginx.conf").read_text() == "worker_processes 4;\n"
    # rename (duplicity's --rename), its list of from/to given as JSON arguments
    for to, dest in (("conf/nginx.conf.bak", "renamed"), ("../../escaped", "refused")):
        args = dict(target=f"file://{tmp_path}/target", passphrase_file=str(pf), archive_dir=f"{tmp_path}/cache",
                    path="etc/nginx", dest=f"{tmp_path}/{dest}", rename=[{"from": "nginx.conf", "to": to}])
        r = subprocess.run([os.path.join(BIN, "ansible"), "localhost", "-i", "localhost,", "-c", "local",
                            "-e", f"ansible_python_interpreter={sys.executable}", "-m", "cairn.backup.restore",
                            "-a", json.dumps(args), "-o"], cwd=ROOT, env=_env(), capture_output=True, text=True,
                           check=False)
        if dest == "renamed":
            assert r.returncode == 0 and "CHANGED" in r.stdout, r.stdout + r.stderr
            assert (tmp_path / "renamed" / "conf" / "nginx.conf.bak").read_text() == "worker_processes 4;\n"
        else:
            assert r.returncode != 0 and "TO must be a relative path inside the restore target" in r.stdout
            assert not (tmp_path / "refused").exists() and not os.path.lexists(tmp_path.parent / "escaped")
    r = adhoc("cairn.backup.backup_info", "list_files=true")
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr
    result = json.loads(r.stdout.split("=>", 1)[1])
    assert result["changed"] is False and len(result["chains"]) == 1
    assert "etc/nginx/nginx.conf" in [f["path"] for f in result["files"]]


MODULES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "plugins/modules/*.py")))


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders(module):
    r = subprocess.run([os.path.join(BIN, "ansible-doc"), f"cairn.backup.{module}"], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0 and "EXAMPLES" in r.stdout and "RETURN VALUES" in r.stdout, r.stderr
