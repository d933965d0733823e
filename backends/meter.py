"""Turns stream events into speed figures, with llama.cpp's definitions.

- TTFT: submit (``RequestStarted.t``) → first ``TokenGenerated.t``.
- prompt tok/s: prompt tokens evaluated ÷ prompt evaluation time (``PromptProcessed``).
- generation tok/s: (tokens − 1) ÷ (last token time − first token time). The first token is produced
  by the prompt evaluation, so it is excluded from decode speed, as llama.cpp's ``n_eval`` does.
- live tok/s: the same formula over a sliding window of the most recent tokens.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from tokrace.backends.events import (
    DraftStep,
    GenerationFinished,
    PromptProcessed,
    RequestStarted,
    ServerReport,
    StopReason,
    StreamEvent,
    TokenGenerated,
)

LIVE_WINDOW_S = 1.0
"""Tokens newer than this feed the live rate…"""
LIVE_MIN_TOKENS = 8
"""…but never fewer than this many, so a slow model still shows a rate."""


def rate(n_tokens: int, first_t: float, last_t: float) -> float | None:
    """(n − 1) ÷ (last − first): intervals per second between n timestamps."""
    span = last_t - first_t
    if n_tokens < 2 or span <= 0:
        return None
    return (n_tokens - 1) / span


def binned_rate(times: list[float] | tuple[float, ...], points: int) -> list[float]:
    """tok/s in ``points`` equal time bins between the first and last timestamp (each interval after
    the first token is counted once), for sparklines and plots."""
    if len(times) < 2 or points < 1:
        return []
    first, span = times[0], times[-1] - times[0]
    if span <= 0:
        return []
    width = span / points
    counts = [0] * points
    for t in times[1:]:
        counts[min(int((t - first) / width), points - 1)] += 1
    return [c / width for c in counts]


@dataclass(slots=True)
class ReplyStats:
    """The figures of one finished (or running) reply; the unit the chat, race and log share."""

    model: str = ""
    template: str = ""
    prompt_tokens: int | None = None
    """Tokens of the prompt in context (cached ones included); ``None``: unknown (a remote server that
    sent no ``usage``, and no tokenizer here to count with)."""
    cached_prompt_tokens: int = 0
    prompt_eval_tokens: int | None = None
    """Prompt tokens evaluated for this reply (``n_p_eval``); ``None``: the engine does not say."""
    prompt_count_source: str | None = None
    """Where ``prompt_tokens`` comes from: ``engine`` (the in-process engine's token ids), ``usage``
    (the server's ``usage.prompt_tokens``), ``tokenizer`` (counted here with the model's own tokenizer
    and chat template: the server sent no usage); ``None``: unknown."""
    prompt_s: float | None = None
    prompt_tok_s: float | None = None
    completion_tokens: int = 0
    ttft_s: float | None = None
    gen_s: float | None = None
    gen_tok_s: float | None = None
    total_s: float = 0.0
    stop_reason: StopReason | None = None
    error: str | None = None
    notice: str | None = None
    draft_model: str | None = None
    """What drafted for this reply (a model id or ``prompt lookup``); ``None``: plain decoding."""
    draft_k: int | None = None
    """Tokens drafted per step for this reply (the most, with adaptive k)."""
    draft_p_min: float | None = None
    """The draft's confidence floor for this reply (llama.cpp's ``--draft-p-min``; ``None``: no draft)."""
    drafted: int = 0
    accepted: int = 0
    draft_steps: int = 0
    token_times_s: list[float] = field(default_factory=list)
    """Each token's time since submit, for plots and the log."""
    llama_perf: dict[str, Any] | None = None
    # A remote engine's reply (``None`` in-process): where it ran and what the server itself reported.
    engine: str | None = None
    """The remote engine as probed (``llama-server``, ``vLLM 0.6.3``…)."""
    endpoint: str | None = None
    """``host:port`` of the remote engine."""
    server_model: str | None = None
    token_count_source: str | None = None
    """``logprobs`` / ``usage`` (exact) or ``chunks`` (may undercount); ``None``: token ids (in-process)."""
    server_prompt_tok_s: float | None = None
    """Prompt speed the server measured (llama-server ``timings``); the client cannot see it."""
    server_gen_tok_s: float | None = None
    """Decode speed the server measured (``predicted_n`` ÷ ``predicted_ms``: no network in it)."""
    server_completion_tokens: int | None = None
    """The server's own count of generated tokens (``usage`` or ``timings``), to cross-check ours."""

    @property
    def context_tokens(self) -> int:
        """Tokens in the context after this reply: prompt + generated (an unknown prompt adds none)."""
        return (self.prompt_tokens or 0) + self.completion_tokens

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted ÷ drafted (llama.cpp's convention)."""
        return self.accepted / self.drafted if self.drafted else None

    def prompt_label(self) -> str:
        """``31 tok @ 305 tok/s (+12 cached)``: tokens evaluated for this reply. When the engine does not
        say how many it evaluated (a remote server without llama-server's ``timings``), the prompt's
        size in context (``31 tok in context``), and ``– tok`` when that is unknown too (never 0)."""
        if self.prompt_eval_tokens is None:
            return "– tok" if self.prompt_tokens is None else f"{self.prompt_tokens} tok in context"
        text = f"{self.prompt_eval_tokens} tok"
        if self.prompt_tok_s is not None:
            text += f" @ {self.prompt_tok_s:.0f} tok/s"
        if self.cached_prompt_tokens:
            text += f" (+{self.cached_prompt_tokens} cached)"
        return text

    def summary_line(self) -> str:
        """``128 tok · 127.4 tok/s · TTFT 0.12 s · prompt 31 tok @ 305 tok/s``."""
        parts = [f"{self.completion_tokens} tok"]
        parts.append(f"{self.gen_tok_s:.1f} tok/s" if self.gen_tok_s is not None else "– tok/s")
        if self.ttft_s is not None:
            parts.append(f"TTFT {self.ttft_s:.2f} s")
        parts.append(f"prompt {self.prompt_label()}")
        if self.drafted:
            parts.append(
                f"draft {self.accepted}/{self.drafted} accepted ({self.acceptance_rate:.0%})"
            )
        if self.stop_reason in ("cancelled", "error", "length", "context"):
            parts.append({"cancelled": "stopped", "error": "error", "length": "max tokens",
                          "context": "context full"}[self.stop_reason])
        return " · ".join(parts)

    def to_dict(self, *, with_token_times: bool = False) -> dict[str, Any]:
        data = asdict(self)
        data["acceptance_rate"] = self.acceptance_rate
        if not with_token_times:
            data.pop("token_times_s")
        return data


def _take_server_report(s: ReplyStats, r: ServerReport) -> None:
    """Fill a remote reply's figures from its server's report; client-measured figures stay as they are."""
    s.engine, s.endpoint, s.server_model = r.engine, r.endpoint, r.server_model
    s.token_count_source = r.token_count_source
    if r.usage_prompt_tokens is not None:  # what the server saw: authoritative
        s.prompt_tokens, s.prompt_count_source = r.usage_prompt_tokens, "usage"
    elif r.counted_prompt_tokens is not None and s.prompt_tokens is None:
        s.prompt_tokens, s.prompt_count_source = r.counted_prompt_tokens, "tokenizer"
    if r.prompt_n is not None and r.prompt_ms:
        s.server_prompt_tok_s = r.prompt_n / (r.prompt_ms / 1000)
        if s.prompt_s is None:  # the same definition as in-process: evaluated prompt ÷ its eval time
            s.prompt_eval_tokens, s.prompt_s = r.prompt_n, r.prompt_ms / 1000
            s.prompt_tok_s = s.server_prompt_tok_s
            if s.prompt_tokens is not None:
                s.cached_prompt_tokens = max(s.prompt_tokens - r.prompt_n, 0)
    if r.predicted_n is not None and r.predicted_ms:
        s.server_gen_tok_s = r.predicted_n / (r.predicted_ms / 1000)
    s.server_completion_tokens = (r.usage_completion_tokens if r.usage_completion_tokens is not None
                                  else r.predicted_n)
    if r.draft_n and not s.drafted:  # the engine's speculative decoding (llama-server --model-draft)
        s.drafted, s.accepted = r.draft_n, r.draft_n_accepted or 0


class SpeedMeter:
    """Consumes one reply's events; ``stats`` is always current, ``live_tok_s`` is for display."""

    def __init__(self) -> None:
        self.stats = ReplyStats()
        self._t0: float | None = None
        self._token_t: list[float] = []
        self._finished = False

    @property
    def finished(self) -> bool:
        return self._finished

    def observe(self, event: StreamEvent) -> None:
        s = self.stats
        if isinstance(event, TokenGenerated):
            self._token_t.append(event.t)
            s.completion_tokens = len(self._token_t)
            if self._t0 is not None:
                s.token_times_s.append(event.t - self._t0)
                if s.ttft_s is None:
                    s.ttft_s = event.t - self._t0
            if len(self._token_t) >= 2:
                s.gen_s = self._token_t[-1] - self._token_t[0]
                s.gen_tok_s = rate(len(self._token_t), self._token_t[0], self._token_t[-1])
        elif isinstance(event, DraftStep):
            s.drafted += event.drafted
            s.accepted += event.accepted
            s.draft_steps += 1
        elif isinstance(event, RequestStarted):
            self._t0 = event.t
            s.model = event.model
            s.template = event.template
            s.prompt_tokens = event.prompt_tokens
            s.prompt_count_source = "engine" if event.prompt_tokens is not None else None
            s.cached_prompt_tokens = event.cached_tokens
            s.draft_model = event.draft.name if event.draft is not None else None
            s.draft_k = event.draft.k if event.draft is not None else None
            s.draft_p_min = event.draft.p_min if event.draft is not None else None
        elif isinstance(event, PromptProcessed):
            s.prompt_eval_tokens = event.n_evaluated
            s.prompt_s = event.duration_s
            s.prompt_tok_s = event.n_evaluated / event.duration_s if event.duration_s > 0 else None
        elif isinstance(event, GenerationFinished):
            self._finished = True
            s.stop_reason = event.stop_reason
            s.error = event.error
            s.notice = event.notice
            s.llama_perf = event.llama_perf
            if event.server is not None:
                _take_server_report(s, event.server)
            # The backend's count is authoritative; it equals ours unless events were dropped.
            s.completion_tokens = event.completion_tokens
            if self._t0 is not None:
                s.total_s = event.t - self._t0

    def elapsed_s(self, now: float | None = None) -> float:
        if self._t0 is None:
            return 0.0
        if self._finished:
            return self.stats.total_s
        return (time.perf_counter() if now is None else now) - self._t0

    def live_tok_s(self, now: float | None = None) -> float | None:
        """Rate over the last second of tokens (at least the last 8); decays to 0 when stalled."""
        times = self._token_t
        if len(times) < 2:
            return None
        now = time.perf_counter() if now is None else now
        start = len(times) - 1
        while start > 0 and (times[start - 1] >= now - LIVE_WINDOW_S or len(times) - start < LIVE_MIN_TOKENS):
            start -= 1
        window = times[start:]
        # Count the time since the last token while still generating, so a stall shows as a drop.
        last = times[-1] if self._finished else max(times[-1], now)
        return rate(len(window), window[0], last) if len(window) >= 2 else None

    def series(self, points: int = 40) -> list[float]:
        """tok/s over the reply in ``points`` equal time bins (for the sparkline)."""
        return binned_rate(self._token_t, points)
