# SPDX-License-Identifier: GPL-3.0-or-later
"""cairn's command line against duplicity 3.2.1's own tables, read from the installed duplicity.

Every option of duplicity's (cli_data.OptionKwargs and OptionAliases) must be accepted with
duplicity's arity and be classified in cli_compat.DUPLICITY_OPTIONS; every command alias must map to
the command duplicity maps it to; the removed 0.7/0.8-era options are accepted with a warning.
"""
import argparse
import io
import json
import logging
import os
import subprocess
import sys

import pytest

from cairn import cli, cli_compat
from cairn.errors import ExitCode, UserError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

# run with duplicity's interpreter: its own argparse actions tell each option's arity
_DUMP = r"""
import argparse, json
from duplicity import cli_data as c
from duplicity.cli_util import var2opt
out = {"options": {}, "aliases": {}, "commands": {}, "removed": sorted(c.removed_options),
       "changed": sorted(c.changed_options)}
for var, kwargs in c.OptionKwargs.items():
    kw = {k: v for k, v in kwargs.items() if k != "default"}
    action = argparse.ArgumentParser(add_help=False).add_argument(var2opt(var), **kw)
    nargs = action.nargs
    out["options"][var2opt(var)] = {"nargs": 1 if nargs is None else nargs,
                                    "action": kwargs.get("action") if isinstance(kwargs.get("action"), str)
                                    else type(action).__name__}
for var, names in vars(c.OptionAliases).items():
    if not var.startswith("__"):
        out["aliases"][var2opt(var)] = names
for var, names in vars(c.CommandAliases).items():
    if not var.startswith("__"):
        out["commands"][var.replace("_", "-")] = names
print(json.dumps(out))
"""


def _duplicity_python():
    dup = os.environ.get("CAIRN_DUPLICITY") or os.path.join(ROOT, ".venv-duplicity", "bin", "duplicity")
    return os.path.join(os.path.dirname(dup), "python")


@pytest.fixture(scope="module")
def duplicity_table():
    python = _duplicity_python()
    if not os.path.exists(python):
        pytest.skip(f"duplicity's interpreter is missing ({python}): make duplicity")
    r = subprocess.run([python, "-c", _DUMP], capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def parser():
    return cli.build_parser()


def _arity(action):
    return 1 if action.nargs is None else action.nargs


def test_the_table_holds_duplicity_3_2_1(duplicity_table):
    assert len(duplicity_table["options"]) == 124
    assert cli_compat.DUPLICITY_VERSION == "3.2.1"


def test_every_duplicity_option_is_classified(duplicity_table):
    missing = sorted(set(duplicity_table["options"]) - set(cli_compat.DUPLICITY_OPTIONS))
    assert not missing, f"classify these in cli_compat.DUPLICITY_OPTIONS: {missing}"
    removed = sorted(set(duplicity_table["removed"]) - set(cli_compat.DUPLICITY_OPTIONS))
    assert not removed
    for option in duplicity_table["removed"]:
        assert cli_compat.DUPLICITY_OPTIONS[option][0] == cli_compat.REMOVED, option
    for option in duplicity_table["changed"]:
        assert cli_compat.DUPLICITY_OPTIONS[option][0] == cli_compat.IMPLEMENTED, option


def test_the_table_names_only_known_options_and_kinds(duplicity_table):
    known = set(duplicity_table["options"]) | set(duplicity_table["removed"]) | set(duplicity_table["changed"])
    assert set(cli_compat.DUPLICITY_OPTIONS) == known
    for option, entry in cli_compat.DUPLICITY_OPTIONS.items():
        assert entry[0] in (cli_compat.IMPLEMENTED, cli_compat.NOTICE, cli_compat.REFUSED, cli_compat.REMOVED), option
        assert entry[1], f"{option}: say why"
        if entry[0] != cli_compat.IMPLEMENTED:
            assert entry[2] in (0, 1, 2), option


def test_every_duplicity_option_is_accepted_with_duplicitys_arity(duplicity_table, parser):
    wrong = {}
    for option, spec in duplicity_table["options"].items():
        action = parser._option_string_actions.get(option)
        if action is None:
            wrong[option] = "not accepted"
        elif _arity(action) != spec["nargs"]:
            wrong[option] = f"takes {_arity(action)} value(s), duplicity {spec['nargs']}"
    assert not wrong, wrong


def test_duplicitys_short_and_alias_option_names_are_accepted(duplicity_table, parser):
    for option, names in duplicity_table["aliases"].items():
        for name in names:
            assert parser._option_string_actions.get(name) is parser._option_string_actions[option], name


def test_the_removed_options_are_accepted_with_their_old_arity(parser):
    old_arity = {"--exclude-globbing-filelist": 1, "--include-globbing-filelist": 1, "--s3-multipart-max-timeout": 1}
    for option, entry in cli_compat.DUPLICITY_OPTIONS.items():
        if entry[0] == cli_compat.REMOVED:
            assert _arity(parser._option_string_actions[option]) == old_arity.get(option, 0), option


# a sensible value for the options whose value is checked when parsed
_VALUES = {"--verbosity": "4", "--log-fd": "2", "--volsize": "25", "--timeout": "30", "--num-retries": "1",
           "--max-blocksize": "2048", "--concurrency": "1", "--full-if-n-inc": "3", "--show-changes-in-set": "1",
           "--backend-retry-delay": "1", "--s3-multipart-chunk-size": "20", "--s3-multipart-max-procs": "2",
           "--azure-max-connections": "2", "--azure-max-block-size": "4194304",
           "--azure-max-single-put-size": "8388608", "--webdav-headers": "X-Test,1", "--current-time": "1700000000",
           "--time-separator": "_"}


def _argv_for(option, arity, tmp_path):
    if arity == 0:
        return [option]
    value = _VALUES.get(option)
    if value is None:
        value = str(tmp_path / "value")
    return [option, *[value] * arity]


def test_each_option_parses_alone_or_is_refused_with_exit_23(duplicity_table, tmp_path, monkeypatch, capsys):
    (tmp_path / "value").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    refused, unknown = [], []
    for option, spec in duplicity_table["options"].items():
        if option == "--version":
            continue
        argv = _argv_for(option, spec["nargs"], tmp_path) + ["collection-status", "file:///nowhere"]
        try:
            ns = cli.build_parser().parse_intermixed_args(cli._join_dash_values(argv))
        except UserError as e:
            assert e.exit_code == ExitCode.USER_ERROR
            if "unrecognized arguments" in e.message:
                unknown.append(option)
                continue
            assert option in e.message and "not supported by cairn" in e.message
            refused.append(option)
            continue
        assert ns.args == ["collection-status", "file:///nowhere"], option
    assert not unknown, f"not accepted: {unknown}"
    assert sorted(refused) == sorted(o for o, e in cli_compat.DUPLICITY_OPTIONS.items() if e[0] == cli_compat.REFUSED
                                     and o in duplicity_table["options"])
    # issue 12: none of duplicity's options is a usage error
    assert refused == []


def _messages(caplog):
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "cairn"]


def test_a_notice_is_one_line_naming_the_option_never_its_value(capsys, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "scp -i /S3CR3T-VALUE"
    ns = cli.build_parser().parse_intermixed_args(["--scp-command", secret, "--scp-command", secret,
                                                   "--use-agent", "st", "file:///x"])
    assert capsys.readouterr().err == "" and not _messages(caplog)     # not before the run's logging is set
    cli_compat.flush_compat_messages(ns)
    cli_compat.flush_compat_messages(ns)       # once only
    messages = _messages(caplog)
    assert all(level == logging.INFO for level, _m in messages)     # duplicity's notice: quiet below -v3
    lines = [m for _l, m in messages]
    assert not any("S3CR3T" in m for m in lines)
    assert len(lines) == 2
    assert lines[0].startswith("cairn: notice: --scp-command has no effect in cairn: ")
    assert lines[1].startswith("cairn: notice: --use-agent has no effect in cairn: ")


def test_the_options_mapped_onto_cairns_own(parser):
    ns = parser.parse_intermixed_args(["--encrypt-sign-key", "ABCD", "--encrypt-key", "EF01",
                                       "--no-encryption", "--encryption", "--no-restore-ownership",
                                       "--restore-ownership", "--backend-retry-delay", "7", "st", "file:///x"])
    assert ns.encrypt_key == ["ABCD", "EF01"] and ns.sign_key == "ABCD"
    assert ns.no_encryption is False and ns.no_restore_ownership is False
    m = cli._mapping(ns, target="file:///x")
    from cairn import options
    assert options.backend_options(m, {}).retry_delay == 7.0
    # the shared destinations keep cairn's defaults when neither spelling is given
    ns = parser.parse_intermixed_args(["st", "file:///x"])
    assert ns.no_encryption is False and ns.no_restore_ownership is False and ns.b2_hide_files is False
    assert options.backend_options(cli._mapping(ns, target="file:///x"), {}).retry_delay == 1.0


def test_globbing_filelists_of_0_7_are_selection_filelists_in_order(parser, caplog):
    ns = parser.parse_intermixed_args(["--include", "/a", "--exclude-globbing-filelist", "ex.txt",
                                       "--include-globbing-filelist", "in.txt", "--exclude", "**",
                                       "bu", "/src", "file:///x"])
    assert ns.rules == [("include", "/a"), ("exclude-filelist", "ex.txt"), ("include-filelist", "in.txt"),
                        ("exclude", "**")]
    cli_compat.flush_compat_messages(ns)
    (level, message), (_l, other) = _messages(caplog)
    assert level == logging.WARNING and "--exclude-globbing-filelist was removed in duplicity 2.0" in message
    assert "--include-globbing-filelist" in other


def test_filelist_stdin_reads_standard_input_once(parser, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"- /src/skip\n")))
    ns = parser.parse_intermixed_args(["--exclude-filelist-stdin", "bu", "/src", "file:///x"])
    (kind, path), = ns.rules
    assert kind == "exclude-filelist"
    with open(path, "rb") as f:
        assert f.read() == b"- /src/skip\n"


def test_filelist_stdin_from_a_terminal_is_refused(parser, monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True
    monkeypatch.setattr(sys, "stdin", Tty())
    with pytest.raises(UserError, match="standard input"):
        parser.parse_intermixed_args(["--include-filelist-stdin", "bu", "/src", "file:///x"])


def test_every_duplicity_command_alias_maps_as_duplicitys(duplicity_table):
    for command, aliases in duplicity_table["commands"].items():
        assert cli._split_command([command, "a", "b"])[0] == command
        assert command in cli.HANDLERS
        for alias in aliases:
            assert cli._split_command([alias, "a", "b"]) == (command, ["a", "b"]), alias


def test_underscore_command_names_are_not_commands_as_in_duplicity():
    # duplicity 3.2.1 takes collection-status, not collection_status (nor any other _ form)
    with pytest.raises(UserError):
        cli._split_command(["remove_older_than", "1D", "file:///x"])


@pytest.mark.parametrize("program,line", [
    ("/usr/local/bin/duplicity", "duplicity 3.2.1 (cairn {v})"),
    ("duplicity", "duplicity 3.2.1 (cairn {v})"),
    ("/usr/local/bin/cairn", "cairn {v} (duplicity 3.2.1 compatible)"),
    ("/x/cli.py", "cairn {v} (duplicity 3.2.1 compatible)"),
])
def test_version_line_by_program_name(program, line):
    from cairn import __version__
    assert cli_compat.version_line(program) == line.format(v=__version__)


def test_version_under_duplicitys_name_is_what_duply_reads(tmp_path):
    entry = tmp_path / "cairn-entry"
    entry.write_text(f"#!{sys.executable}\nimport sys\n"
                     f"sys.path.insert(0, {os.path.join(ROOT, 'plugins', 'module_utils')!r})\n"
                     "from cairn.cli import main\nmain()\n")
    entry.chmod(0o755)
    (tmp_path / "duplicity").symlink_to(entry)
    for flag in ("--version", "-V"):
        r = subprocess.run([str(tmp_path / "duplicity"), flag], capture_output=True, text=True, check=True)
        # duply 2.4: awk '/^duplicity /{print $2; exit;}'
        words = [line.split() for line in r.stdout.splitlines() if line.startswith("duplicity ")]
        assert words and words[0][1] == "3.2.1", r.stdout
    r = subprocess.run([str(entry), "--version"], capture_output=True, text=True, check=True)
    assert r.stdout.startswith("cairn ") and "duplicity 3.2.1 compatible" in r.stdout


def test_b2_hide_files_is_refused_where_cairn_would_delete(parser, capsys):
    ns = parser.parse_intermixed_args(["--b2-hide-files", "cl", "--force", "file:///x"])
    with pytest.raises(UserError, match="b2-hide-files"):
        cli._prune_with(None, ns, "file:///x", None)


def test_old_s3_url_forms_read_as_s3(caplog):
    from cairn import backends
    assert backends._BUILTIN["s3+http"] == backends._BUILTIN["s3"]
    assert backends._BUILTIN["boto3+s3"] == backends._BUILTIN["s3"]
    cli_compat.warn_old_url("s3+http://bucket/path")
    cli_compat.warn_old_url("boto3+s3://bucket/path")
    cli_compat.warn_old_url("s3://bucket/path")
    assert [m for _l, m in _messages(caplog)] == [
        "cairn: warning: s3+http:// is duplicity 0.7's form of s3://; read as s3://",
        "cairn: warning: boto3+s3:// is duplicity 0.7's form of s3://; read as s3://"]


def test_notice_options_take_no_dest_of_their_own(parser):
    # their values are dropped: nothing of them reaches the options builders or --json
    ns = parser.parse_intermixed_args(["--imap-mailbox", "INBOX", "--par2-redundancy", "10", "st", "file:///x"])
    assert not any(isinstance(v, str) and v in ("INBOX", "10") for v in vars(ns).values())
    assert argparse.SUPPRESS not in vars(ns)


def test_docs_list_every_option_of_the_table():
    with open(os.path.join(ROOT, "docs", "cli.md"), encoding="utf-8") as f:
        doc = f.read()
    missing = [o for o in cli_compat.DUPLICITY_OPTIONS if f"`{o}` |" not in doc]
    assert not missing, f"docs/cli.md lacks: {missing}"
    labels = {cli_compat.IMPLEMENTED: "implemented", cli_compat.NOTICE: "notice only", cli_compat.REFUSED: "refused (exit 23)",
              cli_compat.REMOVED: "removed in 2.0: warning"}
    rows = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[1] in labels.values():
            rows[cells[0].split("`")[-2]] = cells[1:]
    for option, entry in cli_compat.DUPLICITY_OPTIONS.items():
        assert rows[option][0] == labels[entry[0]], option
        if entry[0] != cli_compat.IMPLEMENTED:     # what the notice or refusal says, the page says
            assert rows[option][1] == entry[1], option
