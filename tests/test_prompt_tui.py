"""Prompt integrity in the app, driven with Pilot: a conversation a strict template can always render
(kind 2), a template that does not compile (kind 1), and mouse events while a reply streams (kind 8)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from scripted_backend import FixedSampler, ScriptedBackend
from scripted_gguf import NEWLINE, write_scripted_llama
from test_prompt_templates import BROKEN, GEMMA2
from test_tui_chat import RecordingApp, send, wait_for
from textual import events
from textual.widgets import Markdown

from tokrace.backends.base import ChatMessage, GenerationParams
from tokrace.settings import Settings
from tokrace.tui.chat.messages import AssistantMessage
from tokrace.tui.chat.prompt import PromptArea

PARAMS = GenerationParams(max_tokens=8, temperature=0)


async def test_empty_reply_keeps_the_history_valid_for_a_strict_template(tmp_path: Path) -> None:
    # The model ends its turn at once: the next send must not give the template "user, user".
    path = write_scripted_llama(tmp_path / "g.gguf", [NEWLINE, "<end_of_turn>"],
                                specials=["<start_of_turn>", "<end_of_turn>"], chat_template=GEMMA2)
    app = RecordingApp(model_ref=str(path), params=PARAMS)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.backend is not None)
        for n, text in enumerate(["first", "second", "third"], start=1):
            await send(pilot, text)
            await wait_for(pilot, lambda n=n: len(app.finished) == n)
            finished = app.finished[-1].finished
            assert finished.error is None and finished.stop_reason == "stop", finished
        roles = [m.role for m in app.chat.history]
        assert roles == ["user", "assistant"] * 3
        assert app.is_running


async def test_failed_send_leaves_history_and_returns_the_text(tmp_path: Path) -> None:
    path = write_scripted_llama(tmp_path / "g.gguf", [NEWLINE, "▁ok"], words=["▁ok"],
                                specials=["<start_of_turn>", "<end_of_turn>"], chat_template=GEMMA2)
    app = RecordingApp(settings=Settings(model=str(path), n_ctx=64), params=PARAMS)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.backend is not None)
        long = "word " * 40  # more tokens than the context holds: the send fails
        await send(pilot, long)
        await wait_for(pilot, lambda: len(app.finished) == 1)
        assert app.finished[0].finished.stop_reason == "error"
        assert app.chat.history == []
        assert app.query_one("#prompt", PromptArea).value == long.strip()  # nothing typed is lost
        app.query_one("#prompt", PromptArea).value = ""
        await pilot.pause()  # the box shrinks back to one line before it is clicked
        await send(pilot, "hi")
        await wait_for(pilot, lambda: len(app.finished) == 2)
        assert app.finished[1].finished.text == " ok"
        assert app.chat.history == [ChatMessage("user", "hi"), ChatMessage("assistant", " ok")]


async def test_broken_template_model_loads_and_answers_in_the_app(tmp_path: Path) -> None:
    path = write_scripted_llama(tmp_path / "b.gguf", ["<0x69>", "▁fine"], words=["▁fine"],
                                chat_template=BROKEN["syntax"])
    app = RecordingApp(model_ref=str(path), params=PARAMS)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.backend is not None)
        assert "broken" in app.backend.model.template
        await send(pilot, "hi")
        await wait_for(pilot, lambda: bool(app.finished))
        assert app.finished[0].finished.text == " fine"
        assert app.is_running


def _mouse(cls: type[events.MouseEvent], x: int, y: int) -> events.MouseEvent:
    return cls(None, x, y, 0, 0, 1, False, False, False, screen_x=x, screen_y=y)


BULLETS = [piece for i in range(300) for piece in (f"- item {i} with **bold** and `code`", "\n")]


async def test_mouse_on_a_block_removed_since_the_last_frame_is_dropped() -> None:
    # The moment the crash needs, made on purpose: a reply block is removed from the DOM, and a press
    # and drag arrive before the next frame (the compositor still maps the old block there).
    paragraphs = [f"Paragraph {i} of the reply.\n\n" for i in range(6)]
    app = RecordingApp(backend=ScriptedBackend(paragraphs), sampler=FixedSampler(),
                       params=GenerationParams(max_tokens=100))
    async with app.run_test(size=(100, 40)) as pilot:
        await send(pilot, "list")
        await wait_for(pilot, lambda: bool(app.finished))
        await pilot.pause(0.2)
        screen = app.screen
        block = app.query_one(AssistantMessage).query_one(Markdown).children[0]
        x, y = block.region.x + 1, block.region.y
        await block.remove()  # what MarkdownStream does to a block it replaces; no frame since
        stale, _ = screen.get_widget_and_offset_at(x, y)
        assert stale is block and block.parent is None  # the condition of the crash
        for cls in (events.MouseDown, events.MouseMove, events.MouseUp):
            screen._forward_event(_mouse(cls, x, y))
        await pilot.pause(0.1)
        assert app.is_running


async def test_dragging_over_a_streaming_bullet_list_never_ends_the_app() -> None:
    app = RecordingApp(backend=ScriptedBackend(BULLETS, real_delay=0.002), sampler=FixedSampler(),
                       params=GenerationParams(max_tokens=len(BULLETS)))
    async with app.run_test(size=(100, 40)) as pilot:
        await send(pilot, "list")
        await wait_for(pilot, lambda: app.chat.meter is not None
                       and app.chat.meter.stats.completion_tokens > 0)
        screen = app.screen
        n = 0
        # Drags for as long as the reply streams (bounded: a slow machine still ends the test).
        deadline = time.monotonic() + 30
        while not app.finished and time.monotonic() < deadline:
            x, y = 10 + n % 40, 3 + (n * 7) % 30
            for cls in (events.MouseDown, events.MouseMove, events.MouseMove, events.MouseUp):
                screen._forward_event(_mouse(cls, x, y))  # as App delivers them, between frames
                x, y = x + 3, y + 1
            n += 1
            await asyncio.sleep(0.005)  # the stream and the renders go on between drags
        await wait_for(pilot, lambda: bool(app.finished), timeout=60)
        assert n > 0 and app.is_running
        assert app.finished[0].finished.stop_reason == "stop"
