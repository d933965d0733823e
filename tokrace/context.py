"""A chat longer than the context: which turns a request sends, under the user's overflow policy.

The history stays whole (shown, saved); a request sends a *window* of it: the head (the system messages,
and with the ``middle`` policy the first exchange too), then the newest turns from ``skip`` on. ``skip``
only grows, in whole exchanges, so the window starts with a user turn and every later request reuses
the same prefix (llama.cpp keeps its KV cache for it).

Token counts are not guessed from text alone: the engine reports each request's exact prompt size
(``RequestStarted.prompt_tokens``, also when it refused a prompt too long for the context), and
``skip_for`` spreads that count over the window's messages by length to choose how many turns to drop.
An estimate that turns out short is refused again by the engine with the new exact count, and the
caller trims once more (``MAX_TRIES``).

Policies (``Settings.context_policy``): ``rolling`` (default) drops the oldest turns and keeps the system
prompt: a chat kept open all day never dead-ends and the next reply depends most on the latest turns;
``middle`` also keeps the first exchange (often the task statement) and drops the turns after it;
``stop`` sends nothing that does not fit and says what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tokrace.backends.base import ChatMessage
from tokrace.settings import ContextPolicy

MAX_TRIES = 4
"""Requests per send at most (the first, then trimmed again after each refusal)."""
TEMPLATE_CHARS = 16
"""Characters a message's chat-template markup counts as, when spreading a token count by length."""


@dataclass(frozen=True, slots=True)
class Window:
    """What one request sends: ``messages``, having left out ``dropped`` history messages."""

    messages: list[ChatMessage]
    dropped: int


def head_size(history: Sequence[ChatMessage], policy: ContextPolicy) -> int:
    """How many leading messages every request keeps: the system messages, plus the first
    user/assistant exchange with ``middle``."""
    n = 0
    while n < len(history) and history[n].role == "system":
        n += 1
    if policy == "middle" and n + 1 < len(history) - 1 and history[n].role == "user" \
            and history[n + 1].role == "assistant":
        n += 2
    return n


def window(history: Sequence[ChatMessage], policy: ContextPolicy, skip: int) -> Window:
    """The request for ``history`` leaving out ``skip`` messages after the head."""
    head = head_size(history, policy)
    skip = max(0, min(skip, len(history) - head - 1))
    return Window([*history[:head], *history[head + skip:]], skip)


def reserve_tokens(n_ctx: int, max_tokens: int) -> int:
    """Room a request leaves for the reply: its ``max_tokens``, but at most a quarter of the context."""
    return max(1, min(max_tokens, n_ctx // 4))


def skip_for(history: Sequence[ChatMessage], policy: ContextPolicy, skip: int, prompt_tokens: int,
             budget: int) -> int | None:
    """The ``skip`` (≥ ``skip``) whose window should fit ``budget`` tokens, given that the window at
    ``skip`` is ``prompt_tokens`` tokens; ``None`` when even the head plus the newest user turn would not
    fit (or the policy is ``stop``). Drops whole exchanges: the window still starts with a user turn."""
    if prompt_tokens <= budget:
        return skip
    if policy == "stop":
        return None
    sent = window(history, policy, skip).messages
    weights = [len(m.content) + TEMPLATE_CHARS for m in sent]
    per_char = prompt_tokens / max(1, sum(weights))
    head = head_size(history, policy)
    over = prompt_tokens - budget
    start = head + skip
    freed = 0.0
    i = start
    last = len(history) - 1  # the newest user turn is always sent
    while i < last and freed < over:
        freed += (len(history[i].content) + TEMPLATE_CHARS) * per_char
        i += 1
    while i < last and history[i].role != "user":  # whole exchanges: start at a user turn
        freed += (len(history[i].content) + TEMPLATE_CHARS) * per_char
        i += 1
    if freed < over or i == start:
        return None
    return i - head


def overflow_notice(dropped: int, policy: ContextPolicy) -> str:
    """The line shown when a request left turns out (marks: render with the interface's ``say``)."""
    which = "middle" if policy == "middle" else "oldest"
    return (f"the conversation no longer fits the context: the {which} {dropped} message(s) were left out"
            " of this request (the system prompt is kept; {setting:context_policy} changes this)")


def refused_notice(prompt_tokens: int, n_ctx: int, policy: ContextPolicy) -> str:
    """The line shown when nothing was sent because it cannot fit."""
    if policy == "stop":
        return (f"the conversation is {prompt_tokens} tokens but the context holds {n_ctx} with room for a"
                " reply: {action:new_chat}, or choose another {setting:context_policy}")
    return (f"the request is {prompt_tokens} tokens and leaving out older turns cannot make it fit the"
            f" context ({n_ctx} tokens, with room for a reply): send a shorter message or raise"
            " {setting:n_ctx}")
