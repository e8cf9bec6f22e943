"""Secrets land only in root-only 0600 files that systemd reads back exactly."""


def test_file_is_root_only(host):
    d = host.file("/etc/cairn/credentials")
    assert d.is_directory and d.user == "root" and d.mode == 0o700
    f = host.file("/etc/cairn/credentials/web.env")
    assert f.user == "root" and f.group == "root" and f.mode == 0o600


def test_systemd_reads_the_values_exactly(host):
    cmd = host.run("systemd-run --quiet --wait --pipe -p EnvironmentFile=/etc/cairn/credentials/web.env "
                   "/bin/sh -c 'printf %s \"$PASSPHRASE\"; echo; printf %s \"$AWS_SECRET_ACCESS_KEY\"'")
    assert cmd.rc == 0, cmd.stderr
    assert cmd.stdout.split("\n")[:2] == ['a "quoted" pass with \\ backslash and $HOME', "aws-secret-9931"]


def test_absent_set_is_removed(host):
    assert not host.file("/etc/cairn/credentials/old.env").exists
