"""F1: every key of the chat, in one table (the command palette's generic list does not say what they do
while typing)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tokrace.tui.keys import key, keyed

KEYS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("prompt.send",), "send the message"),
    (("prompt.newline",), "new line in the message (a paste keeps every line)"),
    (("chat.stop", "chat.interrupt"),
     "stop the streaming reply ({key:chat.interrupt} copies a selection when idle)"),
    (("chat.page_up", "chat.page_down"), "scroll the conversation, also while typing"),
    (("chat.new",), "new chat: clears the conversation and the speed panel"),
    (("chat.regenerate",), "regenerate the last reply"),
    (("chat.edit",), "edit the last message (its reply is dropped)"),
    (("chat.copy",), "copy the last reply to the clipboard (OSC 52: works over ssh)"),
    (("app.conversations",), "saved conversations: resume (Enter) or export as Markdown"
                             " ({key:conversations.export})"),
    (("app.settings",), "settings: sampling, system prompt, context policy, load settings"),
    (("app.models",), "models: browse, pull, switch (starts a new chat)"),
    (("chat.draft",), "draft model for speculative decoding"),
    (("chat.ab",), "A/B: rerun the last prompt without the draft"),
    (("app.race",), "race two models side by side"),
    (("app.sessions",), "speed log: past sessions and replies"),
    (("command_palette",), "command palette (themes, every action)"),
    (("app.quit",), "quit (finished replies are already saved and logged)"),
)
"""Each row: the binding ids whose keys it names, and what they do (``{key:ID}`` marks name keys)."""


def key_rows() -> list[tuple[str, str]]:
    """The rows of F1 as shown: the keys the user has now (keymap or declared), and what they do."""
    return [(", ".join(key(i, every=True) for i in ids), keyed(what)) for ids, what in KEYS]


def keys_table() -> str:
    """The keys as aligned plain text, one per line."""
    rows = key_rows()
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {what}" for k, what in rows)


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
            yield Static(keyed("[b]Keys[/b] ({key:help.close} closes)"))
            with Grid(id="keys"):
                for keys, what in key_rows():
                    yield Static(keys, classes="key", markup=False)
                    yield Static(what, classes="what", markup=False)

    def action_close(self) -> None:
        self.dismiss(None)
