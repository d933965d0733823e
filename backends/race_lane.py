"""A race lane: one model with its own conversation history, and one lane's reply in a race turn.

``Lane`` loads its model (now or on demand, for a fair race that loads each lane in turn), warms it up
once as llama-bench does, and replies through ``ReplyRun`` keeping every event with its true timestamp
(for the verdict and the replay); ``LaneResult`` is one lane's reply in one race turn, ``run_lane``
produces it without ever raising. ``lane_title`` names a lane's model.

**Conversation policy** (``commit_turn``): both lanes always see the same user turns, each with its
own replies. A race prompt enters the histories of both lanes only when every lane produced a reply
(finished, hit max tokens, or was stopped after some text: a stopped lane keeps its partial reply);
when any lane failed, did not run, or was stopped before its first token, the turn is dropped from
both lanes, so the next prompt never finds one lane a turn ahead. The lanes' contexts still differ by
their own replies (and tokenizers): the verdict states each lane's context and compares per-token
figures (``race_verdict``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokrace.backends.base import Backend, CancelToken, ChatMessage, GenerationParams, LoadConfig, LoadedModel
from tokrace.backends.events import GenerationFinished, RequestStarted, StreamEvent
from tokrace.backends.meter import ReplyStats, SpeedMeter
from tokrace.backends.reply_run import ReplyRun
from tokrace.model_registry.errors import TokraceError

LABELS = ("A", "B")

__all__ = ["LABELS", "Lane", "LaneResult", "commit_turn", "lane_title", "not_run", "replied", "run_lane"]


def lane_title(model: LoadedModel) -> str:
    """The model's name with its quantization when the name does not say it already:
    ``Llama 3 8B Q4_K_M``; ``smollm2-135m-instruct:q4_1`` stays as it is. A server that names its
    model by a file path (llama-cpp-python's) shows the file name; an unknown quantization ("?") none."""
    name = model.name
    if "/" in name and name.endswith(".gguf"):
        name = name.rsplit("/", 1)[1]
    quant = model.quantization
    squash = name.lower().replace("-", "_").replace(".", "_")
    if quant and quant != "?" and quant.lower() not in squash:
        name = f"{name} {quant}"
    return name


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
