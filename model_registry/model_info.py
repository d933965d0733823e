"""A model's GGUF metadata from wherever it is: a local file (all shards), a pulled model, or — before
any download — the Hub, through header-only range reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokrace.model_registry.catalog import CatalogEntry, load_catalog
from tokrace.model_registry.errors import ModelFileError
from tokrace.model_registry.gguf_meta import GGUFInfo, read_gguf_info
from tokrace.model_registry.hub import parse_hf_ref, shard_info, shard_names
from tokrace.model_registry.remote_header import read_hf_ref_info
from tokrace.model_registry.store import find_pull


@dataclass(frozen=True, slots=True)
class ModelInfo:
    info: GGUFInfo
    where: str
    """The local path read, or the ``hf:`` ref whose header was read remotely."""
    remote: bool
    entry: CatalogEntry | None = None


def read_local_info(path: Path, *, allow_incomplete: bool = True) -> GGUFInfo:
    """A local GGUF; for a shard (any of them), the whole model (its sibling shards must be next to
    it). A file whose tensor data is missing is read from its header, with a warning in
    ``GGUFInfo.warnings`` (what ``models info`` and ``plan`` report; loading refuses such a file)."""
    shard = shard_info(path.name)
    if shard is not None and shard[1] != 1:
        path = path.with_name(shard_names(path.name)[0])
    return read_gguf_info(path, allow_incomplete=allow_incomplete)


def model_info(ref: str) -> ModelInfo:
    """``ref``: a path, a catalog id or an ``hf:`` ref. Downloaded models are read from disk, others
    from the Hub (header only)."""
    from tokrace.model_registry.resolve import local_path, looks_like_path

    ref = ref.strip()
    if ref.startswith("hf:"):
        hf = parse_hf_ref(ref)
        pull = find_pull(str(hf))
        if pull is not None:
            return ModelInfo(read_local_info(pull.path), str(pull.path), remote=False)
        return ModelInfo(read_hf_ref_info(hf), str(hf), remote=True)
    catalog = load_catalog()
    entry = catalog.find(ref)
    if entry is None and looks_like_path(ref):
        path = Path(ref).expanduser()
        return ModelInfo(read_local_info(path), str(path), remote=False)
    entry = entry or catalog.get(ref)
    on_disk = local_path(entry)
    if on_disk is not None:
        return ModelInfo(read_local_info(on_disk), str(on_disk), remote=False, entry=entry)
    entry_ref = entry.hf_ref()
    if entry_ref is None:
        raise ModelFileError(f"{entry.id} is not downloaded yet; run 'tokrace models pull {entry.id}' first")
    return ModelInfo(read_hf_ref_info(entry_ref), str(entry_ref), remote=True, entry=entry)


def info_dict(info: GGUFInfo) -> dict[str, Any]:
    """The metadata fields ``models info --json`` prints."""
    return {
        "architecture": info.architecture, "name": info.name, "quantization": info.quantization,
        "n_params": info.n_params, "n_layers": info.n_layers, "n_ctx_train": info.n_ctx_train,
        "n_embd": info.n_embd, "n_head": info.n_head, "n_head_kv": info.n_head_kv,
        "head_dim": info.head_dim, "n_vocab": info.n_vocab, "vocab_hash": info.vocab_hash,
        "file_size": info.file_size, "tensors_bytes": info.tensors_bytes,
        "layer_bytes": info.layer_bytes, "non_layer_bytes": info.non_layer_bytes,
        "has_chat_template": info.chat_template is not None,
        "n_shards": info.n_shards, "incomplete_bytes": info.missing_bytes, "warnings": list(info.warnings),
    }
