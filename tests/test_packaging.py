"""The distribution: one import name, ``tokrace``, and nothing lost on the way into the sdist or the wheel.

Everything is built offline (the setuptools of the test extra, ``--no-build-isolation``) from a copy of
the source tree in a temporary folder, so no ``build/`` or ``*.egg-info`` lands in the checkout and a
concurrent build there cannot interfere. The wheel is built twice: from the tree (``pip install .``) and
from the unpacked sdist (``pip install tokrace-X.tar.gz``); every wheel test runs on both.
"""

from __future__ import annotations

import filecmp
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path, PurePosixPath

import pytest

import tokrace

ROOT = Path(__file__).resolve().parents[1]
# The design card's folders, installed as tokrace.<name> through the links in tokrace/.
LINKED = ("backends", "cli", "model_registry", "speedlog", "tui")
# What else the sdist carries whole (MANIFEST.in): the tests run from it, the bench scripts, README's images.
SDIST_FOLDERS = (*LINKED, "tokrace", "tests", "bench", "scripts", "screenshots")
SDIST_FILES = ("README.md", "LICENSE", "pyproject.toml", "MANIFEST.in", ".importlinter")
# Written by the build itself, not copied from the tree.
SDIST_GENERATED = ("PKG-INFO", "setup.cfg", "tokrace.egg-info/")
PACKAGE_DATA = ("tokrace/tui/tokrace.tcss", "tokrace/model_registry/catalog.toml")
_JUNK_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"}
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", ".gpukit", "*.gguf", "*.pyc", *_JUNK_DIRS,
)


def _files_under(top: str) -> set[str]:
    """Every file below ``ROOT / top`` by its path from ROOT, minus caches and model files; a link
    to a folder (tokrace/cli) is not followed."""
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(ROOT / top):
        dirnames[:] = [d for d in dirnames if d not in _JUNK_DIRS]
        rel = Path(dirpath).relative_to(ROOT)
        found.update(str(PurePosixPath(*rel.parts, f)) for f in filenames
                     if not f.endswith((".pyc", ".gguf")))
    return found


def _source_py_files() -> set[str]:
    """Every module of the source tree, by its path in the wheel (tokrace/cli/main.py, ...)."""
    found = {f for f in _files_under("tokrace") if f.endswith(".py")}
    for name in LINKED:
        found.update(f"tokrace/{f}" for f in _files_under(name) if f.endswith(".py"))
    return found


def _build_sdist(src: Path, out: Path) -> Path:
    code = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    proc = subprocess.run([sys.executable, "-c", code, str(out)], cwd=src, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"sdist build failed (setuptools>=77 in the venv?):\n{proc.stderr}"
    name = proc.stdout.strip().splitlines()[-1]
    assert name == f"tokrace-{tokrace.__version__}.tar.gz"
    return out / name


def _build_wheel(src: Path, out: Path) -> Path:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "-q", "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"pip wheel failed (setuptools>=77 in the venv?):\n{proc.stderr}"
    wheels = list(out.glob("*.whl"))
    assert [w.name for w in wheels] == [f"tokrace-{tokrace.__version__}-py3-none-any.whl"]
    return wheels[0]


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("packaging") / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=_NOT_SOURCE)  # tokrace/cli stays a link to ../cli
    return src


@pytest.fixture(scope="module")
def sdist(source_copy: Path) -> Path:
    return _build_sdist(source_copy, source_copy.parent / "sdist")


@pytest.fixture(scope="module")
def unpacked_sdist(sdist: Path) -> Path:
    target = sdist.parent / "unpacked"
    with tarfile.open(sdist) as tf:
        tf.extractall(target, filter="data")  # what pip does: no links out, no absolute paths
    (top,) = target.iterdir()
    return top


@pytest.fixture(scope="module")
def sdist_members(sdist: Path) -> dict[str, tarfile.TarInfo]:
    """The sdist's members by path inside its top folder (``tokrace/cli/main.py``)."""
    prefix = f"tokrace-{tokrace.__version__}/"
    with tarfile.open(sdist) as tf:
        members = tf.getmembers()
    assert all(m.name.startswith(prefix) or m.name + "/" == prefix for m in members)
    return {m.name.removeprefix(prefix): m for m in members if m.name + "/" != prefix}


@pytest.fixture(scope="module", params=["tree", "sdist"])
def wheel(request: pytest.FixtureRequest, source_copy: Path) -> Path:
    """The wheel built from the source tree, and the one built from the unpacked sdist."""
    if request.param == "tree":
        return _build_wheel(source_copy, source_copy.parent / "wheel-from-tree")
    src: Path = request.getfixturevalue("unpacked_sdist")
    return _build_wheel(src, src.parent.parent / "wheel-from-sdist")


@pytest.fixture(scope="module")
def names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def test_the_sdist_is_the_source_tree(sdist_members: dict[str, tarfile.TarInfo]) -> None:
    """Root folders, tests with their helpers and snapshots, bench and scripts, tokrace/ with a copy of
    every linked folder, README and LICENSE: nothing missing, nothing extra."""
    expected = {f for top in SDIST_FOLDERS for f in _files_under(top)} | set(SDIST_FILES)
    for name in LINKED:  # tokrace/cli is a link in the tree, a folder of copies in the sdist
        expected.update(f"tokrace/{f}" for f in _files_under(name))
    files = {n for n, m in sdist_members.items() if m.isfile() and not n.startswith(SDIST_GENERATED)}
    assert {"tests/conftest.py", "tests/tiny_gguf.py", "tests/scripted_gguf.py", "tests/scripted_backend.py",
            "cli/main.py", "tokrace/cli/main.py", "bench/cold_start.py", "scripts/test",
            *PACKAGE_DATA} <= files
    assert any(f.startswith("tests/__snapshots__/") and f.endswith(".svg") for f in files)
    assert sorted(expected - files) == []
    assert sorted(files - expected) == []
    odd = sorted(n for n, m in sdist_members.items() if not (m.isfile() or m.isdir()))
    assert odd == []  # links are stored as copies: an sdist unpacks the same everywhere


def test_the_sdist_copies_of_linked_folders_are_identical(unpacked_sdist: Path) -> None:
    for name in LINKED:
        linked = unpacked_sdist / "tokrace" / name
        assert linked.is_dir() and not linked.is_symlink()
        files = [f.removeprefix(f"{name}/") for f in _files_under(name)]
        match, mismatch, errors = filecmp.cmpfiles(unpacked_sdist / name, linked, files, shallow=False)
        assert (mismatch, errors) == ([], [])
        assert len(match) == len(files) > 0


def test_the_sdist_tests_collect(unpacked_sdist: Path) -> None:
    """The sdist's test suite finds its helpers and imports tokrace from the sdist itself (the full
    run from an unpacked sdist is done by hand: it takes minutes)."""
    code = ("import sys, pytest, tokrace; "
            "assert tokrace.__file__.startswith(sys.argv[1]), tokrace.__file__; "
            "sys.exit(pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', 'tests']))")
    proc = subprocess.run([sys.executable, "-c", code, str(unpacked_sdist)], cwd=unpacked_sdist,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(unpacked_sdist)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    collected = [line for line in proc.stdout.splitlines() if "::" in line]
    assert len(collected) > 500
    assert not any(line.startswith("ERROR") for line in proc.stdout.splitlines())


def _dist_info() -> str:
    return f"tokrace-{tokrace.__version__}.dist-info"


def _read(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(name).decode("utf-8")


def test_tokrace_is_the_only_top_level(wheel: Path, names: set[str]) -> None:
    assert {n.split("/", 1)[0] for n in names} == {"tokrace", _dist_info()}
    top_level = f"{_dist_info()}/top_level.txt"
    if top_level in names:  # setuptools writes it; other backends may not
        assert _read(wheel, top_level).split() == ["tokrace"]


def test_every_module_is_in_the_wheel_and_nothing_else(names: set[str]) -> None:
    source = _source_py_files()
    assert {"tokrace/__init__.py", "tokrace/__main__.py", "tokrace/cli/main.py"} <= source
    in_wheel = {n for n in names if n.endswith(".py")}
    assert sorted(source - in_wheel) == []  # e.g. a sub-folder without __init__.py
    assert sorted(in_wheel - source) == []  # e.g. a stale copy from an old build/


def test_package_data_is_in_the_wheel(wheel: Path, names: set[str]) -> None:
    for name in PACKAGE_DATA:
        assert name in names
        assert _read(wheel, name) == (ROOT / name.removeprefix("tokrace/")).read_text(encoding="utf-8")


def test_license_and_metadata(wheel: Path, names: set[str]) -> None:
    assert f"{_dist_info()}/licenses/LICENSE" in names
    assert _read(wheel, f"{_dist_info()}/licenses/LICENSE") == (ROOT / "LICENSE").read_text(encoding="utf-8")
    meta: Message = HeaderParser().parsestr(_read(wheel, f"{_dist_info()}/METADATA"))
    assert meta["Name"] == "tokrace"
    assert meta["Version"] == tokrace.__version__
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert meta["License"] is None  # the SPDX expression replaces the legacy field
    entry_points = _read(wheel, f"{_dist_info()}/entry_points.txt")
    assert "tokrace = tokrace.cli.main:main" in entry_points.splitlines()


def _module_name(wheel_path: str) -> str:
    """tokrace/cli/main.py → tokrace.cli.main; tokrace/cli/__init__.py → tokrace.cli."""
    parts = PurePosixPath(wheel_path).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_the_wheel_imports_on_its_own(wheel: Path, names: set[str], tmp_path: Path) -> None:
    """Every module imports from the unpacked wheel alone: none still reaches a root folder
    (``import backends``) that only exists in a checkout."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    code = f"""
import importlib, json, pkgutil, sys
import tokrace
assert tokrace.__file__.startswith(sys.argv[1]), tokrace.__file__
names = [i.name for i in pkgutil.walk_packages(tokrace.__path__, "tokrace.")]
for name in names:
    if name != "tokrace.__main__":
        importlib.import_module(name)
stray = sorted({{m.split(".")[0] for m in sys.modules}} & {set(LINKED)!r})
assert not stray, stray
print(json.dumps(names))
"""
    # Run outside the checkout (whose root folders would be importable from the working directory);
    # PYTHONPATH comes before the editable install's finder, which sys.meta_path tries last.
    proc = subprocess.run([sys.executable, "-c", code, str(site)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stderr
    expected = {_module_name(n) for n in names if n.endswith(".py")} - {"tokrace"}
    assert sorted(json.loads(proc.stdout)) == sorted(expected)


def _version_line() -> str:
    return f"tokrace {tokrace.__version__}"


def test_python_m_tokrace_version() -> None:
    proc = subprocess.run([sys.executable, "-m", "tokrace", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == _version_line()


def test_console_script_version() -> None:
    script = Path(sys.executable).parent / "tokrace"
    assert script.is_file(), f"no console script at {script}: is tokrace installed in this environment?"
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == _version_line()


def test_installed_version_is_the_package_version() -> None:
    assert tokrace.__version__ == importlib.metadata.version("tokrace")
