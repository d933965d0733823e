"""The layering the design card asks for:

    registry → application layer (tokrace.session, race_setup, bench, settings) → backend → events
    → UI (tui) / CLI (cli) / speed log

- domain packages (backends, model_registry, speedlog) never import the UI, the CLI or the
  application layer, nor textual;
- model_registry never imports backends (a path flows down, never a backend up);
- backends never import speedlog (the log records replies; it is not written by the engine), nor the
  registry's resolving and downloading modules (the application layer hands them a path);
- speedlog never drives the engine (no llama_cpp_backend, speculative or bench_engine);
- tui never imports cli (the CLI starts the TUI, not the other way round);
- between tokrace's packages and modules, imports go one way.

Those are import-linter contracts (``.importlinter`` at the root): grimp reads every import of the
``tokrace`` package, top level and inside functions, through its links (``tokrace/cli -> ../cli``),
and indirect imports count too. A contract whose package is missing is an error, never a pass. What
import-linter cannot say (a name imported from a module, a ``Binding`` without an id) is read here with
``ast`` and text, and each of those checks fails when it finds fewer files than the package has.
"""

from __future__ import annotations

import ast
import configparser
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = ("backends", "model_registry", "speedlog")
CONTRACTS = ("domain-below-front-ends", "registry-below-backends", "backends-neither-log-nor-resolve",
             "speedlog-does-not-drive-the-engine", "tui-does-not-import-cli", "no-package-cycles")
MIN_FILES = {"cli": 10, "tui": 20}
"""Fewer modules than this in a scanned folder means the scan missed it (the sdist had lost it once)."""


def _contract_ids() -> list[str]:
    config = configparser.ConfigParser()
    assert config.read(ROOT / ".importlinter"), "no .importlinter at the repository root"
    return [s.removeprefix("importlinter:contract:") for s in config.sections()
            if s.startswith("importlinter:contract:")]


def test_every_contract_is_declared() -> None:
    assert sorted(_contract_ids()) == sorted(CONTRACTS)


@pytest.mark.parametrize("contract", CONTRACTS)
def test_import_contract(contract: str) -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    assert lint.is_file(), f"no {lint}: install the test extra (import-linter)"
    proc = subprocess.run([str(lint), "--config", str(ROOT / ".importlinter"), "--contract", contract,
                           "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "1 kept, 0 broken" in proc.stdout


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every import in ``path``, wherever it stands (``from x import y`` gives x and
    x.y, since y may be a module)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def sources(package: str) -> list[Path]:
    """The modules of root folder ``package``; fails when there are fewer than it has (a scan of
    nothing must not pass)."""
    found = sorted((ROOT / package).rglob("*.py"))
    assert len(found) >= MIN_FILES.get(package, 1), f"{package}/: {len(found)} modules found"
    return found


def offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sources(package):
        for line, module in imports_of(path):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(ROOT)}:{line}: {module}")
    return found


def test_domain_modules_never_import_textual() -> None:
    code = f"""
import importlib, pkgutil, sys
for pkg_name in {tuple("tokrace." + d for d in DOMAIN)!r}:
    pkg = importlib.import_module(pkg_name)
    for info in pkgutil.walk_packages(pkg.__path__, pkg_name + "."):
        importlib.import_module(info.name)
leaked = sorted(m for m in sys.modules if m == "textual" or m.startswith("textual."))
print(len([m for m in sys.modules if m.startswith("tokrace.")]), leaked[:3])
assert not leaked, leaked
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    imported = int(proc.stdout.split()[0])
    assert imported >= 20  # every module was really imported


def test_front_ends_load_through_the_application_layer() -> None:
    """No front end builds, places or records a backend itself: that is ``tokrace.session``'s job.
    (Registry commands such as ``models pull`` and ``plan`` still resolve models: nothing is loaded.)
    Names, not only modules: ``from tokrace.backends.placement import place`` is wiring,
    ``... import PlacementRequest`` is not."""
    wiring = ("tokrace.backends.draft_setup", "tokrace.backends.placement.place",
              "tokrace.backends.llama_cpp_backend", "tokrace.backends.speculative",
              "tokrace.speedlog.recorder", "tokrace.speedlog.SessionRecorder")
    assert offenders("cli", wiring) + offenders("tui", wiring) == []


def test_every_binding_has_an_id() -> None:
    """Bindings with ids can be remapped by users (Textual's keymap); none may be left without."""
    lines = [(p, n, line) for p in sources("tui") for n, line in enumerate(p.read_text().splitlines(), 1)
             if "Binding(" in line and "import" not in line]
    assert len(lines) >= 10  # the app's bindings were found
    missing = [f"{p.relative_to(ROOT)}:{n}" for p, n, line in lines if "id=" not in line]
    assert missing == []
