"""The one error type every user-facing failure is reported with, and how each interface words it.

A ``TokraceError`` carries a kind (what failed, for code to branch on), facts (the numbers behind it)
and a one-line message that says what went wrong and what to do. The remedy often names a setting or
an action, which each interface says in its own words: the CLI names a flag (``--ctx``), the TUI a key
or a form field (``Context (F2)``). Messages therefore mark those spots, ``{setting:n_ctx}`` and
``{action:new_chat}``, and ``render(words)`` fills them in; ``str(err)`` uses the neutral words
(llama.cpp's setting names), which is also what the speed log keeps. Anything else escaping is a bug.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

_MARK = re.compile(r"\{(setting|action):([a-z_]+)\}")


class Words(Protocol):
    """How one interface names settings and actions in an error's remedy."""

    def setting(self, name: str) -> str:
        """A setting by its ``tokrace.settings.Settings`` field name (``n_ctx``), e.g. ``--ctx``."""
        ...

    def action(self, name: str) -> str:
        """An action (``new_chat``, ``stop_reply``), e.g. ``start a new chat (Ctrl+N)``."""
        ...


class NeutralWords:
    """llama.cpp's names for settings, plain words for actions (logs, ``str(err)``)."""

    ACTIONS: Mapping[str, str] = {
        "new_chat": "start a new chat",
        "stop_reply": "stop the reply",
        "settings": "change the load settings",
    }

    def setting(self, name: str) -> str:
        return name

    def action(self, name: str) -> str:
        return self.ACTIONS.get(name, name.replace("_", " "))


NEUTRAL = NeutralWords()


def render(text: str, words: Words = NEUTRAL) -> str:
    """``text`` with its ``{setting:…}`` / ``{action:…}`` marks said in ``words``."""
    return _MARK.sub(
        lambda m: words.setting(m.group(2)) if m.group(1) == "setting" else words.action(m.group(2)), text
    )


KINDS: Mapping[str, str] = {
    "usage": "a command, a flag combination or a model reference that is not valid as given",
    "settings": "a setting's value (flag, F2 field or settings.toml key) out of its bounds, or a bad file",
    "model_file": "a model file that is missing, unreadable, not GGUF, truncated or incomplete",
    "catalog": "a catalog entry that is malformed (catalog.toml or the user's catalog)",
    "network": "the Hub, PyPI or the network failed, or a download arrived damaged",
    "remote": "a remote engine (an OpenAI-compatible server) refused or failed",
    "engine": "the inference engine (llama.cpp) failed while running",
    "placement": "the model, its context and KV cache do not fit the memory or the GPU layout",
    "draft": "speculative decoding cannot run with this draft model or target",
    "race": "a race cannot start: its lanes' own reasons are in the message",
    "disk": "not enough free disk space",
    "storage": "a folder or file of tokrace's (data, cache, export) cannot be read or written",
    "log": "the speed log or a saved conversation cannot be read or written",
    "cancelled": "the user stopped it (a pull); nothing is lost",
    "error": "nothing more specific applies",
}
"""Every ``TokraceError.kind``, with what it means. Code branches on kinds (tests, the TUI); each raise
names one (``tests/test_error_kinds.py`` checks the source)."""


class TokraceError(Exception):
    """A failure the user can act on; ``str(err)`` is one line, ending with what to do.

    ``kind`` names the failure, one of ``KINDS`` (``model_file``, ``placement``, ``usage``...; ``error``
    when nothing more specific applies); ``facts`` holds its numbers
    (``{"prompt_tokens": 525, "n_ctx": 512}``).
    """

    exit_code: int = 2
    kind: str = "error"

    def __init__(
        self, message: str, *, kind: str | None = None, facts: Mapping[str, Any] | None = None
    ) -> None:
        # One line, always: a multi-line message would break the CLI's contract.
        self.template = " ".join(message.split())
        if kind is not None:
            self.kind = kind
        self.facts: dict[str, Any] = dict(facts or {})
        super().__init__(render(self.template))

    def render(self, words: Words = NEUTRAL) -> str:
        """The message in one interface's words."""
        return render(self.template, words)


class ModelFileError(TokraceError):
    """A model path that is missing, unreadable, not GGUF or truncated."""

    kind = "model_file"
