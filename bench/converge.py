# SPDX-License-Identifier: GPL-3.0-or-later
"""`make bench-converge`: a 3-host converge of playbooks/site.yml and its re-converge, timed.

For each collection given (``--collection LABEL=PATH``, or ``LABEL=git:REV`` for a revision of
this checkout, unpacked with ``git archive``; default: this checkout as ``working-tree``), three
fresh podman containers running systemd (the molecule image and settings: ``--systemd always``,
host network) get the collection's ``playbooks/site.yml`` twice: converge, then re-converge, which
should change nothing. Per run: wall seconds of ansible-playbook, tasks changed, and the seconds
of each task of the agent role that installs the engine (name containing "engine" or "cairn
command"), from the ``ansible.posix.json`` callback (a task's time is from its start on the first
host to its end on the last). Then ``--startup-runs`` starts of the installed ``cairn --version``
on one host (median wall and CPU time). ``--upgrade`` instead runs both collections on one set of
containers: converge and re-converge with the first, then converge with the second (an upgrade of
the layout, without installing the packages again) and re-converge. The containers are removed at
the end, also on failure or Ctrl-C.

The jobs are those of the fleet scenario (molecule/fleet) with a local ``file://`` target: the
roles only write configuration, nothing connects anywhere.
"""
import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
IMAGE = os.environ.get("CAIRN_MOLECULE_IMAGE", "localhost/cairn-debian:bookworm")
HOSTS = ["cairn-bench-1", "cairn-bench-2", "cairn-bench-3"]
ENGINE_TASK_WORDS = ("engine", "cairn command")

INVENTORY = """\
all:
  hosts:
{hosts}
  vars:
    ansible_connection: containers.podman.podman
    ansible_python_interpreter: /usr/bin/python3
    cairn_agent_backends: [sftp]
    cairn_jobs:
      - name: data
        source: /srv/data
        target: "file:///var/backups/cairn/data"
        passphrase: "bench passphrase of {{{{ inventory_hostname }}}}"
        retention: {{keep_full: 2}}
"""

# run inside a host: median wall and CPU milliseconds of `cairn --version` (the installed command)
# and of the engine archive run by itself (zipimport), when there is one
STARTUP = """
import os, resource, statistics, subprocess, sys, time
runs = int(sys.argv[1])
out = {}
for label, cmd in (("cairn --version", ["/usr/local/bin/cairn", "--version"]),
                   ("python3 -s cairn-engine.zip --version",
                    ["/usr/bin/python3", "-s", "/usr/local/lib/cairn/cairn-engine.zip", "--version"])):
    if not os.path.exists(cmd[-2]):
        continue
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)      # caches warm, bytecode written
    wall, cpu = [], []
    for _ in range(runs):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
        wall.append(time.perf_counter() - t)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
    out[label] = {"wall_ms": round(statistics.median(wall) * 1000), "cpu_ms": round(statistics.median(cpu) * 1000)}
print(__import__("json").dumps(out))
"""

_started = []


def podman(*args, check=True, capture=False):
    r = subprocess.run(["podman", *args], check=False, text=True,
                       stdout=subprocess.PIPE if capture else subprocess.DEVNULL, stderr=subprocess.PIPE)
    if check and r.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout.strip() if capture else r.returncode


def remove_containers():
    while _started:
        podman("rm", "-f", "-t", "0", _started.pop(), check=False)


def start_containers():
    for name in HOSTS:
        podman("rm", "-f", "-t", "0", name, check=False)
        podman("run", "-d", "--name", name, "--hostname", name, "--network", "host", "--systemd", "always",
               IMAGE, "/lib/systemd/systemd")
        _started.append(name)
    deadline = time.monotonic() + 120
    for name in HOSTS:
        while True:
            state = subprocess.run(["podman", "exec", name, "systemctl", "is-system-running"], text=True,
                                   capture_output=True, check=False).stdout.strip()
            if state in ("running", "degraded"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: systemd is still {state!r} after 120 s")
            time.sleep(0.5)


def collection_tree(spec, work):
    """LABEL=PATH or LABEL=git:REV -> (label, path of the collection)."""
    label, _sep, where = spec.partition("=")
    if not where:
        raise SystemExit(f"--collection {spec}: expected LABEL=PATH or LABEL=git:REV")
    if where.startswith("git:"):
        path = os.path.join(work, "src-" + label)
        os.makedirs(path)
        archive = subprocess.run(["git", "-C", ROOT, "archive", where[4:]], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", path], input=archive, check=True)
        return label, path
    return label, os.path.abspath(where)


def playbook(collection, work, label):
    """Run collection's site.yml on HOSTS; (wall seconds, the json callback's report)."""
    colls = os.path.join(work, "collections-" + label, "ansible_collections", "cairn")
    os.makedirs(colls, exist_ok=True)
    link = os.path.join(colls, "backup")
    if not os.path.islink(link):
        os.symlink(collection, link)
    inventory = os.path.join(work, "inventory.yml")
    with open(inventory, "w") as f:
        f.write(INVENTORY.format(hosts="".join(f"    {h}:\n" for h in HOSTS)))
    cfg = os.path.join(work, "ansible.cfg")
    with open(cfg, "w") as f:
        f.write("[defaults]\ninterpreter_python = auto_silent\nforks = 5\n")
    env = dict(os.environ, ANSIBLE_CONFIG=cfg, ANSIBLE_COLLECTIONS_PATH=os.path.dirname(os.path.dirname(colls)),
               ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    cmd = [os.path.join(bindir, "ansible-playbook"), "-i", inventory, os.path.join(collection, "playbooks", "site.yml")]
    t0 = time.monotonic()
    r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - t0
    try:
        report = json.loads(r.stdout[r.stdout.index("{"):])
    except ValueError:
        report = None
    if r.returncode != 0 or report is None:
        raise RuntimeError(f"site.yml ({label}) failed, rc {r.returncode}:\n{r.stdout[-6000:]}\n{r.stderr[-3000:]}")
    return wall, report


def _seconds(duration):
    if "start" not in duration or "end" not in duration:      # e.g. a task that only included others
        return 0.0
    start = datetime.datetime.fromisoformat(duration["start"].replace("Z", "+00:00"))
    end = datetime.datetime.fromisoformat(duration["end"].replace("Z", "+00:00"))
    return (end - start).total_seconds()


def summarize(wall, report):
    tasks, changed = [], 0
    for play in report["plays"]:
        for t in play["tasks"]:
            name = t["task"]["name"]
            hosts = t["hosts"].values()
            n = sum(1 for h in hosts if h.get("changed"))
            changed += n
            tasks.append({"name": name, "seconds": round(_seconds(t["task"]["duration"]), 2), "changed": n,
                          "skipped": all(h.get("skipped") for h in hosts)})
    engine = [t for t in tasks if any(w in t["name"].lower() for w in ENGINE_TASK_WORDS)
              and "librsync" not in t["name"]]     # not "Install gpg, librsync and ... the engine uses"
    return {"wall": round(wall, 1), "changed": changed, "tasks": len(tasks), "engine": engine,
            "engine_seconds": round(sum(t["seconds"] for t in engine), 2)}


def startup(runs):
    r = subprocess.run(["podman", "exec", HOSTS[0], "/usr/bin/python3", "-c", STARTUP, str(runs)],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def measure(steps, work, startup_runs=0):
    """Fresh containers, then each (run label, collection label, collection path) in turn on them;
    after the last run of each collection, its command's start-up time when startup_runs."""
    remove_containers()
    start_containers()
    try:
        runs = {}
        for i, (run, label, path) in enumerate(steps):
            runs[run] = summarize(*playbook(path, work, label))
            print(f"{run}: {runs[run]['wall']} s, {runs[run]['changed']} changed, engine tasks "
                  f"{runs[run]['engine_seconds']} s", flush=True)
            last_of_collection = i + 1 == len(steps) or steps[i + 1][1] != label
            if startup_runs and last_of_collection:
                runs[run]["startup"] = startup(startup_runs)
                print(f"  start-up: {runs[run]['startup']}", flush=True)
        return runs
    finally:
        remove_containers()


def print_table(label, runs):
    names = list(runs)
    width = 52
    print(f"\n== {label}: 3 hosts, playbooks/site.yml")
    print(f"{'':{width}}" + "".join(f"{n:>28}" for n in names))
    print(f"{'ansible-playbook wall (s)':{width}}" + "".join(f"{runs[n]['wall']:>28.1f}" for n in names))
    print(f"{'tasks changed (sum over hosts)':{width}}" + "".join(f"{runs[n]['changed']:>28}" for n in names))
    print(f"{'engine install tasks together (s)':{width}}" + "".join(f"{runs[n]['engine_seconds']:>28.2f}" for n in names))
    task_names = []
    for n in names:
        for t in runs[n]["engine"]:
            if t["name"] not in task_names:
                task_names.append(t["name"])
    for tn in task_names:
        cells = []
        for n in names:
            t = next((t for t in runs[n]["engine"] if t["name"] == tn), None)
            if t is None:
                cells.append("-")
            else:
                note = "skipped" if t["skipped"] else "changed %d" % t["changed"]
                cells.append(f"{t['seconds']:.2f} ({note})")
        print(f"{'  ' + tn[:width - 2]:{width}}" + "".join(f"{c:>28}" for c in cells))
    for n in names:
        for what, t in runs[n].get("startup", {}).items():
            print(f"after {n}: {what} on a host, median: {t['wall_ms']} ms wall, {t['cpu_ms']} ms CPU")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--collection", action="append", metavar="LABEL=PATH|LABEL=git:REV",
                    help="a collection to converge with (repeat to compare); default: this checkout")
    ap.add_argument("--upgrade", action="store_true",
                    help="one set of hosts: converge and re-converge with the first collection, then with the second")
    ap.add_argument("--startup-runs", type=int, default=10, metavar="N",
                    help="then time N starts of the installed cairn command on one host (0: none)")
    ap.add_argument("--json", metavar="FILE", help="write every measurement to FILE")
    args = ap.parse_args()
    specs = args.collection or [f"working-tree={ROOT}"]
    if args.upgrade and len(specs) < 2:
        ap.error("--upgrade needs two --collection")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = {}
    with tempfile.TemporaryDirectory(prefix="cairn-bench-converge-") as work:
        try:
            trees = [collection_tree(s, work) for s in specs]
            if args.upgrade:
                (la, pa), (lb, pb) = trees[:2]
                label = f"{la}, then {lb} over it"
                steps = [(f"converge {la}", la, pa), (f"re-converge {la}", la, pa),
                         (f"converge {lb} (upgrade)", lb, pb), (f"re-converge {lb}", lb, pb)]
                results[label] = measure(steps, work, args.startup_runs)
                print_table(label, results[label])
            else:
                for label, path in trees:
                    results[label] = measure([("converge", label, path), ("re-converge", label, path)], work,
                                             args.startup_runs)
                    print_table(label, results[label])
        finally:
            remove_containers()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"hosts": len(HOSTS), "image": IMAGE, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
