"""The layering the design card asks for, checked on every import statement (top level and inside
functions, read with ``ast``), plus a fresh interpreter for what importing really pulls in.

    registry → application layer (tokrace.session, race_setup, bench, settings) → backend → events
    → UI (tui) / CLI (cli) / speed log

- domain packages (backends, model_registry, speedlog) never import the UI, the CLI or the
  application layer, nor textual;
- model_registry never imports backends (a path flows down, never a backend up);
- backends never import speedlog (the log records replies; it is not written by the engine), nor the
  registry's resolving and downloading modules (the application layer hands them a path);
- speedlog never drives the engine (no llama_cpp_backend, speculative or bench_engine);
- tui never imports cli (the CLI starts the TUI, not the other way round).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = ("backends", "model_registry", "speedlog")
APP_LAYER = ("tokrace.session", "tokrace.race_setup", "tokrace.bench", "tokrace.settings")
RESOLVING = ("tokrace.model_registry.resolve", "tokrace.model_registry.hf_download",
             "tokrace.model_registry.pypi_source", "tokrace.model_registry.hub",
             "tokrace.model_registry.transfer", "tokrace.model_registry.store")
ENGINE = ("tokrace.backends.llama_cpp_backend", "tokrace.backends.speculative",
          "tokrace.backends.bench_engine", "tokrace.backends.draft_setup", "llama_cpp")


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


def offenders(package: str, forbidden: tuple[str, ...], *, allow: tuple[str, ...] = ()) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in imports_of(path):
            hit = any(module == f or module.startswith(f + ".") for f in forbidden)
            allowed = any(str(path.relative_to(ROOT)) == a for a in allow)
            if hit and not allowed:
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


def test_domain_packages_do_not_import_cli_tui_or_the_application_layer() -> None:
    forbidden = ("tokrace.cli", "tokrace.tui", "textual", *APP_LAYER)
    assert [o for pkg in DOMAIN for o in offenders(pkg, forbidden)] == []


def test_registry_does_not_depend_on_backends() -> None:
    """Data flows registry → backend: model_registry must not import backends."""
    assert offenders("model_registry", ("tokrace.backends",)) == []


def test_backends_neither_log_nor_resolve() -> None:
    assert offenders("backends", ("tokrace.speedlog", *RESOLVING)) == []


def test_speedlog_does_not_drive_the_engine() -> None:
    # hardware.py asks the llama.cpp build what it is (system info, build commit): a reading, not a run.
    assert offenders("speedlog", ENGINE, allow=("speedlog/hardware.py",)) == []


def test_tui_does_not_import_cli() -> None:
    assert offenders("tui", ("tokrace.cli",)) == []


def test_front_ends_load_through_the_application_layer() -> None:
    """No front end builds, places or records a backend itself: that is ``tokrace.session``'s job.
    (Registry commands such as ``models pull`` and ``plan`` still resolve models: nothing is loaded.)"""
    wiring = ("tokrace.backends.draft_setup", "tokrace.backends.placement.place",
              "tokrace.backends.llama_cpp_backend", "tokrace.backends.speculative",
              "tokrace.speedlog.recorder", "tokrace.speedlog.SessionRecorder")
    assert offenders("cli", wiring) + offenders("tui", wiring) == []


def test_no_package_import_cycles() -> None:
    """Between packages, imports go one way (function-level imports included)."""
    packages = ("backends", "model_registry", "speedlog", "cli", "tui")
    edges: set[tuple[str, str]] = set()
    for pkg in packages:
        for path in (ROOT / pkg).rglob("*.py"):
            for _, module in imports_of(path):
                parts = module.split(".")
                if parts[0] == "tokrace" and len(parts) > 1 and parts[1] in packages and parts[1] != pkg:
                    edges.add((pkg, parts[1]))
    cycles = [(a, b) for a, b in edges if (b, a) in edges]
    assert cycles == []


def test_every_binding_has_an_id() -> None:
    """Bindings with ids can be remapped by users (Textual's keymap); none may be left without."""
    missing = [
        f"{p.relative_to(ROOT)}:{n}" for p in (ROOT / "tui").rglob("*.py")
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if "Binding(" in line and "import" not in line and "id=" not in line
    ]
    assert missing == []
