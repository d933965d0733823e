"""Every error says what failed: each ``TokraceError(...)`` in the package's source names a ``kind`` from
``model_registry.errors.KINDS`` (read with ``ast``, the links under ``tokrace/`` followed), and each
subclass sets one. Code branches on kinds; a raise without one would be the catch-all ``error``."""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path

import tokrace
from tokrace.model_registry.errors import KINDS

PACKAGE = Path(tokrace.__file__).resolve().parent


def _modules() -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(Path(tokrace.__file__).parent, followlinks=True):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        found += [Path(dirpath, f) for f in filenames if f.endswith(".py")]
    assert len(found) > 80, f"only {len(found)} modules under {PACKAGE}"  # the links were followed
    return sorted(found)


def _subclasses() -> dict[str, ast.expr | None]:
    """Every class deriving from ``TokraceError`` in the package (directly or through another), with the
    value its body gives ``kind`` (``None``: it does not set one)."""
    classes: dict[str, tuple[set[str], ast.expr | None]] = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ClassDef):
                kind = next((stmt.value for stmt in node.body if isinstance(stmt, ast.Assign)
                             and any(getattr(t, "id", None) == "kind" for t in stmt.targets)), None)
                classes[node.name] = ({getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}, kind)
    found: dict[str, ast.expr | None] = {}
    while True:
        more = {name: kind for name, (bases, kind) in classes.items()
                if name not in found and bases & {"TokraceError", *found}}
        if not more:
            return found
        found |= more


def _constructions() -> Iterator[tuple[str, ast.Call]]:
    """(``path:line``, call) of every ``TokraceError(...)`` or subclass call in the package."""
    names = {"TokraceError", *_subclasses()}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if name in names:
                    yield f"{path.relative_to(PACKAGE.parent)}:{node.lineno}", node


def _kind(call: ast.Call) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == "kind"), None)


def test_every_tokrace_error_names_its_kind() -> None:
    calls = list(_constructions())
    plain = [(where, call) for where, call in calls
             if (getattr(call.func, "id", None) or getattr(call.func, "attr", None)) == "TokraceError"]
    assert len(plain) > 100  # the scan found the package's raises
    missing = [where for where, call in plain if _kind(call) is None]
    assert missing == []
    unknown = [f"{where}: {ast.unparse(kind)}" for where, call in calls if (kind := _kind(call)) is not None
               and not (isinstance(kind, ast.Constant) and kind.value in KINDS)]
    assert unknown == []  # a literal from KINDS, so a reader sees it and a typo cannot pass


def test_every_subclass_has_a_kind_of_its_own() -> None:
    subclasses = _subclasses()
    assert {"ModelFileError", "DownloadCancelled"} <= set(subclasses)
    bad = [name for name, kind in subclasses.items()
           if not (isinstance(kind, ast.Constant) and kind.value in KINDS)]
    assert bad == []


def test_every_kind_is_used() -> None:
    used = {kind.value for _, call in _constructions() if isinstance(kind := _kind(call), ast.Constant)}
    used |= {kind.value for kind in _subclasses().values() if isinstance(kind, ast.Constant)}
    assert sorted(set(KINDS) - used - {"error"}) == []
