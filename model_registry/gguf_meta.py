"""GGUF metadata without loading weights: a streaming parser of the header and tensor table.

It reads sequentially from any binary file object (a local file, or a remote one that serves HTTP range
reads), so the same code plans a model on disk and one not yet downloaded. Numeric arrays (token scores
and types) are skipped, the token list is hashed (two models with the same hash can share drafts).
"""

from __future__ import annotations

import functools
import hashlib
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType

from tokrace.model_registry.errors import ModelFileError

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32

# Bounds far above any real model; past them the file is corrupt, not big.
MAX_TENSORS = 1_000_000
MAX_KV = 100_000
MAX_STRING = 64 * 1024 * 1024
MAX_ARRAY = 50_000_000
MAX_DIMS = 8
MAX_LAYERS = 10_000

_SCALARS: dict[int, str] = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                            10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_HASHED_ARRAYS = {"tokenizer.ggml.tokens"}
_KEPT_ARRAYS_MAX = 64  # small arrays (per-layer head counts) are kept; big ones skipped


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def n_bytes(self) -> int:
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(self.ggml_type)]
        return self.n_elements // block * type_size

    @property
    def type_name(self) -> str:
        return GGMLQuantizationType(self.ggml_type).name


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


class _Reader:
    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.pos = 0

    def read(self, n: int) -> bytes:
        data = self.stream.read(n)
        if len(data) != n:
            raise ModelFileError("the GGUF header ends early: the file is truncated; download it again")
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        try:
            self.stream.seek(n, os.SEEK_CUR)
            self.pos += n
        except (OSError, ValueError, AttributeError):
            while n > 0:
                chunk = self.read(min(n, 1 << 20))
                n -= len(chunk)

    def scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def string_bytes(self) -> bytes:
        n = self.scalar("<Q")
        if n > MAX_STRING:
            raise ModelFileError(f"the GGUF header has a {n}-byte string: the file is corrupt")
        return self.read(n)

    def string(self) -> str:
        return self.string_bytes().decode("utf-8", errors="replace")


def _read_value(r: _Reader, vtype: int, key: str, hasher: list[Any]) -> Any:
    if vtype in _SCALARS:
        return r.scalar(_SCALARS[vtype])
    if vtype == _STRING:
        return r.string()
    if vtype != _ARRAY:
        raise ModelFileError(f"the GGUF key {key!r} has unknown type {vtype}: the file is corrupt")
    etype, count = r.scalar("<I"), r.scalar("<Q")
    if count > MAX_ARRAY:
        raise ModelFileError(f"the GGUF key {key!r} claims {count} elements: the file is corrupt")
    if key in _HASHED_ARRAYS and etype == _STRING:
        digest = hashlib.sha256()
        for _ in range(count):
            piece = r.string_bytes()
            digest.update(len(piece).to_bytes(4, "little") + piece)
        hasher.append((count, digest.hexdigest()))
        return None
    if etype in _SCALARS and count > _KEPT_ARRAYS_MAX:
        r.skip(struct.calcsize(_SCALARS[etype]) * count)
        return None
    values = [_read_value(r, etype, key, hasher) for _ in range(count)]
    return values if count <= _KEPT_ARRAYS_MAX else None


def _read_tensor_infos(r: _Reader, n_tensors: int, source: str) -> list[TensorInfo]:
    tensors: list[TensorInfo] = []
    for _ in range(n_tensors):
        name = r.string()
        n_dims = r.scalar("<I")
        if n_dims > MAX_DIMS:
            raise ModelFileError(f"{source}: tensor {name!r} has {n_dims} dimensions: corrupt file")
        shape = tuple(r.scalar("<Q") for _ in range(n_dims))
        ggml_type, offset = r.scalar("<I"), r.scalar("<Q")
        try:
            GGMLQuantizationType(ggml_type)
        except ValueError:
            raise ModelFileError(
                f"{source}: tensor {name!r} has tensor type {ggml_type}, unknown to this gguf version;"
                " upgrade tokrace"
            ) from None
        tensors.append(TensorInfo(name, shape, ggml_type, offset))
    return tensors


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


def parse_gguf(stream: BinaryIO, *, file_size: int | None = None, source: str = "file") -> GGUFInfo:
    """Parse a GGUF header from ``stream`` (positioned at 0). Raises ``ModelFileError``."""
    r = _Reader(stream)
    head = stream.read(4)
    r.pos = len(head)
    if head != GGUF_MAGIC:
        raise ModelFileError(f"{source} is not a GGUF model file (it does not start with 'GGUF')")
    version = r.scalar("<I")
    if version not in (2, 3):
        raise ModelFileError(f"{source} is GGUF version {version}; tokrace reads versions 2 and 3")
    n_tensors, n_kv = r.scalar("<Q"), r.scalar("<Q")
    if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
        raise ModelFileError(
            f"{source} claims {n_tensors} tensors and {n_kv} metadata keys: the file is corrupt"
        )
    meta: dict[str, Any] = {}
    vocab: list[Any] = []
    for _ in range(n_kv):
        key = r.string()
        value = _read_value(r, r.scalar("<I"), key, vocab)
        if value is not None:
            meta[key] = value
    tensors = _read_tensor_infos(r, n_tensors, source)
    alignment = int(meta.get("general.alignment", DEFAULT_ALIGNMENT)) or DEFAULT_ALIGNMENT
    data_offset = (r.pos + alignment - 1) // alignment * alignment
    tensors_bytes = sum(t.n_bytes for t in tensors)
    data_end = max((t.offset + t.n_bytes for t in tensors), default=0)
    if file_size is not None and data_offset + data_end > file_size:
        missing = data_offset + data_end - file_size
        raise ModelFileError(
            f"{source} is truncated ({missing:,} bytes of tensor data missing); download it again"
        )

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
    )


def read_gguf_info(path: str | Path) -> GGUFInfo:
    """Read a local GGUF's metadata; a missing, non-GGUF or truncated file raises ``ModelFileError``.

    Parsed once per file version (path, size, mtime): one load asks several times (placement, the
    backend, race lanes, the draft picker), and hashing a large vocabulary is not free. Callers must
    not modify the returned object.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelFileError(f"no model file at {p}; check the path or run 'tokrace models list'")
    if p.is_dir():
        raise ModelFileError(f"{p} is a directory; pass the .gguf file inside it")
    st = p.stat()
    return _read_gguf_info_cached(str(p), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _read_gguf_info_cached(path: str, size: int, _mtime_ns: int) -> GGUFInfo:
    try:
        with open(path, "rb") as f:
            return parse_gguf(f, file_size=size, source=path)
    except PermissionError:
        raise ModelFileError(f"cannot read {path}: permission denied") from None


def read_tensor_table(stream: BinaryIO, *, source: str = "file") -> list[TensorInfo]:
    """Just the tensor table of a GGUF (metadata skipped): what a shard after the first contributes.

    Shards written by ``gguf-split`` after the first carry no architecture or ``block_count``, so
    ``parse_gguf`` cannot attribute their tensors to layers; the caller does, from these names.
    """
    r = _Reader(stream)
    if r.read(4) != GGUF_MAGIC:
        raise ModelFileError(f"{source} is not a GGUF model file (it does not start with 'GGUF')")
    r.scalar("<I")
    n_tensors, n_kv = r.scalar("<Q"), r.scalar("<Q")
    if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
        raise ModelFileError(f"{source} claims {n_tensors} tensors and {n_kv} keys: the file is corrupt")
    sink: list[Any] = []
    for _ in range(n_kv):
        key = r.string()
        _read_value(r, r.scalar("<I"), key, sink)
    return _read_tensor_infos(r, n_tensors, source)


def merge_shard_tensors(first: GGUFInfo, others: Sequence[Sequence[TensorInfo]], sizes: Sequence[int | None]
                        ) -> GGUFInfo:
    """A sharded model as one: ``first`` shard's metadata, every shard's tensors counted and placed in
    their layers; ``sizes`` are the other shards' file sizes (the total is None if one is unknown)."""
    from dataclasses import replace

    layers = list(first.layer_bytes)
    n_params, total = first.n_params, first.tensors_bytes
    for tensors in others:
        for t in tensors:
            n_params += t.n_elements
            total += t.n_bytes
            if t.name.startswith("blk."):
                idx = int(t.name.split(".")[1])
                if idx < len(layers):
                    layers[idx] += t.n_bytes
    all_sizes = [first.file_size, *sizes]
    file_size = sum(s for s in all_sizes if s is not None) if None not in all_sizes else None
    return replace(first, n_params=n_params, tensors_bytes=total, layer_bytes=layers, file_size=file_size)
