"""What one ``tokrace tune`` stage is: its options (test sizes, rounds, candidates), its result (the
decision and the settings each candidate stands for) and the interleaved schedule that measures it.
Shared by the load stages (``tune``) and the draft stages (``tune_draft``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tokrace.tune_decide import Decision

ProgressFn = Callable[[str], None]

TUNE_PROMPT = (
    "```python\n# A small, complete Python module: a LRU cache class with get, put and a capacity,\n"
    "# typed, documented, with a short self-test at the bottom.\nfrom collections import OrderedDict\n"
)
"""Drafted generation is measured on code (raw completion): what drafts are used for most."""

STAGES = ("n_threads", "flash_attn", "n_ubatch", "kv_cache", "draft_k", "draft_p_min")
DRAFT_STAGES = ("draft_k", "draft_p_min")
NO_DRAFT = "no draft"


@dataclass(frozen=True, slots=True)
class TuneOptions:
    """What to measure: test sizes in tokens (llama-bench's ``-p``, ``-n``, ``-d``), rounds per stage,
    the drafted generation's length, and the draft candidates."""

    n_prompt: int = 128
    n_gen: int = 32
    n_depth: int = 256
    rounds: int = 3
    draft_gen: int = 64
    k_values: tuple[int, ...] = (1, 2, 3, 4, 6, 8)
    p_min_values: tuple[float, ...] = (0.0, 0.5, 0.75, 0.9)
    stages: tuple[str, ...] = STAGES
    prompt: str = TUNE_PROMPT


@dataclass(slots=True)
class StageResult:
    """One stage: what was measured (``metric``), the verdicts, and the settings each candidate sets."""

    name: str
    metric: str
    decision: Decision
    settings: dict[str, dict[str, Any]]
    """candidate label → the ``Settings`` fields it stands for."""
    notes: list[str] = field(default_factory=list)

    @property
    def chosen(self) -> dict[str, Any]:
        return self.settings.get(self.decision.winner, {})


def interleave(runs: dict[str, Callable[[bool], float]], rounds: int, stage: str,
               progress: ProgressFn | None) -> dict[str, list[float]]:
    """Each run once per round, in turn; ``run(first_round)`` returns a speed. Samples per name."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(rounds):
        for name, run in runs.items():
            samples[name].append(run(i == 0))
            if progress is not None:
                progress(f"{stage}: round {i + 1}/{rounds}: {name}: {samples[name][-1]:.2f} tok/s")
    return samples
