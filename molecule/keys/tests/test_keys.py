"""Public keys on every host, the secret key only where restores are allowed."""
import os


def _fpr():
    with open(os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "backup.fpr")) as f:
        return f.read().strip()


def _gpg(host, *args):
    cmd = host.run("gpg --homedir /etc/cairn/gnupg --batch --with-colons " + " ".join(args))
    assert cmd.rc == 0, cmd.stderr
    return cmd.stdout


def test_keyring_is_root_only(host):
    d = host.file("/etc/cairn/gnupg")
    assert d.user == "root" and d.mode == 0o700


def test_public_key_everywhere_with_ultimate_trust(host):
    fpr = _fpr()
    assert f"fpr:::::::::{fpr}:" in _gpg(host, "--list-keys", fpr)
    assert f"{fpr}:6:" in _gpg(host, "--export-ownertrust")


def test_secret_key_only_on_the_restore_host(host):
    fpr = _fpr()
    secret = host.run(f"gpg --homedir /etc/cairn/gnupg --batch --list-secret-keys {fpr}")
    if host.backend.name == "cairn-mol-keys-restore":
        assert secret.rc == 0
    else:
        assert secret.rc != 0


def test_encrypt_everywhere_decrypt_only_on_the_restore_host(host):
    fpr = _fpr()
    cmd = host.run(
        "set -e; rm -rf /tmp/k; mkdir -p /tmp/k/src; echo secret data > /tmp/k/src/f; "
        f"GNUPGHOME=/etc/cairn/gnupg cairn full --encrypt-key {fpr} --archive-dir /tmp/k/c /tmp/k/src file:///tmp/k/t")
    assert cmd.rc == 0, cmd.stderr
    restore = host.run("GNUPGHOME=/etc/cairn/gnupg cairn restore --archive-dir /tmp/k/c2 file:///tmp/k/t /tmp/k/r")
    if host.backend.name == "cairn-mol-keys-restore":
        assert restore.rc == 0 and host.file("/tmp/k/r/f").content_string == "secret data\n"
    else:
        assert restore.rc == 31, restore.stderr          # gpg cannot decrypt: no secret key here
