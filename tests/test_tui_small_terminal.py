"""Issue 24.7: at 80×24 the race verdict hid both replies, and F1's keys and F2's labels were cut. Each
check reads what the terminal shows (``screen_text``), so a cut or hidden text fails it."""

from __future__ import annotations

from pathlib import Path

from screen_text import screen_text
from scripted_backend import FixedSampler, ScriptedBackend
from test_race_tui import race_app, scripted_lanes, send
from test_tui_chat import RecordingApp, wait_for
from test_tui_settings import FormApp
from textual.app import App
from textual.containers import VerticalScroll
from textual.widgets import Static

from tokrace.settings import Settings
from tokrace.tui.chat.messages import AssistantMessage, UserMessage
from tokrace.tui.race.setup import RaceSetup
from tokrace.tui.screens.help_screen import HelpScreen, key_rows
from tokrace.tui.screens.settings_screen import FORM_FIELDS, SettingsScreen

SIZE = (80, 24)


def shown(app: App[object]) -> str:
    """The screen's text with frames dropped and whitespace collapsed: a wrapped line reads on."""
    return " ".join(" ".join(line.strip(" █▊▎▏▔▁▀▄│") for line in screen_text(app)).split())


async def test_the_race_verdict_leaves_both_replies_in_sight() -> None:
    app = race_app(RaceSetup(lanes=scripted_lanes(), mode="fair", record=False))
    async with app.run_test(size=SIZE) as pilot:
        race = app.race
        assert race is not None
        await wait_for(pilot, lambda: race._ready)
        await send(pilot, "What is the capital of France?")
        await wait_for(pilot, lambda: bool(race.results) and not race.racing)
        await pilot.pause(0.3)
        text = shown(app)
        assert text.count("Paris is the capital of France") == 2, text
        verdict = race.query_one("#verdict-box")
        for view in race.views:
            reply = view.query_one(AssistantMessage)
            question = view.query_one(UserMessage)
            for widget in (question, reply.markdown, reply.query_one(".summary", Static)):
                region = widget.region
                assert region.height > 0 and region.bottom <= verdict.region.y, widget
        assert text.count("tok/s") >= 4  # each lane's live speed (one line) and its reply's summary
        assert "faster than" in text  # the verdict, which scrolls for the rest
        assert verdict.max_scroll_y > 0 or "noise:" in text


async def test_f1_shows_every_key_whole() -> None:
    app = RecordingApp(backend=ScriptedBackend(["x"]), sampler=FixedSampler())  # type: ignore[arg-type]
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.chat.backend is not None and not app.chat.prompt.disabled)
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen) and bool(app.screen.query("#keys")))
        await pilot.pause(0.1)
        text = shown(app)
        missing = [what for _, what in key_rows() if what not in text]
        assert missing == [], text


async def test_f2_shows_every_label_whole(tiny_model: Path) -> None:
    app = FormApp(tiny_model, Settings())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen)
                       and bool(app.screen.query("#plan")))
        for name in FORM_FIELDS:
            cell = app.screen.query_one(f"#{name}").parent  # the field's label and its box
            assert cell is not None
            app.screen.query_one(VerticalScroll).scroll_to_widget(cell, animate=False, top=True)
            await pilot.pause(0.05)
            label = Settings.knob(name).label
            assert label in shown(app), (name, shown(app))
