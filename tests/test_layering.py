"""Domain packages stay importable without the UI: no module of backends/, model_registry/ or
speedlog/ imports textual (checked in a fresh interpreter, importing every module)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = ("backends", "model_registry", "speedlog")


def test_domain_modules_never_import_textual() -> None:
    code = f"""
import importlib, pkgutil, sys
for pkg_name in {DOMAIN!r}:
    pkg = importlib.import_module(pkg_name)
    for info in pkgutil.walk_packages(pkg.__path__, pkg_name + "."):
        importlib.import_module(info.name)
leaked = sorted(m for m in sys.modules if m == "textual" or m.startswith("textual."))
print(len([m for m in sys.modules if m.startswith({DOMAIN!r})]), leaked[:3])
assert not leaked, leaked
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    imported = int(proc.stdout.split()[0])
    assert imported >= 20  # every module was really imported


def test_registry_does_not_depend_on_backends() -> None:
    """Data flows registry → backend: model_registry must not import backends."""
    offenders = [
        str(p.relative_to(ROOT)) for p in (ROOT / "model_registry").rglob("*.py")
        if any(line.lstrip().startswith(("from backends", "import backends"))
               for line in p.read_text().splitlines())
    ]
    assert offenders == []


def test_domain_packages_do_not_import_cli_or_tui() -> None:
    """backends/, model_registry/ and speedlog/ sit below the CLI and the UI, never above them."""
    offenders = []
    for pkg in DOMAIN:
        for p in (ROOT / pkg).rglob("*.py"):
            for line in p.read_text().splitlines():
                if line.lstrip().startswith(("from cli", "import cli", "from tui", "import tui")):
                    offenders.append(f"{p.relative_to(ROOT)}: {line.strip()}")
    assert offenders == []


def test_every_binding_has_an_id() -> None:
    """Bindings with ids can be remapped by users (Textual's keymap); none may be left without."""
    missing = [
        f"{p.relative_to(ROOT)}:{n}" for p in (ROOT / "tui").rglob("*.py")
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if "Binding(" in line and "import" not in line and "id=" not in line
    ]
    assert missing == []
