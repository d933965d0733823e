"""How much memory a model needs at a given context, before loading (or downloading) it.

needed = weights + KV cache + compute buffer
- weights: the tensor bytes in the file (``GGUFInfo.tensors_bytes``; all shards).
- KV cache: ``kv_bytes_per_token`` × context, where per token = 2 (K and V) × layers × KV heads × head
  dim × bytes per element of the cache type (f16: 2). Llama-2-70B: 2 × 80 × 8 × 128 × 2 = 327,680 B.
- compute buffer (an estimate; llama.cpp prints the real one on load): 4 bytes × ubatch × (max(heads ×
  context, vocab) + 4 × embedding), i.e. the largest live f32 tensors of one micro-batch: the attention
  scores without flash attention or the logits, plus a few hidden-state temporaries. The same formula
  as ``backends.model_bytes.estimate_compute_bytes`` (the registry does not import backends).

Fitting on GPUs, and where each layer goes, is the split planner's job (one answer, given by the commands
through ``tokrace.backends.placement.fit_verdict``); ``fit_summary`` here answers for the CPU only.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokrace.model_registry.errors import ModelFileError, TokraceError
from tokrace.model_registry.gguf_meta import GGUFInfo
from tokrace.model_registry.units import format_bytes

KV_TYPE_BYTES: dict[str, float] = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q5_1": 24 / 32,
                                   "q5_0": 22 / 32, "q4_1": 20 / 32, "q4_0": 18 / 32}
DEFAULT_UBATCH = 512

# Shapes beyond these are corrupt metadata, not big models (the largest real ones are far below).
MAX_KV_HEADS = 4096
MAX_HEAD_DIM = 65536
MAX_CTX = 1 << 24


@dataclass(frozen=True, slots=True)
class MemoryPlan:
    n_ctx: int
    kv_type: str
    weights_bytes: int
    kv_bytes_per_token: int
    compute_bytes: int

    @property
    def kv_bytes(self) -> int:
        return self.kv_bytes_per_token * self.n_ctx

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_bytes + self.compute_bytes

    def to_dict(self) -> dict[str, int | str]:
        return {"n_ctx": self.n_ctx, "kv_type": self.kv_type, "weights_bytes": self.weights_bytes,
                "kv_bytes_per_token": self.kv_bytes_per_token, "kv_bytes": self.kv_bytes,
                "compute_bytes": self.compute_bytes, "total_bytes": self.total_bytes}

    def line(self) -> str:
        """``needs 42.5 GiB at 8k context (weights 39.6 GiB + KV 2.5 GiB + compute 0.4 GiB)``"""
        return (f"needs {format_bytes(self.total_bytes)} at {format_ctx(self.n_ctx)} context (weights"
                f" {format_bytes(self.weights_bytes)} + KV {format_bytes(self.kv_bytes)} + compute"
                f" {format_bytes(self.compute_bytes)})")


def format_ctx(n_ctx: int) -> str:
    return f"{n_ctx // 1024}k" if n_ctx % 1024 == 0 else str(n_ctx)


def check_shape(info: GGUFInfo, source: str = "the model") -> None:
    """Reject metadata whose counts no real model has (a corrupt or hostile header)."""
    for label, value, limit in (("KV heads", info.n_head_kv, MAX_KV_HEADS),
                                ("attention heads", info.n_head, MAX_KV_HEADS),
                                ("head dim", info.head_dim, MAX_HEAD_DIM),
                                ("training context", info.n_ctx_train, MAX_CTX)):
        if value is not None and not 0 <= value <= limit:
            raise ModelFileError(f"{source} claims {value:,} {label}: its metadata is corrupt")


def estimate_compute_bytes(info: GGUFInfo, n_ctx: int, n_ubatch: int = DEFAULT_UBATCH) -> int:
    widest = max((info.n_head or 0) * n_ctx, info.n_vocab)
    return 4 * n_ubatch * (widest + 4 * (info.n_embd or 0))


def plan_memory(info: GGUFInfo, n_ctx: int | None = None, kv_type: str = "f16",
                n_ubatch: int = DEFAULT_UBATCH) -> MemoryPlan:
    """The plan at ``n_ctx`` (default: the training context, capped at 8k)."""
    check_shape(info, info.name or "the model")
    if kv_type not in KV_TYPE_BYTES:
        raise TokraceError(f"unknown KV cache type {kv_type!r}; use one of {', '.join(KV_TYPE_BYTES)}",
                           kind="usage")
    ctx = n_ctx or min(info.n_ctx_train or 4096, 8192)
    if not 0 < ctx <= MAX_CTX:
        raise TokraceError(f"context {ctx} is out of range; use 1 to {MAX_CTX}", kind="usage")
    return MemoryPlan(ctx, kv_type, info.tensors_bytes, info.kv_bytes_per_token(KV_TYPE_BYTES[kv_type]),
                      estimate_compute_bytes(info, ctx, n_ubatch))


def fit_summary(plan: MemoryPlan, info: GGUFInfo, gpu_free: list[int], ram_available: int) -> str:
    """One line for a CPU-only machine: what the model needs and whether it fits in RAM.

    With GPUs the split planner answers (``tokrace.backends.placement.fit_verdict``, called by the
    commands): this registry module does not place layers, so it gives no second, different answer.
    Raises ``ValueError`` when ``gpu_free`` is not empty.
    """
    if gpu_free:
        raise ValueError("fit_summary answers for the CPU only: plan GPUs with the split planner")
    verdict = "fits in RAM" if plan.total_bytes <= ram_available else (
        "does not fit in RAM: pick a smaller quant or context")
    return f"{plan.line()}; CPU only, {format_bytes(ram_available)} RAM available → {verdict}"
