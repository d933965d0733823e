"""The race verdict's noise: each figure's mean ± sd, and when two figures differ by more than it.

- ``measure``: one lane's figure over its runs. With ``--repeat N`` (N ≥ 2) the mean over the runs ±
  their sample standard deviation, as llama-bench reports; with one run, the noise is estimated from
  that reply's per-token interval spread (coefficient of variation ``cv`` of the intervals between
  tokens, with a robust sd: ``interval_spread``): tok/s has relative noise ``cv / √intervals``, a single
  timed span (TTFT, prompt evaluation) ``cv``, a finish time ``√(TTFT² cv² + intervals · sd²)``.
- ``compare``: a difference within two standard errors of the difference (``Z · √(se_a² + se_b²)``,
  about 95 %) is a tie; with no noise estimate (fewer than 3 tokens) a difference under
  ``FALLBACK_MARGIN`` is a tie.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokrace.backends.race_lane import LaneResult

Z = 2.0
"""Standard errors of the difference within which two figures tie (≈ 95 %)."""
FALLBACK_MARGIN = 0.05
"""Relative difference below which two figures tie when their noise cannot be measured."""


@dataclass(frozen=True, slots=True)
class Measure:
    """One lane's figure: ``value`` (mean over runs), ``sd`` (the noise of one run's value, same unit;
    ``None`` when it cannot be measured) and ``runs`` (how many runs the mean is over)."""

    value: float
    sd: float | None
    runs: int = 1

    @property
    def se(self) -> float | None:
        """Standard error of ``value``: ``sd / √runs``."""
        return None if self.sd is None else self.sd / math.sqrt(self.runs)

    def show(self, pattern: str) -> str:
        """``120.3 ± 2.1`` (``pattern`` formats both numbers), or just the value when noise is unknown."""
        if self.sd is None:
            return pattern.format(self.value)
        return f"{pattern.format(self.value)} ± {pattern.format(self.sd)}"


MAD_TO_SD = 1.4826
"""Median absolute deviation × this = the standard deviation of a normal distribution."""


def interval_spread(token_times_s: Sequence[float]) -> tuple[int, float, float] | None:
    """``(intervals, mean_s, sd_s)`` of the intervals between consecutive tokens, or ``None`` with
    fewer than two intervals (no spread to measure). ``sd_s`` is robust (1.4826 × the median absolute
    deviation): the typical jitter between tokens, not blown up by one stall (a stall still counts in
    the mean, so in the figure; it is not noise the next run would repeat)."""
    gaps = [b - a for a, b in itertools.pairwise(token_times_s)]
    if len(gaps) < 2:
        return None
    mean = statistics.fmean(gaps)
    median = statistics.median(gaps)
    mad = statistics.median(abs(g - median) for g in gaps)
    return (len(gaps), mean, MAD_TO_SD * mad) if mean > 0 else None


def _single_run_noise(r: LaneResult) -> dict[str, float | None]:
    """Each figure's noise (sd, same unit) in one reply, from its per-token interval spread."""
    s = r.stats
    spread = interval_spread(s.token_times_s)
    if spread is None:
        return {"gen": None, "ttft": None, "prompt": None, "finish": None}
    n, mean, sd = spread
    cv = sd / mean
    ttft_sd = s.ttft_s * cv if s.ttft_s is not None else None
    return {
        "gen": s.gen_tok_s * cv / math.sqrt(n) if s.gen_tok_s else None,
        "ttft": ttft_sd,
        "prompt": s.prompt_tok_s * cv if s.prompt_tok_s else None,
        "finish": math.sqrt((ttft_sd or 0.0) ** 2 + n * sd * sd),
    }


def measure(runs: Sequence[LaneResult], key: str, value: Callable[[LaneResult], float | None]
            ) -> Measure | None:
    """The figure ``value`` of one lane over its ``runs``: mean ± sample sd over the runs that have it
    (two or more), else the single run's value with its per-token noise (``key`` in
    ``_single_run_noise``). ``None`` when no run has the figure."""
    values = [(r, v) for r in runs if (v := value(r)) is not None]
    if not values:
        return None
    if len(values) >= 2:
        xs = [v for _, v in values]
        return Measure(statistics.fmean(xs), statistics.stdev(xs), len(xs))
    r, v = values[0]
    return Measure(v, _single_run_noise(r)[key], 1)


@dataclass(frozen=True, slots=True)
class Comparison:
    """Two measures compared: ``better`` is the index (0/1) of the better one, ``None`` on a tie;
    ``ratio`` is better ÷ worse for higher-is-better figures, worse ÷ better for times (≥ 1)."""

    better: int | None
    ratio: float
    threshold: float | None
    """The difference a non-tie needs (``Z`` standard errors), ``None`` when noise was unknown."""


def compare(a: Measure, b: Measure, *, higher_is_better: bool) -> Comparison:
    diff = abs(a.value - b.value)
    lo, hi = sorted((a.value, b.value))
    ratio = hi / lo if lo > 0 else math.inf
    if a.se is not None and b.se is not None:
        threshold: float | None = Z * math.hypot(a.se, b.se)
        tie = diff <= (threshold or 0.0)
    else:
        threshold = None
        tie = diff <= FALLBACK_MARGIN * hi
    if tie:
        return Comparison(None, ratio, threshold)
    a_better = (a.value > b.value) == higher_is_better
    return Comparison(0 if a_better else 1, ratio, threshold)
