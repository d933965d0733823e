"""Every model tokrace knows of, as rows for ``tokrace models list`` and the TUI's models screen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tokrace.model_registry.hub import shard_info, shard_names


def list_models() -> list[dict[str, Any]]:
    """Catalog entries (downloaded or not), other pulls, then other tools' GGUFs; one dict per model."""
    from tokrace.model_registry.catalog import load_catalog
    from tokrace.model_registry.discovery import discover
    from tokrace.model_registry.resolve import local_path
    from tokrace.model_registry.store import load_pulls

    rows: list[dict[str, Any]] = []
    catalog = load_catalog()
    for e in catalog:
        path = local_path(e)
        size = path.stat().st_size if path else e.size
        rows.append({"id": e.id, "source": e.source.kind, "where": e.where, "params": e.n_params,
                     "quant": e.quant, "size": size, "downloaded": path is not None,
                     "path": str(path) if path else None, "license": e.license, "origin": e.origin})
    catalog_paths = {r["path"] for r in rows if r["path"]}
    for key, pull in load_pulls().items():
        if pull.model_id is None and pull.is_intact():
            rows.append({"id": key, "source": "hf", "where": key, "params": None, "quant": None,
                         "size": pull.size, "downloaded": True, "path": str(pull.path),
                         "license": None, "origin": "pulled"})
            catalog_paths.add(str(pull.path))
    for found in discover():
        if str(found.path) in catalog_paths:
            continue
        size = shard_set_size(found.path, found.size)
        if size is None:
            continue  # a later shard, or a set with shards missing: not loadable, not listed
        rows.append({"id": found.name, "source": found.source, "where": found.source, "params": None,
                     "quant": None, "size": size, "downloaded": True, "path": str(found.path),
                     "license": None, "origin": found.source})
    return rows


def catalog_problems() -> list[str]:
    """One line per user catalog that was skipped (show them next to the list)."""
    from tokrace.model_registry.catalog import load_catalog

    return load_catalog().problems


def shard_set_size(path: Path, size: int) -> int | None:
    """``size`` for an unsharded file; for shard 1 of a set, the whole set's size when every shard lies
    beside it (what llama.cpp needs); ``None`` for later shards and incomplete sets (one row per set)."""
    info = shard_info(path.name)
    if info is None:
        return size
    if info[1] != 1:
        return None
    total = 0
    for name in shard_names(path.name):
        try:
            total += (path.parent / name).stat().st_size  # follows HF cache links to their blobs
        except OSError:
            return None
    return total
