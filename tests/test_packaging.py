"""The distribution: one import name, ``tokrace``, and nothing lost on the way into the wheel.

The wheel is built once per module, offline (``--no-build-isolation`` with the setuptools of the test
extra), from a copy of the source tree in a temporary folder, so no ``build/`` or ``*.egg-info`` lands
in the checkout and a concurrent build there cannot interfere.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path, PurePosixPath

import pytest

import tokrace

ROOT = Path(__file__).resolve().parents[1]
# The design card's folders, installed as tokrace.<name> through the links in tokrace/.
LINKED = ("backends", "cli", "model_registry", "speedlog", "tui")
PACKAGE_DATA = ("tokrace/tui/tokrace.tcss", "tokrace/model_registry/catalog.toml")
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache",
    ".mypy_cache", "*.gguf", "tests", "screenshots", "bench",
)


def _source_py_files() -> set[str]:
    """Every module of the source tree, by its path in the wheel (tokrace/cli/main.py, ...)."""
    found: set[str] = set()
    for top, prefix in [*((name, f"tokrace/{name}") for name in LINKED), ("tokrace", "tokrace")]:
        base = ROOT / top
        for dirpath, dirnames, filenames in os.walk(base):  # never into tokrace/'s links
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            rel = Path(dirpath).relative_to(base)
            found.update(str(PurePosixPath(prefix, *rel.parts, f)) for f in filenames if f.endswith(".py"))
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=_NOT_SOURCE)  # tokrace/cli stays a link to ../cli
    out = tmp / "dist"
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
def names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


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
