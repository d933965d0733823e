"""What the chat shows of its context window (``tokrace.context``): the turns its requests leave out are
marked (dimmed, and a line where the kept turns start), and a reply that filled the context says what the
overflow policy does next instead of sending the user to a new chat the policy makes unnecessary."""

from __future__ import annotations

import re
from collections.abc import Sequence

from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Static

from tokrace.backends.base import ChatMessage
from tokrace.context import head_size
from tokrace.settings import ContextPolicy

LEFT_OUT = "-left-out"
"""The CSS class of a message widget whose turn the requests leave out."""
DIVIDER_ID = "left-out-divider"

_CONTEXT_FULL = re.compile(r"the context \((\d+) tokens\) is full: \{action:new_chat\}")
"""The engines' notice for a reply that filled the context (``llama_cpp_backend``, ``speculative``)."""


def left_out(history: Sequence[ChatMessage], policy: ContextPolicy, skip: int) -> range:
    """History indices the requests leave out: ``skip`` messages after the head, as ``context.window``
    counts them."""
    head = head_size(history, policy)
    skip = max(0, min(skip, len(history) - head - 1))
    return range(head, head + skip)


def mark_left_out(messages: VerticalScroll, history: Sequence[ChatMessage], policy: ContextPolicy,
                  skip: int) -> None:
    """Dim the widgets of left-out turns (each widget's ``history_index``, ``None`` for a widget outside
    the history: an A/B rerun, a failed send) and put one line before the first kept turn after them."""
    dropped = left_out(history, policy, skip)
    first_kept: Widget | None = None
    for widget in messages.children:
        index = getattr(widget, "history_index", None)
        if index is None:
            continue
        widget.set_class(index in dropped, LEFT_OUT)
        if first_kept is None and dropped and index >= dropped.stop:
            first_kept = widget
    existing = messages.query(f"#{DIVIDER_ID}").results(Static)
    divider = next(iter(existing), None)
    if not dropped or first_kept is None:
        if divider is not None:
            divider.remove()
        return
    which, kept = ("oldest", "") if policy == "rolling" else ("middle", ", the first exchange")
    line = (f"✂ the {len(dropped)} dimmed message(s) above are left out of the requests (the {which}"
            f" turns, to fit the context); the model sees the system prompt{kept} and what follows")
    if divider is None:
        messages.mount(Static(line, id=DIVIDER_ID, classes="left-out-divider", markup=False),
                       before=first_kept)
    else:
        divider.update(line)
        messages.move_child(divider, before=first_kept)


def context_full_notice(notice: str | None, policy: ContextPolicy) -> str | None:
    """``notice`` with the engine's "the context is full: start a new chat" said as the policy handles
    it: with ``rolling`` or ``middle`` the next message leaves turns out by itself; with ``stop`` a new
    chat (or another policy) is the way on."""
    if notice is None:
        return None

    def reworded(m: re.Match[str]) -> str:
        n_ctx = m.group(1)
        if policy == "stop":
            return (f"the context ({n_ctx} tokens) is full: {{action:new_chat}}, or choose another"
                    " {setting:context_policy}")
        which = "oldest turns" if policy == "rolling" else "turns after the first exchange"
        return (f"the reply filled the context ({n_ctx} tokens); your next message leaves the {which} out"
                " of the request to make room ({setting:context_policy})")

    return _CONTEXT_FULL.sub(reworded, notice)
