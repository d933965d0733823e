"""The conversation's widgets: a user turn, an assistant reply (Markdown + its speed summary)."""

from __future__ import annotations

from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Markdown, Static


def _hard_breaks(state: StateCore) -> None:
    """Every line break inside a paragraph is kept (poems, addresses, lists of lines): a model writes
    single newlines meaning newlines, not CommonMark's soft breaks that join lines with a space."""
    for token in state.tokens:
        if token.type == "inline" and token.children:
            for child in token.children:
                if child.type == "softbreak":
                    child.type = "hardbreak"


def reply_parser() -> MarkdownIt:
    """The parser for replies: Textual's "gfm-like" Markdown with single newlines kept."""
    md = MarkdownIt("gfm-like")
    md.core.ruler.push("tokrace_hard_breaks", _hard_breaks)
    return md


class UserMessage(Static):
    DEFAULT_CSS = """
    UserMessage { margin: 1 0 0 4; padding: 0 1; background: $primary 15%; border-left: thick $primary; }
    UserMessage.-left-out { opacity: 55%; border-left: dashed $warning; }
    """

    def __init__(self, text: str, history_index: int | None = None) -> None:
        super().__init__(text, markup=False)
        self.text = text
        self.history_index = history_index
        """Where this turn is in the chat's history (``None``: not in it)."""


class AssistantMessage(Vertical):
    DEFAULT_CSS = """
    AssistantMessage { height: auto; margin: 1 4 0 0; border-left: thick $success; padding: 0 1; }
    AssistantMessage Markdown { margin: 0; padding: 0; }
    AssistantMessage .summary { color: $text-muted; }
    AssistantMessage .summary.stopped { color: $warning; }
    AssistantMessage .summary.error { color: $error; }
    AssistantMessage .notice { color: $warning; }
    AssistantMessage.-left-out { opacity: 55%; border-left: dashed $warning; }
    """

    def __init__(self, text: str = "", summary: str = "generating…", *, state: str = "",
                 history_index: int | None = None) -> None:
        """``state``: ``stopped`` or ``error`` marks the summary (as ``set_summary`` does)."""
        super().__init__()
        self._text = text
        self._summary = summary
        self._state = state if state in ("stopped", "error") else ""
        self.history_index = history_index
        """Where this reply is in the chat's history (``None``: not in it, e.g. an A/B rerun)."""

    def compose(self) -> ComposeResult:
        yield Markdown(self._text, classes="body", parser_factory=reply_parser)
        yield Static(self._summary, classes=f"summary {self._state}".rstrip(), markup=False)

    @property
    def markdown(self) -> Markdown:
        return self.query_one(Markdown)

    def set_summary(self, text: str, *, state: str = "", notice: str | None = None) -> None:
        summary = self.query_one(".summary", Static)
        summary.update(text)
        summary.set_class(state == "stopped", "stopped")
        summary.set_class(state == "error", "error")
        if notice:
            self.mount(Static(f"⚠ {notice}", classes="notice", markup=False))
