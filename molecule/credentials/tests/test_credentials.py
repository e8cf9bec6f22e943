"""Secrets land only in root-only 0600 files that systemd reads back exactly."""


def test_file_is_root_only(host):
    d = host.file("/etc/cairn/credentials")
    assert d.is_directory and d.user == "root" and d.mode == 0o700
    f = host.file("/etc/cairn/credentials/web.env")
    assert f.user == "root" and f.group == "root" and f.mode == 0o600


UNIT = """[Service]
Type=oneshot
EnvironmentFile=/etc/cairn/credentials/web.env
ExecStart=/usr/bin/env
StandardOutput=truncate:/run/envcheck.out
"""


def test_systemd_reads_the_values_exactly(host):
    # a unit of our own reads the file as the job units do (systemd-run needs D-Bus, absent here)
    cmd = host.run("cat > /run/systemd/system/cairn-envcheck.service <<'EOF'\n" + UNIT + "EOF\n"
                   "systemctl daemon-reload && systemctl start cairn-envcheck.service && cat /run/envcheck.out")
    assert cmd.rc == 0, cmd.stderr
    env = dict(line.split("=", 1) for line in cmd.stdout.splitlines() if "=" in line)
    assert env["PASSPHRASE"] == 'a "quoted" pass with \\ backslash and $HOME'
    assert env["AWS_SECRET_ACCESS_KEY"] == "aws-secret-9931"


def test_absent_set_is_removed(host):
    assert not host.file("/etc/cairn/credentials/old.env").exists
