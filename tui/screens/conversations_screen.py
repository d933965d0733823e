"""F3: saved conversations, newest first. Enter resumes one; E exports it as Markdown."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from tokrace.conversations import SavedConversation, conversations_dir, list_conversations, to_markdown
from tokrace.tui.keys import keyed


def export_markdown(saved: SavedConversation, folder: Path | None = None) -> Path:
    """Write ``saved`` as ``tokrace-<id>.md`` in ``folder`` (default: the current folder, or the
    conversations folder when that cannot be written). Returns the path; ``OSError`` when neither can."""
    text = to_markdown(saved)
    targets = [folder] if folder is not None else [Path.cwd(), conversations_dir()]
    error: OSError | None = None
    for target in targets:
        path = target / f"tokrace-{saved.id}.md"
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as err:
            error = err
            continue
        return path
    assert error is not None
    raise error


class ConversationsScreen(ModalScreen[SavedConversation | None]):
    DEFAULT_CSS = """
    ConversationsScreen { align: center middle; }
    ConversationsScreen > Vertical { width: 100; max-width: 100%; height: auto; max-height: 100%;
                                     padding: 0 1; border: thick $accent; background: $surface; }
    ConversationsScreen OptionList { height: auto; max-height: 20; }
    """
    BINDINGS = [
        Binding("escape", "cancel", "Close", id="conversations.close"),
        Binding("e", "export", "Export Markdown", id="conversations.export"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.saved: list[SavedConversation] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(keyed("[b]Saved conversations[/b] · Enter resumes · {key:conversations.export}"
                              " exports Markdown · {key:conversations.close} closes"))
            yield OptionList(Option("reading…", id="reading", disabled=True))

    def on_mount(self) -> None:
        self.read_saved()

    @work(thread=True)
    def read_saved(self) -> None:
        found = list_conversations()
        self.app.call_from_thread(self._show, found)

    def _show(self, found: list[SavedConversation]) -> None:
        self.saved = found
        options = self.query_one(OptionList)
        options.clear_options()
        if not found:
            options.add_option(Option("no saved conversations yet", disabled=True))
            return
        for i, saved in enumerate(found):
            turns = sum(1 for m in saved.messages if m.role == "user")
            when = saved.updated[:16].replace("T", " ")
            options.add_option(Option(f"{when}  {saved.title}  ({turns} turns, {saved.model})", id=str(i)))
        options.highlighted = 0
        options.focus()

    def _selected(self) -> SavedConversation | None:
        options = self.query_one(OptionList)
        index = options.highlighted
        if index is None or not self.saved:
            return None
        option_id = options.get_option_at_index(index).id
        return self.saved[int(option_id)] if option_id and option_id.isdigit() else None

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id and event.option.id.isdigit():
            self.dismiss(self.saved[int(event.option.id)])

    def action_export(self) -> None:
        saved = self._selected()
        if saved is None:
            self.notify("Pick a conversation first.", severity="warning")
            return
        try:
            path = export_markdown(saved)
        except OSError as err:
            self.notify(f"not exported: {err.strerror or err}", severity="error")
            return
        self.notify(f"exported to {path}")

    def action_cancel(self) -> None:
        self.dismiss(None)
