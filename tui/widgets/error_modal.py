"""A dismissible one-line error (bad model file, failed download): the TUI's version of exit code 2."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class ErrorModal(ModalScreen[None]):
    DEFAULT_CSS = """
    ErrorModal { align: center middle; }
    ErrorModal > Vertical {
        width: 72; height: auto; padding: 1 2; border: thick $error; background: $surface;
    }
    ErrorModal Label { width: 100%; margin-bottom: 1; }
    ErrorModal Button { width: 100%; }
    """
    BINDINGS = [Binding("escape,enter", "dismiss_error", "Dismiss", id="error.dismiss")]

    def __init__(self, message: str, title: str = "Error") -> None:
        super().__init__()
        self.message = message
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"[b]{self.title_text}[/b]")
            yield Label(self.message, id="error-message", markup=False)
            yield Button("Dismiss", variant="error", id="dismiss")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_dismiss_error(self) -> None:
        self.dismiss(None)
