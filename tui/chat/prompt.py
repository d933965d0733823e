"""The message box: multi-line, Enter sends, Shift+Enter or Ctrl+J adds a newline, a paste keeps every line.

Textual's ``TextArea`` takes Enter as a newline and claims keys the chat needs (Ctrl+D delete right,
Ctrl+C copy, PageUp/PageDown move the cursor). Sending and the newline are priority bindings here (with
ids, so a keymap can move them); the chat screen's priority bindings take the others before the box sees
them (``ChatScreen.BINDINGS``).
"""

from __future__ import annotations

from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea


class PromptArea(TextArea):
    """A ``TextArea`` that posts ``PromptArea.Submitted`` on Enter (the text is left for the receiver to
    clear). ``value`` is the text, as on ``Input``."""

    DEFAULT_CSS = """
    PromptArea { height: auto; max-height: 10; }
    """
    BINDINGS = [
        Binding("enter", "submit", "Send", id="prompt.send", show=False, priority=True),
        # Ctrl+J for terminals that send Shift+Enter as a plain Enter.
        Binding("shift+enter,ctrl+j", "newline", "New line", id="prompt.newline", show=False, priority=True),
    ]

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

    # A priority binding runs when the app reads the key, before this box has handled the keys typed
    # just before it (they wait in its queue: "hello\r" in one read). So both actions run from this
    # box's queue (``call_later``), after those keys: the text sent is all that was typed.
    def action_submit(self) -> None:
        self.call_later(self._submit)

    def action_newline(self) -> None:
        self.call_later(self._newline)

    def _submit(self) -> None:
        if not (self.read_only or self.disabled):
            self.post_message(self.Submitted(self, self.text))

    def _newline(self) -> None:
        if not (self.read_only or self.disabled):
            self.insert("\n")
