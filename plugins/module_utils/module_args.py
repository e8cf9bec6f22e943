# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared argument spec and engine plumbing of the cairn.backup modules (mirrors doc_fragments/common)."""
from __future__ import annotations

import os

from ansible_collections.cairn.backup.plugins.module_utils.cairn import api
from ansible_collections.cairn.backup.plugins.module_utils.cairn.crypto import CryptoOptions
from ansible_collections.cairn.backup.plugins.module_utils.cairn.errors import CairnError


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
    )


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


def target_options(module):
    """api.TargetOptions from the common module options."""
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
                             name=p.get("name"), tempdir=p.get("tempdir"))


def run(module, fn, *args, **kwargs):
    """Call the engine; its errors become fail_json with the message and the exit code."""
    try:
        return fn(*args, **kwargs)
    except CairnError as e:
        module.fail_json(msg=e.message, exit_code=e.exit_code)
