# -*- coding: utf-8 -*-
# Copyright: cairn.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unpack the cairn engine archive next to it and compile it, on the host (cairn.backup.agent).

    python3 unpack_engine.py ARCHIVE LIB_DIR SHA256

Checks the archive against SHA256, unpacks its package into LIB_DIR/engine-<first 16 hex>/
(built aside, compiled with this host's Python, then renamed into place: a directory of that name
is always complete), and removes what older installs left in LIB_DIR: the package directory of
the file-by-file layout (LIB_DIR/cairn) and the engine directories of other versions, except the
one that was current until now (processes started from it still import from it). The cairn
command imports from that directory and, while it is missing, from the archive itself. The agent
role runs this only when the archive or the command changed. Prints one JSON line.
"""
import compileall
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
import zipfile


def unpack(archive, lib_dir, digest):
    with open(archive, "rb") as f:
        actual = hashlib.sha256(f.read()).hexdigest()
    if actual != digest:
        raise SystemExit(f"unpack_engine: {archive} has SHA-256 {actual}, expected {digest}")
    final = os.path.join(lib_dir, "engine-" + digest[:16])
    created = False
    if not os.path.isdir(final):
        tmp = tempfile.mkdtemp(prefix=".engine-", dir=lib_dir)
        try:
            with zipfile.ZipFile(archive) as z:
                for name in z.namelist():
                    parts = name.split("/")
                    if parts[0] != "cairn" or name.endswith("/"):
                        continue            # __main__.py is for running the archive itself
                    if name.startswith("/") or ".." in parts or "" in parts:
                        raise SystemExit(f"unpack_engine: unsafe name in the archive: {name!r}")
                    dest = os.path.join(tmp, *parts)
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    with z.open(name) as src, open(dest, "wb") as out:
                        shutil.copyfileobj(src, out)
            if not compileall.compile_dir(os.path.join(tmp, "cairn"), quiet=1):
                raise SystemExit("unpack_engine: the engine does not compile with " + sys.version.split()[0])
            for root, dirs, files in os.walk(tmp):
                os.chmod(root, 0o755)
                for name in files:
                    os.chmod(os.path.join(root, name), 0o644)
            os.rename(tmp, final)
            created = True
        finally:
            if os.path.isdir(tmp):
                shutil.rmtree(tmp)
    # when a new engine arrives, the one that was current until now stays for the processes still
    # running from it (a job's later steps import from it) until the next one; older ones go.
    # Half-built ones and the file-by-file layout always go.
    dirs = [n for n in os.listdir(lib_dir) if stat.S_ISDIR(os.lstat(os.path.join(lib_dir, n)).st_mode)]
    others = [n for n in dirs if n.startswith("engine-") and os.path.join(lib_dir, n) != final]
    previous = max(others, key=lambda n: os.lstat(os.path.join(lib_dir, n)).st_mtime, default=None) if created else None
    removed = []
    for name in sorted(dirs):
        if name == "cairn" or name.startswith(".engine-") or (created and name in others and name != previous):
            shutil.rmtree(os.path.join(lib_dir, name))
            removed.append(name)
    return {"changed": created or bool(removed), "engine": final, "kept": previous, "removed": removed}


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    print(json.dumps(unpack(*sys.argv[1:4])))


if __name__ == "__main__":
    main()
