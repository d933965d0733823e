"""What a model's pieces take in memory, from its GGUF header: the sizes a split plan places.

- ``estimate_compute_bytes``: llama.cpp's compute buffer, estimated (llama.cpp reports the real one on
  load);
- ``kv_bytes_per_layer``: the KV cache per token of each layer (some models vary the KV head count);
- ``HeadBytes``: the non-layer tensors, the input embedding (always in RAM) and the output head (placed
  as the last "layer"), tied or not, exactly from the tensor table or estimated without one.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokrace.model_registry.gguf_meta import GGUFInfo

DEFAULT_UBATCH = 512


def estimate_compute_bytes(info: GGUFInfo, n_ctx: int, n_ubatch: int = DEFAULT_UBATCH) -> int:
    """4 bytes × ubatch × (max(heads × ctx, vocab) + 4 × embd): the attention scores or the logits,
    whichever is wider, plus hidden-state temporaries (f32, no flash attention)."""
    heads = info.n_head or 0
    widest = max(heads * n_ctx, info.n_vocab)
    return 4 * n_ubatch * (widest + 4 * (info.n_embd or 0))


def kv_bytes_per_layer(info: GGUFInfo, bytes_per_element: float = 2.0) -> list[int]:
    """Per token, per layer (models such as Gemma or OpenELM vary the KV head count by layer)."""
    if not info.n_layers:
        return []
    per_layer = info.metadata.get(f"{info.architecture}.attention.head_count_kv")
    if isinstance(per_layer, list) and len(per_layer) == info.n_layers and info.head_dim:
        return [int(2 * h * info.head_dim * bytes_per_element) for h in per_layer]
    total = info.kv_bytes_per_token(bytes_per_element)
    return [total // info.n_layers] * info.n_layers


@dataclass(frozen=True, slots=True)
class HeadBytes:
    """The non-layer tensors: the input embedding (always on the CPU) and the output head (offloaded as
    the last "layer").

    A tied head (no ``output.weight``) is the embedding itself: llama.cpp (``create_tensor`` with
    ``TENSOR_DUPLICATED``) reuses the embedding's tensor when the head stays in the same CPU buffer, and
    copies it to the GPU when the head is offloaded. So ``output_bytes`` costs memory only on a GPU."""

    input_bytes: int
    """Non-layer bytes that stay in RAM: the input embedding (and, tied, the norms)."""
    output_bytes: int
    """The output head as placed on a GPU (tied: the embedding's copy)."""
    tied: bool = False
    embd_bytes: int | None = None
    """The input embedding matrix alone; ``None``: all of ``input_bytes``."""
    n_vocab: int = 0
    """Rows of the embedding (a decode step looks one up); 0: unknown, the whole matrix is counted."""

    @property
    def embedding_bytes(self) -> int:
        return self.input_bytes if self.embd_bytes is None else self.embd_bytes

    @property
    def embedding_row_bytes(self) -> int:
        """One row of the input embedding: what a decode step's lookup reads of it."""
        return self.embedding_bytes // self.n_vocab if self.n_vocab > 0 else self.embedding_bytes

    @classmethod
    def estimate(cls, info: GGUFInfo) -> HeadBytes:
        # Without the tensor table, assume embedding and head are the same size (same shape); the head
        # is often stored at more bits, which the per-GPU reserve absorbs. Use ``from_file`` when local.
        half = info.non_layer_bytes // 2
        return cls(info.non_layer_bytes - half, half, n_vocab=info.n_vocab)

    @classmethod
    def from_info(cls, info: GGUFInfo) -> HeadBytes:
        """Exact sizes from the header's tensor table (all shards of a split model)."""
        other = info.non_layer_bytes
        if not info.embd_bytes:  # a header without a tensor table: estimate
            return cls.estimate(info)
        if info.output_bytes is not None:
            return cls(info.embd_bytes, other - info.embd_bytes, n_vocab=info.n_vocab)
        # Tied: the head is the embedding (a GPU copy when offloaded).
        return cls(other, info.embd_bytes, tied=True, embd_bytes=info.embd_bytes, n_vocab=info.n_vocab)

    @classmethod
    def from_file(cls, path: str) -> HeadBytes:
        """Exact sizes from a local GGUF's tensor table (no weights read; a split model's first shard
        stands for all of them; a header without its tensor data is enough)."""
        from tokrace.model_registry.gguf_meta import read_gguf_info

        return cls.from_info(read_gguf_info(path, allow_incomplete=True))


