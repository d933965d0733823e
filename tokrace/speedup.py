"""A draft model's speedup, one definition everywhere (the chat's Ctrl+B A/B rerun, ``bench --draft``):

    speedup = median over n pairs of (decode tok/s with the draft ÷ decode tok/s without it)

Each pair is the same prompt, sampler settings and seed run on the same loaded target with and without
the draft, one right after the other (interleaved, so the machine's drift hits both alike); decode tok/s
is generation tok/s as the meter defines it ((tokens − 1) ÷ (last − first token time), or a bench run's
tokens ÷ time). It is shown with its spread, the lowest and highest pair's ratio, and n; a single pair
has no spread and says so (``n=1, no spread``): short replies vary by more than many drafts gain.
Above 1 the draft helps, below 1 it costs.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Speedup:
    median: float
    low: float
    high: float
    n: int

    def show(self) -> str:
        """``1.12× (0.98–1.18×, n=5)`` or ``1.57× (n=1, no spread)``."""
        if self.n == 1:
            return f"{self.median:.2f}× (n=1, no spread)"
        return f"{self.median:.2f}× ({self.low:.2f}–{self.high:.2f}×, n={self.n})"

    def to_json(self) -> dict[str, float | int]:
        return {"speedup": self.median, "speedup_min": self.low, "speedup_max": self.high,
                "speedup_n": self.n}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Speedup:
        """Back from ``to_json``'s keys (a single ``speedup`` alone: one pair)."""
        x = float(data["speedup"])
        return cls(x, float(data.get("speedup_min", x)), float(data.get("speedup_max", x)),
                   int(data.get("speedup_n", 1)))


def paired_speedup(plain_tok_s: Sequence[float | None], drafted_tok_s: Sequence[float | None]
                   ) -> Speedup | None:
    """From the two variants' decode speeds, pair by pair in run order (``None`` where a run has no
    speed: that pair is skipped); ``None`` without a complete pair. Raises ``ValueError`` when the
    lists differ in length (unpaired runs)."""
    if len(plain_tok_s) != len(drafted_tok_s):
        raise ValueError(f"{len(plain_tok_s)} plain runs but {len(drafted_tok_s)} drafted: pair them")
    ratios = [d / p for p, d in zip(plain_tok_s, drafted_tok_s, strict=True) if p and d]
    if not ratios:
        return None
    return Speedup(statistics.median(ratios), min(ratios), max(ratios), len(ratios))


def ab_summary(drafted_tok_s: float | None, plain_tok_s: float | None, acceptance: float | None) -> str:
    """The chat's A/B line: ``draft speedup 1.57× (n=1, no spread) · 37.2 vs 23.7 tok/s with/without ·
    100% accepted ÷ drafted``."""
    speedup = paired_speedup([plain_tok_s], [drafted_tok_s])
    if speedup is None or drafted_tok_s is None or plain_tok_s is None:
        return "speedup unknown (too few tokens)"
    accepted = f" · {acceptance:.0%} accepted ÷ drafted" if acceptance is not None else ""
    return (f"draft speedup {speedup.show()} · {drafted_tok_s:.1f} vs {plain_tok_s:.1f} tok/s with/without"
            f"{accepted}")
