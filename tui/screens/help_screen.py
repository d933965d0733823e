"""F1: every key of the chat, in one table (the command palette's generic list does not say what they do
while typing)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS: tuple[tuple[str, str], ...] = (
    ("Enter", "send the message"),
    ("Shift+Enter, Ctrl+J", "new line in the message (a paste keeps every line)"),
    ("Esc, Ctrl+C", "stop the streaming reply (Ctrl+C copies a selection when idle)"),
    ("PageUp, PageDown", "scroll the conversation, also while typing"),
    ("Ctrl+N", "new chat: clears the conversation and the speed panel"),
    ("Ctrl+G", "regenerate the last reply"),
    ("F4", "edit the last message (its reply is dropped)"),
    ("Ctrl+T", "copy the last reply to the clipboard (OSC 52: works over ssh)"),
    ("F3", "saved conversations: resume (Enter) or export as Markdown (E)"),
    ("F2", "settings: sampling, system prompt, context policy, load settings"),
    ("Ctrl+O", "models: browse, pull, switch (starts a new chat)"),
    ("Ctrl+D", "draft model for speculative decoding"),
    ("Ctrl+B", "A/B: rerun the last prompt without the draft"),
    ("Ctrl+R", "race two models side by side"),
    ("Ctrl+L", "speed log: past sessions and replies"),
    ("Ctrl+P", "command palette (themes, every action)"),
    ("Ctrl+Q", "quit (finished replies are already saved and logged)"),
)


def keys_table() -> str:
    """The keys as aligned plain text, one per line."""
    width = max(len(key) for key, _ in KEYS)
    return "\n".join(f"{key.ljust(width)}  {what}" for key, what in KEYS)


class HelpScreen(ModalScreen[None]):
    """The keys in two columns: the key, and what it does (wrapped, so nothing is cut at 80×24; the
    table scrolls when it is taller than the terminal)."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90; max-width: 100%; height: auto; max-height: 100%;
                                  padding: 0 1; border: thick $accent; background: $surface; }
    HelpScreen #keys { height: auto; grid-size: 2; grid-columns: auto 1fr; grid-gutter: 0 2; }
    HelpScreen #keys .key { width: auto; text-style: bold; }
    HelpScreen #keys .what { width: 1fr; }
    """
    BINDINGS = [
        Binding("escape", "close", "Close", id="help.close"),
        Binding("f1", "close", "Close", id="help.close_f1", show=False),
        Binding("q", "close", "Close", id="help.close_q", show=False),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("[b]Keys[/b] (Esc closes)")
            with Grid(id="keys"):
                for key, what in KEYS:
                    yield Static(key, classes="key", markup=False)
                    yield Static(what, classes="what", markup=False)

    def action_close(self) -> None:
        self.dismiss(None)
