"""The message box: multi-line, Enter sends, Shift+Enter or Ctrl+J adds a newline, a paste keeps every line.

Textual's ``TextArea`` takes Enter as a newline and claims keys the chat needs (Ctrl+D delete right,
Ctrl+C copy, PageUp/PageDown move the cursor). Enter is taken here; the chat screen's priority bindings
take the others before the box sees them (``ChatScreen.BINDINGS``).
"""

from __future__ import annotations

from textual import events
from textual.message import Message
from textual.widgets import TextArea

NEWLINE_KEYS = frozenset({"shift+enter", "ctrl+j"})
"""Keys that add a newline (Ctrl+J for terminals that send Shift+Enter as a plain Enter)."""


class PromptArea(TextArea):
    """A ``TextArea`` that posts ``PromptArea.Submitted`` on Enter (the text is left for the receiver to
    clear). ``value`` is the text, as on ``Input``."""

    DEFAULT_CSS = """
    PromptArea { height: auto; max-height: 10; }
    """

    class Submitted(Message):
        """Enter was pressed; ``value`` is the whole text (newlines kept)."""

        def __init__(self, prompt: PromptArea, value: str) -> None:
            super().__init__()
            self.prompt = prompt
            self.value = value

        @property
        def control(self) -> PromptArea:
            return self.prompt

    def __init__(self, *, placeholder: str = "", id: str | None = None, disabled: bool = False) -> None:
        super().__init__("", placeholder=placeholder, id=id, disabled=disabled, soft_wrap=True,
                         show_line_numbers=False, tab_behavior="focus")
        self.cursor_blink = False  # a blink is a repaint twice a second: the idle app stays quiet

    @property
    def value(self) -> str:
        return self.text

    @value.setter
    def value(self, text: str) -> None:
        self.load_text(text)
        self.move_cursor(self.document.end)

    async def _on_key(self, event: events.Key) -> None:
        if self.read_only or self.disabled:
            return
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.post_message(self.Submitted(self, self.text))
            return
        if event.key in NEWLINE_KEYS:
            event.stop()
            event.prevent_default()
            self.insert("\n")
            return
        await super()._on_key(event)
