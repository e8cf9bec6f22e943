# -*- coding: utf-8 -*-
# Copyright: cairn.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
name: engine_archive
short_description: Build the cairn engine as one deterministic zip archive
version_added: 0.1.0
description:
  - Zips the Python sources of the cairn engine (this collection's C(plugins/module_utils/cairn)
    package, or the package directory given as the term) into one file on the controller and
    returns the path of that file.
  - The archive is deterministic, so the same sources give the same bytes on any controller and
    Python version; entries sorted by name, a fixed timestamp (1980-01-01), mode C(0644),
    stored without compression (zlib implementations differ in their output), only C(.py)
    files, no C(__pycache__) and no hidden files or directories.
  - The file is named C(cairn-engine-<sha256>.zip) after the SHA-256 of its bytes and written
    once into O(cache_dir); a later call with the same sources returns the same file.
  - The archive holds the package as C(cairn/...) and a C(__main__.py), so it also runs as a
    zip application (C(python3 cairn-engine.zip --version)) and imports with zipimport
    (C(sys.path.insert(0, "cairn-engine.zip"))).
  - The C(cairn.backup.agent) role copies it to its hosts (one file, compared by checksum).
author:
  - cairn.backup contributors (@cairn-backup)
options:
  _terms:
    description:
      - The directory of the engine package (its name becomes the top-level package in the
        archive). At most one.
      - Default is the C(cairn) package of the collection that holds this plugin.
    type: list
    elements: path
    required: false
  cache_dir:
    description:
      - Where the archive is written.
      - Default is Ansible's temporary directory of this run on the controller (removed when the
        run ends); name a lasting directory to keep the archives.
    type: path
notes:
  - Runs on the controller only; reads no host.
'''

EXAMPLES = r'''
- name: Copy the engine to a host as one file (nothing is sent when it is unchanged)
  ansible.builtin.copy:
    src: "{{ lookup('cairn.backup.engine_archive') }}"
    dest: /usr/local/lib/cairn/cairn-engine.zip
    mode: "0644"

- name: Its SHA-256, from the file name
  ansible.builtin.debug:
    msg: "{{ lookup('cairn.backup.engine_archive') | basename | regex_search('[0-9a-f]{64}') }}"

- name: An engine from another directory, kept in a lasting cache
  ansible.builtin.debug:
    msg: "{{ lookup('cairn.backup.engine_archive', '/src/cairn/plugins/module_utils/cairn', cache_dir='/var/cache/cairn-build') }}"
'''

RETURN = r'''
_raw:
  description:
    - The path of the archive on the controller, C(<cache_dir>/cairn-engine-<sha256>.zip).
  type: list
  elements: path
  sample:
    - ~/.ansible/tmp/ansible-local-4242abcd/cairn-engine-3f1c...e9.zip
'''

import hashlib
import io
import os
import tempfile
import zipfile

from ansible import constants as C
from ansible.errors import AnsibleLookupError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.lookup import LookupBase

# what every entry gets, whatever the controller's clock, umask or file system says
FIXED_DATE = (1980, 1, 1, 0, 0, 0)
FILE_ATTR = (0o100644 << 16)        # a regular file, rw-r--r--
MAIN = b"# SPDX-License-Identifier: GPL-3.0-or-later\n" \
       b"# Run as a zip application: python3 cairn-engine.zip ARGS (the cairn CLI).\n" \
       b"from cairn.cli import main\n\nmain()\n"


def engine_dir():
    """The cairn package of the collection this plugin belongs to."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "module_utils", "cairn"))


def engine_files(src):
    """(name in the archive, path) of every .py file under src, sorted by name; the package keeps
    the directory's own name; no caches, no hidden files or directories."""
    package = os.path.basename(os.path.normpath(src))
    found = []
    for root, dirs, files in os.walk(src):
        dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
        for name in files:
            if name.endswith(".py") and not name.startswith("."):
                path = os.path.join(root, name)
                rel = os.path.relpath(path, src).replace(os.sep, "/")
                found.append((f"{package}/{rel}", path))
    return sorted(found)


def build_archive(src):
    """The archive's bytes: the same sources give the same bytes."""
    files = engine_files(src)
    if not any(name.endswith("/__init__.py") and name.count("/") == 1 for name, _path in files):
        raise ValueError(f"{src} is not a Python package (no __init__.py)")
    entries = [(name, _read(path)) for name, path in files] + [("__main__.py", MAIN)]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3          # Unix, so the mode bits count
            info.external_attr = FILE_ATTR
            z.writestr(info, data)
    return buf.getvalue()


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def write_archive(src, cache_dir):
    """Write the archive into cache_dir once, named by its SHA-256; return its path."""
    data = build_archive(src)
    path = os.path.join(cache_dir, f"cairn-engine-{hashlib.sha256(data).hexdigest()}.zip")
    if os.path.isfile(path) and os.path.getsize(path) == len(data) and _read(path) == data:
        return path
    os.makedirs(cache_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".cairn-engine-", suffix=".tmp", dir=cache_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)       # atomic: parallel forks see the whole file or none
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        if len(terms) > 1:
            raise AnsibleLookupError("engine_archive takes at most one directory")
        src = terms[0] if terms else engine_dir()
        cache_dir = self.get_option("cache_dir") or C.DEFAULT_LOCAL_TMP
        try:
            return [write_archive(src, cache_dir)]
        except (OSError, ValueError) as e:
            raise AnsibleLookupError(f"engine_archive: cannot build the engine archive from {src}: {to_native(e)}")
