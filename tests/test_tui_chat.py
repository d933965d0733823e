"""The chat screen driven with Pilot: real llama.cpp on tiny models, plus a scripted backend for the
SVG snapshot (fixed timestamps, so the figures on screen are the same every run)."""

from __future__ import annotations

import re
from pathlib import Path

from scripted_backend import FixedSampler, ScriptedBackend
from textual.pilot import Pilot
from textual.widgets import Static

from tokrace.backends.base import GenerationParams
from tokrace.tui.app import TokraceApp
from tokrace.tui.chat.messages import AssistantMessage, UserMessage
from tokrace.tui.chat.prompt import PromptArea
from tokrace.tui.chat.screen import ReplyFinished
from tokrace.tui.widgets.error_modal import ErrorModal

SUMMARY = re.compile(r"^\d+ tok · [\d.]+ tok/s · TTFT [\d.]+ s · prompt \d+ tok @ \d+ tok/s")


class RecordingApp(TokraceApp):
    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.finished: list[ReplyFinished] = []

    def on_reply_finished(self, message: ReplyFinished) -> None:
        self.finished.append(message)


async def wait_for(pilot: Pilot, condition, timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not met in time")


async def send(pilot: Pilot, text: str) -> None:
    await pilot.click("#prompt")
    await pilot.press(*text, "enter")


async def test_prompt_streams_reply_with_summary_and_telemetry(tiny_model: Path) -> None:
    app = RecordingApp(model_ref=str(tiny_model), params=GenerationParams(max_tokens=40, temperature=0))
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.title == "tiny.gguf")
        assert "F32" in app.sub_title
        await send(pilot, "hello")
        await wait_for(pilot, lambda: bool(app.finished))
        await pilot.pause(0.3)
        assert [w.render().plain for w in app.query(UserMessage)] == ["hello"]  # type: ignore[union-attr]
        reply = app.query_one(AssistantMessage)
        summary = str(reply.query_one(".summary", Static).render())
        assert SUMMARY.match(summary), summary
        assert summary.startswith("40 tok")
        stats = app.finished[0].stats
        assert stats.completion_tokens == 40 and stats.stop_reason == "length"
        figures = str(app.screen.query_one("#figures", Static).render())
        assert "tokens    40" in figures
        assert app.chat.history[-1].role == "assistant"
        assert app.query_one("#prompt", PromptArea).value == ""


async def test_escape_stops_the_reply_and_keeps_the_partial(slow_prompt_model: Path) -> None:
    # The wide model decodes slowly enough (a few hundred tok/s) that 3,500 tokens take seconds.
    app = RecordingApp(model_ref=str(slow_prompt_model),
                       params=GenerationParams(max_tokens=3500, temperature=0))
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.backend is not None)
        await send(pilot, "go on forever")
        await wait_for(pilot, lambda: app.chat.meter is not None
                       and app.chat.meter.stats.completion_tokens > 10)
        await pilot.pause(0.3)  # at least one telemetry tick while streaming
        figures = str(app.screen.query_one("#figures", Static).render())
        assert re.search(r"tokens    [1-9]\d*", figures), figures
        await pilot.press("escape")
        await wait_for(pilot, lambda: bool(app.finished))
        stats = app.finished[0].stats
        assert stats.stop_reason == "cancelled"
        assert 0 < stats.completion_tokens < 3500
        summary = app.query_one(AssistantMessage).query_one(".summary", Static)
        assert summary.has_class("stopped")
        assert "stopped" in str(summary.render())
        # The partial reply stays in the conversation.
        assert app.chat.history[-1].role == "assistant"


async def test_new_chat_clears_conversation(tiny_model: Path) -> None:
    app = RecordingApp(model_ref=str(tiny_model), params=GenerationParams(max_tokens=5, temperature=0))
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.backend is not None)
        await send(pilot, "one")
        await wait_for(pilot, lambda: bool(app.finished))
        await pilot.press("ctrl+n")
        await pilot.pause(0.1)
        assert not app.query(AssistantMessage)
        assert app.chat.history == []
        await send(pilot, "two")
        await wait_for(pilot, lambda: len(app.finished) == 2)
        assert len(app.query(AssistantMessage)) == 1


async def test_bad_model_file_shows_dismissible_error(tmp_path: Path) -> None:
    bad = tmp_path / "notes.gguf"
    bad.write_text("not a model")
    app = RecordingApp(model_ref=str(bad))
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal)
                       and bool(app.screen.query("#error-message")))
        message = str(app.screen.query_one("#error-message", Static).render())
        assert "not a GGUF model file" in message
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert not isinstance(app.screen, ErrorModal)
        assert "no model loaded" in str(app.chat.query_one("#status", Static).render())
        assert app.chat.query_one("#prompt", PromptArea).disabled


async def test_zero_token_reply_is_explained(tiny_model: Path) -> None:
    backend = ScriptedBackend([], notice="the model ended its reply at once (0 tokens)")
    app = RecordingApp(backend=backend, sampler=FixedSampler())  # type: ignore[arg-type]
    async with app.run_test(size=(120, 36)) as pilot:
        await send(pilot, "hi")
        await wait_for(pilot, lambda: bool(app.finished))
        await pilot.pause(0.1)
        notice = app.query_one(AssistantMessage).query_one(".notice", Static)
        assert "0 tokens" in str(notice.render())


async def test_system_prompt_on_a_model_without_template_is_said(tiny_model_no_template: Path) -> None:
    from tokrace.settings import Settings

    app = RecordingApp(model_ref=str(tiny_model_no_template), settings=Settings(system_prompt="be brief"),
                       params=GenerationParams(max_tokens=4, temperature=0))
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.title == "tiny-base.gguf")
        await send(pilot, "Once upon")
        await wait_for(pilot, lambda: bool(app.finished))
        await pilot.pause(0.1)
        notice = app.query_one(AssistantMessage).query_one(".notice", Static)
        assert "the system prompt was not sent" in str(notice.render())


async def test_control_characters_from_the_model_are_shown_not_executed() -> None:
    backend = ScriptedBackend(["ok ", "\x1b[2J", "\x07", " done"])
    app = RecordingApp(backend=backend, sampler=FixedSampler())  # type: ignore[arg-type]
    async with app.run_test(size=(120, 36)) as pilot:
        await send(pilot, "hi")
        await wait_for(pilot, lambda: bool(app.finished))
        await pilot.pause(0.1)
        source = app.query_one(AssistantMessage).markdown.source
        assert "\x1b" not in source and "\x07" not in source
        assert "␛[2J" in source and "␇" in source


REPLY = (
    "The sky looks **blue** because of *Rayleigh scattering*:\n\n"
    "- sunlight holds every colour;\n- air molecules scatter short (blue) wavelengths most;\n"
    "- so blue light reaches your eyes from all over the sky.\n\n"
    "At sunset the light crosses more air, the blue is scattered away, and reds remain."
)


def test_chat_screen_snapshot(snap_compare) -> None:
    pieces = re.findall(r"\S+\s*|\s+", REPLY)
    app = TokraceApp(backend=ScriptedBackend(pieces), sampler=FixedSampler())  # type: ignore[arg-type]

    async def run_before(pilot: Pilot) -> None:
        await wait_for(pilot, lambda: app.chat.backend is not None and app.chat._ready)
        await pilot.pause(0.1)
        await send(pilot, "Why is the sky blue?")
        await wait_for(pilot, lambda: not app.chat.generating and app.chat.meter is not None)
        app.chat.query_one("#prompt", PromptArea).cursor_blink = False  # a blinking cursor is not stable
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(110, 32), run_before=run_before)


async def test_each_finished_reply_is_in_the_speed_log(tiny_model: Path) -> None:
    from tokrace.speedlog.store import SpeedLog

    app = RecordingApp(model_ref=str(tiny_model), params=GenerationParams(max_tokens=12, temperature=0))
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.session is not None and app.session.records)
        await send(pilot, "one")
        await wait_for(pilot, lambda: len(app.finished) == 1)
        await send(pilot, "two")
        await wait_for(pilot, lambda: len(app.finished) == 2)
        await wait_for(pilot, lambda: len(SpeedLog.open().read()) == 2)
    records = SpeedLog.open().read()
    assert [r.n_gen for r in records] == [12, 12]
    assert {r.kind for r in records} == {"chat"}
    assert len({r.session_id for r in records}) == 1
