# SPDX-License-Identifier: GPL-3.0-or-later
"""`make bench`: cairn against stock duplicity on the shared dataset, in one run, as ratios.

Same tree, same settings (symmetric gpg, default volume size, fresh archive dirs): full backup,
incremental after `make-dataset.sh DIR mutate`, restore of the latest point. Prints seconds for
each tool, cairn/duplicity ratios, and the stored bytes; then the backup module against the CLI
on the same backup (module/CLI, which must stay at or below 1.05).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATASET = os.environ.get("CAIRN_DATASET_SCRIPT",
                         os.path.join(os.path.dirname(ROOT), "shared", "bench", "make-dataset.sh"))
PASSPHRASE = "bench passphrase, not a secret"


def du(path):
    total = 0
    for d, _dirs, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(d, f))
    return total


def timed(cmd, env):
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr.decode(errors='replace')}")
    return elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=os.path.join(ROOT, "bench", "out"))
    ap.add_argument("--duplicity", default=os.environ.get("CAIRN_DUPLICITY",
                                                          os.path.join(ROOT, ".venv-duplicity", "bin", "duplicity")))
    ap.add_argument("--cairn", default=os.path.join(ROOT, ".venv", "bin", "cairn"))
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    args = ap.parse_args()
    if not os.path.exists(DATASET):
        sys.exit(f"dataset script not found: {DATASET} (set CAIRN_DATASET_SCRIPT)")
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    data = os.path.join(work, "data")
    print("building the dataset ...", flush=True)
    subprocess.run(["bash", DATASET, data], check=True)
    env = dict(os.environ, PASSPHRASE=PASSPHRASE, GNUPGHOME=os.path.join(work, "gnupg"))
    os.makedirs(env["GNUPGHOME"], mode=0o700)
    tools = {
        "duplicity": lambda *a: [args.duplicity, *a],
        "cairn": lambda *a: [args.cairn, "--no-progress", *a],
    }
    times = {t: {} for t in tools}
    for tool, cmd in tools.items():
        os.makedirs(os.path.join(work, tool, "cache"))
    subprocess.run(["tar", "cf", "/dev/null", data], check=False)    # warm the page cache for both alike

    def phase(name, tool, *a):
        os.sync()      # no tool pays for the previous one's dirty pages
        time.sleep(1)
        times[tool][name] = timed(tools[tool](*a), env)
        print(f"  {name:12s} {tool:10s} {times[tool][name]:7.2f} s", flush=True)

    def url(tool):
        return f"file://{work}/{tool}/target"

    def cache(tool, n=""):
        return ["--archive-dir", os.path.join(work, tool, "cache" + n), "--name", "bench"]

    print("full backup", flush=True)
    for tool in ("duplicity", "cairn"):
        phase("full", tool, "full", *cache(tool), data, url(tool))
    full_bytes = {t: du(os.path.join(work, t, "target")) for t in tools}
    subprocess.run(["bash", DATASET, data, "mutate"], check=True, stdout=subprocess.DEVNULL)
    print("incremental after mutate", flush=True)
    for tool in ("cairn", "duplicity"):
        time.sleep(1)
        phase("incremental", tool, "incremental", *cache(tool), data, url(tool))
    total_bytes = {t: du(os.path.join(work, t, "target")) for t in tools}
    # restore twice each, in the order d c c d, keeping the faster: this disk's write speed
    # drifts from run to run, and neither tool should get the better slot
    print("restore of the latest point", flush=True)
    best = {}
    for tool in ("duplicity", "cairn", "cairn", "duplicity"):
        dest = os.path.join(work, tool, "restored")
        shutil.rmtree(dest, ignore_errors=True)
        phase("restore", tool, "restore", *cache(tool), url(tool), dest)
        best[tool] = min(best.get(tool, float("inf")), times[tool]["restore"])
    for tool in tools:
        times[tool]["restore"] = best[tool]
    # both restores must equal the source
    for tool in tools:
        r = subprocess.run(["diff", "-r", "--no-dereference", "-q", data, os.path.join(work, tool, "restored")],
                           capture_output=True, check=False)
        # diff reports fifos as "is a fifo while ... is a fifo": not a difference
        real = [ln for ln in r.stdout.decode(errors="replace").splitlines() if "is a fifo while" not in ln]
        if r.returncode > 1 or real:
            sys.exit(f"{tool} restore differs from the source:\n" + "\n".join(real[:20]))

    module_vs_cli = _module_vs_cli(work, data, env)

    print()
    print(f"{'':24s}{'duplicity':>12s}{'cairn':>12s}{'cairn/dup':>12s}")
    for name in ("full", "incremental", "restore"):
        d, c = times["duplicity"][name], times["cairn"][name]
        print(f"{name + ' (s)':24s}{d:12.2f}{c:12.2f}{c / d:12.2f}")
    for label, b in (("stored after full (MB)", full_bytes), ("stored after inc (MB)", total_bytes)):
        d, c = b["duplicity"] / 1e6, b["cairn"] / 1e6
        print(f"{label:24s}{d:12.1f}{c:12.1f}{c / d:12.3f}")
    cli_s, module_s = module_vs_cli
    print()
    print(f"{'':24s}{'CLI':>12s}{'module':>12s}{'module/CLI':>12s}")
    print(f"{'full backup (s)':24s}{cli_s:12.2f}{module_s:12.2f}{module_s / cli_s:12.2f}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def _module_vs_cli(work, data, env, rounds=5):
    """The backup module against the CLI on the same backup: a full backup of the dataset into
    a fresh target, the module as Ansible runs it on a host (the module file with its arguments;
    no controller), with min_interval set as playbooks use it. Alternating, median seconds."""
    module_env = dict(env, PYTHONPATH=os.path.join(ROOT, ".ansible", "collections"))
    seconds = {"cli": [], "module": []}
    print("backup module against the CLI (full backups)", flush=True)
    for n in range(rounds):
        for kind in ("cli", "module"):
            base = os.path.join(work, f"{kind}-{n}")
            url, cache = f"file://{base}/target", os.path.join(base, "cache")
            if kind == "cli":
                cmd = [os.path.join(ROOT, ".venv", "bin", "cairn"), "--no-progress", "full", "--archive-dir", cache,
                       data, url]
            else:
                args_file = base + ".json"
                with open(args_file, "w") as f:
                    json.dump({"ANSIBLE_MODULE_ARGS": {"source": data, "target": url, "passphrase": PASSPHRASE,
                                                       "archive_dir": cache, "mode": "full", "min_interval": "1h"}}, f)
                cmd = [sys.executable, os.path.join(ROOT, "plugins", "modules", "backup.py"), args_file]
            os.sync()
            time.sleep(1)
            seconds[kind].append(timed(cmd, module_env if kind == "module" else env))
    return statistics.median(seconds["cli"]), statistics.median(seconds["module"])
