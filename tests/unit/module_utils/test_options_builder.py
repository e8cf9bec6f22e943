# SPDX-License-Identifier: GPL-3.0-or-later
"""The one builder from a plain mapping (CLI arguments, module params, job config) to typed
options: every front end gets the same meaning for the same name."""
import pytest

from cairn import options
from cairn.errors import TimeStringError, UserError
from cairn.lock import DEFAULT_STALE_AFTER


def test_defaults_are_the_dataclasses():
    t = options.target_options({"target": "file:///b"}, env={"PASSPHRASE": "pw"})
    assert (t.url, t.crypto.mode, t.crypto.passphrase, t.file_prefix, t.lock_stale_after) == \
        ("file:///b", "symmetric", "pw", "", DEFAULT_STALE_AFTER)
    assert t.backend.num_retries == 5 and t.backend.env == {"PASSPHRASE": "pw"}
    b = options.backup_options({"source": "/src"})
    assert (b.mode, b.volsize, b.jobs, b.compress_level, b.adaptive_compression, b.rules) == \
        ("auto", 200, 0, 3, True, [])


def test_every_option_reaches_its_field(tmp_path):
    pf = tmp_path / "pass"
    pf.write_text("from the file\nsecond line\n")
    t = options.target_options({
        "target": "sftp://u@h/x", "mirror_targets": ["s3://b/x"], "passphrase_file": str(pf),
        "encrypt_keys": ["0xAA"], "hidden_encrypt_keys": ["BB"], "sign_key": "CC", "gpg_options": "--a 'b c'",
        "gpg_binary": "gpg2", "gnupg_home": "/g", "archive_dir": "/c", "name": "n", "tempdir": "/t",
        "file_prefix": "web1-", "break_lock": True, "lock_stale_after": "2h", "num_retries": 1, "timeout": 7,
        "ssh_options": ["-oA=1", "-oB=2"], "s3_server_side_encryption": "aws:kms", "validate_certs": False,
        "ca_cert_file": "/ca", "ftp_passive": False, "target_password": "tp", "backend_env": {"X": 1},
        "read_only": True}, env={"SIGN_PASSPHRASE": "sp"})
    c = t.crypto
    assert (c.mode, c.passphrase, c.sign_passphrase, c.recipients, c.hidden_recipients, c.sign_key) == \
        ("pubkey", "from the file", "sp", ("0xAA",), ("BB",), "CC")
    assert (c.gpg_options, c.gpg_binary, c.gnupg_home) == (("--a", "b c"), "gpg2", "/g")
    assert (t.mirrors, t.archive_dir, t.name, t.tempdir, t.file_prefix) == (["s3://b/x"], "/c", "n", "/t", "web1-")
    assert (t.break_lock, t.lock_stale_after, t.read_only) == (True, 7200, True)
    be = t.backend
    assert (be.num_retries, be.timeout, be.ssh_options, be.s3_sse, be.ssl_verify, be.ssl_cacert_file) == \
        (1, 7, "-oA=1 -oB=2", "aws:kms", False, "/ca")
    assert be.ftp_passive is False and be.env["FTP_PASSWORD"] == "tp" and be.env["X"] == "1"


def test_the_environment_gives_what_the_mapping_does_not():
    env = {"PASSPHRASE": "env pw", "GNUPGHOME": "/env/gnupg", "FTP_PASSWORD": "env ftp"}
    t = options.target_options({"target": "ftp://h/x", "passphrase": "given"}, env=env)
    assert (t.crypto.passphrase, t.crypto.gnupg_home, t.backend.env["FTP_PASSWORD"]) == \
        ("given", "/env/gnupg", "env ftp")


def test_a_writer_needs_a_passphrase_or_asks():
    with pytest.raises(UserError, match="no passphrase"):
        options.target_options({"target": "file:///b"}, env={}, writing=True)
    t = options.target_options({"target": "file:///b"}, env={}, writing=True, ask=lambda: "typed")
    assert t.crypto.passphrase == "typed"
    # public-key writers and readers need none
    assert options.target_options({"target": "file:///b", "encrypt_keys": ["K"]}, env={}, writing=True)
    assert options.target_options({"target": "file:///b"}, env={}).crypto.passphrase is None


@pytest.mark.parametrize("mapping, match", [
    ({"target": "file:///b", "no_encryption": True, "encrypt_keys": ["K"]}, "exclude each other"),
    ({"target": "file:///b", "passphrase": "a", "passphrase_file": "/f"}, "exclude each other"),
    ({"target": "file:///b", "passphrase_file": "/no/such/file"}, "cannot read the passphrase file"),
    ({"target": "file:///b", "lock_stale_after": "0"}, "positive"),
    ({}, "no target"),
])
def test_bad_mappings_are_user_errors(mapping, match):
    with pytest.raises(UserError, match=match):
        options.target_options(mapping, env={})


def test_bad_durations_and_times_are_time_string_errors():
    with pytest.raises(TimeStringError):
        options.target_options({"target": "file:///b", "lock_stale_after": "soon"}, env={})
    with pytest.raises(TimeStringError):
        options.backup_options({"source": "/s", "full_if_older_than": "sometime"})


def test_selection_keeps_its_order(tmp_path):
    rules = options.selection_rules({
        "rules": [("exclude", "/s/first")],
        "selection": ["+ /s/keep", "- /s/**"],
        "includes": ["/s/inc"], "excludes": ["/s/exc"], "include_regexps": ["r1"], "exclude_regexps": ["r2"],
        "include_filelist": "/if", "exclude_filelist": "/ef", "exclude_if_present": [".nobackup"],
        "exclude_older_than": "1700000000", "exclude_device_files": True, "exclude_other_filesystems": True})
    assert rules == [("exclude", "/s/first"), ("include", "/s/keep"), ("exclude", "/s/**"), ("include", "/s/inc"),
                     ("exclude", "/s/exc"), ("include-regexp", "r1"), ("exclude-regexp", "r2"),
                     ("exclude-if-present", ".nobackup"), ("include-filelist", "/if"), ("exclude-filelist", "/ef"),
                     ("exclude-older-than", 1700000000), ("exclude-device-files", None),
                     ("exclude-other-filesystems", None)]
    with pytest.raises(UserError, match="selection line"):
        options.selection_rules({"selection": ["/s/no-sign"]})


def test_backup_options_from_a_mapping():
    b = options.backup_options({"source": "/s", "mode": "full", "full_if_older_than": "1700000000",
                                "volsize": 25, "jobs": 2, "adaptive_compression": False, "compress_level": 6,
                                "allow_source_mismatch": True, "max_blocksize": 4096, "excludes": ["/s/x"]})
    assert (b.mode, b.full_if_older_than, b.volsize, b.jobs, b.adaptive_compression, b.compress_level) == \
        ("full", 1700000000, 25, 2, False, 6)
    assert b.allow_source_mismatch and b.max_blocksize == 4096 and b.rules == [("exclude", "/s/x")]


def test_run_behaviour_options():
    """duplicity's --files-from, --copy-links, --full-if-n-inc, --skip-if-no-change, --dry-run,
    --ignore-errors, --null-separator: off by default, taken from the mapping, checked."""
    b = options.backup_options({"source": "/s"})
    assert (b.files_from, b.copy_links, b.full_if_n_inc, b.skip_if_no_change, b.dry_run, b.ignore_errors,
            b.null_separator) == (None, False, None, False, False, False, False)
    b = options.backup_options({"source": "/s", "files_from": "/l", "copy_links": True, "full_if_n_inc": "3",
                                "skip_if_no_change": True, "dry_run": True, "ignore_errors": True,
                                "null_separator": True})
    assert (b.files_from, b.copy_links, b.full_if_n_inc, b.skip_if_no_change, b.dry_run, b.ignore_errors,
            b.null_separator) == ("/l", True, 3, True, True, True, True)
    for bad in (-1, "many", True):
        with pytest.raises(UserError, match="full_if_n_inc"):
            options.backup_options({"source": "/s", "full_if_n_inc": bad})


def test_filter_modes_are_ordered_flags():
    rules = options.selection_rules({"rules": [("filter-literal", []), ("exclude", "/s/a*"),
                                               ("filter-ignorecase", []), ("include", "/s/B")]})
    assert rules == [("filter-literal", None), ("exclude", "/s/a*"), ("filter-ignorecase", None),
                     ("include", "/s/B")]


def test_compression_and_concurrency():
    """--no-compression: gpg without compression, and unencrypted files neither gzipped nor
    named .gz; --concurrency N: N uploads at once (0 keeps cairn's default)."""
    from cairn.crypto import Crypto
    t = options.target_options({"target": "file:///b", "no_encryption": True, "compression": False}, env={})
    assert not t.crypto.compress and Crypto(t.crypto).suffix == ""
    t = options.target_options({"target": "file:///b", "no_encryption": True}, env={})
    assert t.crypto.compress and Crypto(t.crypto).suffix == ".gz"
    t = options.target_options({"target": "file:///b", "compression": False}, env={"PASSPHRASE": "pw"})
    assert not t.crypto.compress and Crypto(t.crypto).suffix == ".gpg"
    assert options.target_options({"target": "file:///b", "concurrency": 7}, env={}).backend.upload_concurrency == 7
    assert options.target_options({"target": "file:///b", "concurrency": 0}, env={}).backend.upload_concurrency == 4
    with pytest.raises(UserError, match="concurrency"):
        options.target_options({"target": "file:///b", "concurrency": -2}, env={})


def test_resume_fingerprint_covers_the_run_options():
    """An interrupted set is continued only with the same walk and the same encoding: a run with
    --no-compression, --copy-links or another --files-from starts a new set; runs without them
    keep the fingerprints they had."""
    from cairn import resume
    target = options.target_options({"target": "file:///b", "no_encryption": True}, env={})
    base = options.backup_options({"source": "/s"})

    def fp(t=target, o=base):
        return resume.fingerprint(t, o, "host", b"/s", "full")
    plain = options.target_options({"target": "file:///b", "no_encryption": True, "compression": False}, env={})
    others = [fp(t=plain)] + [fp(o=options.backup_options({"source": "/s", **extra}))
                              for extra in ({"copy_links": True}, {"files_from": "/l"}, {"null_separator": True})]
    assert len({fp(), *others}) == 5
    assert fp() == fp(o=options.backup_options({"source": "/s", "skip_if_no_change": True, "full_if_n_inc": 2}))
