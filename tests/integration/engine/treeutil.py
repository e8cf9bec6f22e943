# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers for engine integration tests: hard trees, tree snapshots, running both tools."""
import hashlib
import os
import stat
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PASSPHRASE = "correct horse battery staple"


def snapshot(root, owners=None):
    """{relpath bytes: (type, mode, mtime, content sha1 / link target, uid, gid)} of a tree."""
    owners = os.geteuid() == 0 if owners is None else owners
    root = os.fsencode(root)
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            m = st.st_mode
            if stat.S_ISREG(m):
                h = hashlib.sha1()
                with open(p, "rb") as f:
                    for b in iter(lambda: f.read(1 << 20), b""):
                        h.update(b)
                what = ("reg", h.hexdigest())
            elif stat.S_ISLNK(m):
                what = ("sym", os.readlink(p))
            elif stat.S_ISDIR(m):
                what = ("dir", None)
            elif stat.S_ISFIFO(m):
                what = ("fifo", None)
            else:
                what = ("other", st.st_rdev)
            mode = None if stat.S_ISLNK(m) else stat.S_IMODE(m)
            mtime = None if stat.S_ISLNK(m) else int(st.st_mtime)
            own = (st.st_uid, st.st_gid) if owners else None
            out[rel] = (what, mode, mtime, own)
    return out


def diff_snapshots(a, b):
    """Readable list of differences (empty when equal)."""
    diffs = []
    for k in sorted(set(a) | set(b)):
        if k not in a:
            diffs.append(f"extra {k!r}")
        elif k not in b:
            diffs.append(f"missing {k!r}")
        elif a[k] != b[k]:
            diffs.append(f"{k!r}: {a[k]} != {b[k]}")
    return diffs


def write(path, data, mtime=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def make_hard_tree(root, volsize_mib=1):
    """A tree with every awkward case the engine must carry."""
    root = os.fsencode(root)
    os.makedirs(root, exist_ok=True)

    def j(*p):
        return os.path.join(root, *[x if isinstance(x, bytes) else x.encode() for x in p])
    write(j("plain.txt"), b"hello\n")
    write(j("name with spaces.txt"), b"spaces\n")
    write(j("new\nline"), b"newline in name\n")
    write(j(b"latin1-\xe9\xff.bin"), b"non-utf8 name\n")
    write(j("quote\"and'back\\slash"), b"quotes\n")
    long_comp = "c" * 200
    write(j("deep", long_comp, "d" * 200, "leaf.txt"), b"path over 255 bytes\n")
    write(j("empty"), b"")
    big = os.urandom(volsize_mib * 3 * (1 << 20) + 12345)
    write(j("sub", "big.bin"), big)
    write(j("sub", "exact64k.bin"), os.urandom(65536))
    with open(j("sparse.img"), "wb") as f:
        f.truncate(20 << 20)
        f.seek(5 << 20)
        f.write(b"data in the middle")
    os.symlink(b"plain.txt", j("link-to-plain"))
    os.symlink(b"does/not/exist", j("dangling"))
    os.symlink(b"/etc/hostname", j("absolute-link"))
    os.mkfifo(j("fifo"))
    os.makedirs(j("empty-dir"))
    os.chmod(j("plain.txt"), 0o640)
    os.chmod(j("empty-dir"), 0o750)
    os.utime(j("plain.txt"), (1_600_000_000, 1_600_000_000))
    if os.geteuid() == 0:      # ownership other than the restoring user's must come back
        os.lchown(j("plain.txt"), 65534, 65534)
        os.lchown(j("empty-dir"), 65534, 0)
        os.lchown(j("link-to-plain"), 65534, 65534)
    return root


def cairn(*args, env=None, check=True, input=None, passphrase=PASSPHRASE):
    e = dict(os.environ)
    e["PYTHONPATH"] = os.path.join(ROOT, "plugins", "module_utils")
    if passphrase is not None:
        e["PASSPHRASE"] = passphrase
    e.update(env or {})
    r = subprocess.run([sys.executable, "-m", "cairn.cli", *map(_s, args)], env=e, input=input,
                       capture_output=True, check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"cairn {args} failed ({r.returncode}):\n{r.stderr.decode(errors='replace')}")
    return r


def duplicity(bin_, *args, env=None, check=True, passphrase=PASSPHRASE):
    e = dict(os.environ)
    if passphrase is not None:
        e["PASSPHRASE"] = passphrase
    e.update(env or {})
    r = subprocess.run([bin_, *map(_s, args)], env=e, capture_output=True, check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"duplicity {args} failed ({r.returncode}):\n"
                             f"{r.stdout.decode(errors='replace')}\n{r.stderr.decode(errors='replace')}")
    return r


def _s(a):
    return os.fsdecode(a) if isinstance(a, bytes) else str(a)
