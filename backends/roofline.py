"""How fast decoding could go, and what the tokens cost.

Decode (one token at a time, batch 1) is memory-bandwidth bound: every generated token reads the
weights plus the KV cache so far, so ``tok/s ≤ bandwidth ÷ bytes read per token``. Bytes read per token
follow llama.cpp's graph: every layer and the output head in full, but of the input embedding
(``token_embd.weight``) only the one row the lookup (``GGML_OP_GET_ROWS``) reads. A model without
``output.weight`` (tied embeddings: SmolLM2, Gemma 3) uses ``token_embd.weight`` as its output matrix,
which is then read in full once per token, once, not twice. The quick figure users quote (RTX 6000 Ada
960 GB/s ÷ Llama 3 8B Q4_K_M file 4.92 GB ≈ 195 tok/s) counts the untied embedding too; without its
0.29 GB the ceiling is ≈ 208 tok/s.

Prompt processing is compute bound (about 2 FLOPs per parameter per token), so its ceiling is
``FLOP/s ÷ (2 × parameters)``.

On a CPU the bandwidth comes from a short multi-threaded copy test, measured once per machine and
cached under ``model_registry.paths.cache_dir()``.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tokrace.model_registry.paths import cache_dir

if TYPE_CHECKING:  # token_cost is on the --help path (race_verdict): numpy, psutil, gguf load on use
    from tokrace.backends.device_sampler import DeviceSnapshot
    from tokrace.backends.split_plan import SplitPlan

CACHE_FILE = "cpu_bandwidth.json"


def bytes_per_token(weights_bytes: float, kv_bytes_per_token: float, n_past: int) -> float:
    """Bytes one decode step reads: the weights, plus the KV cache of the ``n_past`` tokens before it."""
    return weights_bytes + kv_bytes_per_token * max(0, n_past)


def decode_ceiling_tok_s(bandwidth_bytes_s: float, bytes_read_per_token: float) -> float:
    if bytes_read_per_token <= 0 or bandwidth_bytes_s <= 0:
        raise ValueError("bandwidth and bytes per token must be above 0")
    return bandwidth_bytes_s / bytes_read_per_token


def efficiency_percent(measured_tok_s: float, ceiling_tok_s: float) -> float:
    return 100.0 * measured_tok_s / ceiling_tok_s if ceiling_tok_s > 0 else 0.0


def efficiency_line(measured_tok_s: float | None, ceiling_tok_s: float | None) -> str:
    """The UI's one line, e.g. "efficiency: 67% of the 195 tok/s bandwidth limit"."""
    if not ceiling_tok_s:
        return "efficiency: bandwidth limit unknown"
    if not measured_tok_s:
        return f"bandwidth limit: {ceiling_tok_s:,.0f} tok/s"
    return (f"efficiency: {efficiency_percent(measured_tok_s, ceiling_tok_s):.0f}% of the "
            f"{ceiling_tok_s:,.0f} tok/s bandwidth limit")


def plan_ceiling_tok_s(
    plan: SplitPlan,
    gpu_bandwidths: Sequence[float],
    cpu_bandwidth: float,
    n_past: int = 0,
) -> float:
    """The ceiling of a (possibly split) model; bandwidths in bytes/s, one per GPU of the plan.

    A layer split runs the GPUs one after another, so their times add up; a row split reads every
    GPU's share at once, so the slowest counts. What stays on the CPU (layers, the output head, the
    embedding row of the lookup) adds its time at the CPU's bandwidth. Bytes are those llama.cpp reads
    (``decode_read_bytes``): the input embedding is one row, a tied head the embedding matrix once.
    """
    if len(gpu_bandwidths) < len(plan.per_device):
        raise ValueError(f"need {len(plan.per_device)} GPU bandwidths, got {len(gpu_bandwidths)}")
    reads = decode_read_bytes(plan, n_past)
    times = [read / bw for read, bw in zip(reads[:-1], gpu_bandwidths, strict=False)]
    gpu_time = max(times, default=0.0) if plan.split_mode == "row" else sum(times)
    return 1.0 / (gpu_time + reads[-1] / cpu_bandwidth)


def decode_read_bytes(plan: SplitPlan, n_past: int = 0) -> list[float]:
    """Bytes one decode step reads from each GPU of ``plan`` in order, then from RAM (the last entry),
    at ``n_past`` tokens of context: the weights placed there (of the input embedding only the looked-up
    row: ``HostPlan.unread_bytes`` is left out) plus the KV cache of those tokens."""
    frac = n_past / plan.n_ctx if plan.n_ctx else 0.0  # the plan's KV is for a full context
    host = plan.host
    gpus = [d.weights_bytes + d.kv_bytes * frac for d in plan.per_device]
    return [*gpus, host.weights_bytes - host.unread_bytes + host.kv_bytes * frac]


def beats_ceiling(measured_tok_s: float | None, ceiling_tok_s: float | None) -> bool:
    """Whether a reply decoded faster than the roofline allows: then the bandwidth behind the ceiling
    was measured low (under load) and should be measured again (``cpu_bandwidth(refresh=True)``)."""
    return measured_tok_s is not None and ceiling_tok_s is not None and measured_tok_s > ceiling_tok_s


def gpu_bandwidths(snapshot: DeviceSnapshot) -> list[float] | None:
    """Peak bandwidth of each GPU in bytes/s from NVML (memory clock × bus width), or None if unknown."""
    bws = [g.peak_bandwidth_gb_s for g in snapshot.gpus]
    return [b * 1e9 for b in bws if b] if bws and all(bws) else None


def prompt_ceiling_tok_s(flops_per_s: float, n_params: float) -> float:
    """Compute-bound prompt speed: FLOP/s ÷ (2 FLOPs per parameter per token)."""
    return flops_per_s / (2.0 * n_params)


# --- cost ------------------------------------------------------------------------------------------


def cost_per_1k_tokens(price_per_hour: float, tok_s: float) -> float:
    """$ per 1,000 tokens at ``tok_s`` on hardware rented at ``price_per_hour`` (all of it, all GPUs)."""
    if tok_s <= 0:
        raise ValueError("speed must be above 0 tok/s")
    return price_per_hour / 3600.0 / tok_s * 1000.0


@dataclass(frozen=True, slots=True)
class TokenCost:
    prompt_per_1k: float | None
    generated_per_1k: float | None

    def line(self) -> str:
        def fmt(x: float | None) -> str:
            return "—" if x is None else f"${x:.5f}" if x < 0.01 else f"${x:.4f}"

        return f"cost: {fmt(self.prompt_per_1k)} /1K prompt · {fmt(self.generated_per_1k)} /1K generated"


def token_cost(price_per_hour: float, prompt_tok_s: float | None, gen_tok_s: float | None) -> TokenCost:
    """From a reply's measured speeds (``ReplyStats.prompt_tok_s`` / ``gen_tok_s``)."""
    return TokenCost(
        cost_per_1k_tokens(price_per_hour, prompt_tok_s) if prompt_tok_s else None,
        cost_per_1k_tokens(price_per_hour, gen_tok_s) if gen_tok_s else None,
    )


# --- CPU memory bandwidth ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CpuBandwidth:
    bytes_per_s: float
    threads: int
    size_bytes: int
    seconds: float
    """How long the measurement took."""
    machine: str
    measured_at: float
    cached: bool = False

    @property
    def gb_s(self) -> float:
        return self.bytes_per_s / 1e9


def machine_fingerprint() -> str:
    """What the figure depends on: CPU model, core count, RAM size. A new machine measures again."""
    import psutil

    from tokrace.backends.device_telemetry import cpu_model

    return f"{cpu_model()} | {os.cpu_count()} cpus | {psutil.virtual_memory().total // (1 << 30)} GiB"


def measure_cpu_bandwidth(size_bytes: int = 256 << 20, repeats: int = 5,
                          threads: int | None = None) -> CpuBandwidth:
    """Best of ``repeats`` copies of ``size_bytes`` split across threads (numpy's copy releases the
    GIL), counted as STREAM counts a copy: bytes read + bytes written. About half a second."""
    import numpy as np

    threads = threads or min(os.cpu_count() or 1, 4)
    n = size_bytes // 8 // threads
    src = [np.ones(n) for _ in range(threads)]
    dst = [np.ones(n) for _ in range(threads)]  # touched now, so no page faults inside the timing
    start = time.perf_counter()
    best = 0.0
    for _ in range(repeats):
        barrier = threading.Barrier(threads + 1)

        def work(i: int, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            np.copyto(dst[i], src[i])

        workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        t0 = time.perf_counter()
        barrier.wait()
        for w in workers:
            w.join()
        best = max(best, 2 * n * 8 * threads / (time.perf_counter() - t0))
    return CpuBandwidth(best, threads, n * 8 * threads, time.perf_counter() - start,
                        machine_fingerprint(), time.time())


def cpu_bandwidth(*, refresh: bool = False, path: Path | None = None) -> CpuBandwidth:
    """The cached measurement for this machine, measuring (and caching) it the first time.

    ``refresh`` measures again and keeps the higher of the new and the cached figure: a copy loop
    only reads low (another process had the memory bus), never high, so the best figure is the truest.
    """
    path = path or cache_dir() / CACHE_FILE
    machine = machine_fingerprint()
    cached: CpuBandwidth | None = None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("machine") == machine and data.get("bytes_per_s", 0) > 0:
            cached = CpuBandwidth(**{**data, "cached": True})
    except (OSError, ValueError, TypeError):
        pass  # missing or from an older version: measure again
    if cached is not None and not refresh:
        return cached
    bw = measure_cpu_bandwidth()
    if cached is not None and cached.bytes_per_s >= bw.bytes_per_s:
        return cached
    with contextlib.suppress(OSError):  # a read-only cache only costs the next run half a second
        path.write_text(json.dumps({k: v for k, v in asdict(bw).items() if k != "cached"}),
                        encoding="utf-8")
    return bw
