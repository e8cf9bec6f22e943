# SPDX-License-Identifier: GPL-3.0-or-later
"""duplicity's output options, with stock duplicity 3.2.1 as the oracle: -v5's per-file lines,
the machine-readable log (--log-file, --log-fd), --log-timestamp, --jsonstat, collection-status
--show-changes-in-set / --file-changed, and a stdout closed early."""
import json
import os
import re
import subprocess
import sys

import pytest

from treeutil import PASSPHRASE, ROOT, cairn, duplicity, write

OLD = 1_700_000_000
WEIRD = "we ird'\"\u00e9.txt"


def _tree(src):
    write(os.path.join(src, "a.txt"), b"a\n", OLD)
    write(os.path.join(src, "sub", "b.txt"), b"b\n", OLD)
    write(os.path.join(src, WEIRD), b"w\n", OLD)
    os.symlink("a.txt", os.path.join(src, "link"))
    os.utime(os.path.join(src, "sub"), (OLD, OLD))
    os.utime(src, (OLD, OLD))


def _change(src):
    write(os.path.join(src, "a.txt"), b"a changed\n", OLD + 100)
    os.unlink(os.path.join(src, "sub", "b.txt"))
    write(os.path.join(src, "c.txt"), b"c\n", OLD + 100)


def _records(path):
    """The machine-readable log as [(head line, [message lines])]; checks its framing."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert text.endswith("\n\n"), text[-200:]
    out = []
    for block in text[:-2].split("\n\n"):
        lines = block.split("\n")
        head = [ln for ln in lines if not ln.startswith(". ")]
        body = [ln[2:] for ln in lines if ln.startswith(". ")]
        assert re.fullmatch(r"(ERROR|WARNING|NOTICE|INFO|DEBUG) \d+( .*)?", head[0]), block
        out.append((head, body))
    return out


def _file_lines(stdout, pattern=r"[AMD] "):
    return [ln for ln in stdout.decode().splitlines() if re.match(pattern, ln)]


def _both(duplicity_bin, tmp_path, *args):
    """(duplicity's, cairn's) result of one command line over their own target and cache."""
    def fill(tool):
        return [str(a).format(t=f"file://{tmp_path}/{tool}-target", c=str(tmp_path / f"{tool}-cache"),
                              log=str(tmp_path / f"{tool}.log"), dest=str(tmp_path / f"{tool}-restored"))
                for a in args]
    return duplicity(duplicity_bin, *fill("d")), cairn(*fill("c"))


def test_verbosity_5_and_the_log_file_as_duplicity(duplicity_bin, tmp_path):
    src = str(tmp_path / "src")
    _tree(src)
    full = _both(duplicity_bin, tmp_path, "full", "-v5", "--log-file", "{log}", "--archive-dir", "{c}", src, "{t}")
    assert _file_lines(full[1].stdout) == _file_lines(full[0].stdout) == \
        ["A .", "A a.txt", "A link", "A sub", "A sub/b.txt", f"A {WEIRD}"]
    _change(src)
    inc = _both(duplicity_bin, tmp_path, "incr", "-v", "info", "--log-file", "{log}", "--archive-dir", "{c}",
                src, "{t}")
    assert _file_lines(inc[1].stdout) == _file_lines(inc[0].stdout) == \
        ["A .", "M a.txt", "A c.txt", "A sub", "D sub/b.txt"]
    rest = _both(duplicity_bin, tmp_path, "restore", "-v5", "--log-file", "{log}", "--archive-dir", "{c}",
                 "{t}", "{dest}")
    assert _file_lines(rest[1].stdout, "Writing ") == _file_lines(rest[0].stdout, "Writing ")
    assert f"Writing {WEIRD} of type reg" in _file_lines(rest[1].stdout, "Writing ")

    # the log file: the same records for every file, and the statistics' fields in one record
    logs = {tool: _records(tmp_path / f"{tool}.log") for tool in "dc"}

    def per_file(records):
        return [(head, body) for head, body in records if re.match(r"INFO [4567] '", head[0])]
    assert per_file(logs["c"]) == per_file(logs["d"])
    assert ["INFO 4 '.'"] in [head for head, _body in per_file(logs["c"])]
    assert (["INFO 4 'we ird\\x27\"\\xe9.txt'"], [f"A {WEIRD}"]) in per_file(logs["c"])
    assert (["INFO 7 'sub' dir"], ["Writing sub of type dir"]) in per_file(logs["c"])

    def stats(records):
        return [(head, [ln.split(" ")[0] for ln in body]) for head, body in records
                if body and body[0].startswith("--------------[ Backup Statistics ]")]
    assert stats(logs["c"]) == stats(logs["d"]) and len(stats(logs["c"])) == 2


def test_levels_below_info_and_bad_levels(duplicity_bin, tmp_path):
    src = str(tmp_path / "src")
    _tree(src)
    # -v4 (and the default): no per-file lines, on stdout or in the log
    d, c = _both(duplicity_bin, tmp_path, "full", "-v4", "--log-file", "{log}", "--archive-dir", "{c}", src, "{t}")
    assert _file_lines(c.stdout) == _file_lines(d.stdout) == []
    assert not [h for h, _b in _records(tmp_path / "c.log") if h[0].startswith("INFO 4")]
    # -v0 with --no-print-statistics: nothing at all; the statistics are printed at any level
    _change(src)
    d, c = _both(duplicity_bin, tmp_path, "incr", "-v0", "--no-print-statistics", "--archive-dir", "{c}",
                 src, "{t}")
    assert (c.stdout, c.stderr) == (d.stdout, d.stderr) == (b"", b"")
    write(os.path.join(src, "d.txt"), b"d\n")
    d, c = _both(duplicity_bin, tmp_path, "incr", "--verbosity=error", "--archive-dir", "{c}", src, "{t}")
    assert c.stderr == b"" and c.stdout.startswith(b"--------------[ Backup Statistics ]")
    assert [ln.split()[0] for ln in c.stdout.decode().splitlines() if ln] == \
        [ln.split()[0] for ln in d.stdout.decode().splitlines() if ln]
    for bad in ("-v10", "--verbosity=loud", "-vx"):
        d = duplicity(duplicity_bin, "collection-status", bad, f"file://{tmp_path}/d-target", check=False)
        c = cairn("collection-status", bad, f"file://{tmp_path}/c-target", check=False)
        assert c.returncode == d.returncode == 23, (bad, c.stderr)
        assert b"verbosity must be" in c.stderr.lower()
    for good in (["-v9"], ["-v", "d"], ["--verbosity=W"], ["-vn"], ["--verbosity", "info"]):
        assert cairn("collection-status", *good, "--archive-dir", tmp_path / "c-cache",
                     f"file://{tmp_path}/c-target").returncode == 0


def test_log_timestamp_and_log_fd(duplicity_bin, tmp_path):
    src = str(tmp_path / "src")
    _tree(src)
    d, c = _both(duplicity_bin, tmp_path, "full", "-v5", "--log-timestamp", "--archive-dir", "{c}", src, "{t}")
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "
    for r in (d, c):
        lines = r.stdout.decode().splitlines()
        assert [ln for ln in lines if re.fullmatch(stamp + r"INFO   A \S+", ln)][:2] == \
            [ln for ln in lines if re.fullmatch(stamp + r"INFO   A (\.|a\.txt)", ln)]
        assert re.search("^" + stamp + r"NOTICE --------------\[ Backup Statistics \]", r.stdout.decode(), re.M)
    # --log-fd: an inherited descriptor; errors go there with their exit code
    os.mkdir(tmp_path / "busy")
    write(str(tmp_path / "busy" / "x"), b"x")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "plugins", "module_utils"), PASSPHRASE=PASSPHRASE)
    for tool, argv in (("d", [duplicity_bin]), ("c", [sys.executable, "-m", "cairn.cli"])):
        with open(tmp_path / f"{tool}.fd", "wb") as f:
            r = subprocess.run(argv + ["restore", "--log-fd", str(f.fileno()), "--archive-dir",
                                       str(tmp_path / f"{tool}-cache"), f"file://{tmp_path}/{tool}-target",
                                       str(tmp_path / "busy")], env=env, pass_fds=(f.fileno(),),
                               capture_output=True, check=False)
        assert r.returncode == 11
        errors = [h for h, _b in _records(tmp_path / f"{tool}.fd") if h[0].startswith("ERROR")]
        assert errors == [["ERROR 11"]], (tool, errors)


def test_jsonstat_shape(duplicity_bin, tmp_path):
    src = str(tmp_path / "src")
    _tree(src)

    def document(stdout):
        text = stdout.decode()
        return json.loads(text[text.index("{\n"):text.index("\n}\n") + 2])

    def shape(v):
        if isinstance(v, dict):
            return {k: shape(x) for k, x in v.items()}
        return "number" if type(v) in (int, float) else type(v).__name__
    for mode in ("full", "incr"):
        d, c = _both(duplicity_bin, tmp_path, mode, "--jsonstat", "--archive-dir", "{c}", src, "{t}")
        dd, cd = document(d.stdout), document(c.stdout)
        # duplicity has not yet measured the uploads when it prints the document (null there)
        assert dd.pop("TotalDestinationSizeChange") is None and isinstance(cd.pop("TotalDestinationSizeChange"), int)
        dd["backup_meta"]["local_json_stat"] = cd["backup_meta"]["local_json_stat"] = []
        assert list(cd) == list(dd) and shape(cd) == shape(dd)
        assert cd["backup_meta"]["action"] == dd["backup_meta"]["action"] == ("full" if mode == "full" else "inc")
        assert (cd["SourceFiles"], cd["backup_meta"]["no_of_inc"], cd["backup_meta"]["source"]) == \
            (dd["SourceFiles"], dd["backup_meta"]["no_of_inc"], src)
        if mode == "full":
            _change(src)


def test_changes_in_sets_as_duplicity_on_its_own_target(duplicity_bin, tmp_path):
    src = str(tmp_path / "src")
    _tree(src)
    target = f"file://{tmp_path}/target"
    duplicity(duplicity_bin, "full", "--archive-dir", tmp_path / "dc", src, target)
    _change(src)
    duplicity(duplicity_bin, "incr", "--archive-dir", tmp_path / "dc", src, target)

    def block(stdout):
        return [ln for ln in stdout.decode().splitlines()
                if not ln.startswith(("Last full backup date", "Duplicity backup complete", "Local and Remote"))]
    for opts in (["--show-changes-in-set", "0"], ["--show-changes-in-set", "1"], ["--file-changed", "a.txt"],
                 ["--file-changed", "sub/b.txt"], ["--file-changed", "nowhere"]):
        d = duplicity(duplicity_bin, "collection-status", *opts, "--archive-dir", tmp_path / "dc", target)
        c = cairn("collection-status", *opts, "--archive-dir", tmp_path / "cc", target)
        assert block(c.stdout) == block(d.stdout), opts
    c = cairn("collection-status", "--show-changes-in-set", "2", "--archive-dir", tmp_path / "cc", target, check=False)
    assert c.returncode == 23 and b"2 backup set(s)" in c.stderr
    # the machine-readable forms: collection-status's summary and list-current-files' lines
    for cmd in ("collection-status", "list-current-files"):
        d = duplicity(duplicity_bin, cmd, "--log-file", tmp_path / "d.log", "--archive-dir", tmp_path / "dc", target)
        c = cairn(cmd, "--log-file", tmp_path / "c.log", "--archive-dir", tmp_path / "cc", target)
        for tool in "dc":
            os.rename(tmp_path / f"{tool}.log", tmp_path / f"{tool}-{cmd}.log")
        want = r"INFO (3|10) " if cmd == "collection-status" else r"INFO 10 "

        def pick(tool):
            records = _records(tmp_path / f"{tool}-{cmd}.log")
            return [(h, b) if cmd != "collection-status" else h for h, b in records if re.match(want, h[0])]
        assert pick("c") == pick("d") and pick("c"), cmd
    # --no-files-changed: the manifest's list is empty, for cairn's reader and duplicity's
    write(os.path.join(src, "e.txt"), b"e\n")
    cairn("incr", "--no-files-changed", "--archive-dir", tmp_path / "cc", src, target)
    for r in (duplicity(duplicity_bin, "collection-status", "--show-changes-in-set", "0", "--archive-dir",
                        tmp_path / "dc", target),
              cairn("collection-status", "--show-changes-in-set", "0", "--archive-dir", tmp_path / "cc", target)):
        assert "Total number of changes: 0" in r.stdout.decode()


def test_stdout_closed_early_ends_quietly(tmp_path):
    src = str(tmp_path / "src")
    for i in range(3000):       # more than a pipe holds
        write(os.path.join(src, f"d{i % 30}", f"file-with-a-long-name-{i}"), b"")
    cairn("full", "--no-encryption", "--no-print-statistics", "--archive-dir", tmp_path / "cache", src,
          f"file://{tmp_path}/t")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "plugins", "module_utils"))
    for cmd in ("list-current-files", "list-current-files --json", "collection-status -v5 --log-timestamp"):
        r = subprocess.run(f"{sys.executable} -m cairn.cli {cmd} --archive-dir {tmp_path}/cache file://{tmp_path}/t"
                           " | head -c 10; echo \"${PIPESTATUS[0]}\" >&2", shell=True, executable="/bin/bash",
                           env=env, capture_output=True, check=False)
        assert r.stderr.decode().strip() == "0", (cmd, r.stderr)   # duplicity's status: 0, and nothing said
        assert len(r.stdout) == 10


@pytest.mark.parametrize("option", ["--log-file", "--log-fd"])
def test_log_unwritable_is_a_user_error(tmp_path, option):
    value = str(tmp_path / "no" / "such" / "dir.log") if option == "--log-file" else "97"
    r = cairn("collection-status", option, value, f"file://{tmp_path}/t", check=False)
    assert r.returncode == 23 and b"cannot write the log" in r.stderr
