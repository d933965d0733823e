"""One reply of a loaded model, from request to speed-log record: ``Session.turn(...)`` returns a ``Turn``.

A ``Turn`` owns everything one reply needs beyond the text on screen (as simonw/llm's ``Response``
owns its stats and logging): the request (messages or a raw prompt, sampler settings), the backend it
runs on (the session's, or its plain twin for an A/B rerun), the meter, the device window (peak VRAM,
energy), the context fit (a history too long for the context is trimmed under the policy and sent
again), and the record in the speed log. Front ends only iterate ``turn`` and present what it says:

    turn = session.turn(messages, params, cancel=cancel, device=sampler)
    for event in turn:                 # on any thread; never raises for a failing backend
        show(event)
    print(turn.stats.summary_line())   # presenters: cli/words.py, tui/words.py
    turn.record()                      # once, after the reply is shown (may wait for the file's sha256)

The chat CLI, the TUI chat (with its A/B rerun), race lanes (through ``backends.reply_run.ReplyRun``,
the same loop one layer down) and ``tokrace bench`` all reply through it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from tokrace.backends.base import Backend, CancelToken, ChatMessage, GenerationParams
from tokrace.backends.events import GenerationFinished, StreamEvent
from tokrace.backends.meter import ReplyStats, SpeedMeter
from tokrace.backends.reply_run import ReplyRun
from tokrace.context import (
    MAX_TRIES,
    TEMPLATE_CHARS,
    overflow_notice,
    refused_notice,
    reserve_tokens,
    skip_for,
    window,
)
from tokrace.settings import ContextPolicy

if TYPE_CHECKING:
    from tokrace.backends.device_sampler import DeviceSampler, WindowStats
    from tokrace.speedlog import ReplyRecord


class ReplyOwner(Protocol):
    """What a turn runs on and records to: a loaded model (``tokrace.session.Session``)."""

    @property
    def backend(self) -> Backend: ...

    @property
    def records(self) -> bool:
        """Whether its replies go to the speed log."""
        ...

    def record(self, stats: ReplyStats, *, peak_vram_bytes: int | None = None, energy_j: float | None = None,
               sampling: GenerationParams | None = None) -> ReplyRecord | None: ...


@dataclass(slots=True)
class ContextFit:
    """A conversation to fit into the model's context under ``policy``: ``skip`` messages after the
    head (system prompt, and the first exchange with ``middle``) are left out of the request; the turn
    raises ``skip`` when the engine refuses a request as too long (from the exact count it reported)
    and sends again, at most ``context.MAX_TRIES`` times. ``used``: tokens the previous reply left in
    the context (``None``: unknown), to trim before sending instead of after a refusal."""

    history: Sequence[ChatMessage]
    policy: ContextPolicy
    skip: int = 0
    used: int | None = None


def refused(finished: GenerationFinished, stats: ReplyStats, n_ctx: int) -> bool:
    """The engine refused the request before any token because the prompt did not fit (a prompt of
    unknown size, from a server that did not count it, is never taken for one)."""
    n = stats.prompt_tokens
    return finished.stop_reason == "error" and not finished.text and n is not None and n >= n_ctx


class Turn:
    """One reply (see the module docstring). Iterate it once; then ``finished``, ``stats``, ``window``
    and ``record()``. ``sent`` is the message list really sent (after the context fit), ``fit.skip``
    the skip it settled on, ``overflow`` the notice when turns were left out."""

    def __init__(
        self,
        session: ReplyOwner,
        params: GenerationParams,
        *,
        messages: Sequence[ChatMessage] | None = None,
        prompt: str | None = None,
        cancel: CancelToken | None = None,
        backend: Backend | None = None,
        device: DeviceSampler | None = None,
        fit: ContextFit | None = None,
        keep_events: bool = False,
    ) -> None:
        if sum(x is not None for x in (messages, prompt, fit)) != 1:
            raise ValueError("a turn sends chat messages, a raw prompt or a context fit: exactly one")
        self.session = session
        self.params = params
        self.backend = backend or session.backend
        self.cancel = cancel or CancelToken()
        self.prompt = prompt
        self.fit = fit
        self.sent: list[ChatMessage] = list(messages) if messages is not None else []
        self.device = device
        self.keep_events = keep_events
        self.run = ReplyRun(self._produce, keep_events=keep_events)
        self.window: WindowStats | None = None
        self.overflow: str | None = None
        self._recorded = False

    # -- what the reply measured ------------------------------------------------------------------
    @property
    def meter(self) -> SpeedMeter:
        """The current request's meter (a context refusal starts a new one): live figures."""
        return self.run.meter

    @property
    def stats(self) -> ReplyStats:
        return self.run.stats

    @property
    def finished(self) -> GenerationFinished | None:
        return self.run.finished

    @property
    def text(self) -> str:
        return self.run.text

    @property
    def rerun(self) -> bool:
        """Whether this turn runs on another backend than the session's own (an A/B rerun)."""
        return self.backend is not self.session.backend

    # -- running ----------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[StreamEvent]:
        wid = self.device.begin_window() if self.device is not None else None
        try:
            if self.fit is None:
                yield from self.run
                return
            for attempt in range(MAX_TRIES):
                if attempt:
                    self.run = ReplyRun(self._produce, keep_events=self.keep_events)
                again = False
                for event in self.run:  # consumed to the end, so the engine finishes its request
                    if isinstance(event, GenerationFinished):
                        # Refused before any token: trimmed (fit.skip), sent again. A refusal that no
                        # trimming can fit becomes the error that says what to do.
                        again = attempt + 1 < MAX_TRIES and self._refit(event)
                        event = self.run.finished or event
                    if not again:
                        yield event
                if not again:
                    return
        finally:
            if self.device is not None and wid is not None:
                self.window = self.device.end_window(wid)

    def _produce(self) -> Iterator[StreamEvent]:
        if self.prompt is not None:
            return self.backend.stream_prompt(self.prompt, self.params, self.cancel)
        if self.fit is not None:
            self._fit_window()
        return self.backend.stream_chat(self.sent, self.params, self.cancel)

    def _budget(self) -> tuple[int, int]:
        n_ctx = self.backend.model.n_ctx
        return n_ctx, n_ctx - reserve_tokens(n_ctx, self.params.max_tokens)

    def _fit_window(self) -> None:
        fit = self.fit
        assert fit is not None
        if fit.used is not None and fit.policy != "stop":
            # Room for this reply: trim before sending rather than fill the context after a few tokens.
            estimate = fit.used + len(fit.history[-1].content) // 3 + TEMPLATE_CHARS
            skip = skip_for(fit.history, fit.policy, fit.skip, estimate, self._budget()[1])
            if skip is not None:
                fit.skip = skip
            fit.used = None  # once, before the first request
        sent = window(fit.history, fit.policy, fit.skip)
        self.sent = list(sent.messages)
        self.overflow = overflow_notice(sent.dropped, fit.policy) if sent.dropped else None

    def _refit(self, finished: GenerationFinished) -> bool:
        """After a refusal for length: raise ``fit.skip`` and return True to send again; when nothing
        more can be left out, turn the refusal into the error that says what to do (False)."""
        fit = self.fit
        stats = self.run.stats
        n_ctx, budget = self._budget()
        if fit is None or not refused(finished, stats, n_ctx):
            return False
        n = stats.prompt_tokens or 0  # known: refused() checked it
        skip = skip_for(fit.history, fit.policy, fit.skip, n, budget)
        if skip is not None and skip != fit.skip:
            fit.skip = skip
            return True
        error = refused_notice(n, n_ctx, fit.policy)
        self.run.finished = GenerationFinished(finished.t, "error", "", 0, error=error)
        self.run.meter.stats.error = error
        self.overflow = None
        return False

    # -- after the reply --------------------------------------------------------------------------
    def record(self) -> ReplyRecord | None:
        """Append this reply to its session's speed log with the sampler settings and device window it
        ran with (``Session.record``); once: a second call returns ``None``. Raises ``TokraceError``
        (kind ``log``) when the log cannot be written: show it after the reply, never instead of it."""
        if self._recorded or self.finished is None:
            return None
        self._recorded = True
        w = self.window
        return self.session.record(self.stats, peak_vram_bytes=w.peak_vram_bytes if w else None,
                                   energy_j=w.energy_j if w else None, sampling=self.params)
