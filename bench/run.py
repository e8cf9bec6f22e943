# SPDX-License-Identifier: GPL-3.0-or-later
"""`make bench`: cairn against duplicity, restic and borg in one run, as ratios.

Four parts (``--only`` picks some of them; all by default):

``tools``
    The shared dataset (``make-dataset.sh``), each tool with encryption on and its default
    compression, a fresh cache and a fresh local target: full backup, incremental after
    ``make-dataset.sh DIR mutate``, restore of the latest point into an empty directory (best of
    ``--restore-tries`` in mirrored order, as this disk's write speed drifts), on a fresh ext4 where
    one can be mounted (``--restore-fs``). Every restore is
    compared with the source (entries, types, sizes, symlink targets, SHA-256 of every regular
    file), so a tool that restored nothing cannot look fast. Seconds, peak RSS and stored bytes
    for each tool, and the ratios cairn/duplicity, cairn/restic, cairn/borg.
``module``
    The backup module against the CLI on the same backup (module/CLI, which must stay at or
    below 1.05).
``pubkey``
    The dataset encrypted to a public key (an unprotected RSA-3072 key made for the run, an
    empty PASSPHRASE: duply's usual setup), cairn against duplicity: full backup, then restore (best of
    ``--restore-tries``, compared with the source). Seconds, peak RSS and the ratio.
``small-files``
    ``--small-files N`` files of a few hundred bytes (1000 per directory, random.Random(seed)),
    cairn against duplicity: full backup, incremental after rewriting 1 % of them (a later mtime),
    ``list-current-files``, restore of one changed file. Seconds and peak RSS each: the cost
    should grow with the work, not with the archive.

Peak RSS is ``ru_maxrss`` of ``os.wait4`` on the tool's process: the largest single process of
its tree (the tool itself, or one gpg it waited for), not a sum. A bare interpreter starts each
tool (LAUNCHER), so that no tool's figure starts from the bench's own peak. ``--runs N`` repeats each part
with fresh targets and reports the median (and min-max when N > 1); ``--json FILE`` writes every
measurement, the machine and the settings.

On a virtual machine the hypervisor may take CPU time from the run ("steal", /proc/stat): each
step records the share it took, the tables show it, and a step of the tools and public-key
tables during which it passed ``--steal-limit`` % is run again from the same state, up to
``--steal-retries`` times (the least stolen try counts).
"""
import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATASET = os.environ.get("CAIRN_DATASET_SCRIPT",
                         os.path.join(os.path.dirname(ROOT), "shared", "bench", "make-dataset.sh"))
PASSPHRASE = "bench passphrase, not a secret"
MiB = 1 << 20
ALL_TOOLS = ("duplicity", "cairn", "restic", "borg")
PARTS = ("tools", "module", "pubkey", "small-files")
BENCH_KEY_UID = "cairn-bench@bench.invalid"
RSS_LIMIT_MIB = 256


def du(path):
    total = 0
    for d, _dirs, files in os.walk(path):
        for f in files:
            total += os.lstat(os.path.join(d, f)).st_size
    return total


class Failed(Exception):
    pass


def cpu_stolen_s():
    """CPU seconds the hypervisor has taken from this machine since boot, all CPUs together
    (/proc/stat's steal column); None where the kernel does not count it."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


# Starts a step's tool and reports its wall time and rusage on the fd in argv[1]. A tool started
# by the bench itself would inherit the bench's own peak RSS as its ru_maxrss (Linux keeps the
# old address space's high-water mark across exec, and subprocess uses vfork): with the million
# paths of the small-files table that floor was about 90 MiB. This launcher, a bare interpreter,
# forks the tool, so the floor is its own few MiB.
LAUNCHER = """
import os, sys, time
t = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    except OSError as e:
        os.write(2, f"cannot run {sys.argv[2]}: {e}\\n".encode())
    os._exit(127)
_pid, status, ru = os.wait4(pid, 0)
elapsed = time.perf_counter() - t
os.write(int(sys.argv[1]), f"{elapsed} {ru.ru_utime} {ru.ru_stime} {ru.ru_maxrss} {status}".encode())
"""


def measured(cmd, env, cwd=None, stdout=None):
    """Run ``cmd``; its wall seconds, peak RSS (KiB) and CPU seconds (user + system, with the
    children it waited for), and the share of the machine's CPU time the hypervisor took
    meanwhile (``stolen_pct``: on a virtual machine, a step under steal is slower for reasons
    that are not the tool's). Raises Failed with the end of its stderr on a non-zero exit."""
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out:
        stolen = cpu_stolen_s()
        r, w = os.pipe()
        try:
            p = subprocess.Popen([sys.executable, "-I", "-c", LAUNCHER, str(w), *map(str, cmd)], env=env, cwd=cwd,
                                 stdin=subprocess.DEVNULL, stdout=stdout if stdout is not None else out,
                                 stderr=err, pass_fds=(w,))
            os.close(w)
            w = None
            with os.fdopen(r, "rb") as report:
                r = None
                fields = report.read().split()
            p.wait()
        finally:
            for fd in (r, w):
                if fd is not None:
                    os.close(fd)
        if len(fields) == 5:
            elapsed, utime, stime = (float(x) for x in fields[:3])
            maxrss, status = int(fields[3]), int(fields[4])
            returncode = os.waitstatus_to_exitcode(status)
        else:
            returncode = p.returncode or -1
        if returncode != 0:
            text = ""
            for f in (out, err):    # a module reports its failure as JSON on stdout
                f.seek(0)
                text += f.read().decode(errors="replace")[-3000:]
            raise Failed(f"failed ({returncode}): {' '.join(map(str, cmd))}\n{text}")
    after = cpu_stolen_s()
    stolen_pct = (None if stolen is None or after is None
                  else 100 * (after - stolen) / (elapsed * (os.cpu_count() or 1)))
    return {"s": elapsed, "rss_kib": maxrss, "cpu_s": utime + stime,
            "user_s": utime, "sys_s": stime, "stolen_pct": stolen_pct}


def shown(m):
    """A measurement as a step's line prints it."""
    stolen = "" if m["stolen_pct"] is None else f" {m['stolen_pct']:5.1f} % stolen"
    return f"{m['s']:8.2f} s {m['rss_kib'] / 1024:8.1f} MiB  user {m['user_s']:5.2f} s sys {m['sys_s']:5.2f} s{stolen}"


def quiet(cmd, env=None, cwd=None):
    r = subprocess.run(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    if r.returncode != 0:
        raise Failed(f"failed ({r.returncode}): {' '.join(map(str, cmd))}\n"
                     f"{r.stderr.decode(errors='replace')[-3000:]}")
    return r.stdout.decode(errors="replace")


def remove(path):
    subprocess.run(["rm", "-rf", "--", path], check=False)    # faster than shutil.rmtree on a million files


class RestoreFs:
    """Where the restores of the tools table are written. ``ext4``: a file system made for the
    run (mkfs.ext4's defaults, so with a journal, as most hosts have) on a loop device. Why: the
    disk a run's work dir is on may be ext4 *without* a journal, where the kernel's inode
    allocator passes over every inode freed in the last 60-300 s, reading its inode table block.
    Each try's restore follows the deletion of that tool's previous one, so its system time
    depended on what was deleted before it: here 0.7 s or 2.4 s for the same cairn restore, the
    largest part of the restores' spread. ``work``: the work dir's own file system."""

    def __init__(self, kind, work):
        self.kind, self.mount, self.image = "work", None, None
        if kind == "work":
            return
        why = self._make_ext4(work)
        if why is None:
            self.kind = "ext4"
        elif kind == "ext4":
            sys.exit(f"--restore-fs ext4: {why}")
        else:
            print(f"restores go to the work dir's file system ({why})", file=sys.stderr)

    def _make_ext4(self, work):
        if os.geteuid() != 0:
            return "mounting a loop device needs root"
        if shutil.which("mkfs.ext4") is None:
            return "no mkfs.ext4"
        image, mount = os.path.join(work, "restore-fs.img"), os.path.join(work, "restore-fs")
        with open(image, "wb") as f:
            f.truncate(8 << 30)        # sparse: the restores of one round at a time
        os.makedirs(mount)
        for cmd in (["mkfs.ext4", "-q", "-F", image], ["mount", "-o", "loop", image, mount]):
            p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
            if p.returncode:
                os.unlink(image)
                return f"{' '.join(cmd[:2])} failed: {p.stderr.strip()[:200]}"
        self.image, self.mount = image, mount
        return None

    def dest(self, work_base, round_no, tool):
        if self.mount is None:
            return os.path.join(work_base, tool, "restored")
        return os.path.join(self._round_dir(round_no), tool)

    def clear_round(self, round_no):
        """The restores of round ``round_no`` gone (on the work dir's file system they go with
        the round's base)."""
        if self.mount is not None:
            shutil.rmtree(self._round_dir(round_no), ignore_errors=True)

    def _round_dir(self, round_no):
        return os.path.join(self.mount, f"round{round_no}")

    def describe(self):
        if self.kind == "ext4":
            return "a fresh ext4 (mkfs.ext4 defaults, with a journal) on a loop device"
        return "the work dir's file system"

    def close(self):
        if self.mount is None:
            return
        p = subprocess.run(["umount", self.mount], stderr=subprocess.PIPE, text=True, check=False)
        if p.returncode:
            # still mounted: removing the work dir would only empty it; say what to undo
            print(f"could not unmount {self.mount} ({p.stderr.strip()[:200]}): umount it and delete "
                  f"{self.image}", file=sys.stderr)
        else:
            os.unlink(self.image)
        self.mount = None


def compile_engine(cairn_exe):
    """Byte-compile the engine, as the agent role does on every host (pip did it for duplicity's
    venv): under PYTHONDONTWRITEBYTECODE, set on some machines, every start of the development
    checkout's cairn would otherwise compile the whole engine again (about 0.17 s here), which
    no installed host pays."""
    python = os.path.join(os.path.dirname(cairn_exe), "python")
    if os.path.exists(python):
        quiet([python, "-c", "import compileall, os, cairn; "
                             "compileall.compile_dir(os.path.dirname(cairn.__file__), quiet=1)"])


PREFAULT = {"mib": 1024}    # set from --prefault-mib


def settle():
    os.sync()      # no tool pays for the previous one's dirty pages
    time.sleep(1)
    prefault(PREFAULT["mib"])


def prefault(mib):
    """Touch ``mib`` MiB of memory and free it, just before a step.

    On a virtual machine with free page reporting (virtio-balloon) the guest hands free memory
    back to the host, and the first write to such a page then costs a fault in the host: here
    the copy into the page cache (copy_folio_from_iter_atomic) took 32 % of a restore's samples
    and its system time tripled, for every tool alike, as earlier steps' files filled the page
    cache. Pages freed a moment ago are still backed (the guest reports them after about two
    seconds), so the step's first writes land on them."""
    if mib <= 0:
        return
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            avail = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:")) >> 10
        mib = min(mib, avail // 4)
    except (OSError, StopIteration, ValueError):
        pass
    # in a child: the run's own peak RSS is passed on to every tool it starts (ru_maxrss)
    subprocess.run([sys.executable, "-c", f"b = bytearray({mib * MiB}); b[::4096] = b'1' * {mib * MiB // 4096}"],
                   check=True)


# ---------------------------------------------------------------------------------------------
# the tools: each prepares a fresh target in its own directory and gives the command of a step

class Duplicity:
    name = "duplicity"
    settings = ("symmetric gpg (PASSPHRASE), default --volsize, its default compression "
                "(gpg's zlib), fresh --archive-dir, file:// target")

    def __init__(self, exe, base, env, encrypt_key=None):
        self.exe, self.base, self.env = exe, base, env
        self.target = os.path.join(base, "target")
        self.url = "file://" + self.target
        self.keys = ["--encrypt-key", encrypt_key] if encrypt_key else []

    def argv(self, *a):
        return [self.exe, *a]

    def _cache(self):
        return ["--archive-dir", os.path.join(self.base, "cache"), "--name", "bench", *self.keys]

    def prepare(self):
        os.makedirs(os.path.join(self.base, "cache"))

    def backup(self, kind, data):
        return self.argv(kind, *self._cache(), data, self.url), None

    def restore(self, dest, data):
        """Command, cwd and where the restored copy of ``data`` will be."""
        return self.argv("restore", *self._cache(), self.url, dest), None, dest

    def list_files(self):
        return self.argv("list-current-files", *self._cache(), self.url)

    def restore_file(self, rel, dest):
        return self.argv("restore", *self._cache(), "--path-to-restore", rel, self.url, dest)

    def version(self):
        return quiet([self.exe, "--version"], self.env).strip().splitlines()[0]


class Cairn(Duplicity):
    name = "cairn"
    settings = ("symmetric encryption (PASSPHRASE), default --volsize, its default compression, "
                "fresh --archive-dir, file:// target")

    def argv(self, *a):
        return [self.exe, "--no-progress", *a]


class Restic:
    name = "restic"
    settings = "local repo, RESTIC_PASSWORD, default compression (auto), fresh --cache-dir"

    def __init__(self, exe, base, env):
        self.exe, self.base = exe, base
        self.target = os.path.join(base, "repo")
        self.env = dict(env, RESTIC_PASSWORD=PASSPHRASE)

    def _argv(self, *a):
        return [self.exe, "--quiet", "--repo", self.target, "--cache-dir", os.path.join(self.base, "cache"), *a]

    def prepare(self):
        os.makedirs(self.base, exist_ok=True)
        quiet(self._argv("init"), self.env)
        config = json.loads(quiet(self._argv("cat", "config"), self.env))
        self.settings = f"{Restic.settings}, repository version {config.get('version')}"

    def backup(self, kind, data):
        return self._argv("backup", data), None

    def restore(self, dest, data):
        return self._argv("restore", "latest", "--target", dest), None, dest + data

    def version(self):
        return quiet([self.exe, "version"]).strip()


class Borg:
    name = "borg"
    settings = "`borg init -e repokey`, BORG_PASSPHRASE, default compression (lz4), fresh BORG_BASE_DIR"

    def __init__(self, exe, base, env):
        self.exe, self.base = exe, base
        self.target = os.path.join(base, "repo")
        self.env = dict(env, BORG_PASSPHRASE=PASSPHRASE, BORG_BASE_DIR=os.path.join(base, "home"))

    def prepare(self):
        os.makedirs(self.env["BORG_BASE_DIR"])
        quiet([self.exe, "init", "-e", "repokey", self.target], self.env)

    def backup(self, kind, data):
        return [self.exe, "create", f"{self.target}::{kind}", data], None

    def restore(self, dest, data):
        os.makedirs(dest)
        return [self.exe, "extract", f"{self.target}::incremental"], dest, os.path.join(dest, data.lstrip("/"))

    def version(self):
        return quiet([self.exe, "--version"]).strip()


TOOL_CLASSES = {"duplicity": Duplicity, "cairn": Cairn, "restic": Restic, "borg": Borg}


# ---------------------------------------------------------------------------------------------
# datasets and restore checks

def tree(root):
    """Every entry under ``root``: relative path -> (type, size, sha256 or symlink target)."""
    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(d, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    out[rel] = ("file", st.st_size, hashlib.file_digest(f, "sha256").hexdigest())
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", 0, os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", 0, "")
            elif stat.S_ISFIFO(st.st_mode):
                out[rel] = ("fifo", 0, "")
            else:
                out[rel] = ("other", 0, "")
    return out


def differences(expected, root):
    if not os.path.isdir(root):
        return [f"nothing restored at {root}"]
    got = tree(root)
    diff = [f"missing: {p}" for p in sorted(set(expected) - set(got))]
    diff += [f"extra: {p}" for p in sorted(set(got) - set(expected))]
    diff += [f"differs: {p} {expected[p][:2]} != {got[p][:2]}" if expected[p][:2] != got[p][:2] else
             f"differs: {p} {'target' if expected[p][0] == 'symlink' else 'contents'}"
             for p in sorted(set(expected) & set(got)) if expected[p] != got[p]]
    return diff


def small_dataset(dst):
    """A few MB with make-dataset.sh's shape (so that its `mutate` applies): small text files,
    bin/archive.bin (random) and bin/libs.bin (shared-library bytes), a symlink, a fifo, an
    empty dir."""
    stdlib = os.path.dirname(os.__file__)
    srcs = sorted(os.path.join(d, f) for d, dirs, fs in os.walk(stdlib) for f in fs
                  if f.endswith(".py") and "site-packages" not in d and "test" not in d)[:600]
    for p in srcs:
        q = os.path.join(dst, "src", os.path.relpath(p, stdlib))
        os.makedirs(os.path.dirname(q), exist_ok=True)
        shutil.copyfile(p, q)
    os.makedirs(os.path.join(dst, "bin"))
    with open(os.path.join(dst, "bin", "archive.bin"), "wb") as f:
        f.write(random.Random(7).randbytes(4 * MiB))
    libs = sorted(os.path.join(d, f) for d, _dirs, fs in os.walk("/usr/lib") for f in fs if ".so" in f)
    with open(os.path.join(dst, "bin", "libs.bin"), "wb") as out:
        for p in libs:
            if out.tell() >= 2 * MiB:
                break
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    out.write(f.read(2 * MiB - out.tell()))
    os.symlink("../bin/libs.bin", os.path.join(dst, "src", "link-to-libs"))
    os.makedirs(os.path.join(dst, "empty-dir"))
    os.mkfifo(os.path.join(dst, "fifo"))


def build_dataset(args, dst):
    if args.data:
        subprocess.run(["cp", "-a", args.data, dst], check=True)
    elif args.dataset_scale == "small":
        small_dataset(dst)
    else:
        if not os.path.exists(DATASET):
            sys.exit(f"dataset script not found: {DATASET} (set CAIRN_DATASET_SCRIPT)")
        subprocess.run(["bash", DATASET, dst], check=True, stdout=subprocess.DEVNULL)


def warm(root):
    """Read every file once, so that no tool pays for the first read from disk."""
    for d, _dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as fh:
                    while fh.read(MiB):
                        pass


def count_files(root):
    return sum(len(fs) for _d, _ds, fs in os.walk(root))


# ---------------------------------------------------------------------------------------------
# summaries

def summary(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def medians(values):
    """Median of a list of numbers, or of each field of a list of measurements (failed runs left out)."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    if isinstance(values[0], dict):
        fields = {k: [m[k] for m in values if m.get(k) is not None] for k in values[0]}
        return {k: statistics.median(v) if v else None for k, v in fields.items()}
    return statistics.median(values)


def fmt(s, scale=1.0, digits=2):
    return "-" if s is None else f"{s['median'] / scale:.{digits}f}"


def spread(s, scale=1.0, digits=2):
    if s is None or s["n"] < 2:
        return "-"
    return f"{s['min'] / scale:.{digits}f}-{s['max'] / scale:.{digits}f}"


def ratio(a, b, digits=2):
    if a is None or b is None or not b["median"]:
        return "-"
    return f"{a['median'] / b['median']:.{digits}f}"


def machine(tools, env):
    info = {"cpu": "", "cores": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
        with open("/proc/meminfo") as f:
            kib = next(int(ln.split()[1]) for ln in f if ln.startswith("MemTotal"))
        info["memory_gib"] = round(kib / (1 << 20), 1)
        with open("/etc/os-release") as f:
            info["os"] = next((ln.split("=", 1)[1].strip().strip('"') for ln in f if ln.startswith("PRETTY_NAME")), "")
    except (OSError, StopIteration, ValueError):
        pass
    info["gpg"] = quiet(["gpg", "--version"]).splitlines()[0]
    info["versions"] = {}
    for name, tool in tools.items():
        try:
            info["versions"][name] = tool.version()
        except (Failed, OSError) as e:
            info["versions"][name] = f"unknown ({str(e).splitlines()[0]})"
    return info


# ---------------------------------------------------------------------------------------------
# part 1: the four tools on the shared dataset

def tools_part(args, work, data, env, names):
    """Runs ``args.runs`` rounds; returns results[tool][step] = [measurement per round]."""
    results = {t: {"full": [], "incremental": [], "restore": [], "stored_full": [], "stored_total": []}
               for t in names}
    problems = []
    pristine = data + ".pristine"
    if args.runs > 1:
        os.rename(data, pristine)
    settings, files = {}, 0
    for n in range(args.runs):
        print(f"tools, round {n + 1}/{args.runs}", flush=True)
        if args.runs > 1:
            shutil.rmtree(data, ignore_errors=True)
            subprocess.run(["cp", "-a", pristine, data], check=True)
        base = os.path.join(work, f"round{n}")
        tools = {t: TOOL_CLASSES[t](args.exe[t], os.path.join(base, t), env) for t in names}
        for t in tools.values():
            t.prepare()
            settings[t.name] = t.settings
        warm(data)
        order = names[n % len(names):] + names[:n % len(names)]    # each round another tool goes first

        print("full backup", flush=True)
        for t in order:
            results[t]["full"].append(timed_step(problems, "full", tools[t], *tools[t].backup("full", data),
                                                 again=full_again(tools[t], data)))
            results[t]["stored_full"].append(du(tools[t].target))
        subprocess.run(["bash", DATASET, data, "mutate"], check=True, stdout=subprocess.DEVNULL)
        files = count_files(data)
        expected = tree(data)
        warm(data)
        print("incremental after mutate", flush=True)
        for t in reversed(order):
            time.sleep(1)    # mtime granularity: a change and a backup in the same second
            results[t]["incremental"].append(incremental_step(problems, tools[t], data))
            results[t]["stored_total"].append(du(tools[t].target))
        print("restore of the latest point", flush=True)
        best = best_restores(args, tools, order, base, n, data, expected, problems)
        for t in names:
            results[t]["restore"].append(best.get(t))
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
            args.restore_fs.clear_round(n)
    if args.runs > 1:
        shutil.rmtree(pristine, ignore_errors=True)
    return results, settings, problems, files


STEAL = {"limit": 10.0, "retries": 2}    # set from --steal-limit and --steal-retries


def timed_step(problems, name, tool, cmd, cwd=None, part="", again=None):
    """One step of a tool, after settle(): its measurement, printed; None (and a problem
    named with ``part``) when it failed.

    On a virtual machine the hypervisor may take CPU time from the run: a try during which it
    took more than STEAL["limit"] % of the CPUs is run again, up to STEAL["retries"] times,
    when ``again()`` can put back the state before the step (it returns the try's cmd and cwd);
    the try the hypervisor took the least from counts (``tries`` says how many were run)."""
    best = None
    for k in range(1 + (STEAL["retries"] if again is not None else 0)):
        if k:
            cmd, cwd = again()
        settle()
        try:
            m = measured(cmd, tool.env, cwd)
        except Failed as e:
            problems.append(f"{tool.name} {name}{part}: {e}")
            print(f"  {name:12s} {tool.name:10s} FAILED", flush=True)
            return None
        print(f"  {name:12s} {tool.name:10s} {shown(m)}{' (again)' if k else ''}", flush=True)
        stolen = m["stolen_pct"]
        if best is None or (stolen is not None and stolen < best["stolen_pct"]):
            best = m
        best["tries"] = k + 1
        if stolen is None or stolen <= STEAL["limit"]:
            break
    return best


def full_again(tool, data):
    """A full backup's ``again``: the tool's directory fresh, as before the first try."""
    def again():
        remove(tool.base)
        tool.prepare()
        return tool.backup("full", data)
    return again


def incremental_step(problems, tool, data):
    """The incremental backup of ``tool``, tried again (see timed_step) from a copy of its
    target and cache as they were before it."""
    put_back = drop = None
    if STEAL["retries"]:
        put_back, drop = snapshot_of(tool.base)
    try:
        def again():
            put_back()
            time.sleep(1)    # mtime granularity, as before the first try
            return tool.backup("incremental", data)
        return timed_step(problems, "incremental", tool, *tool.backup("incremental", data),
                          again=again if put_back else None)
    finally:
        if drop:
            drop()


def snapshot_of(path):
    """A copy of ``path`` beside it, and a function that puts it back (and one that drops it)."""
    copy = path + ".before"
    remove(copy)
    subprocess.run(["cp", "-a", path, copy], check=True)

    def put_back():
        remove(path)
        subprocess.run(["cp", "-a", copy, path], check=True)
    return put_back, lambda: remove(copy)


def best_restores(args, tools, order, base, round_no, data, expected, problems, part=""):
    """``args.restore_tries`` restores of each tool in mirrored ``order`` onto the restore fs,
    each compared with ``expected``: {tool: its fastest, or None when a try failed or differed}."""
    best = {}
    sequence = []
    for k in range(args.restore_tries):
        sequence += order if k % 2 == 0 else list(reversed(order))
    for t in sequence:
        dest = args.restore_fs.dest(base, round_no, t)
        shutil.rmtree(dest, ignore_errors=True)
        cmd, cwd, root = tools[t].restore(dest, data)

        def again(t=t, dest=dest):
            shutil.rmtree(dest, ignore_errors=True)
            return tools[t].restore(dest, data)[:2]
        m = timed_step(problems, "restore", tools[t], cmd, cwd, part, again=again)
        if m is None:
            best[t] = None
            continue
        diff = differences(expected, root)
        # the tree goes at once: trees kept until the round's end filled the page cache, and
        # each later restore then wrote into memory the host had taken back (see prefault)
        shutil.rmtree(dest, ignore_errors=True)
        if diff:
            problems.append(f"{t} restore{part} differs from the source ({len(diff)}):\n  " + "\n  ".join(diff[:20]))
            print(f"  {'':12s} {t:10s} restore DIFFERS from the source", flush=True)
            best[t] = None
        elif t not in best or (best[t] is not None and m["s"] < best[t]["s"]):
            best[t] = m
    return best


def make_bench_key(env):
    """An unprotected RSA-3072 key, signing and encrypting, in the run's GnuPG home; its
    fingerprint."""
    quiet(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", BENCH_KEY_UID, "rsa3072",
           "cert,sign,encr", "never"], env)
    listing = quiet(["gpg", "--batch", "--with-colons", "--list-secret-keys", BENCH_KEY_UID], env)
    return next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))


def pubkey_part(args, work, data, env, names):
    """Full backup and restore of ``data`` encrypted to a public key, duplicity and cairn, in
    ``args.runs`` rounds; returns results[tool][step] = [measurement per round], problems."""
    env = dict(env, PASSPHRASE="")   # an unprotected key; duplicity's restore asks without PASSPHRASE
    fpr = make_bench_key(env)
    pk_names = [t for t in ("duplicity", "cairn") if t in names]
    results = {t: {"full": [], "restore": []} for t in pk_names}
    problems = []
    expected = tree(data)
    for n in range(args.runs):
        print(f"public key, round {n + 1}/{args.runs}", flush=True)
        base = os.path.join(work, f"pubkey{n}")
        tools = {t: TOOL_CLASSES[t](args.exe[t], os.path.join(base, t), env, encrypt_key=fpr) for t in pk_names}
        for t in tools.values():
            t.prepare()
        warm(data)
        order = pk_names if n % 2 == 0 else list(reversed(pk_names))
        for t in order:
            cmd, cwd = tools[t].backup("full", data)
            results[t]["full"].append(timed_step(problems, "full", tools[t], cmd, cwd, " (public key)",
                                                 again=full_again(tools[t], data)))
        best = best_restores(args, tools, order, base, f"pk{n}", data, expected, problems, " (public key)")
        for t in pk_names:
            results[t]["restore"].append(best.get(t))
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
            args.restore_fs.clear_round(f"pk{n}")
    return results, problems


def print_pubkey_table(results, runs, restore_tries):
    names = list(results)
    print(f"{'':28s}" + "".join(f"{t:>11s}" for t in names) + (f"{'cairn/duplicity':>16s}" if len(names) == 2 else ""))
    for label, step, key, scale, digits in (("full backup (s)", "full", "s", 1, 2),
                                            (f"restore (s) best of {restore_tries}", "restore", "s", 1, 2),
                                            ("peak RSS full (MiB)", "full", "rss_kib", 1024, 1),
                                            ("peak RSS restore (MiB)", "restore", "rss_kib", 1024, 1),
                                            ("CPU full (s)", "full", "cpu_s", 1, 2),
                                            ("CPU restore (s)", "restore", "cpu_s", 1, 2),
                                            ("CPU stolen full (%)", "full", "stolen_pct", 1, 1),
                                            ("CPU stolen restore (%)", "restore", "stolen_pct", 1, 1)):
        vals = {t: summary([m.get(key) for m in results[t][step] if m is not None]) for t in names}
        line = f"{label:28s}" + "".join(f"{fmt(vals[t], scale, digits):>11s}" for t in names)
        if len(names) == 2 and key != "stolen_pct":
            line += f"{ratio(vals['cairn'], vals['duplicity']):>16s}"
        print(line)
        if runs > 1:
            print(f"{'  min-max':28s}" + "".join(f"{' ' + spread(vals[t], scale, digits):>11s}" for t in names))


def print_tools_table(results, names, runs, restore_tries):
    def s(t, step, key):
        return summary([m.get(key) for m in results[t][step] if m is not None]) if results[t][step] else None

    def stored(t, key):
        return summary(results[t][key])

    others = [t for t in names if t != "cairn"]
    head = f"{'':28s}" + "".join(f"{t:>11s}" for t in names) + "".join(f"{'cairn/' + t:>16s}" for t in others)
    print(head)
    rows = [(f"{step} (s){' best of ' + str(restore_tries) if step == 'restore' else ''}", step, "s", 1, 2)
            for step in ("full", "incremental", "restore")]
    rows += [("stored after full (MB)", "stored_full", None, 1e6, 1),
             ("stored after incr. (MB)", "stored_total", None, 1e6, 1)]
    rows += [(f"peak RSS {step} (MiB)", step, "rss_kib", 1024, 1) for step in ("full", "incremental", "restore")]
    rows += [(f"CPU {step} (s)", step, "cpu_s", 1, 2) for step in ("full", "incremental", "restore")]
    rows += [(f"CPU stolen {step} (%)", step, "stolen_pct", 1, 1) for step in ("full", "incremental", "restore")]
    for label, step, key, scale, digits in rows:
        vals = {t: (s(t, step, key) if key else stored(t, step)) for t in names}
        line = f"{label:28s}" + "".join(f"{fmt(vals[t], scale, digits):>11s}" for t in names)
        if "cairn" in names and key != "stolen_pct":
            line += "".join(f"{ratio(vals['cairn'], vals[t], 3 if key is None else 2):>16s}" for t in others)
        print(line)
        if runs > 1:
            print(f"{'  min-max':28s}" + "".join(f"{' ' + spread(vals[t], scale, digits):>11s}" for t in names))


# ---------------------------------------------------------------------------------------------
# part 2: the backup module against the CLI

def _module_vs_cli(work, data, env, cairn, rounds=5):
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
                cmd = [cairn, "--no-progress", "full", "--archive-dir", cache, data, url]
            else:
                args_file = base + ".json"
                with open(args_file, "w") as f:
                    json.dump({"ANSIBLE_MODULE_ARGS": {"source": data, "target": url, "passphrase": PASSPHRASE,
                                                       "archive_dir": cache, "mode": "full", "min_interval": "1h"}}, f)
                cmd = [sys.executable, os.path.join(ROOT, "plugins", "modules", "backup.py"), args_file]
            settle()
            seconds[kind].append(measured(cmd, module_env if kind == "module" else env)["s"])
            shutil.rmtree(base, ignore_errors=True)
    return statistics.median(seconds["cli"]), statistics.median(seconds["module"])


# ---------------------------------------------------------------------------------------------
# part 3: many small files, cairn against duplicity

PER_DIR = 1000


def small_files(root, n, seed):
    """``n`` files of 100-700 bytes of text, ``PER_DIR`` per directory, all with the same mtime
    an hour in the past; deterministic contents. Returns the relative paths in order."""
    rnd = random.Random(seed)
    then = time.time() - 3600
    paths = []
    for i in range(n):
        d = f"d{i // PER_DIR:04d}"
        if i % PER_DIR == 0:
            os.makedirs(os.path.join(root, d))
        rel = f"{d}/f{i % PER_DIR:04d}.txt"
        p = os.path.join(root, rel)
        size = rnd.randint(100, 700)
        with open(p, "wb") as f:
            f.write(rnd.randbytes(size // 2 + 1).hex()[:size].encode())
        os.utime(p, (then, then))
        paths.append(rel)
    return paths


def change_small_files(root, paths, seed):
    """Rewrite 1 % of the files (new contents, mtime now); returns the changed relative paths."""
    rnd = random.Random(seed + 1)
    changed = sorted(rnd.sample(paths, max(1, len(paths) // 100)))
    for rel in changed:
        size = rnd.randint(100, 700)
        with open(os.path.join(root, rel), "wb") as f:
            f.write(b"changed " + rnd.randbytes(size // 2 + 1).hex()[:size].encode())
    return changed


def small_files_part(args, work, env, names):
    names = [t for t in ("duplicity", "cairn") if t in names]
    steps = ("full", "incremental", "list-current-files", "restore one file")
    results = {t: {s: [] for s in steps} | {"stored_total": []} for t in names}
    problems = []
    info = {}
    for n in range(args.small_runs):
        print(f"small files, round {n + 1}/{args.small_runs}: creating {args.small_files:,} files", flush=True)
        base = os.path.join(work, f"small{n}")
        data = os.path.join(base, "data")
        t0 = time.perf_counter()
        paths = small_files(data, args.small_files, args.seed)
        info["create_s"] = round(time.perf_counter() - t0, 2)
        print(f"  created in {info['create_s']:.1f} s", flush=True)
        tools = {t: TOOL_CLASSES[t](args.exe[t], os.path.join(base, t), env) for t in names}
        for t in tools.values():
            t.prepare()
        order = names if n % 2 == 0 else list(reversed(names))

        def step(name, t, cmd, stdout=None):
            settle()
            try:
                m = measured(cmd, tools[t].env, stdout=stdout)
            except Failed as e:
                problems.append(f"small files: {t} {name}: {e}")
                print(f"  {name:20s} {t:10s} FAILED", flush=True)
                return None
            print(f"  {name:20s} {t:10s} {shown(m)}", flush=True)
            results[t][name].append(m)
            return m

        for t in order:
            step("full", t, tools[t].backup("full", data)[0])
        changed = change_small_files(data, paths, args.seed)
        for t in reversed(order):
            step("incremental", t, tools[t].backup("incremental", data)[0])
            results[t]["stored_total"].append(du(tools[t].target))
        for t in order:
            listing = os.path.join(base, t, "list.txt")
            with open(listing, "wb") as out:
                m = step("list-current-files", t, tools[t].list_files(), stdout=out)
            if m is not None:
                with open(listing, "rb") as f:
                    lines = sum(1 for _line in f)
                if lines < len(paths):
                    problems.append(f"small files: {t} list-current-files printed {lines} lines for {len(paths)} files")
                os.remove(listing)
        rel = changed[len(changed) // 2]
        info["restored_file"] = rel
        with open(os.path.join(data, rel), "rb") as f:
            want = f.read()
        for t in reversed(order):
            dest = os.path.join(base, t, "one-file")
            m = step("restore one file", t, tools[t].restore_file(rel, dest))
            if m is not None:
                got = open(dest, "rb").read() if os.path.isfile(dest) else None
                if got != want:
                    problems.append(f"small files: {t} restored {rel} wrong ({'missing' if got is None else 'contents'})")
        if not args.keep:
            t0 = time.perf_counter()
            remove(base)
            info["remove_s"] = round(time.perf_counter() - t0, 2)
    return results, problems, info, steps


def print_small_table(results, names, steps, runs):
    names = [t for t in ("duplicity", "cairn") if t in names]
    both = len(names) == 2
    print(f"{'':24s}" + "".join(f"{t + ' s':>13s}" for t in names) + (f"{'cairn/dup':>11s}" if both else "")
          + "".join(f"{t + ' MiB':>15s}" for t in names) + (f"{'cairn/dup':>11s}" if both else ""))
    for name in steps:
        secs = {t: summary([m["s"] for m in results[t][name]]) for t in names}
        rss = {t: summary([m["rss_kib"] for m in results[t][name]]) for t in names}
        line = f"{name:24s}" + "".join(f"{fmt(secs[t]):>13s}" for t in names)
        line += f"{ratio(secs['cairn'], secs['duplicity']):>11s}" if both else ""
        line += "".join(f"{fmt(rss[t], 1024, 1):>15s}" for t in names)
        line += f"{ratio(rss['cairn'], rss['duplicity']):>11s}" if both else ""
        print(line)
        if runs > 1:
            print(f"{'  min-max':24s}" + "".join(f"{' ' + spread(secs[t]):>13s}" for t in names))
        stolen = {t: summary([m.get("stolen_pct") for m in results[t][name]]) for t in names}
        if any(stolen.values()):
            print(f"{'  CPU stolen (%)':24s}" + "".join(f"{fmt(stolen[t], 1, 1):>13s}" for t in names))
    stored = {t: summary(results[t]["stored_total"]) for t in names}
    print(f"{'stored, full+incr. (MB)':24s}" + "".join(f"{fmt(stored[t], 1e6, 1):>13s}" for t in names)
          + (f"{ratio(stored['cairn'], stored['duplicity'], 3):>11s}" if both else ""))


def print_steal(report):
    """On a virtual machine, say how many steps ran while the hypervisor took a noticeable
    share of the CPUs: their times (and the ratios made of them) say more about the machine
    than about the tool."""
    steps = [(t, step, m) for key in ("tools_table", "pubkey_table", "small_files_table") if key in report
             for t, by_step in report[key]["results"].items() for step, ms in by_step.items()
             for m in ms if isinstance(m, dict) and m.get("stolen_pct") is not None]
    if not steps:
        return
    limit = STEAL["limit"]
    noted = [(t, step, m["stolen_pct"]) for t, step, m in steps if m["stolen_pct"] > limit]
    worst = max(m["stolen_pct"] for _t, _s, m in steps)
    print()
    print(f"CPU stolen by the hypervisor: {len(noted)} of {len(steps)} steps above {limit:g} % "
          f"(the most: {worst:.1f} %)" + (": " + ", ".join(f"{t} {step} {p:.0f} %" for t, step, p in noted[:12])
                                          if noted else ""))


# ---------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    ap.add_argument("--work", default=os.path.join(ROOT, "bench", "out"))
    ap.add_argument("--duplicity", default=os.environ.get("CAIRN_DUPLICITY",
                                                          os.path.join(ROOT, ".venv-duplicity", "bin", "duplicity")))
    ap.add_argument("--cairn", default=os.path.join(ROOT, ".venv", "bin", "cairn"))
    ap.add_argument("--restic", default=shutil.which("restic") or "restic")
    ap.add_argument("--borg", default=shutil.which("borg") or "borg")
    ap.add_argument("--tools", default=",".join(ALL_TOOLS),
                    help="comma-separated tools for the first table (default: all four; a missing one is skipped)")
    ap.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts to run, of {', '.join(PARTS)}")
    ap.add_argument("--runs", type=int, default=1, help="rounds of the tools table (median, min-max when > 1)")
    ap.add_argument("--restore-tries", type=int, default=2,
                    help="restores per tool and round, in mirrored order; the best one counts")
    ap.add_argument("--restore-fs", choices=("auto", "ext4", "work"), default="auto",
                    help="where the tools table's restores go: ext4, a file system made for the run on a loop "
                         "device (needs root); work, the work dir's; auto, ext4 where it can be made")
    ap.add_argument("--data", help="copy this tree instead of running make-dataset.sh (it needs the "
                                   "dataset's shape for `make-dataset.sh DIR mutate`: bin/archive.bin, bin/libs.bin)")
    ap.add_argument("--dataset-scale", choices=("full", "small"), default="full",
                    help="small: a few MB of the dataset's shape, to try the harness")
    ap.add_argument("--module-rounds", type=int, default=5, help="alternating rounds of module against CLI")
    ap.add_argument("--small-files", type=int, default=1_000_000, help="files for the small-files table")
    ap.add_argument("--small-runs", type=int, default=1, help="rounds of the small-files table")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--prefault-mib", type=int, default=PREFAULT["mib"],
                    help="memory touched and freed before each step (at most a quarter of what is "
                         "available), so that its writes find pages the host backs; 0: none")
    ap.add_argument("--steal-limit", type=float, default=STEAL["limit"],
                    help="on a virtual machine: a step of the tools and public-key tables during which the "
                         "hypervisor took more than this %% of the CPUs is run again (default %(default)s)")
    ap.add_argument("--steal-retries", type=int, default=STEAL["retries"],
                    help="how many times at most (0: never; the least stolen try counts)")
    ap.add_argument("--json", help="write every measurement, the machine and the settings to this file")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    args = ap.parse_args()
    STEAL.update(limit=args.steal_limit, retries=max(0, args.steal_retries))
    PREFAULT["mib"] = args.prefault_mib
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    bad = [p for p in parts if p not in PARTS] + [t for t in args.tools.split(",") if t not in ALL_TOOLS]
    if bad:
        ap.error(f"unknown: {', '.join(bad)}")
    own_data = args.data or args.dataset_scale == "small"
    if not os.path.exists(DATASET) and (({"tools", "pubkey"} & set(parts)) or ("module" in parts and not own_data)):
        sys.exit(f"dataset script not found: {DATASET} (set CAIRN_DATASET_SCRIPT)")
    args.exe = {"duplicity": args.duplicity, "cairn": args.cairn, "restic": args.restic, "borg": args.borg}
    names = []
    for t in ALL_TOOLS:
        if t not in args.tools.split(","):
            continue
        if shutil.which(args.exe[t]) is None:
            if t == "cairn":
                sys.exit(f"cairn not found: {args.cairn} (make setup)")
            print(f"{t} not found ({args.exe[t]}): left out (make bench installs restic and borg)",
                  file=sys.stderr)
            continue
        names.append(t)

    if "cairn" in names:
        compile_engine(args.cairn)
    work = os.path.abspath(args.work)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    env = dict(os.environ, PASSPHRASE=PASSPHRASE, GNUPGHOME=os.path.join(work, "gnupg"))
    os.makedirs(env["GNUPGHOME"], mode=0o700)
    report = {"machine": machine({t: TOOL_CLASSES[t](args.exe[t], work, env) for t in names}, env),
              "parts": parts, "tools": names}
    problems = []
    args.restore_fs = RestoreFs(args.restore_fs if {"tools", "pubkey"} & set(parts) else "work", work)
    try:
        data = os.path.join(work, "data")
        if {"tools", "module", "pubkey"} & set(parts):
            print("building the dataset ...", flush=True)
            build_dataset(args, data)
            source = "--data" if args.data else "make-dataset.sh" if args.dataset_scale == "full" else "small"
            report["dataset"] = {"bytes": du(data), "files": count_files(data), "source": source}
            print(f"  {report['dataset']['bytes'] / 1e6:.1f} MB, {report['dataset']['files']:,} files", flush=True)
        if "tools" in parts:
            results, settings, probs, files = tools_part(args, work, data, env, names)
            problems += probs
            report["tools_table"] = {"runs": args.runs, "restore_tries": args.restore_tries, "settings": settings,
                                     "restore_fs": args.restore_fs.describe(),
                                     "files_after_mutate": files, "results": results}
        if "module" in parts:
            try:
                cli_s, module_s = _module_vs_cli(work, data, env, args.cairn, args.module_rounds)
                report["module_vs_cli"] = {"cli_s": cli_s, "module_s": module_s, "ratio": module_s / cli_s}
            except Failed as e:
                problems.append(f"module against the CLI: {e}")
        if "pubkey" in parts and {"duplicity", "cairn"} & set(names):
            pk, probs = pubkey_part(args, work, data, env, names)
            problems += probs
            report["pubkey_table"] = {"runs": args.runs, "restore_tries": args.restore_tries,
                                      "restore_fs": args.restore_fs.describe(), "key": "RSA-3072, no passphrase",
                                      "results": pk}
        if "small-files" in parts:
            small, probs, info, steps = small_files_part(args, work, env, names)
            problems += probs
            report["small_files_table"] = {"files": args.small_files, "per_dir": PER_DIR, "runs": args.small_runs,
                                           "changed": max(1, args.small_files // 100), **info, "results": small}
    finally:
        subprocess.run(["gpgconf", "--homedir", env["GNUPGHOME"], "--kill", "gpg-agent"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        args.restore_fs.close()
        if not args.keep:
            remove(work)

    m = report["machine"]
    print()
    print(f"machine: {m['cpu']}, {m['cores']} cores, {m.get('memory_gib', '?')} GiB, Linux {m['kernel']}, "
          f"{m.get('os', '')}")
    print("versions: " + "; ".join(m["versions"][t] for t in names) + f"; {m['gpg']}")
    if "tools" in parts:
        t = report["tools_table"]
        print()
        print(f"dataset: {report['dataset']['bytes'] / 1e6:.1f} MB, {report['dataset']['files']:,} files "
              f"({report['dataset']['source']}); {t['files_after_mutate']:,} files after mutate; "
              f"{args.runs} round(s), median{' and min-max' if args.runs > 1 else ''}; "
              f"restores into {t['restore_fs']}")
        for name in names:
            print(f"  {name}: {t['settings'][name]}")
        print()
        print_tools_table(t["results"], names, args.runs, args.restore_tries)
        if "cairn" in names:
            worst = max((m["rss_kib"] for step in ("full", "incremental", "restore")
                         for m in t["results"]["cairn"][step] if m is not None), default=0) / 1024
            print(f"cairn's peak RSS {worst:.1f} MiB <= {RSS_LIMIT_MIB} MiB: {'yes' if worst <= RSS_LIMIT_MIB else 'NO'}")
    if "pubkey_table" in report:
        pt = report["pubkey_table"]
        print()
        print(f"encrypted to a public key ({pt['key']}, empty PASSPHRASE), full backup of the dataset and its "
              f"restore into {pt['restore_fs']}; {pt['runs']} round(s)")
        print_pubkey_table(pt["results"], pt["runs"], pt["restore_tries"])
    if "module_vs_cli" in report:
        mc = report["module_vs_cli"]
        print()
        print(f"{'':28s}{'CLI':>11s}{'module':>11s}{'module/CLI':>11s}")
        print(f"{'full backup (s)':28s}{mc['cli_s']:11.2f}{mc['module_s']:11.2f}{mc['ratio']:11.2f}")
    if "small-files" in parts:
        sf = report["small_files_table"]
        print()
        print(f"{sf['files']:,} small files ({sf['per_dir']} per directory, 100-700 bytes), incremental after "
              f"rewriting {sf['changed']:,} (1 %), restore of one changed file; {sf['runs']} round(s)")
        print_small_table(sf["results"], names, steps, args.small_runs)
    print_steal(report)
    report["problems"] = problems
    for key in ("tools_table", "pubkey_table", "small_files_table"):
        if key in report:    # medians beside the raw measurements, for the README's tables
            report[key]["median"] = {t: {step: medians(v) for step, v in steps.items()}
                                     for t, steps in report[key]["results"].items()}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if problems:
        print()
        print("PROBLEMS:")
        for p in problems:
            print(p)
        sys.exit(1)


if __name__ == "__main__":
    main()
