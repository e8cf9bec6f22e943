# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared argument spec and engine plumbing of the cairn.backup modules (mirrors doc_fragments/common)."""
from __future__ import annotations

import os
import traceback
from urllib.parse import quote

from ansible_collections.cairn.backup.plugins.module_utils.cairn import api
from ansible_collections.cairn.backup.plugins.module_utils.cairn.backends import secrets_of
from ansible_collections.cairn.backup.plugins.module_utils.cairn.backends.base import BackendOptions
from ansible_collections.cairn.backup.plugins.module_utils.cairn.crypto import CryptoOptions
from ansible_collections.cairn.backup.plugins.module_utils.cairn.errors import CairnError, ExitCode
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
        sign_key=dict(type="str", no_log=False),
        no_encryption=dict(type="bool", default=False),
        gnupg_home=dict(type="path"),
        archive_dir=dict(type="path"),
        name=dict(type="str"),
        tempdir=dict(type="path"),
        # remote targets and the transfer layer
        mirror_targets=dict(type="list", elements="str", default=[]),
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
        azure_blob_tier=dict(type="str", choices=["Hot", "Cool", "Cold", "Archive"]),
        validate_certs=dict(type="bool", default=True),
        ca_cert_file=dict(type="path"),
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


# module option -> the environment name duplicity users know it by
CREDENTIAL_ENV = {
    "target_password": "FTP_PASSWORD",
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "aws_session_token": "AWS_SESSION_TOKEN",
    "azure_connection_string": "AZURE_CONNECTION_STRING",
    "azure_account_name": "AZURE_ACCOUNT_NAME",
    "azure_account_key": "AZURE_ACCOUNT_KEY",
    "azure_sas_token": "AZURE_SHARED_ACCESS_SIGNATURE",
}


def _backend_env(module):
    """The process environment, then backend_env, then the named credentials."""
    p = module.params
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in (p.get("backend_env") or {}).items()})
    for opt, name in CREDENTIAL_ENV.items():
        if p.get(opt):
            env[name] = p[opt]
    return env


def backend_options(module):
    """BackendOptions: the process environment, then backend_env, then the named credentials."""
    p = module.params
    env = _backend_env(module)
    return BackendOptions(
        num_retries=p["num_retries"], timeout=p["timeout"], max_upload_rate=p.get("max_upload_rate"),
        upload_concurrency=p["upload_concurrency"], env=env, ssh_options=p["ssh_options"] or "",
        ssh_accept_new_host_key=p["ssh_accept_new_host_key"], s3_endpoint_url=p.get("s3_endpoint_url"),
        s3_region_name=p.get("s3_region_name"), s3_storage_class=p.get("s3_storage_class"),
        s3_sse=p.get("s3_server_side_encryption"), s3_kms_key_id=p.get("s3_kms_key_id"),
        azure_blob_tier=p.get("azure_blob_tier"), ssl_verify=p["validate_certs"],
        ssl_cacert_file=p.get("ca_cert_file"))


COMMON_MUTUALLY_EXCLUSIVE = [("passphrase", "passphrase_file"), ("no_encryption", "encrypt_keys")]


def read_passphrase(module):
    p = module.params
    if p.get("passphrase_file"):
        try:
            with open(p["passphrase_file"], encoding="utf-8") as f:
                return f.readline().rstrip("\r\n")
        except OSError as e:
            module.fail_json(msg=f"cannot read passphrase_file {p['passphrase_file']}: {e.strerror}")
    return p.get("passphrase")


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
    """api.TargetOptions from the common module options."""
    hide_url_passwords(module)
    p = module.params
    passphrase = read_passphrase(module)
    if p["no_encryption"]:
        crypto = CryptoOptions(mode="none")
    else:
        keys = tuple(p["encrypt_keys"] or ())
        crypto = CryptoOptions(mode="pubkey" if keys else "symmetric", passphrase=passphrase,
                               sign_passphrase=os.environ.get("SIGN_PASSPHRASE") or passphrase,
                               recipients=keys, sign_key=p.get("sign_key"),
                               gnupg_home=p.get("gnupg_home") or os.environ.get("GNUPGHOME"))
    return api.TargetOptions(url=p["target"], crypto=crypto, archive_dir=p.get("archive_dir"),
                             name=p.get("name"), tempdir=p.get("tempdir"),
                             backend=backend_options(module), mirrors=list(p.get("mirror_targets") or ()),
                             read_only=module.check_mode)


def run(module, fn, *args, **kwargs):
    """Call the engine; its errors become fail_json with the message and the exit code. A bug
    fails the task too, its text and traceback redacted (Ansible would print them raw)."""
    try:
        return fn(*args, **kwargs)
    except CairnError as e:
        fail(module, e)
    except Exception as e:   # noqa: BLE001 - reported, redacted, as a failure of the task
        secrets = module_secrets(module)
        module.fail_json(msg=f"unexpected error: {type(e).__name__}: {redact_text(e, secrets)}",
                         exception=redact_text(traceback.format_exc(), secrets), exit_code=ExitCode.EXCEPTION)
