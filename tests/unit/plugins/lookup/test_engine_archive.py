# SPDX-License-Identifier: GPL-3.0-or-later
"""The engine as one archive (lookup cairn.backup.engine_archive) and its unpacking on the host
(the agent role's files/unpack_engine.py): the same sources give the same bytes whatever their
times, modes and caches; the archive imports through zipimport; the unpacked copy replaces the
file-by-file layout and older engines, once."""
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
UNPACK = os.path.join(ROOT, "roles", "agent", "files", "unpack_engine.py")


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ea = _load("engine_archive", os.path.join(ROOT, "plugins", "lookup", "engine_archive.py"))


@pytest.fixture
def engine(tmp_path):
    """A small engine package: two modules, a subpackage, and what must stay out."""
    src = tmp_path / "src" / "cairn"
    (src / "backends" / "__pycache__").mkdir(parents=True)
    (src / "__init__.py").write_text('__version__ = "9.9"\n')
    (src / "cli.py").write_text("from .backends import base\n\n\ndef main():\n    print('cli', base.NAME)\n")
    (src / "backends" / "__init__.py").write_text("")
    (src / "backends" / "base.py").write_text('NAME = "base"\n')
    (src / "backends" / "__pycache__" / "base.cpython-311.pyc").write_bytes(b"junk")
    (src / "notes.txt").write_text("not python\n")
    (src / ".hidden.py").write_text("")
    return src


def test_same_sources_same_bytes(engine, tmp_path):
    first = ea.build_archive(str(engine))
    other = tmp_path / "elsewhere" / "cairn"
    shutil.copytree(engine, other)
    for d, _dirs, files in os.walk(other):
        for f in files:
            os.utime(os.path.join(d, f), (1e9, 1e9))
            os.chmod(os.path.join(d, f), 0o600)
    (other / "__pycache__").mkdir()
    (other / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"other junk")
    assert ea.build_archive(str(other)) == first
    (other / "cli.py").write_text((other / "cli.py").read_text() + "# changed\n")
    assert ea.build_archive(str(other)) != first


def test_entries_are_sorted_fixed_and_python_only(engine):
    with zipfile.ZipFile(__import__("io").BytesIO(ea.build_archive(str(engine)))) as z:
        infos = z.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names) == ["__main__.py", "cairn/__init__.py", "cairn/backends/__init__.py",
                                      "cairn/backends/base.py", "cairn/cli.py"]
    for i in infos:
        assert i.date_time == (1980, 1, 1, 0, 0, 0) and i.compress_type == zipfile.ZIP_STORED
        assert i.external_attr >> 16 == 0o100644 and i.create_system == 3


def test_written_once_named_by_hash(engine, tmp_path):
    path = ea.write_archive(str(engine), str(tmp_path / "cache"))
    data = open(path, "rb").read()
    assert os.path.basename(path) == f"cairn-engine-{hashlib.sha256(data).hexdigest()}.zip"
    mtime = os.stat(path).st_mtime_ns
    assert ea.write_archive(str(engine), str(tmp_path / "cache")) == path
    assert os.stat(path).st_mtime_ns == mtime
    assert sorted(os.listdir(tmp_path / "cache")) == [os.path.basename(path)]


def test_not_a_package(tmp_path):
    with pytest.raises(ValueError):
        ea.build_archive(str(tmp_path))


def test_lookup_plugin_returns_the_path(engine, tmp_path):
    from ansible import constants as C
    C.config.initialize_plugin_configuration_definitions("lookup", "engine_archive",
                                                         yaml.safe_load(ea.DOCUMENTATION)["options"])
    lookup = ea.LookupModule()
    lookup._load_name = "engine_archive"
    [path] = lookup.run([str(engine)], variables={}, cache_dir=str(tmp_path / "c"))
    assert path == ea.write_archive(str(engine), str(tmp_path / "c"))


def test_the_collections_engine_runs_from_the_archive(tmp_path):
    """The real engine through zipimport: as a zip application and from sys.path."""
    path = ea.write_archive(ea.engine_dir(), str(tmp_path))
    env = dict(os.environ, PYTHONPATH="")
    r = subprocess.run([sys.executable, "-s", path, "--version"], capture_output=True, text=True, env=env, check=False)
    assert r.returncode == 0 and r.stdout.startswith("cairn "), r.stderr
    code = (f"import sys; sys.path.insert(0, {path!r}); import cairn.cli, cairn.librsync, cairn.backends.sftp, "
            "cairn.job; print(cairn.cli.__file__)")
    r = subprocess.run([sys.executable, "-s", "-c", code], capture_output=True, text=True, env=env, check=False)
    assert r.returncode == 0 and r.stdout.strip() == os.path.join(path, "cairn", "cli.py"), r.stderr


def _unpack(archive, lib, digest):
    r = subprocess.run([sys.executable, UNPACK, str(archive), str(lib), digest], capture_output=True, text=True,
                       check=False)
    return r.returncode, (json.loads(r.stdout) if r.returncode == 0 else r.stderr)


def test_unpack_replaces_the_old_layouts_once(engine, tmp_path):
    lib = tmp_path / "lib"
    (lib / "cairn" / "backends").mkdir(parents=True)            # the file-by-file layout
    (lib / "cairn" / "stale.py").write_text("")
    (lib / "engine-0123456789abcdef" / "cairn").mkdir(parents=True)     # an old engine
    (lib / "engine-fedcba9876543210" / "cairn").mkdir(parents=True)     # the current one until now
    (lib / ".engine-x1y2z3" / "cairn").mkdir(parents=True)              # a half-built one
    os.utime(lib / "engine-0123456789abcdef", (1e9, 1e9))
    (lib / "keep.txt").write_text("not ours to remove")
    archive = lib / "cairn-engine.zip"
    archive.write_bytes(ea.build_archive(str(engine)))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()

    rc, out = _unpack(archive, lib, digest)
    assert rc == 0 and out["changed"] and out["removed"] == [".engine-x1y2z3", "cairn", "engine-0123456789abcdef"]
    assert out["kept"] == "engine-fedcba9876543210"
    final = lib / f"engine-{digest[:16]}"
    assert sorted(os.listdir(lib)) == ["cairn-engine.zip", f"engine-{digest[:16]}", "engine-fedcba9876543210", "keep.txt"]
    assert sorted(os.listdir(final / "cairn")) == ["__init__.py", "__pycache__", "backends", "cli.py"]
    assert oct(os.stat(final / "cairn").st_mode & 0o777) == "0o755"
    assert oct(os.stat(final / "cairn" / "cli.py").st_mode & 0o777) == "0o644"
    r = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(final)!r}); "
                        "import cairn.cli; cairn.cli.main()"], capture_output=True, text=True, check=False)
    assert r.stdout == "cli base\n", r.stderr

    rc, out = _unpack(archive, lib, digest)
    assert rc == 0 and out == {"changed": False, "engine": str(final), "kept": None, "removed": []}
    assert "engine-fedcba9876543210" in os.listdir(lib)

    # the next engine: the previous one (this) stays, the one before goes
    (engine / "cli.py").write_text((engine / "cli.py").read_text() + "# next\n")
    archive.write_bytes(ea.build_archive(str(engine)))
    digest2 = hashlib.sha256(archive.read_bytes()).hexdigest()
    os.utime(lib / "engine-fedcba9876543210", (1e9, 1e9))
    rc, out = _unpack(archive, lib, digest2)
    assert rc == 0 and out["kept"] == f"engine-{digest[:16]}" and out["removed"] == ["engine-fedcba9876543210"]
    assert sorted(os.listdir(lib)) == ["cairn-engine.zip", f"engine-{digest[:16]}", f"engine-{digest2[:16]}", "keep.txt"]


def test_unpack_refuses_another_archive(engine, tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    archive = lib / "cairn-engine.zip"
    archive.write_bytes(ea.build_archive(str(engine)))
    rc, err = _unpack(archive, lib, "0" * 64)
    assert rc != 0 and "expected" in err
    assert os.listdir(lib) == ["cairn-engine.zip"]
