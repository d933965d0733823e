"""The one error type every user-facing failure is reported with.

A ``TokraceError`` carries a single line that says what went wrong and what to do; the CLI prints it
and exits 2, the TUI shows it in a dismissible notice. Anything else escaping is a bug.
"""

from __future__ import annotations


class TokraceError(Exception):
    """A failure the user can act on; ``str(err)`` is one line, ending with what to do."""

    exit_code: int = 2

    def __init__(self, message: str) -> None:
        # One line, always: a multi-line message would break the CLI's contract.
        super().__init__(" ".join(message.split()))


class ModelFileError(TokraceError):
    """A model path that is missing, unreadable, not GGUF or truncated."""
