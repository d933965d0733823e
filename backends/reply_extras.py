"""What a reply's summary gains beyond speed: peak memory, energy per token, and cost.

Peak VRAM and energy come from the device sampler's window over the reply (NVML; absent on CPU);
cost from a user-set price per hour and the reply's measured speeds.
"""

from __future__ import annotations

from typing import Any

from tokrace.backends.device_sampler import WindowStats
from tokrace.backends.meter import ReplyStats
from tokrace.backends.roofline import token_cost
from tokrace.model_registry.units import format_bytes


def extras(stats: ReplyStats, window: WindowStats | None, price_per_hour: float | None) -> dict[str, Any]:
    """The figures, for JSON and the log (``None`` where not measured)."""
    out: dict[str, Any] = {"peak_vram_bytes": None, "energy_j": None, "joules_per_token": None,
                           "cost_per_1k_prompt": None, "cost_per_1k_generated": None}
    if window is not None:
        out["peak_vram_bytes"] = window.peak_vram_bytes
        out["energy_j"] = window.energy_j
        out["joules_per_token"] = window.joules_per_token(stats.completion_tokens)
    if price_per_hour:
        cost = token_cost(price_per_hour, stats.prompt_tok_s, stats.gen_tok_s)
        out["cost_per_1k_prompt"] = cost.prompt_per_1k
        out["cost_per_1k_generated"] = cost.generated_per_1k
    return out


def extras_line(stats: ReplyStats, window: WindowStats | None, price_per_hour: float | None) -> str:
    """`` · peak VRAM 5.1 GiB · 0.41 J/token · cost: $0.00042 /1K prompt · …`` ('' when none)."""
    parts = []
    if window is not None and window.peak_vram_bytes:
        parts.append(f"peak VRAM {format_bytes(window.peak_vram_bytes)}")
    jpt = window.joules_per_token(stats.completion_tokens) if window is not None else None
    if jpt is not None:
        parts.append(f"{jpt:.2f} J/token")
    if price_per_hour:
        parts.append(token_cost(price_per_hour, stats.prompt_tok_s, stats.gen_tok_s).line())
    return "".join(f" · {p}" for p in parts)
