"""The GGUF binary format, read sequentially: header, metadata and tensor table (no weights).

``read_header`` reads from any binary file object (a local file, or a remote one that serves HTTP range
reads); ``gguf_meta`` turns what it returns into ``GGUFInfo``. Bounds far above any real model reject a
corrupt file before it allocates anything; numeric arrays (token scores and types) are skipped, the token
list is hashed, small arrays (per-layer head counts) are kept.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

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
    stored_bytes: int | None = None
    """For a tensor type the ``gguf`` package does not know: its bytes from the tensor offsets."""

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def known_type(self) -> bool:
        return self.ggml_type in _KNOWN_TYPES

    @property
    def n_bytes(self) -> int:
        if not self.known_type:
            return self.stored_bytes or 0
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(self.ggml_type)]
        return self.n_elements // block * type_size

    @property
    def type_name(self) -> str:
        return GGMLQuantizationType(self.ggml_type).name if self.known_type else f"type {self.ggml_type}"


_KNOWN_TYPES = frozenset(int(t) for t in GGMLQuantizationType if t in GGML_QUANT_SIZES)

@dataclass(frozen=True, slots=True)
class RawHeader:
    """A GGUF's header as read: ``meta`` (scalars and small arrays by key), ``vocab`` (``[sha256]`` of
    the token list, when it has one), ``tensors`` (the table) and ``end`` (the byte offset where the
    table ends; tensor data starts at the next multiple of ``general.alignment``)."""

    meta: dict[str, Any]
    vocab: list[Any]
    tensors: list[TensorInfo]
    end: int


def read_header(stream: BinaryIO, source: str = "file") -> RawHeader:
    """Read a GGUF's header from ``stream`` (positioned at 0). Raises ``ModelFileError`` for a file that
    is not GGUF, a version other than 2 or 3, or counts past the bounds (a corrupt file)."""
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
    return RawHeader(meta, vocab, tensors, r.pos)


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
        tensors.append(TensorInfo(name, shape, ggml_type, offset))
    return tensors


def size_unknown_types(tensors: list[TensorInfo], data_size: int | None
                        ) -> tuple[list[TensorInfo], str | None]:
    """Give tensors of a type unknown to ``gguf`` their size from the offsets (to the next tensor, or
    to the end of the data); a warning line when there were any."""
    unknown = {t.ggml_type for t in tensors if not t.known_type}
    if not unknown:
        return tensors, None
    ends = sorted({t.offset for t in tensors})
    known = [t for t in tensors if t.known_type]
    per_element = (sum(t.n_bytes for t in known) / max(sum(t.n_elements for t in known), 1)) or 1.0
    sized: list[TensorInfo] = []
    for t in tensors:
        if t.known_type:
            sized.append(t)
            continue
        later = [o for o in ends if o > t.offset]
        if later:
            size = later[0] - t.offset
        elif data_size is not None and data_size > t.offset:
            size = data_size - t.offset
        else:
            size = int(t.n_elements * per_element)
        sized.append(TensorInfo(t.name, t.shape, t.ggml_type, t.offset, size))
    types = ", ".join(str(u) for u in sorted(unknown))
    return sized, (f"tensor type {types} is newer than this gguf package: sizes are estimated from the"
                   " tensor offsets (llama.cpp decides whether it can load them)")


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
