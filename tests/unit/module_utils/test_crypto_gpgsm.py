# SPDX-License-Identifier: GPL-3.0-or-later
"""--use-gpgsm's options, suffixes and gpgsm's handling, with a stand-in gpgsm (a shell script)
where the real one cannot show it: an old version, the arguments it gets, a failed decryption."""
import hashlib
import os
import stat

import pytest

from cairn import naming, options
from cairn.crypto import GPGSM_MIN_VERSION, Crypto, CryptoOptions, check_gpgsm_version
from cairn.errors import CryptoError, ExitCode, GpgsmNeeded, NoSecretKey, UserError

SECRET = "s3cret passphrase"


def _fake_gpgsm(tmp_path, version="2.2.40", body="exit 0"):
    """A gpgsm stand-in: prints ``version`` for --version, else logs its argv (and what it read
    on --passphrase-fd) to argv.log and runs ``body``."""
    path = tmp_path / "gpgsm"
    path.write_text(f"""#!/bin/sh
if [ "$1" = "--version" ]; then echo "gpgsm (GnuPG) {version}"; exit 0; fi
printf '%s\\n' "$@" > "{tmp_path}/argv.log"
fd=""; prev=""
for a in "$@"; do [ "$prev" = "--passphrase-fd" ] && fd="$a"; prev="$a"; done
if [ -n "$fd" ]; then pw=$(head -n 1 "/dev/fd/$fd"); printf '%s\\n' "$pw" > "{tmp_path}/fd.log"; fi
{body}
""")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def _crypto(binary, **kw):
    kw.setdefault("mode", "pubkey")
    kw.setdefault("recipients", ("CERTFPR",))
    return Crypto(CryptoOptions(use_gpgsm=True, gpg_binary=binary, gnupg_home=None, **kw))


def test_gpgsm_files_end_in_p7m():
    c = Crypto(CryptoOptions(mode="pubkey", recipients=("X",), use_gpgsm=True))
    assert c.suffix == c.encrypted_suffix == ".p7m"
    assert Crypto(CryptoOptions(mode="pubkey", recipients=("X",))).suffix == ".gpg"
    assert naming.encoding("duplicity-full.20240101T000000Z.vol1.difftar.p7m") == "gpgsm"
    assert naming.encoding("duplicity-full.20240101T000000Z.vol1.difftar.gpg") == "gpg"
    assert naming.parse("duplicity-full.20240101T000000Z.manifest.p7m").encrypted


def test_use_gpgsm_when_writing_needs_encrypt_keys():
    with pytest.raises(UserError) as e:
        options.crypto_options({"use_gpgsm": True}, {"PASSPHRASE": "x"}, writing=True)
    assert e.value.exit_code == ExitCode.USER_ERROR and "encrypt_keys" in e.value.message
    # reading needs only the secret key in the GnuPG home
    o = options.crypto_options({"use_gpgsm": True}, {}, writing=False)
    assert o.use_gpgsm and Crypto(o).suffix == ".p7m"
    o = options.crypto_options({"use_gpgsm": True, "encrypt_keys": ["F"]}, {}, writing=True)
    assert o.use_gpgsm and o.recipients == ("F",)
    assert not options.crypto_options({"encrypt_keys": ["F"]}, {}, writing=True).use_gpgsm


@pytest.mark.parametrize("m, words", [
    ({"use_gpgsm": True, "no_encryption": True}, "no_encryption"),
    ({"use_gpgsm": True, "hidden_encrypt_keys": ["F"]}, "cannot hide recipients"),
    ({"use_gpgsm": True, "encrypt_keys": ["F"], "sign_key": "F"}, "cannot sign and encrypt"),
])
def test_what_gpgsm_cannot_do_is_refused(m, words):
    with pytest.raises(UserError) as e:
        Crypto(options.crypto_options(m, {}, writing=False))
    assert words in e.value.message and e.value.exit_code == 23


def test_gpgsm_older_than_2_2_27_is_refused_with_the_gpg_exit_code(tmp_path):
    assert GPGSM_MIN_VERSION == (2, 2, 27)
    with pytest.raises(CryptoError) as e:
        check_gpgsm_version(_fake_gpgsm(tmp_path, version="2.2.26"))
    assert e.value.exit_code == ExitCode.GPG_FAILED == 31
    assert "2.2.26" in e.value.message and "too old" in e.value.message
    assert check_gpgsm_version(_fake_gpgsm(tmp_path, version="2.2.27")) == (2, 2, 27)


def test_a_missing_gpgsm_is_a_gpg_error(tmp_path):
    c = _crypto(str(tmp_path / "nowhere" / "gpgsm"))
    src = tmp_path / "plain"
    src.write_bytes(b"data")
    with pytest.raises(CryptoError) as e:
        c.encrypt_file(str(src), str(tmp_path / "out.p7m"))
    assert e.value.exit_code == 31 and "cannot run gpgsm" in e.value.message
    assert not (tmp_path / "out.p7m").exists()


def test_encryption_arguments_and_a_file_object_source(tmp_path):
    c = _crypto(_fake_gpgsm(tmp_path, body="cat > /dev/null; printf 'CMS'"), recipients=("AAA", "BBB"),
                gpg_options=("--cipher-algo", "AES256"))

    class Reader:          # a volume still growing reads like this: read(n) until b""
        def __init__(self):
            self.parts = [b"x" * 70000, b"y", b""]

        def read(self, n=-1):
            return self.parts.pop(0)
    digest = c.encrypt_file(Reader(), str(tmp_path / "out.p7m"))
    assert (tmp_path / "out.p7m").read_bytes() == b"CMS"
    assert digest == hashlib.sha1(b"CMS").hexdigest()
    argv = (tmp_path / "argv.log").read_text().splitlines()
    # binary CMS (no --armor), as duplicity's; the user's --gpg-options, then the recipients
    assert argv[-7:] == ["--cipher-algo", "AES256", "--recipient", "AAA", "--recipient", "BBB", "--encrypt"]
    assert "--batch" in argv and "--armor" not in argv and "--passphrase-fd" not in argv


def test_the_passphrase_goes_on_a_pipe_never_argv(tmp_path):
    c = _crypto(_fake_gpgsm(tmp_path, body="cat > /dev/null; printf 'plain'"), passphrase=SECRET)
    (tmp_path / "in.p7m").write_bytes(b"cms")
    c.decode_file("duplicity-full.20240101T000000Z.manifest.p7m", str(tmp_path / "in.p7m"), str(tmp_path / "out"))
    assert (tmp_path / "out").read_bytes() == b"plain"
    argv = (tmp_path / "argv.log").read_text()
    assert SECRET not in argv and "--passphrase-fd" in argv and "loopback" in argv
    assert (tmp_path / "fd.log").read_text() == SECRET + "\n"


def test_a_failed_decryption_leaves_no_plaintext_and_exits_31(tmp_path):
    body = "cat > /dev/null; printf 'partial'; echo '[GNUPG:] NO_SECKEY E767A49000A757F3' >&2; exit 2"
    c = _crypto(_fake_gpgsm(tmp_path, body=body))
    (tmp_path / "in.p7m").write_bytes(b"cms")
    with pytest.raises(NoSecretKey) as e:
        c.decode_file("duplicity-full.20240101T000000Z.vol1.difftar.p7m", str(tmp_path / "in.p7m"),
                      str(tmp_path / "out"))
    assert e.value.exit_code == 31 and "no secret key" in e.value.message
    assert sorted(os.listdir(tmp_path)) == ["argv.log", "gpgsm", "in.p7m"]


def test_a_p7m_file_without_use_gpgsm_names_the_option(tmp_path):
    c = Crypto(CryptoOptions(mode="symmetric", passphrase="pw"))
    (tmp_path / "in.p7m").write_bytes(b"cms")
    with pytest.raises(GpgsmNeeded) as e:
        c.decode_file("duplicity-full.20240101T000000Z.manifest.p7m", str(tmp_path / "in.p7m"), str(tmp_path / "out"))
    assert e.value.exit_code == 31 and "--use-gpgsm" in e.value.message
    assert not (tmp_path / "out").exists()


def test_symmetric_gpgsm_encryption_is_refused_at_write_time(tmp_path):
    c = _crypto(_fake_gpgsm(tmp_path), mode="symmetric", recipients=(), passphrase="pw")
    (tmp_path / "in").write_bytes(b"x")
    with pytest.raises(UserError):
        c.encrypt_file(str(tmp_path / "in"), str(tmp_path / "out.p7m"))
    assert not (tmp_path / "argv.log").exists() and not (tmp_path / "out.p7m").exists()
