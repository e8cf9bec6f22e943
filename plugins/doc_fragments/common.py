# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: cairn.backup contributors
from __future__ import annotations


class ModuleDocFragment(object):
    # Options shared by every module that talks to an archive (target, encryption, cache).
    DOCUMENTATION = r'''
options:
  target:
    description:
      - URL of the archive, as duplicity takes it, for example V(file:///srv/backup/web1).
    type: str
    required: true
  passphrase:
    description:
      - Symmetric passphrase (as duplicity's E(PASSPHRASE)), or the passphrase of the secret key
        when reading a public-key archive.
      - It reaches gpg on a file descriptor, never on a command line, and is never returned or logged.
      - Mutually exclusive with O(passphrase_file).
    type: str
  passphrase_file:
    description:
      - A file on the managed host whose first line is the passphrase.
    type: path
  encrypt_keys:
    description:
      - Public-key encryption to these key ids or fingerprints (duplicity's C(--encrypt-key)).
      - When empty and O(no_encryption=false), symmetric encryption with O(passphrase) is used.
    type: list
    elements: str
    default: []
  sign_key:
    description:
      - Sign what is written with this key; when reading, require signatures by it.
    type: str
  no_encryption:
    description:
      - Write gzip instead of gpg (duplicity's C(--no-encryption)).
    type: bool
    default: false
  gnupg_home:
    description:
      - The GnuPG home directory to use; default E(GNUPGHOME) or gpg's default.
    type: path
  archive_dir:
    description:
      - The local cache of manifests and signatures (duplicity's C(--archive-dir)).
      - Default C(~/.cache/duplicity) of the user running the module.
    type: path
  name:
    description:
      - Name of this archive's cache inside O(archive_dir) (duplicity's C(--name)); default the MD5 of O(target).
    type: str
  tempdir:
    description:
      - Where volumes are built and decrypted; needs about two volumes per CPU of free space.
    type: path
requirements:
  - python-gnupg and cffi on the managed host, and the gpg and librsync (C(librsync.so.2)) system packages
    (role M(cairn.backup.agent) installs them).
'''

    ATTRIBUTES = r'''
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
'''
