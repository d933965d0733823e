"""The message box and the chat's keys while typing (issue 14): multi-line input, paste, keys the
TextArea would otherwise take (Ctrl+D, Ctrl+C, PageUp/PageDown), Ctrl+N, F1, and small terminals."""

from __future__ import annotations

from pathlib import Path

from scripted_backend import FixedSampler, ScriptedBackend
from test_tui_chat import RecordingApp, wait_for
from textual import events
from textual.widgets import Digits, Static

from tokrace.tui.chat.draft import DraftPicker
from tokrace.tui.chat.prompt import PromptArea
from tokrace.tui.screens.help_screen import HelpScreen


def scripted_app(pieces: list[str] | None = None, **kw: object) -> RecordingApp:
    backend = ScriptedBackend(pieces or ["fine ", "thanks"], **kw)  # type: ignore[arg-type]
    return RecordingApp(backend=backend, sampler=FixedSampler())  # type: ignore[arg-type]


async def ready(pilot, app: RecordingApp) -> PromptArea:  # type: ignore[no-untyped-def]
    await wait_for(pilot, lambda: app.chat.backend is not None and not app.chat.prompt.disabled)
    prompt = app.chat.prompt
    prompt.focus()
    await pilot.pause()
    return prompt


async def test_paste_keeps_every_line_and_enter_sends_them_all() -> None:
    app = scripted_app()
    async with app.run_test(size=(100, 30)) as pilot:
        prompt = await ready(pilot, app)
        pasted = "first line\n  second, indented\n\nfourth after a blank"
        app.post_message(events.Paste(pasted))  # as the driver does for a bracketed paste
        await pilot.pause()
        assert prompt.value == pasted
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(app.finished))
        assert app.chat.history[0].content == pasted
        assert app.chat.backend.requests[0][-1].content == pasted  # type: ignore[union-attr]
        assert prompt.value == ""


async def test_shift_enter_and_ctrl_j_add_newlines_enter_sends() -> None:
    app = scripted_app()
    async with app.run_test(size=(100, 30)) as pilot:
        prompt = await ready(pilot, app)
        await pilot.press("a", "shift+enter", "b", "ctrl+j", "c")
        assert prompt.value == "a\nb\nc"
        assert not app.finished and not app.chat.history
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(app.finished))
        assert app.chat.history[0].content == "a\nb\nc"


async def test_ctrl_d_opens_the_draft_picker_while_typing(tiny_model: Path) -> None:
    app = RecordingApp(model_ref=str(tiny_model))
    async with app.run_test(size=(100, 30)) as pilot:
        prompt = await ready(pilot, app)
        await pilot.press("a", "b", "c", "left", "left")
        await pilot.press("ctrl+d")
        await wait_for(pilot, lambda: isinstance(app.screen, DraftPicker))
        assert prompt.value == "abc"  # not taken as "delete right"
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.chat)


async def test_ctrl_c_stops_a_streaming_reply_and_does_not_quit() -> None:
    app = scripted_app([f"w{i} " for i in range(2000)], real_delay=0.005)
    async with app.run_test(size=(100, 30)) as pilot:
        prompt = await ready(pilot, app)
        await pilot.press("h", "i", "enter")
        await wait_for(pilot, lambda: app.chat.meter is not None
                       and app.chat.meter.stats.completion_tokens > 3)
        await pilot.press("ctrl+c")
        await wait_for(pilot, lambda: bool(app.finished))
        assert app.finished[0].stats.stop_reason == "cancelled"
        assert app.is_running
        # Idle: Ctrl+C says how to quit instead of quitting.
        await pilot.press("ctrl+c")
        await pilot.pause(0.1)
        assert app.is_running
        assert any("Ctrl+Q quits" in str(n.message) for n in app._notifications)
        assert prompt.value == ""


async def test_page_keys_scroll_the_conversation_while_typing() -> None:
    app = scripted_app([f"line {i}\n\n" for i in range(80)])
    async with app.run_test(size=(100, 30)) as pilot:
        prompt = await ready(pilot, app)
        await pilot.press("x", "enter")
        await wait_for(pilot, lambda: bool(app.finished))
        await pilot.pause(0.2)
        messages = app.chat.query_one("#messages")
        await pilot.press("a", "b")
        bottom = messages.scroll_y
        assert bottom > 0
        await pilot.press("pageup")
        await pilot.pause(0.2)
        assert messages.scroll_y < bottom
        await pilot.press("pagedown")
        await pilot.pause(0.2)
        assert messages.scroll_y > 0
        assert prompt.value == "ab" and app.focused is prompt


async def test_new_chat_clears_the_panel_figures() -> None:
    app = scripted_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot, app)
        await pilot.press("h", "enter")
        await wait_for(pilot, lambda: bool(app.finished))
        await pilot.pause(0.4)
        figures = app.chat.query_one("#figures", Static)
        assert "TTFT" in str(figures.render())
        await pilot.press("ctrl+n")
        await pilot.pause(0.4)
        assert str(figures.render()).strip() == ""
        assert str(app.chat.query_one("#tps", Digits).value) == "–"
        assert app.chat.history == []


async def test_f1_lists_the_keys() -> None:
    app = scripted_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        keys = " ".join(str(cell.render()) for cell in app.screen.query("#keys Static").results(Static))
        for key in ("Shift+Enter", "Ctrl+G", "Ctrl+T", "F3", "F4", "Ctrl+D"):
            assert key in keys
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.chat)


async def test_small_terminals_keep_status_footer_keys_and_message_box() -> None:
    for size in ((80, 24), (50, 12)):
        app = scripted_app()
        async with app.run_test(size=size) as pilot:
            prompt = await ready(pilot, app)
            await pilot.pause(0.2)
            status = app.chat.query_one("#status", Static)
            assert status.region.height == 1  # one line, cut with an ellipsis, not wrapped
            assert prompt.region.height >= 1 and prompt.region.bottom <= size[1]
            if size == (80, 24):
                keys = [k for k in app.chat.query("FooterKey") if k.region.width
                        and k.region.right <= size[0]]
                assert {"f1", "f2"} <= {k.key for k in keys}  # type: ignore[attr-defined]
