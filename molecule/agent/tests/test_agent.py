"""What cairn.backup.agent leaves on a host: a working cairn CLI, and no Ansible needed."""


def test_cli_runs_a_backup_and_restore(host):
    cmd = host.run(
        "set -e; rm -rf /tmp/t; mkdir -p /tmp/t/src; echo hello > /tmp/t/src/a; "
        "export GNUPGHOME=/tmp/t/g PASSPHRASE=molecule; mkdir -m 700 $GNUPGHOME; "
        "cairn full --archive-dir /tmp/t/c /tmp/t/src file:///tmp/t/target; "
        "cairn restore --archive-dir /tmp/t/c file:///tmp/t/target /tmp/t/r; cat /tmp/t/r/a")
    assert cmd.rc == 0, cmd.stderr
    assert cmd.stdout.strip().endswith("hello")


def test_engine_and_command_are_root_owned(host):
    cli = host.file("/usr/local/bin/cairn")
    assert cli.user == "root" and cli.mode == 0o755
    assert host.file("/usr/local/lib/cairn/cairn/cli.py").exists
    assert host.file("/usr/local/lib/cairn/cairn/backends/sftp.py").exists


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
