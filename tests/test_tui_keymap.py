"""Issue 23.8: the TUI's texts name the keys the user has. Textual's keymap (``App.set_keymap``: binding
id → keys) moves a binding; placeholders, notices, F1 and error remedies then say the new key."""

from __future__ import annotations

from scripted_backend import FixedSampler, ScriptedBackend
from test_tui_chat import RecordingApp, wait_for
from textual.widgets import Static

from tokrace.tui.chat.messages import UserMessage
from tokrace.tui.keys import declared, display
from tokrace.tui.screens.help_screen import HelpScreen
from tokrace.tui.words import say

KEYMAP = {"prompt.send": "ctrl+s", "app.help": "f9", "chat.new": "f12", "app.quit": "f10",
          "app.settings": "f8"}


def test_every_binding_id_the_texts_name_exists_and_reads_as_people_write_keys() -> None:
    ids = declared()
    assert ids["chat.new"] == "ctrl+n" and ids["prompt.newline"] == "shift+enter,ctrl+j"
    assert [display(k) for k in ("ctrl+n", "f2", "escape", "pagedown", "shift+enter")] == [
        "Ctrl+N", "F2", "Esc", "PageDown", "Shift+Enter"]


async def test_a_remapped_key_is_the_one_the_texts_name() -> None:
    app = RecordingApp(backend=ScriptedBackend(["ok"]), sampler=FixedSampler())  # type: ignore[arg-type]
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.chat.backend is not None and not app.chat.prompt.disabled)
        prompt = app.chat.prompt
        assert prompt.placeholder.startswith("Message (Enter sends, Shift+Enter or Ctrl+J newline, F1 keys")
        app.set_keymap(KEYMAP)
        await pilot.pause()
        assert prompt.placeholder.startswith("Message (Ctrl+S sends, Shift+Enter or Ctrl+J newline, F9 keys")
        # The remapped keys are the ones that work: Ctrl+S sends, F12 starts a new chat.
        prompt.value = "hello"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: bool(app.finished))
        assert [w.text for w in app.query(UserMessage)] == ["hello"]
        await pilot.press("f12")
        await wait_for(pilot, lambda: not app.query(UserMessage))
        # A notice, and an error's remedy said on the UI thread and in a thread worker.
        await pilot.press("ctrl+c")  # idle: says how to quit
        await pilot.pause(0.1)
        assert any(str(n.message) == "Nothing to stop: F10 quits." for n in app._notifications)
        assert say("context full: {action:new_chat} or raise {setting:n_ctx}") == (
            "context full: start a new chat (F12) or raise the context (tokens) field (F8)")
        worker = app.run_worker(lambda: say("{action:new_chat}"), thread=True)
        await worker.wait()
        assert worker.result == "start a new chat (F12)"
        await pilot.press("f9")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen) and bool(app.screen.query("#keys")))
        cells = [str(c.render()) for c in app.screen.query("#keys Static").results(Static)]
        rows = dict(zip(cells[::2], cells[1::2], strict=True))
        assert rows["F12"].startswith("new chat") and rows["Ctrl+S"] == "send the message"
        assert "Ctrl+N" not in rows and rows["F10"].startswith("quit")


async def test_keys_typed_in_one_burst_are_all_sent() -> None:
    """Sending is a priority binding (so a keymap can move it); it must still send every key typed
    before it, as a terminal delivers "hello\\r" in one read (the app reads Enter before the box has
    handled the letters)."""
    from textual import events

    app = RecordingApp(backend=ScriptedBackend(["ok"]), sampler=FixedSampler())  # type: ignore[arg-type]
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.chat.backend is not None and not app.chat.prompt.disabled)
        for char in "hi":
            app.post_message(events.Key(char, char))
        app.post_message(events.Key("ctrl+j", "\n"))
        for char in "yo":
            app.post_message(events.Key(char, char))
        app.post_message(events.Key("enter", "\r"))
        await wait_for(pilot, lambda: bool(app.finished))
        assert [w.text for w in app.query(UserMessage)] == ["hi\nyo"]
