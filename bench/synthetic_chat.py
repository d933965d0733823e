"""A paced synthetic backend, a fixed device sampler and one reply through the headless chat app: what
``bench/render_cost.py`` and ``bench/ui_load.py`` both drive, each with its own pacing."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from scripted_backend import SCRIPTED_MODEL, FixedSampler, ScriptedBackend

from tokrace.backends.base import CancelToken, ChatMessage, GenerationParams
from tokrace.backends.events import (
    GenerationFinished,
    PromptProcessed,
    RequestStarted,
    StreamEvent,
    TokenGenerated,
)


class PacedBackend(ScriptedBackend):
    """Emits ``n`` tokens (``pieces``, cycled) at ``rate`` tok/s with real timestamps. ``sleep``: wait
    between tokens by sleeping (the source uses no CPU: render_cost counts the process's CPU), else by
    spinning on perf_counter (it really runs at that rate: ui_load times the source). ``window`` > 0:
    record (wall, process CPU) every ``window`` tokens and at the end, in ``marks``."""

    def __init__(self, rate: float, n: int, pieces: Sequence[str], *, sleep: bool, window: int = 0) -> None:
        super().__init__([])
        self.rate, self.n, self.pieces, self.sleep, self.window = rate, n, list(pieces), sleep, window
        self.marks: list[tuple[float, float]] = []

    def stream_chat(self, messages: Sequence[ChatMessage], params: GenerationParams,
                    cancel: CancelToken | None = None) -> Iterator[StreamEvent]:
        t0 = time.perf_counter()
        yield RequestStarted(t0, SCRIPTED_MODEL.name, 10, 0, "synthetic")
        yield PromptProcessed(t0, 10, 0.0)
        text: list[str] = []
        for i in range(self.n):
            if self.window and i % self.window == 0:
                self.marks.append((time.perf_counter(), time.process_time()))
            due = t0 + (i + 1) / self.rate
            if self.sleep:
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            else:
                while time.perf_counter() < due:  # pace, as a model would, without sleeping
                    pass
            piece = self.pieces[i % len(self.pieces)]
            text.append(piece)
            yield TokenGenerated(i, i, piece, time.perf_counter())
        if self.window:
            self.marks.append((time.perf_counter(), time.process_time()))
        yield GenerationFinished(time.perf_counter(), "length", "".join(text), self.n)


async def send_and_wait(app: Any, pilot: Any) -> None:
    """In a running headless ``TokraceApp``: wait for its model, send "go", wait for the reply to end."""
    while app.chat.backend is None or not app.chat._ready:
        await pilot.pause(0.05)
    app.chat.send("go")
    await pilot.pause(0.1)
    while app.chat.generating:
        await pilot.pause(0.05)


__all__ = ["FixedSampler", "PacedBackend", "send_and_wait"]
