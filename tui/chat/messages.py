"""The conversation's widgets: a user turn, an assistant reply (Markdown + its speed summary)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Markdown, Static


class UserMessage(Static):
    DEFAULT_CSS = """
    UserMessage { margin: 1 0 0 8; padding: 0 1; background: $primary 15%; border-left: thick $primary; }
    """

    def __init__(self, text: str) -> None:
        super().__init__(text, markup=False)


class AssistantMessage(Vertical):
    DEFAULT_CSS = """
    AssistantMessage { height: auto; margin: 1 8 0 0; border-left: thick $success; padding: 0 1; }
    AssistantMessage Markdown { margin: 0; padding: 0; }
    AssistantMessage .summary { color: $text-muted; }
    AssistantMessage .summary.stopped { color: $warning; }
    AssistantMessage .summary.error { color: $error; }
    AssistantMessage .notice { color: $warning; }
    """

    def compose(self) -> ComposeResult:
        yield Markdown("", classes="body")
        yield Static("generating…", classes="summary", markup=False)

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
