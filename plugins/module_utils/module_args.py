# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared argument spec and engine plumbing of the cairn.backup modules (mirrors doc_fragments/common)."""
from __future__ import annotations

import os
import traceback
from urllib.parse import quote

from ansible_collections.cairn.backup.plugins.module_utils.cairn import options
from ansible_collections.cairn.backup.plugins.module_utils.cairn.backends import secrets_of
from ansible_collections.cairn.backup.plugins.module_utils.cairn.errors import CairnError, ExitCode
from ansible_collections.cairn.backup.plugins.module_utils.cairn.logs import quiet_libraries
from ansible_collections.cairn.backup.plugins.module_utils.cairn.redact import redact_text, url_secrets


def _packed_backends():
    """Never called. The engine imports backends by scheme, lazily; naming them here makes
    AnsiballZ (which follows import statements) pack them with every module."""
    # pylint: disable=unused-import
    from ansible_collections.cairn.backup.plugins.module_utils.cairn.backends import (  # noqa: F401
        azure, ftp, multi, s3, sftp, webdav)


def common_argument_spec():
    return dict(
        target=dict(type="str", required=True),
        passphrase=dict(type="str", no_log=True),
        passphrase_file=dict(type="path", no_log=False),
        encrypt_keys=dict(type="list", elements="str", default=[], no_log=False),
        hidden_encrypt_keys=dict(type="list", elements="str", default=[], no_log=False),
        sign_key=dict(type="str", no_log=False),
        sign_passphrase=dict(type="str", no_log=True),
        gpg_options=dict(type="str"),
        gpg_binary=dict(type="str", default="gpg"),
        openpgp_engine=dict(type="str", choices=["builtin", "gpg"], default="builtin"),
        use_gpgsm=dict(type="bool", default=False),
        no_encryption=dict(type="bool", default=False),
        gnupg_home=dict(type="path"),
        archive_dir=dict(type="path"),
        name=dict(type="str"),
        tempdir=dict(type="path"),
        file_prefix=dict(type="str", default=""),
        file_prefix_archive=dict(type="str", default=""),
        file_prefix_manifest=dict(type="str", default=""),
        file_prefix_signature=dict(type="str", default=""),
        break_lock=dict(type="bool", default=False),
        lock_stale_after=dict(type="str"),
        # remote targets and the transfer layer
        mirror_targets=dict(type="list", elements="str", default=[]),
        mirror_stand_in=dict(type="bool", default=False),
        num_retries=dict(type="int", default=5),
        timeout=dict(type="int", default=30),
        max_upload_rate=dict(type="int"),
        upload_concurrency=dict(type="int", default=4),
        ssh_options=dict(type="str", default=""),
        ssh_accept_new_host_key=dict(type="bool", default=False),
        s3_endpoint_url=dict(type="str"),
        s3_region_name=dict(type="str"),
        s3_storage_class=dict(type="str"),
        s3_server_side_encryption=dict(type="str", choices=["AES256", "aws:kms"]),
        s3_kms_key_id=dict(type="str", no_log=False),
        s3_kms_grant=dict(type="str"),
        s3_unencrypted_connection=dict(type="bool", default=False),
        s3_multipart_chunk_size=dict(type="int", default=20),
        s3_multipart_max_procs=dict(type="int", default=4),
        s3_object_lock_mode=dict(type="str", choices=["governance", "compliance"]),
        s3_object_lock_days=dict(type="int"),
        azure_blob_tier=dict(type="str", choices=["Hot", "Cool", "Cold", "Archive"]),
        validate_certs=dict(type="bool", default=True),
        ca_cert_file=dict(type="path"),
        ftp_passive=dict(type="bool", default=True),
        # credentials: reach the backends in memory, never argv, logs or results
        target_password=dict(type="str", no_log=True),
        aws_access_key_id=dict(type="str", no_log=False),
        aws_secret_access_key=dict(type="str", no_log=True),
        aws_session_token=dict(type="str", no_log=True),
        azure_connection_string=dict(type="str", no_log=True),
        azure_account_name=dict(type="str"),
        azure_account_key=dict(type="str", no_log=True),
        azure_sas_token=dict(type="str", no_log=True),
        backend_env=dict(type="dict", default={}, no_log=True),
    )


def selection_argument_spec():
    """The selection options (doc fragment cairn.backup.common.selection)."""
    return dict(
        selection=dict(type="list", elements="str", default=[]),
        includes=dict(type="list", elements="str", default=[]),
        excludes=dict(type="list", elements="str", default=[]),
        include_regexps=dict(type="list", elements="str", default=[]),
        exclude_regexps=dict(type="list", elements="str", default=[]),
        include_filelist=dict(type="path"),
        exclude_filelist=dict(type="path"),
        exclude_if_present=dict(type="list", elements="str", default=[]),
        exclude_older_than=dict(type="str"),
        exclude_device_files=dict(type="bool", default=False),
        exclude_other_filesystems=dict(type="bool", default=False),
    )


def _backend_env(module):
    """The environment the backends get: this host's, then backend_env, then the named
    credentials (options.backend_options merges them the same way)."""
    return options.backend_options(module.params, os.environ).env


COMMON_MUTUALLY_EXCLUSIVE = [("passphrase", "passphrase_file"), ("no_encryption", "encrypt_keys"),
                             ("no_encryption", "hidden_encrypt_keys")]


def _target_urls(module):
    p = module.params
    return [u for u in [p.get("target"), *(p.get("mirror_targets") or ())] if isinstance(u, str)]


def hide_url_passwords(module):
    """Make Ansible mask the passwords in ``target`` and ``mirror_targets`` (and their encoded
    forms) wherever they would show: the result's ``invocation``, ``msg``, warnings."""
    for url in _target_urls(module):
        for value in url_secrets(url):
            module.no_log_values.update((value, quote(value, safe="")))


def module_secrets(module):
    """What this task must never show: its URLs' passwords, every credential option and
    backend_env value, the credentials of its environment."""
    p = module.params
    secrets = secrets_of(_target_urls(module), _backend_env(module))
    return secrets | [str(v) for v in (p.get("backend_env") or {}).values()] + [p.get("passphrase") or ""]


def fail(module, error, **extra):
    """fail_json for an engine error: its message redacted, its exit code."""
    module.fail_json(msg=redact_text(error.message, module_secrets(module)), exit_code=error.exit_code, **extra)


def warn(module, text):
    module.warn(redact_text(text, module_secrets(module)))


def target_options(module):
    """TargetOptions from the common module options, through the engine's one builder (the
    module options are its vocabulary); check mode makes the session read-only."""
    hide_url_passwords(module)
    try:
        return options.target_options(dict(module.params, read_only=module.check_mode), os.environ)
    except CairnError as e:
        fail(module, e)


def backup_options(module):
    try:
        return options.backup_options(module.params)
    except CairnError as e:
        fail(module, e)


def selection_rules(module):
    try:
        return options.selection_rules(module.params)
    except CairnError as e:
        fail(module, e)


def parse(module, fn, value):
    """A time string or duration of a module option (fn: timespec.parse, parse_duration), its
    error a failed task rather than a traceback."""
    try:
        return fn(value) if value not in (None, "") else None
    except CairnError as e:
        fail(module, e)


def run(module, fn, *args, **kwargs):
    """Call the engine; its errors become fail_json with the message and the exit code. A bug
    fails the task too, its text and traceback redacted (Ansible would print them raw)."""
    quiet_libraries()
    try:
        return fn(*args, **kwargs)
    except CairnError as e:
        fail(module, e)
    except Exception as e:   # noqa: BLE001 - reported, redacted, as a failure of the task
        secrets = module_secrets(module)
        module.fail_json(msg=f"unexpected error: {type(e).__name__}: {redact_text(e, secrets)}",
                         exception=redact_text(traceback.format_exc(), secrets), exit_code=ExitCode.EXCEPTION)
