"""Race mode: two models answer the same prompt, and a verdict says which is faster and by how much.

A race has two lanes; each lane is one model with its own conversation history.

**Conversation policy** (``commit_turn``): both lanes always see the same user turns, each with its
own replies. A race prompt enters the histories of both lanes only when every lane produced a reply
(finished, hit max tokens, or was stopped after some text: a stopped lane keeps its partial reply);
when any lane failed, did not run, or was stopped before its first token, the turn is dropped from
both lanes, so the next prompt never finds one lane a turn ahead. The lanes' contexts still differ by
their own replies (and tokenizers): the verdict states each lane's context and compares per-token
figures (``race_verdict``).

Two schedules:

- **simultaneous**: both lanes generate at once, each on its own thread (llama.cpp releases the GIL,
  and two instances may decode concurrently). On one device they share it: the CPU threads are split
  between them and the verdict says the figures were taken side by side, not solo.
- **fair**: one lane after the other, each with the whole machine. Every event keeps its true
  ``perf_counter`` timestamp, so the two replies can be replayed side by side at their true timing
  (``replay_events``): the race still looks like a race, and the figures are each model's solo speed.
  Fair is the default on a single device.

The memory guard compares what both models need at once (weights + KV cache + compute buffer, from the
GGUF headers) against free memory; when they cannot both be resident the race runs fair, loading each
lane in turn. No Textual here: the CLI, the TUI and the benchmark all drive these functions.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

from tokrace.backends.base import Backend, CancelToken, ChatMessage, GenerationParams, LoadConfig, LoadedModel
from tokrace.backends.events import GenerationFinished, RequestStarted, StreamEvent
from tokrace.backends.meter import ReplyStats, SpeedMeter
from tokrace.backends.race_verdict import Verdict, judge, lane_title
from tokrace.backends.reply_run import ReplyRun
from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.units import format_bytes

RaceMode: TypeAlias = Literal["fair", "simultaneous"]
MODES: tuple[RaceMode, ...] = ("fair", "simultaneous")
LABELS = ("A", "B")
RAM_HEADROOM = 0.9
"""Share of the currently available RAM a race may plan to fill (the OS and the UI need the rest)."""

__all__ = [
    "LABELS", "MODES", "Lane", "LaneResult", "MemoryGuard", "RaceMode", "RaceResult", "Verdict",
    "commit_turn", "default_mode", "judge", "lane_title", "memory_guard", "replay_events",
    "run_lane", "run_race", "split_threads",
]


def default_mode(n_gpus: int) -> RaceMode:
    """Fair on a single device (CPU, or one GPU): sharing it would measure the sharing, not the models.
    With two GPUs or more each lane can have its own, so simultaneous is a fair race too."""
    return "simultaneous" if n_gpus >= 2 else "fair"


def split_threads(total: int, lanes: int = 2) -> int:
    """CPU threads per lane when the lanes share one CPU: an even split, at least one each."""
    return max(1, total // max(1, lanes))


# -- memory guard ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MemoryGuard:
    """Whether both lanes' models fit in memory at the same time."""

    need_bytes: tuple[int, ...]
    free_bytes: int
    where: str
    """``RAM`` or ``VRAM``: on GPUs a model spilling into RAM would race at another speed entirely."""

    @property
    def fits_together(self) -> bool:
        return sum(self.need_bytes) <= self.free_bytes

    def line(self) -> str:
        need = " + ".join(format_bytes(n) for n in self.need_bytes)
        if self.fits_together:
            return f"both models resident: {need} of {format_bytes(self.free_bytes)} free {self.where}"
        return (f"both models cannot be resident at once ({need} > {format_bytes(self.free_bytes)} free"
                f" {self.where}): racing fair, one after the other, loading each lane in turn")


def memory_guard(need_bytes: Sequence[int], *, ram_available: int,
                 gpu_free: Sequence[int] = ()) -> MemoryGuard:
    """``need_bytes``: each model's weights + KV + compute (``model_registry.memory_plan``)."""
    if gpu_free:
        return MemoryGuard(tuple(need_bytes), int(sum(gpu_free)), "VRAM")
    return MemoryGuard(tuple(need_bytes), int(ram_available * RAM_HEADROOM), "RAM")


# -- lanes -----------------------------------------------------------------------------------------
@dataclass(slots=True)
class LaneResult:
    """One lane's reply in one race: its figures and every event with its true timestamp."""

    label: str
    stats: ReplyStats
    events: list[StreamEvent] = field(default_factory=list)
    finished: GenerationFinished | None = None
    ran: bool = True
    """False when the lane never started (it failed to load, or the race was stopped before its turn)."""
    error: str | None = None

    @property
    def text(self) -> str:
        return self.finished.text if self.finished is not None else ""

    @property
    def ok(self) -> bool:
        return self.ran and self.error is None and self.finished is not None \
            and self.finished.stop_reason in ("stop", "length", "context")

    @property
    def t_start(self) -> float | None:
        return next((e.t for e in self.events if isinstance(e, RequestStarted)), None)

    @property
    def t_end(self) -> float | None:
        return self.finished.t if self.finished is not None else None


@dataclass(slots=True)
class Lane:
    """One side of the race: a model (loaded now, or on demand by ``factory``) and its history."""

    label: str
    ref: str
    """What the user typed (path or catalog id); shown until the model is loaded."""
    factory: Callable[[], Backend] | None = None
    """Makes the (unloaded) backend; ``None`` when ``backend`` was handed over already loaded."""
    backend: Backend | None = None
    config: LoadConfig | None = None
    plan: Any = None
    """The split plan its load used (for the roofline), when known."""
    model_id: str | None = None
    draft: str | None = None
    """The draft model this lane decodes with (speculative decoding), as the user gave it."""
    draft_k: int | None = None
    need_bytes: int | None = None
    load_error: str | None = None
    history: list[ChatMessage] = field(default_factory=list)
    recorder: Any = None
    """A ``speedlog.SessionRecorder`` (kind="race"), or None when nothing is logged."""
    last: LaneResult | None = None
    system: str | None = None
    """The system prompt both lanes start from (``--system``); never part of ``history``."""
    last_committed: bool = False
    """Whether the last race turn entered ``history`` (``undo_last_turn`` undoes only that one)."""
    _model: LoadedModel | None = None
    _warm: bool = False

    @property
    def model(self) -> LoadedModel | None:
        if self._model is None and self.backend is not None and self.factory is None:
            self._model = self.backend.model  # handed over loaded
        return self._model

    @property
    def loaded(self) -> bool:
        return self.backend is not None and self.model is not None

    @property
    def title(self) -> str:
        base = lane_title(self.model) if self.model is not None else self.ref
        # A lane racing with a draft model says so.
        return f"{base} + draft {Path(self.draft).name}" if self.draft else base

    def load(self) -> bool:
        """Load the model if needed; on failure keep the one-line error and return False."""
        if self.loaded:
            return True
        if self.load_error is not None:
            return False
        if self.factory is None:
            self.load_error = "no model to load"
            return False
        try:
            backend = self.factory()
            self._model = backend.load()
        except TokraceError as err:
            self.load_error = str(err)
            return False
        self.backend = backend
        return True

    def warm_up(self) -> None:
        """One throw-away token, as llama-bench's warm-up run: the first decode of a process pays for
        thread-pool start and buffer allocation (~0.5 s here), which would otherwise count against
        whichever lane runs first."""
        if self.backend is None or self._warm:
            return  # once per load: later turns keep their KV cache for the next prompt
        self._warm = True
        params = GenerationParams(max_tokens=1, temperature=0.0)
        for _ in self.backend.stream_chat([ChatMessage("user", "hi")], params, CancelToken()):
            pass
        self.backend.reset()  # the race's prompt must not reuse the warm-up's KV cache

    def unload(self) -> None:
        """Free the model (fair mode when both cannot be resident); ``load`` brings it back."""
        if self.backend is not None and self.factory is not None:
            self.backend.unload()
            self.backend = None
            self._warm = False

    def reply(self, prompt: str, params: GenerationParams, cancel: CancelToken,
              meter: SpeedMeter | None = None) -> ReplyRun:
        """This lane's reply to ``prompt`` (not run yet: iterate it, on any thread), its events kept
        for the verdict and the replay. The lane must be loaded."""
        backend = self.backend
        assert backend is not None
        messages = self.messages(prompt)
        return ReplyRun(lambda: backend.stream_chat(messages, params, cancel), meter=meter, keep_events=True)

    def result(self, run: ReplyRun) -> LaneResult:
        """The ``LaneResult`` of a finished ``reply``."""
        assert run.finished is not None
        return LaneResult(self.label, run.stats, run.events, run.finished, error=run.finished.error)

    def messages(self, prompt: str) -> list[ChatMessage]:
        system = [ChatMessage("system", self.system)] if self.system else []
        return [*system, *self.history, ChatMessage("user", prompt)]

    def commit(self, prompt: str, result: LaneResult, *, keep: bool) -> None:
        """Record ``result`` as this lane's last, and add the turn to the history when ``keep`` (see
        ``commit_turn``: the decision is the race's, so both lanes keep the same user turns)."""
        self.last = result
        self.last_committed = keep
        if keep:
            self.history += [ChatMessage("user", prompt), ChatMessage("assistant", result.text)]

    def undo_last_turn(self, prompt: str) -> None:
        """Drop the last turn if it was committed and was ``prompt`` (rerun: the same race again, from
        the same context)."""
        if self.last_committed and len(self.history) >= 2 \
                and self.history[-2] == ChatMessage("user", prompt):
            del self.history[-2:]
        self.last_committed = False


def replied(result: LaneResult) -> bool:
    """Whether a lane's turn produced a reply worth keeping as context: it ran without error and has
    text (finished, max tokens, or stopped after its first tokens)."""
    return result.ran and result.error is None and result.finished is not None and bool(result.text)


def commit_turn(lanes: Sequence[Lane], prompt: str, results: Sequence[LaneResult]) -> bool:
    """Apply the conversation policy (module docstring) to one race turn: the turn enters every lane's
    history when every lane replied, else none. Returns whether it was kept."""
    keep = len(results) == len(lanes) and all(replied(r) for r in results)
    for lane, result in zip(lanes, results, strict=True):
        lane.commit(prompt, result, keep=keep)
    return keep


def not_run(label: str, model: str, reason: str | None = None) -> LaneResult:
    stats = ReplyStats(model=model, stop_reason="error" if reason else None, error=reason)
    return LaneResult(label, stats, ran=False, error=reason)


def run_lane(lane: Lane, prompt: str, params: GenerationParams, cancel: CancelToken,
             meter: SpeedMeter | None = None) -> LaneResult:
    """Generate one lane's reply on the calling thread. Never raises: a lane that breaks becomes an
    error result, so the other lane (maybe on another thread) finishes its reply regardless."""
    if not lane.loaded:
        return not_run(lane.label, lane.title, lane.load_error or "not loaded")
    run = lane.reply(prompt, params, cancel, meter)
    run.run()
    return lane.result(run)


# -- the race --------------------------------------------------------------------------------------
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


# -- replay ----------------------------------------------------------------------------------------
def replay_events(
    events: Sequence[StreamEvent],
    cancel: CancelToken | None = None,
    *,
    start: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[StreamEvent]:
    """Yield recorded events again at their true pace, as if the request had been submitted at
    ``start`` (default: now). Timestamps are shifted by one constant, so every interval and therefore
    every figure (TTFT, tok/s) is exactly the recorded one, while live readouts that compare event
    times with the clock keep working. A cancel stops the waiting, not the reply: the rest comes at
    once (the generation already happened; only the show is skipped).
    """
    if not events:
        return
    origin = events[0].t
    shift = (clock() if start is None else start) - origin
    for event in events:
        due = event.t + shift
        while cancel is None or not cancel.cancelled:
            wait = due - clock()
            if wait <= 0:
                break
            sleep(min(wait, 0.05))  # short naps: a cancel is noticed within 50 ms
        yield dataclasses.replace(event, t=due)
