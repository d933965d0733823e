"""Typed stream events: the only thing that flows from a backend to the chat, the race and the log.

A backend's ``stream_chat`` yields, in order::

    RequestStarted  PromptProcessed  TokenGenerated*  [DraftStep*]  GenerationFinished

``TokenGenerated`` is emitted once per *token* (not per text chunk: a token can release no text while
its bytes wait for the rest of a UTF-8 character or for a possible stop string, and one token can
release several characters). Its ``t`` is a ``time.perf_counter()`` timestamp taken right after the
token was sampled; the speed meter derives every figure from these timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

StopReason: TypeAlias = Literal["stop", "length", "context", "cancelled", "error"]
"""Why a reply ended: the model ended its turn or a stop string matched (``stop``), ``max_tokens`` was
reached (``length``), the context filled (``context``), the user stopped it, or it failed."""


@dataclass(frozen=True, slots=True)
class DraftInfo:
    """The speculative decoding a backend does: what drafts, and how many tokens per step."""

    name: str
    """The draft model's id (catalog id or file name), or ``prompt lookup``."""
    kind: Literal["draft model", "prompt lookup"]
    k: int
    """Tokens drafted per verification step (the most, with ``adaptive``)."""
    adaptive: bool = False
    p_min: float = 0.0
    """A draft model stops drafting at a token whose probability is below this (llama.cpp's
    ``--draft-p-min``; 0: drafts k tokens every step)."""


@dataclass(frozen=True, slots=True)
class RequestStarted:
    """The request was submitted: ``t`` is the reference for TTFT."""

    t: float
    model: str
    prompt_tokens: int | None
    """Tokens in the formatted prompt, including any reused from the KV cache; ``None`` when the engine
    does not say before it answers (a remote server: its ``usage``, if any, comes at the end)."""
    cached_tokens: int
    """Leading prompt tokens reused from the previous turn's KV cache (not evaluated again)."""
    template: str
    """How the chat was turned into a prompt, e.g. ``gguf chat template`` or ``plain completion``."""
    draft: DraftInfo | None = None
    """The speculative decoding this request ran with (``None``: plain decoding). A fact of the
    request, so a reply is logged with the draft it really used (an A/B rerun has none)."""


@dataclass(frozen=True, slots=True)
class PromptProcessed:
    """Prompt evaluation ended (llama.cpp's ``t_p_eval``)."""

    t: float
    n_evaluated: int
    duration_s: float


@dataclass(frozen=True, slots=True)
class TokenGenerated:
    """One generated token and when it was produced."""

    index: int
    """0-based position of the token in the reply."""
    token_id: int
    """The token's id in the model's vocabulary; -1 when unknown (a remote engine names tokens by text)."""
    text: str
    """Text this token released; may be empty (see module docstring)."""
    t: float
    drafted: bool = False
    """True when a draft model proposed the token and the target accepted it."""


@dataclass(frozen=True, slots=True)
class DraftStep:
    """One speculative verification step: the draft proposed ``drafted`` tokens, ``accepted`` survived."""

    t: float
    drafted: int
    accepted: int


TokenCountSource: TypeAlias = Literal["logprobs", "usage", "chunks"]
"""How a remote reply's tokens were counted: one ``logprobs`` entry per token (exact, with per-chunk
times), the server's ``usage`` (exact count, times per chunk), or stream ``chunks`` (may undercount)."""


@dataclass(frozen=True, slots=True)
class ServerReport:
    """A remote engine's own account of one reply, next to the client's measurements.

    Counts are tokens, times milliseconds, as llama-server's ``timings`` and OpenAI's ``usage`` give
    them; ``None`` where the server said nothing. ``endpoint`` is ``host:port`` (never a key)."""

    engine: str
    endpoint: str
    server_model: str
    token_count_source: TokenCountSource
    usage_prompt_tokens: int | None = None
    usage_completion_tokens: int | None = None
    prompt_n: int | None = None
    prompt_ms: float | None = None
    predicted_n: int | None = None
    predicted_ms: float | None = None
    draft_n: int | None = None
    draft_n_accepted: int | None = None
    counted_prompt_tokens: int | None = None
    """The prompt counted on this side with the model's own tokenizer and chat template, when the server
    sent no ``usage`` (``None``: not counted)."""


@dataclass(frozen=True, slots=True)
class GenerationFinished:
    """The reply ended; ``text`` is the whole reply (authoritative over concatenated token texts)."""

    t: float
    stop_reason: StopReason
    text: str
    completion_tokens: int
    error: str | None = None
    notice: str | None = None
    """Something the user should know about this reply (e.g. it ended at its first token).

    ``error`` and ``notice`` may name a setting or an action as ``{setting:n_ctx}`` /
    ``{action:new_chat}``: show them through ``tokrace.model_registry.errors.render`` with the
    interface's words (the CLI names a flag, the TUI a key)."""
    llama_perf: dict[str, Any] | None = field(default=None, compare=False)
    """llama.cpp's own counters for the request (``llama_perf_context``), for cross-checking."""
    server: ServerReport | None = field(default=None, compare=False)
    """What a remote engine said about the reply (``None`` for an in-process engine)."""


StreamEvent: TypeAlias = (
    RequestStarted | PromptProcessed | TokenGenerated | DraftStep | GenerationFinished
)
