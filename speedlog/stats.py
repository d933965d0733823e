"""Mean, sample standard deviation (llama-bench's, with Bessel's correction) and the regression test."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("mean of no values")
    return sum(values) / len(values)


def stdev(values: Sequence[float]) -> float:
    """Sample standard deviation; 0 for fewer than two values, as llama-bench prints."""
    if len(values) < 2:
        return 0.0
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def mean_sd(values: Sequence[float], digits: int = 2) -> str:
    """``127.40 ± 3.12`` (or just ``127.40`` for one value, ``–`` for none)."""
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{mean(values):.{digits}f} ± {stdev(values):.{digits}f}"


MIN_RELATIVE_DROP = 0.05
"""Drops smaller than this are not reported even when statistically clear: machines drift that much."""
Z_THRESHOLD = 3.0
"""How many standard errors the drop must exceed."""


@dataclass(frozen=True, slots=True)
class Comparison:
    current_mean: float
    history_mean: float
    history_n: int
    drop: float
    """Relative: 0.10 = 10% slower than history."""
    z: float
    regression: bool


def compare_with_history(current: Sequence[float], history: Sequence[float]) -> Comparison | None:
    """Is ``current`` slower than ``history`` beyond noise?

    Noise is the standard error of the difference of means (Welch), with each side's own spread; a
    single run without spread borrows the other side's. A regression needs both a drop beyond
    ``Z_THRESHOLD`` standard errors and at least ``MIN_RELATIVE_DROP``.
    """
    if not current or not history:
        return None
    cm, hm = mean(current), mean(history)
    cs, hs = stdev(current), stdev(history)
    cs = cs or hs
    hs = hs or cs
    se = math.sqrt(cs**2 / len(current) + hs**2 / len(history))
    drop = (hm - cm) / hm if hm else 0.0
    z = (hm - cm) / se if se > 0 else (math.inf if hm > cm else 0.0)
    return Comparison(
        current_mean=cm,
        history_mean=hm,
        history_n=len(history),
        drop=drop,
        z=z,
        regression=z > Z_THRESHOLD and drop > MIN_RELATIVE_DROP,
    )
