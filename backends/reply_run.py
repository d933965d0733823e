"""One reply's events, measured: the reply loop every front end shares.

``ReplyRun(produce)`` iterates a backend's stream (``produce()``: ``stream_chat``, ``stream_prompt``,
a race replay), feeds every event to its ``SpeedMeter`` as it passes, keeps the events when asked
(race lanes replay them at their true timing), and guarantees the stream contract to its consumer:
exactly one ``GenerationFinished``, last. A backend that raises mid-reply, or ends without finishing,
becomes an ``error`` reply with the text it had produced, so the consumer (the other race lane, the
UI) goes on instead of failing.

It holds no Textual and writes no log: the application layer's ``tokrace.turn.Turn`` adds the device
window, the context fit and the speed-log record around it; race lanes (``backends.race_lane``) use it
directly. Events keep the backend's own ``perf_counter`` timestamps, so the figures do not depend on
which thread iterates (the TUI's event pump, the CLI's main thread, a race lane's thread).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from tokrace.backends.events import GenerationFinished, StreamEvent, TokenGenerated
from tokrace.backends.meter import ReplyStats, SpeedMeter


class ReplyRun:
    """``produce()``'s events through ``meter`` (a new ``SpeedMeter`` by default); iterate it once.

    After the iteration: ``finished`` is the reply's ``GenerationFinished`` (never ``None``),
    ``stats`` its figures, ``events`` every event with its timestamp when ``keep_events``.
    """

    def __init__(self, produce: Callable[[], Iterable[StreamEvent]], *, meter: SpeedMeter | None = None,
                 keep_events: bool = False) -> None:
        self._produce = produce
        self.meter = meter if meter is not None else SpeedMeter()
        self.keep_events = keep_events
        self.events: list[StreamEvent] = []
        self.finished: GenerationFinished | None = None

    @property
    def stats(self) -> ReplyStats:
        return self.meter.stats

    @property
    def text(self) -> str:
        """The reply's whole text once finished (``GenerationFinished.text``), else ``""``."""
        return self.finished.text if self.finished is not None else ""

    def __iter__(self) -> Iterator[StreamEvent]:
        pieces: list[str] = []
        try:
            for event in self._produce():
                if isinstance(event, TokenGenerated):
                    pieces.append(event.text)
                elif isinstance(event, GenerationFinished):
                    self.finished = event
                self._pass(event)
                yield event
        except Exception as err:  # the backend broke its contract: this reply fails, the caller goes on
            yield self._fail("".join(pieces), f"the backend failed mid-reply ({type(err).__name__}: {err})")
            return
        if self.finished is None:
            yield self._fail("".join(pieces), "the backend ended without finishing its reply")

    def run(self) -> GenerationFinished:
        """Iterate to the end on the calling thread; the reply's ``GenerationFinished``."""
        for _ in self:
            pass
        assert self.finished is not None  # __iter__ always ends with one
        return self.finished

    def _pass(self, event: StreamEvent) -> None:
        self.meter.observe(event)
        if self.keep_events:
            self.events.append(event)

    def _fail(self, text: str, error: str) -> GenerationFinished:
        self.finished = GenerationFinished(time.perf_counter(), "error", text,
                                           self.meter.stats.completion_tokens, error=error)
        self._pass(self.finished)
        return self.finished
