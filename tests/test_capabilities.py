"""``Capabilities`` says what a backend can do as a value callers read instead of type checks: so every
field must have a reader in the package (an attribute read ``….capabilities.<field>``), or it is a
promise nobody keeps (five of six fields once were)."""

from __future__ import annotations

import ast
import dataclasses
import os
from pathlib import Path

import tokrace
from tokrace.backends.base import Capabilities


def _capability_reads() -> dict[str, list[str]]:
    """Field name → ``path:line`` of each read ``<expr>.capabilities.<field>`` in the package."""
    reads: dict[str, list[str]] = {}
    root = Path(tokrace.__file__).parent
    modules = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            if not name.endswith(".py"):
                continue
            path = Path(dirpath, name)
            modules += 1
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load)
                        and isinstance(node.value, ast.Attribute) and node.value.attr == "capabilities"):
                    reads.setdefault(node.attr, []).append(f"{path.relative_to(root)}:{node.lineno}")
    assert modules > 80  # tokrace/'s links were followed
    return reads


def test_every_capability_has_a_reader() -> None:
    reads = _capability_reads()
    fields = [f.name for f in dataclasses.fields(Capabilities)]
    assert fields, "Capabilities has no field left: remove the class instead"
    assert [name for name in fields if not reads.get(name)] == []
    assert sorted(set(reads) - set(fields)) == []  # no read of a field that does not exist
