"""``tokrace tune``'s verdicts: which candidate is faster than the baseline, from interleaved samples,
and which differences are inside the noise (a tie). Pure functions of the samples, no engine here.

Every candidate is measured once per round and the rounds interleave all candidates, so a load spike on
the shared machine hits one round of every candidate alike. The comparison is therefore *paired*: for
round i, ``ratio_i = candidate_i ÷ baseline_i`` (speeds, higher is better). A candidate is

- **faster** when its ratio interval lies wholly above ``1 + min_gain`` *and* its median beats the
  baseline's by more than the two spreads together (half of each one's range over the rounds,
  trimmed as the interval),
- **slower** when, the other way round, both say it is slower,
- a **tie** otherwise (the difference is within the rounds' spread, or too small to matter).

Both tests must agree: paired ratios see through a load that drifts slowly over the run, the combined
spread guards against a few rounds that agree by chance while each candidate's own speed jumps about
(a busy shared machine). A tie keeps the baseline.

The interval is the range of the per-round ratios (for 6 rounds or more, without the lowest and highest
one: one disturbed round must not veto a clear result). With fewer than 2 rounds nothing can be told
from noise: every candidate ties. The winner is the fastest candidate by median ratio among those
*faster* than the baseline; without one the baseline stays (ties are never winners).
"""

from __future__ import annotations

import statistics
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["baseline", "faster", "slower", "tie"]

MIN_GAIN = 0.01
"""Smallest speed-up worth changing a setting for (1%), even when the rounds agree on it."""


@dataclass(frozen=True, slots=True)
class CandidateResult:
    """One candidate's samples and its verdict against the baseline.

    ``median``/``low``/``high``: the candidate's own speed over the rounds (the unit of its samples,
    e.g. tok/s). ``ratio``: median per-round ratio to the baseline; ``ratio_low``/``ratio_high``: the
    interval the verdict is read from (see the module docstring)."""

    name: str
    samples: tuple[float, ...]
    median: float
    low: float
    high: float
    ratio: float
    ratio_low: float
    ratio_high: float
    verdict: Verdict

    @property
    def spread(self) -> float:
        """Half the range of the candidate's own samples, as a fraction of its median (±)."""
        return (self.high - self.low) / 2 / self.median if self.median else 0.0


@dataclass(frozen=True, slots=True)
class Decision:
    """A stage's outcome: ``winner`` is the baseline unless a candidate was measurably faster."""

    baseline: str
    winner: str
    candidates: tuple[CandidateResult, ...]

    @property
    def changed(self) -> bool:
        return self.winner != self.baseline

    def result(self, name: str) -> CandidateResult:
        return next(c for c in self.candidates if c.name == name)


def ratio_interval(ratios: Sequence[float]) -> tuple[float, float]:
    """The range of per-round values (ratios); with 6 or more rounds, the range without the extreme two."""
    ordered = sorted(ratios)
    if len(ordered) >= 6:
        ordered = ordered[1:-1]
    return ordered[0], ordered[-1]


def half_range(values: Sequence[float]) -> float:
    """Half the range of ``values``: the ± spread of one candidate's speed over the rounds (from 6
    rounds on without the lowest and highest, as ``ratio_interval``)."""
    low, high = ratio_interval(values)
    return (high - low) / 2


def verdict(candidate: Sequence[float], baseline: Sequence[float], min_gain: float = MIN_GAIN) -> Verdict:
    """``faster``/``slower``/``tie`` of one candidate's per-round speeds against the baseline's (same
    rounds, same order); see the module docstring."""
    if len(candidate) < 2:
        return "tie"
    low, high = ratio_interval([c / b for c, b in zip(candidate, baseline, strict=True)])
    gap = statistics.median(candidate) - statistics.median(baseline)
    noise = half_range(candidate) + half_range(baseline)
    if low > 1.0 + min_gain and gap > noise:
        return "faster"
    if high < 1.0 - min_gain and -gap > noise:
        return "slower"
    return "tie"


def decide(samples: Mapping[str, Sequence[float]], baseline: str, *, min_gain: float = MIN_GAIN,
           eligible: Collection[str] | None = None) -> Decision:
    """The verdict of every candidate against ``baseline`` and the stage's winner.

    ``samples``: candidate name → its speed in each round (higher is better; round i of every candidate
    was measured in the same interleaved pass). ``eligible``: the candidates that may win (default: all;
    a reference row such as "no draft" is measured and judged but never chosen). Raises ``ValueError``
    when ``baseline`` is missing, the candidates have different numbers of rounds, there is no round, or
    a speed is not positive."""
    if baseline not in samples:
        raise ValueError(f"baseline {baseline!r} has no samples")
    lengths = {len(v) for v in samples.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError("every candidate needs the same number of rounds, at least one")
    if any(x <= 0 for v in samples.values() for x in v):
        raise ValueError("speeds must be positive")
    base = samples[baseline]
    results = []
    for name, values in samples.items():
        ratios = [c / b for c, b in zip(values, base, strict=True)]
        low, high = ratio_interval(ratios)
        results.append(CandidateResult(
            name=name, samples=tuple(values), median=statistics.median(values), low=min(values),
            high=max(values), ratio=statistics.median(ratios), ratio_low=low, ratio_high=high,
            verdict="baseline" if name == baseline else verdict(values, base, min_gain),
        ))
    faster = [r for r in results if r.verdict == "faster" and (eligible is None or r.name in eligible)]
    winner = max(faster, key=lambda r: r.ratio).name if faster else baseline
    return Decision(baseline, winner, tuple(results))
