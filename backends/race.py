"""Race mode: two models answer the same prompt, and a verdict says which is faster and by how much.

A race has two lanes (``backends.race_lane``: each lane is one model with its own conversation
history, and the conversation policy that keeps their user turns equal). This module runs a race turn
(``run_race``) on one of two schedules:

- **simultaneous**: both lanes generate at once, each on its own thread (llama.cpp releases the GIL,
  and two instances may decode concurrently). On one device they share it: the CPU threads are split
  between them (``split_threads``) and the verdict says the figures were taken side by side, not solo.
- **fair**: one lane after the other, each with the whole machine. Every event keeps its true
  ``perf_counter`` timestamp, so the two replies can be replayed side by side at their true timing
  (``backends.race_replay``): the race still looks like a race, and the figures are each model's solo
  speed. Fair is the default on a single device (``default_mode``).

The memory guard (``backends.race_memory``) says when both models cannot be resident at once: the race
then runs fair, loading each lane in turn (``load_in_turn``). The verdict is ``backends.race_verdict``'s.
No Textual here: the CLI, the TUI and the benchmark all drive these functions.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from tokrace.backends.base import CancelToken, GenerationParams
from tokrace.backends.race_lane import Lane, LaneResult, commit_turn, not_run, run_lane
from tokrace.backends.race_verdict import Verdict, judge

RaceMode: TypeAlias = Literal["fair", "simultaneous"]
MODES: tuple[RaceMode, ...] = ("fair", "simultaneous")

__all__ = ["MODES", "RaceMode", "RaceResult", "default_mode", "run_race", "split_threads"]


def default_mode(n_gpus: int) -> RaceMode:
    """Fair on a single device (CPU, or one GPU): sharing it would measure the sharing, not the models.
    With two GPUs or more each lane can have its own, so simultaneous is a fair race too."""
    return "simultaneous" if n_gpus >= 2 else "fair"


def split_threads(total: int, lanes: int = 2) -> int:
    """CPU threads per lane when the lanes share one CPU: an even split, at least one each."""
    return max(1, total // max(1, lanes))


@dataclass(slots=True)
class RaceResult:
    prompt: str
    mode: RaceMode
    shared_device: bool
    lanes: list[LaneResult]
    """The last run's result per lane (its text, events and figures)."""
    verdict: Verdict
    cancelled: bool = False
    runs: list[list[LaneResult]] = field(default_factory=list)
    """Every run of this turn (``repeat``), each a list like ``lanes``; the last is ``lanes``."""
    kept: bool = False
    """Whether the turn entered both lanes' histories (``commit_turn``)."""


def run_race(
    lanes: Sequence[Lane],
    prompt: str,
    params: GenerationParams,
    *,
    mode: RaceMode,
    cancel: CancelToken,
    shared_device: bool = True,
    load_in_turn: bool = False,
    warm_up: bool = True,
    ceilings: dict[str, float | None] | None = None,
    on_lane_done: Callable[[Lane, LaneResult], None] | None = None,
    repeat: int = 1,
    price_per_hour: float | None = None,
) -> RaceResult:
    """Race ``lanes`` on ``prompt`` and commit the turn by the conversation policy (``commit_turn``).

    ``load_in_turn`` (fair only): load each lane just before its turn and unload it after (the memory
    guard said both cannot be resident). Otherwise lanes are loaded before anything generates, so no
    load competes with a running lane for the CPU.

    ``repeat`` (≥ 1): run the same turn that many times, each lane's KV cache cleared before each run so
    every run does the same work; the verdict gives mean ± sd over the runs (as llama-bench's ``-r``),
    and only the last run's reply enters the history. A cancel ends the repetitions.
    """
    if mode == "simultaneous" and load_in_turn:
        raise ValueError("both models must be resident to race simultaneously")
    if repeat < 1:
        raise ValueError("repeat must be at least 1")
    if not load_in_turn:
        for lane in lanes:
            if lane.load() and warm_up:
                lane.warm_up()
    runs: list[list[LaneResult]] = []
    for _ in range(repeat):
        if runs and cancel.cancelled:
            break
        runs.append(_run_once(lanes, prompt, params, mode=mode, cancel=cancel, load_in_turn=load_in_turn,
                              warm_up=warm_up, fresh=repeat > 1, on_lane_done=on_lane_done))
    ordered = runs[-1]
    kept = commit_turn(lanes, prompt, ordered)
    shared = shared_device and mode == "simultaneous"
    verdict = judge(lanes, ordered, mode=mode, shared_device=shared, ceilings=ceilings,
                    runs=runs if len(runs) > 1 else None, price_per_hour=price_per_hour)
    return RaceResult(prompt, mode, shared, ordered, verdict, cancelled=cancel.cancelled, runs=runs,
                      kept=kept)


def _run_once(lanes: Sequence[Lane], prompt: str, params: GenerationParams, *, mode: RaceMode,
              cancel: CancelToken, load_in_turn: bool, warm_up: bool, fresh: bool,
              on_lane_done: Callable[[Lane, LaneResult], None] | None) -> list[LaneResult]:
    """One run of a race turn; one result per lane, in lane order. ``fresh``: clear each lane's KV
    cache first (repetitions must not reuse the previous run's prompt)."""
    results: dict[str, LaneResult] = {}

    def finish(lane: Lane, result: LaneResult) -> None:
        results[lane.label] = result
        if on_lane_done is not None:
            on_lane_done(lane, result)

    if fresh and not load_in_turn:
        for lane in lanes:
            if lane.backend is not None:
                lane.backend.reset()
    if mode == "simultaneous":
        runnable = [lane for lane in lanes if lane.loaded]
        start = threading.Barrier(len(runnable)) if runnable else None

        def work(lane: Lane) -> None:
            assert start is not None
            start.wait()  # both lanes submit together: the race starts at one moment
            finish(lane, run_lane(lane, prompt, params, cancel))

        threads = [threading.Thread(target=work, args=(lane,), name=f"race-{lane.label}", daemon=True)
                   for lane in runnable]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    else:
        for lane in lanes:
            if cancel.cancelled:
                finish(lane, not_run(lane.label, lane.title))
                continue
            if load_in_turn and lane.load() and warm_up:
                lane.warm_up()
            try:
                finish(lane, run_lane(lane, prompt, params, cancel))
            finally:
                if load_in_turn:
                    lane.unload()
    return [results.get(lane.label) or not_run(lane.label, lane.title, lane.load_error) for lane in lanes]
