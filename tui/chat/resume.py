"""Resuming a saved chat that was made with another model than the loaded one (F3): the user chooses to
load the chat's own model (through the app's usual reload, as the models screen does) or to continue on
the loaded one, and is told which model continues. A chat's prompts are formatted by its model (a chat
template, or plain completion for a base model): continuing silently on another model changes them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from tokrace.conversations import SavedConversation
from tokrace.session import Session
from tokrace.tui.words import keyed

if TYPE_CHECKING:
    from tokrace.tui.app import TokraceApp


def loaded_ref(session: Session | None) -> str | None:
    """The loaded model as a reference that loads it again: its catalog id, ``hf:`` ref or other tool's
    model name, its server URL, or its absolute path; ``None`` for a backend built outside the app."""
    return session.prepared.ref if session is not None and session.prepared is not None else None


def _same_ref(a: str, b: str) -> bool:
    if a == b:
        return True
    if os.sep in a and os.sep in b:
        try:
            return Path(a).resolve() == Path(b).resolve()
        except OSError:
            return False
    return False


def made_with_another_model(saved: SavedConversation, session: Session | None) -> bool:
    """Whether ``saved`` was made with another model than the one loaded: by reference when both are
    known, else by name. A chat that does not name its model, or nothing loaded, is not a mismatch."""
    if session is None or not saved.model:
        return False
    ref = loaded_ref(session)
    if saved.model_ref and ref is not None:
        return not _same_ref(saved.model_ref, ref)
    return saved.model != session.model.name


class ResumeModelScreen(ModalScreen[str | None]):
    """Dismissed with ``"load"`` (load the chat's model, then resume), ``"continue"`` (resume on the
    loaded model) or ``None`` (cancel)."""

    DEFAULT_CSS = """
    ResumeModelScreen { align: center middle; }
    ResumeModelScreen > Vertical { width: 90; max-width: 100%; height: auto; max-height: 100%;
                                   padding: 1 2; border: thick $accent; background: $surface; }
    ResumeModelScreen #resume-why { height: auto; margin-bottom: 1; }
    ResumeModelScreen Horizontal { height: auto; }
    ResumeModelScreen Button { margin-right: 2; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="resume.cancel")]

    def __init__(self, saved: SavedConversation, loaded: str) -> None:
        super().__init__()
        self.saved = saved
        self.loaded = loaded

    def compose(self) -> ComposeResult:
        saved = self.saved
        why = [f"“{saved.title}”", f"made with   {saved.model}", f"loaded now  {self.loaded}", ""]
        if saved.model_ref:
            why.append("Load its model to continue it as it was, or continue on the loaded one.")
        else:
            why.append("This file does not say where its model is (saved by an older tokrace): continue on"
                       " the loaded one, or cancel and load it from the models screen first.")
        with Vertical():
            yield Static("[b]Resume a chat made with another model[/b]")
            yield Static("\n".join(why), id="resume-why", markup=False)
            with Horizontal():
                if saved.model_ref:
                    yield Button("Load its model", variant="primary", id="load")
                yield Button("Continue on the loaded one", id="continue",
                             variant="default" if saved.model_ref else "primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query(Button).first().focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id if event.button.id in ("load", "continue") else None)

    def action_cancel(self) -> None:
        self.dismiss(None)


def open_conversations(app: TokraceApp) -> None:
    """F3: the saved conversations; the one chosen resumes on the loaded model, or, when it was made
    with another one, after asking (``ResumeModelScreen``) whether to load that model first."""
    from tokrace.tui.screens.conversations_screen import ConversationsScreen

    def chosen(saved: SavedConversation | None) -> None:
        if saved is None:
            return
        if app.chat.generating:
            app.notify(keyed("Stop the reply ({key:chat.stop}) before resuming another conversation."),
                       severity="warning")
            return
        if app.session is not None and made_with_another_model(saved, app.session):
            app.push_screen(ResumeModelScreen(saved, app.session.model.name),
                            callback=lambda choice: resume_with(app, saved, choice))
            return
        app.chat.resume(saved)

    app.push_screen(ConversationsScreen(), callback=chosen)


def resume_with(app: TokraceApp, saved: SavedConversation, choice: str | None) -> None:
    """``load``: load the chat's own model (the models screen's reload path), then resume it on it;
    ``continue``: resume it on the loaded model (the notice names it)."""
    if choice == "continue":
        app.chat.resume(saved)
    elif choice == "load" and saved.model_ref and app.may_reload():
        app.pending_resume = saved
        app.switch_model(saved.model_ref)
