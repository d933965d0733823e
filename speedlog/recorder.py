"""The one call the chat and the race make when a reply finishes.

::

    recorder = SessionRecorder(model, config, kind="chat", model_id=resolved.model_id)  # after load()
    ...
    # on GenerationFinished, from the worker thread (the first call may wait for the model's sha256):
    recorder.record(meter.stats)
    ...
    recorder.new_session()  # Ctrl+N

A race makes one recorder per lane with the same ``session_id`` and ``kind="race"``, ``lane="A"``…
"""

from __future__ import annotations

from tokrace.backends.base import GenerationParams, LoadConfig, LoadedModel
from tokrace.backends.meter import ReplyStats
from tokrace.speedlog import hashing
from tokrace.speedlog.record import Kind, ReplyRecord, make_record, new_session_id
from tokrace.speedlog.store import SpeedLog


class SessionRecorder:
    """Appends each finished reply of one loaded model to the speed log under one session id."""

    def __init__(
        self,
        model: LoadedModel,
        config: LoadConfig,
        *,
        kind: Kind = "chat",
        session_id: str | None = None,
        lane: str | None = None,
        model_id: str | None = None,
        log: SpeedLog | None = None,
    ) -> None:
        self.model = model
        self.config = config
        self.kind: Kind = kind
        self.session_id = session_id or new_session_id()
        self.lane = lane
        self.model_id = model_id
        self.log = log or SpeedLog.open()
        # Start hashing now so the first finished reply rarely waits for a multi-GB file.
        hashing.prefetch(model.path)

    def new_session(self) -> str:
        self.session_id = new_session_id()
        return self.session_id

    def record(
        self,
        stats: ReplyStats,
        *,
        peak_vram_bytes: int | None = None,
        energy_j: float | None = None,
        sampling: GenerationParams | None = None,
    ) -> ReplyRecord:
        """Append the finished reply (fsynced); raises ``TokraceError`` if the log cannot be written.

        The draft model and k recorded are the reply's own (``stats.draft_model``/``draft_k``)."""
        record = make_record(
            stats, self.model, self.config, self.session_id, self.kind,
            lane=self.lane, model_id=self.model_id, peak_vram_bytes=peak_vram_bytes, energy_j=energy_j,
            sampling=sampling,
        )
        self.log.append(record)
        return record
