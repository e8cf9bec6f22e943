"""What cairn.backup.agent leaves on a host: a working cairn CLI, and no Ansible needed."""
import hashlib
import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
LIB = "/usr/local/lib/cairn"


def _expected_sha256():
    """The SHA-256 of the archive this checkout's lookup builds (the same bytes anywhere)."""
    spec = importlib.util.spec_from_file_location("engine_archive", os.path.join(ROOT, "plugins", "lookup", "engine_archive.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return hashlib.sha256(mod.build_archive(mod.engine_dir())).hexdigest()


def test_cli_runs_a_backup_and_restore(host):
    cmd = host.run(
        "set -e; rm -rf /tmp/t; mkdir -p /tmp/t/src; echo hello > /tmp/t/src/a; "
        "export GNUPGHOME=/tmp/t/g PASSPHRASE=molecule; mkdir -m 700 $GNUPGHOME; "
        "cairn full --archive-dir /tmp/t/c /tmp/t/src file:///tmp/t/target; "
        "cairn restore --archive-dir /tmp/t/c file:///tmp/t/target /tmp/t/r; cat /tmp/t/r/a")
    assert cmd.rc == 0, cmd.stderr
    assert cmd.stdout.strip().endswith("hello")


def test_engine_is_one_archive_with_the_checkout_hash(host):
    digest = _expected_sha256()
    archive = host.file(f"{LIB}/cairn-engine.zip")
    assert archive.is_file and archive.user == "root" and archive.mode == 0o644
    assert archive.sha256sum == digest
    # unpacked and compiled once, under the archive's hash; nothing else left in the directory
    engine = f"{LIB}/engine-{digest[:16]}"
    assert sorted(host.file(LIB).listdir()) == ["cairn-engine.zip", f"engine-{digest[:16]}"]
    assert host.file(f"{engine}/cairn/cli.py").exists
    assert host.file(f"{engine}/cairn/backends/sftp.py").exists
    assert any(n.startswith("cli.") and n.endswith(".pyc") for n in host.file(f"{engine}/cairn/__pycache__").listdir())
    assert host.file(f"{engine}/cairn").user == "root" and host.file(f"{engine}/cairn").mode == 0o755
    assert host.file(f"{engine}/cairn/cli.py").mode == 0o644
    assert digest in host.file("/usr/local/bin/cairn").content_string


def test_file_by_file_layout_is_gone(host):
    # prepare.yml left /usr/local/lib/cairn/cairn/ (with a module the engine no longer has)
    assert not host.file(f"{LIB}/cairn").exists


def test_archive_runs_by_itself(host):
    # zipimport: the command falls back to the archive while the unpacked copy is missing
    out = host.check_output(f"python3 -s {LIB}/cairn-engine.zip --version")
    assert out.startswith("cairn "), out
    out = host.check_output(f"python3 -s -c 'import sys; sys.path.insert(0, \"{LIB}/cairn-engine.zip\"); "
                            "import cairn.cli, cairn.backends.sftp; print(cairn.cli.__file__)'")
    assert out == f"{LIB}/cairn-engine.zip/cairn/cli.py", out


def test_command_is_root_owned(host):
    cli = host.file("/usr/local/bin/cairn")
    assert cli.user == "root" and cli.mode == 0o755


def test_secret_directories_are_root_only(host):
    for path in ("/etc/cairn/credentials", "/etc/cairn/jobs", "/var/lib/cairn", "/var/cache/cairn"):
        d = host.file(path)
        assert d.is_directory and d.user == "root" and d.mode == 0o700, path


def test_packages_from_the_os(host):
    for pkg in ("gnupg", "librsync2", "python3-gnupg", "python3-cffi", "python3-paramiko"):
        assert host.package(pkg).is_installed, pkg
    assert not host.exists("ansible")


def test_duplicity_link_answers_as_duplicity(host):
    link = host.file("/usr/local/bin/duplicity")
    assert link.is_symlink and link.linked_to == "/usr/local/bin/cairn"
    out = host.check_output("duplicity --version")
    assert out.startswith("duplicity 3.2.1 (cairn "), out
    assert host.check_output("cairn --version").startswith("cairn ")
