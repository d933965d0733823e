"""GGUF metadata without loading weights: a streaming parser of the header and tensor table.

It reads sequentially from any binary file object (a local file, or a remote one that serves HTTP range
reads), so the same code plans a model on disk and one not yet downloaded. Numeric arrays (token scores
and types) are skipped, the token list is hashed (two models with the same hash can share drafts).

The reader is never stricter than the engine: a tensor type newer than the ``gguf`` package (llama.cpp
may know it) is sized from the tensor offsets instead, with a warning in ``GGUFInfo.warnings``; a file
whose tensor data is missing (a header-only file, an interrupted download) is refused unless the caller
asks for the header anyway (``allow_incomplete``: planning and ``models info`` do, loading does not). A
split model (``name-00001-of-00003.gguf``) is read as one model: every shard's tensors and sizes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from gguf import LlamaFileType

from tokrace.model_registry.errors import ModelFileError
from tokrace.model_registry.gguf_reader import (
    DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    MAX_LAYERS,
    TensorInfo,
    read_header,
    read_tensor_table,
    size_unknown_types,
)
from tokrace.model_registry.hub import shard_info, shard_names

__all__ = ["GGUF_MAGIC", "GGUFInfo", "TensorInfo", "merge_shard_tensors", "parse_gguf", "read_gguf_info",
           "read_tensor_table"]


@dataclass(slots=True)
class GGUFInfo:
    """What tokrace needs to know about a model file to show, plan and pair it."""

    architecture: str
    name: str | None
    quantization: str
    n_params: int
    n_layers: int
    n_ctx_train: int | None
    n_embd: int | None
    n_head: int | None
    n_head_kv: int | None
    head_dim: int | None
    n_vocab: int
    vocab_hash: str
    """sha256 of the token list: equal hashes mean a draft model can serve this model."""
    chat_template: str | None
    bos_token_id: int | None
    eos_token_id: int | None
    file_size: int | None
    data_offset: int
    tensors_bytes: int
    layer_bytes: list[int]
    """Bytes of the tensors of each repeating layer (``blk.N.``), in order."""
    metadata: dict[str, Any] = field(repr=False, default_factory=dict)
    """Scalar and small-array metadata, by key."""
    embd_bytes: int = 0
    """The input embedding (``token_embd.weight``)."""
    output_bytes: int | None = None
    """The output head (``output.weight``); ``None`` when it is tied to the embedding."""
    missing_bytes: int = 0
    """Tensor data the file lacks (read with ``allow_incomplete``): it cannot be loaded."""
    warnings: list[str] = field(default_factory=list)
    """What a plan from this header must say (estimated sizes, missing data), one line each."""
    n_shards: int = 1

    @property
    def non_layer_bytes(self) -> int:
        """Embeddings, output head and norms: what is not in a repeating layer."""
        return self.tensors_bytes - sum(self.layer_bytes)

    def kv_bytes_per_token(self, bytes_per_element: float = 2.0) -> int:
        """2 (K and V) × layers × KV heads × head dim × element size (f16 = 2 bytes)."""
        if not (self.n_head_kv and self.head_dim):
            return 0
        per_layer = self.metadata.get(f"{self.architecture}.attention.head_count_kv")
        kv_heads = sum(per_layer) if isinstance(per_layer, list) else self.n_head_kv * self.n_layers
        return int(2 * kv_heads * self.head_dim * bytes_per_element)




def _quant_label(file_type: Any, tensors: Iterable[TensorInfo]) -> str:
    if isinstance(file_type, int):
        try:
            name = LlamaFileType(file_type).name
            return name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            pass
    by_type: dict[str, int] = {}
    for t in tensors:
        by_type[t.type_name] = by_type.get(t.type_name, 0) + t.n_bytes
    return max(by_type, key=by_type.__getitem__) if by_type else "unknown"


def parse_gguf(stream: BinaryIO, *, file_size: int | None = None, source: str = "file",
               allow_incomplete: bool = False) -> GGUFInfo:
    """Parse a GGUF header from ``stream`` (positioned at 0). Raises ``ModelFileError``; a file whose
    tensor data is cut short too, unless ``allow_incomplete`` (then ``missing_bytes`` and a warning)."""
    header = read_header(stream, source)
    meta, vocab, tensors = header.meta, header.vocab, header.tensors
    alignment = int(meta.get("general.alignment", DEFAULT_ALIGNMENT)) or DEFAULT_ALIGNMENT
    data_offset = (header.end + alignment - 1) // alignment * alignment
    tensors, unknown_warning = size_unknown_types(
        tensors, file_size - data_offset if file_size is not None else None)
    warnings = [unknown_warning] if unknown_warning else []
    tensors_bytes = sum(t.n_bytes for t in tensors)
    data_end = max((t.offset + t.n_bytes for t in tensors), default=0)
    missing = 0
    if file_size is not None and data_offset + data_end > file_size:
        missing = data_offset + data_end - file_size
        if not allow_incomplete:
            raise ModelFileError(
                f"{source} is truncated ({missing:,} bytes of tensor data missing); download it again"
            )
        warnings.append(f"the file is incomplete ({missing:,} bytes of tensor data missing, an interrupted"
                        " download or a header-only file): figures are from its header; it cannot be loaded")

    arch = str(meta.get("general.architecture", "unknown"))
    n_layers = int(meta.get(f"{arch}.block_count", 0))
    if not 0 <= n_layers <= MAX_LAYERS:
        raise ModelFileError(f"{source} claims {n_layers} layers: the file is corrupt")
    layer_bytes = [0] * n_layers
    for t in tensors:
        if t.name.startswith("blk."):
            idx = int(t.name.split(".")[1])
            if idx < n_layers:
                layer_bytes[idx] += t.n_bytes

    def first_int(key: str) -> int | None:
        v = meta.get(key)
        if isinstance(v, list):
            v = max(v) if v else None
        return int(v) if v is not None else None

    n_embd, n_head = first_int(f"{arch}.embedding_length"), first_int(f"{arch}.attention.head_count")
    head_dim = first_int(f"{arch}.attention.key_length") or (
        n_embd // n_head if n_embd and n_head else None
    )
    n_vocab, vocab_hash = vocab[0] if vocab else (0, "")
    by_name = {t.name: t.n_bytes for t in tensors}
    return GGUFInfo(
        architecture=arch,
        name=meta.get("general.name"),
        quantization=_quant_label(meta.get("general.file_type"), tensors),
        n_params=sum(t.n_elements for t in tensors),
        n_layers=n_layers,
        n_ctx_train=first_int(f"{arch}.context_length"),
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=first_int(f"{arch}.attention.head_count_kv") or n_head,
        head_dim=head_dim,
        n_vocab=n_vocab,
        vocab_hash=vocab_hash,
        chat_template=meta.get("tokenizer.chat_template"),
        bos_token_id=meta.get("tokenizer.ggml.bos_token_id"),
        eos_token_id=meta.get("tokenizer.ggml.eos_token_id"),
        file_size=file_size,
        data_offset=data_offset,
        tensors_bytes=tensors_bytes,
        layer_bytes=layer_bytes,
        metadata=meta,
        embd_bytes=by_name.get("token_embd.weight", 0),
        output_bytes=by_name.get("output.weight"),
        missing_bytes=missing,
        warnings=warnings,
    )


def read_gguf_info(path: str | Path, *, allow_incomplete: bool = False) -> GGUFInfo:
    """Read a local GGUF's metadata; a missing, non-GGUF or truncated file raises ``ModelFileError``
    (truncated only without ``allow_incomplete``).

    A split model's first shard (``x-00001-of-00003.gguf``) stands for the whole model: sizes, parameter
    count and layers of every shard (all must be next to it). A later shard raises, naming the first.
    Parsed once per file version (paths, sizes, mtimes): one load asks several times (placement, the
    backend, race lanes, the draft picker), and hashing a large vocabulary is not free. Callers must
    not modify the returned object.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelFileError(f"no model file at {p}; check the path or run 'tokrace models list'")
    if p.is_dir():
        raise ModelFileError(f"{p} is a directory; pass the .gguf file inside it")
    shard = shard_info(p.name)
    names = shard_names(p.name)
    if shard is not None and shard[1] != 1:
        raise ModelFileError(
            f"{p.name} is shard {shard[1]} of {shard[2]} of a split model: pass the first shard,"
            f" {names[0]} (llama.cpp reads the others from it)"
        )
    files = [p.with_name(n) for n in names]
    versions: list[tuple[str, int, int]] = []
    for f in files:
        if not f.is_file():
            raise ModelFileError(
                f"{p.name} is shard 1 of {len(files)} but {f.name} is missing next to it; download it again"
            )
        st = f.stat()
        versions.append((str(f), st.st_size, st.st_mtime_ns))
    return _read_gguf_info_cached(tuple(versions), allow_incomplete)


@functools.lru_cache(maxsize=32)
def _read_gguf_info_cached(versions: tuple[tuple[str, int, int], ...], allow_incomplete: bool) -> GGUFInfo:
    (path, size, _), *rest = versions
    try:
        with open(path, "rb") as f:
            info = parse_gguf(f, file_size=size, source=path, allow_incomplete=allow_incomplete)
        others = []
        for shard, _size, _mtime in rest:
            with open(shard, "rb") as f:
                others.append(read_tensor_table(f, source=shard))
    except PermissionError as err:
        raise ModelFileError(f"cannot read {err.filename or path}: permission denied") from None
    if not rest:
        return info
    return merge_shard_tensors(info, others, [s for _, s, _ in rest])


def merge_shard_tensors(first: GGUFInfo, others: Sequence[Sequence[TensorInfo]], sizes: Sequence[int | None]
                        ) -> GGUFInfo:
    """A sharded model as one: ``first`` shard's metadata, every shard's tensors counted and placed in
    their layers; ``sizes`` are the other shards' file sizes (the total is None if one is unknown)."""
    from dataclasses import replace

    layers = list(first.layer_bytes)
    n_params, total = first.n_params, first.tensors_bytes
    embd, output = first.embd_bytes, first.output_bytes
    warnings = list(first.warnings)
    for table in others:
        tensors, unknown = size_unknown_types(list(table), None)
        if unknown and unknown not in warnings:
            warnings.append(unknown)
        for t in tensors:
            n_params += t.n_elements
            total += t.n_bytes
            if t.name == "token_embd.weight":
                embd = t.n_bytes
            elif t.name == "output.weight":
                output = t.n_bytes
            if t.name.startswith("blk."):
                idx = int(t.name.split(".")[1])
                if idx < len(layers):
                    layers[idx] += t.n_bytes
    all_sizes = [first.file_size, *sizes]
    file_size = sum(s for s in all_sizes if s is not None) if None not in all_sizes else None
    return replace(first, n_params=n_params, tensors_bytes=total, layer_bytes=layers, file_size=file_size,
                   embd_bytes=embd, output_bytes=output, warnings=warnings, n_shards=1 + len(others))
