"""The application layer: the one load pipeline and the one reply recorder every front end uses.

``tokrace.load`` prepares (resolves and places) what to load; this module loads it and runs its replies.
Data flows one way::

    LoadSpec ──prepare()──▶ PreparedModel ──build()/load()──▶ Session ──record(stats)──▶ speed log
    (what the user   (registry resolved the files,    (backend loaded;      (each reply from its
     asked for)       placement planned, not loaded)   what the UI shows)    own facts)

``tokrace chat``, the TUI, race lanes and ``tokrace bench`` all go through ``prepare`` (and
``open_session`` for a loaded model), so they resolve, place, build drafts and log the same way. The
registry hands a path down; backends never resolve or download; the speed log never drives the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from tokrace.backends.base import (
    Backend,
    GenerationParams,
    LoadConfig,
    LoadedModel,
)
from tokrace.backends.split_plan import SplitPlan
from tokrace.load import LoadSpec, PreparedModel, RemotePrepared, prepare
from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.gguf_meta import GGUFInfo
from tokrace.model_registry.transfer import ProgressFn

if TYPE_CHECKING:
    from tokrace.backends.base import CancelToken, ChatMessage
    from tokrace.backends.device_sampler import DeviceSampler
    from tokrace.backends.device_telemetry import GpuSample
    from tokrace.backends.meter import ReplyStats
    from tokrace.speedlog import Kind, ReplyRecord, SessionRecorder, SpeedLog
    from tokrace.turn import ContextFit, Turn

StatusFn = Callable[[str], None]
"""Called with a short line whenever a load enters a new stage (``loading model.gguf…``)."""


class Session:
    """One loaded model (with its draft, if any) and the speed-log session its replies go to.

    ``record`` writes each finished reply from the facts of that reply: the draft and k it really ran
    with come from its own events, so a rerun on ``backend.plain`` is logged as undrafted.
    """

    def __init__(
        self,
        backend: Backend,
        prepared: PreparedModel | RemotePrepared | None = None,
        *,
        kind: Kind = "chat",
        lane: str | None = None,
        session_id: str | None = None,
        log: SpeedLog | None = None,
        record: bool = True,
    ) -> None:
        """``prepared`` is ``None`` for a backend built elsewhere (tests, a scripted engine): such a
        session has no plan and no header info. ``record=False`` keeps its replies out of the log."""
        self.backend = backend
        self.prepared = prepared
        self.kind: Kind = kind
        self.lane = lane
        self._recorder: SessionRecorder | None = None
        if record and prepared is not None:
            from tokrace.speedlog import SessionRecorder

            self._recorder = SessionRecorder(backend.model, prepared.config, kind=kind, lane=lane,
                                             session_id=session_id, model_id=prepared.model_id, log=log)

    @property
    def model(self) -> LoadedModel:
        return self.backend.model

    @property
    def plan(self) -> SplitPlan | None:
        return self.prepared.plan if self.prepared is not None else None

    @property
    def info(self) -> GGUFInfo | None:
        """The model file's header (``None`` for a backend built without ``prepare``)."""
        return self.prepared.info if self.prepared is not None else None

    @property
    def config(self) -> LoadConfig | None:
        return self.prepared.config if self.prepared is not None else None

    @property
    def records(self) -> bool:
        """Whether finished replies go to the speed log."""
        return self._recorder is not None

    @property
    def log_session_id(self) -> str | None:
        """The speed-log session this model's replies are logged under (one per chat; ``None`` when
        nothing is logged). Not this object: a ``Session`` is a loaded model."""
        return self._recorder.session_id if self._recorder is not None else None

    def record(
        self,
        stats: ReplyStats,
        *,
        peak_vram_bytes: int | None = None,
        energy_j: float | None = None,
        sampling: GenerationParams | None = None,
    ) -> ReplyRecord | None:
        """Append one finished reply to the speed log (fsynced; the first may wait for the model's
        sha256), with the ``sampling`` settings it ran with when given. ``None`` when this session does
        not record. Raises ``TokraceError`` (kind ``log``) when the log cannot be written: show it after
        the reply, never instead of it.

        A request that failed before its first token (``stop_reason`` "error", 0 tokens: e.g. a prompt
        larger than the context) measured nothing and is not logged (``None``): it would read as a
        0-token reply."""
        if self._recorder is None:
            return None
        return record_reply(self._recorder, stats, peak_vram_bytes=peak_vram_bytes, energy_j=energy_j,
                            sampling=sampling)

    def turn(
        self,
        params: GenerationParams,
        *,
        messages: Sequence[ChatMessage] | None = None,
        prompt: str | None = None,
        fit: ContextFit | None = None,
        cancel: CancelToken | None = None,
        plain: bool = False,
        device: DeviceSampler | None = None,
        keep_events: bool = False,
    ) -> Turn:
        """One reply (``tokrace.turn.Turn``): to chat ``messages``, a raw ``prompt`` (no chat template;
        bench, base models) or a conversation ``fit`` to the context: exactly one. ``plain``: on the
        same loaded model without its draft (an A/B rerun, timed against the drafted reply).
        ``device``: sample peak VRAM and energy over the reply. Nothing runs until it is iterated."""
        from tokrace.turn import Turn

        return Turn(self, params, messages=messages, prompt=prompt, fit=fit, cancel=cancel,
                    backend=self.backend.plain if plain else None, device=device, keep_events=keep_events)

    def new_log_session(self) -> str | None:
        """Start a new speed-log session (a new chat); its id."""
        return self._recorder.new_session() if self._recorder is not None else None

    def unload(self) -> None:
        self.backend.unload()


def record_reply(
    recorder: SessionRecorder,
    stats: ReplyStats,
    *,
    peak_vram_bytes: int | None = None,
    energy_j: float | None = None,
    sampling: GenerationParams | None = None,
) -> ReplyRecord | None:
    """The one way a reply reaches the speed log (chat, TUI, A/B rerun, race lanes): ``None`` for a
    reply not worth logging (``worth_logging``); a log that cannot be written raises ``TokraceError``
    of kind ``log``."""
    if not worth_logging(stats):
        return None
    try:
        return recorder.record(stats, peak_vram_bytes=peak_vram_bytes, energy_j=energy_j, sampling=sampling)
    except TokraceError as err:
        raise TokraceError(err.template, kind="log", facts=err.facts) from err


def worth_logging(stats: ReplyStats) -> bool:
    """Whether a finished reply belongs in the speed log: not a request that failed before its first
    token (nothing was measured; logged it would read as a 0-token reply)."""
    return not (stats.stop_reason == "error" and stats.completion_tokens == 0)


def open_session(
    spec: LoadSpec,
    gpus: Sequence[GpuSample],
    *,
    progress: ProgressFn | None = None,
    status: StatusFn | None = None,
    kind: Kind = "chat",
    record: bool = True,
) -> Session:
    """``prepare`` then build and load: the loaded model, ready to chat, with its replies recorded.

    Raises ``TokraceError`` as ``prepare`` does, and when llama.cpp cannot load the file.
    """
    prepared = prepare(spec, gpus, progress=progress)
    if status is not None:
        status(prepared.load_line)
    backend = prepared.build()
    backend.load()
    try:
        return Session(backend, prepared, kind=kind, record=record)
    except BaseException:
        backend.unload()
        raise
