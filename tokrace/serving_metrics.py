"""The serving figures of one concurrency level, with vLLM's ``bench serve`` definitions
(``vllm/benchmarks/serve.py``, ``calculate_metrics``), from the client's per-token timestamps:

- **TTFT**: request sent → first token (client side: the network is in it).
- **TPOT** (time per output token, the first excluded): ``(E2E − TTFT) ÷ (output tokens − 1)`` per
  request with at least two tokens.
- **ITL** (inter-token latency): the gaps between successive stream chunks that carried tokens, over
  all requests (tokens of one chunk arrive together, so they are one gap, as vLLM counts them).
- **E2E**: request sent → last byte of the reply.
- **throughput**: completed requests ÷ the level's duration (req/s), and all generated tokens of completed
  requests ÷ duration (output tok/s).
- **goodput**: completed requests that met every SLO given (``ttft``, ``tpot``, ``e2el`` in ms, as
  vLLM's ``--goodput ttft:500 tpot:50``) ÷ duration.

Percentiles are numpy's (linear interpolation), as vLLM's; a percentile is given only from enough samples
to have one beyond it: p ≥ ``1 − 1/n`` (p50 needs 2 samples, p90 10, p99 100). A level with failures
says how many and what the first one was; its latency figures are over the completed requests only.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tokrace.backends.meter import ReplyStats

PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0)
SLO_METRICS: tuple[str, ...] = ("ttft", "tpot", "e2el")


def min_samples(q: float) -> int:
    """Samples a ``q``-th percentile needs to have one sample beyond it: ⌈1 ÷ (1 − q/100)⌉."""
    return math.ceil(1.0 / (1.0 - q / 100.0) - 1e-9)


@dataclass(frozen=True, slots=True)
class Distribution:
    """A figure over a level's samples: ``n`` samples, their mean and the percentiles ``PERCENTILES``
    (``None`` where ``n`` is below ``min_samples``); latencies in milliseconds, speeds in tok/s."""

    n: int
    mean: float | None
    percentiles: dict[str, float | None] = field(default_factory=dict)
    """``"p50"`` → ms."""

    @classmethod
    def of(cls, values: Sequence[float], *, scale: float = 1000.0) -> Distribution:
        """From ``values`` × ``scale`` (default: seconds → milliseconds)."""
        ms = [x * scale for x in values]
        if not ms:
            return cls(0, None, {f"p{q:g}": None for q in PERCENTILES})
        pct = {f"p{q:g}": float(np.percentile(ms, q)) if len(ms) >= min_samples(q) else None
               for q in PERCENTILES}
        return cls(len(ms), float(np.mean(ms)), pct)

    def cell(self) -> str:
        """``120 / 180 / –`` (p50 / p90 / p99 in ms; – where there are too few samples)."""
        return " / ".join("–" if v is None else f"{v:.0f}" if v >= 100 else f"{v:.1f}"
                          for v in self.percentiles.values())


def tpot_s(s: ReplyStats) -> float | None:
    """``(E2E − TTFT) ÷ (output tokens − 1)``; ``None`` with fewer than two tokens."""
    if s.completion_tokens < 2 or s.ttft_s is None:
        return None
    return (s.total_s - s.ttft_s) / (s.completion_tokens - 1)


def itl_s(s: ReplyStats) -> list[float]:
    """Gaps between successive chunks that carried tokens (tokens with one arrival time are one chunk)."""
    arrivals = [t for t, _ in itertools.groupby(s.token_times_s)]
    return [b - a for a, b in itertools.pairwise(arrivals)]


def parse_goodput(items: Sequence[str]) -> dict[str, float]:
    """``["ttft:500", "tpot:50"]`` → ``{"ttft": 500.0, "tpot": 50.0}`` (ms). Raises ``ValueError`` with
    the bad item."""
    slo: dict[str, float] = {}
    for item in items:
        name, _, value = item.partition(":")
        try:
            ms = float(value)
        except ValueError:
            ms = math.nan
        if name not in SLO_METRICS or not ms > 0:
            raise ValueError(f"--goodput {item!r}: expected METRIC:MS with METRIC one of"
                             f" {', '.join(SLO_METRICS)} and MS above 0, e.g. ttft:500 tpot:50")
        slo[name] = ms
    return slo


def meets_slo(s: ReplyStats, slo: Mapping[str, float]) -> bool:
    """Whether one completed request met every SLO (ms); a request of one token has TPOT 0, as vLLM's."""
    values = {"ttft": s.ttft_s, "tpot": tpot_s(s) or 0.0, "e2el": s.total_s}
    return all(values[k] is not None and values[k] * 1000.0 <= ms for k, ms in slo.items())  # type: ignore[operator]


@dataclass(slots=True)
class LevelMetrics:
    """One concurrency level. Counts are requests; throughputs per second of ``duration_s``."""

    concurrency: int
    requests: int
    """Requests the level was to send."""
    completed: int
    failed: int
    """Sent and ended in an error (or cut off at the time limit)."""
    not_started: int
    """Not sent: the time limit had passed."""
    output_tokens: int
    duration_s: float
    request_throughput: float | None
    output_throughput: float | None
    """Generated tokens of completed requests ÷ duration (aggregate tok/s)."""
    request_tok_s: Distribution
    """Each completed request's decode speed (tok/s, not ms): generation tok/s as the chat defines it."""
    ttft: Distribution
    tpot: Distribution
    itl: Distribution
    e2el: Distribution
    goodput: float | None = None
    """Requests/s that met every SLO (``None``: no SLO given)."""
    slo: dict[str, float] = field(default_factory=dict)
    first_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def level_metrics(concurrency: int, requests: int, replies: Sequence[ReplyStats], duration_s: float,
                  slo: Mapping[str, float] | None = None) -> LevelMetrics:
    """The level's figures from every reply it sent (completed or not)."""
    ok = [s for s in replies if s.stop_reason in ("stop", "length", "context")]
    failed = [s for s in replies if s not in ok]
    tokens = sum(s.completion_tokens for s in ok)
    first_error = next((s.error or "cancelled at the time limit" for s in failed), None)
    per_second = (lambda x: x / duration_s) if duration_s > 0 else (lambda x: None)
    rates = [s.gen_tok_s for s in ok if s.gen_tok_s is not None]
    good = sum(1 for s in ok if meets_slo(s, slo)) if slo else None
    return LevelMetrics(
        concurrency=concurrency, requests=requests, completed=len(ok), failed=len(failed),
        not_started=requests - len(replies), output_tokens=tokens, duration_s=duration_s,
        request_throughput=per_second(len(ok)) if ok else None,
        output_throughput=per_second(tokens) if tokens else None,
        request_tok_s=Distribution.of(rates, scale=1.0),
        ttft=Distribution.of([s.ttft_s for s in ok if s.ttft_s is not None]),
        tpot=Distribution.of([t for s in ok if (t := tpot_s(s)) is not None]),
        itl=Distribution.of([g for s in ok for g in itl_s(s)]),
        e2el=Distribution.of([s.total_s for s in ok]),
        goodput=per_second(good) if good is not None else None, slo=dict(slo or {}),
        first_error=first_error,
    )
