"""The race screen driven with Pilot: deterministic scripted lanes (fixed timestamps) for the verdict,
the replay and the SVG snapshot; real llama.cpp on tiny models for Esc and a lane that cannot load."""

from __future__ import annotations

import re
from pathlib import Path

from scripted_backend import SCRIPTED_MODEL, FixedSampler, ScriptedBackend
from test_tui_chat import wait_for
from textual.pilot import Pilot
from textual.widgets import Input, Static

from tokrace.backends.base import GenerationParams, LoadedModel
from tokrace.backends.race_lane import Lane
from tokrace.tui.app import TokraceApp
from tokrace.tui.chat.messages import AssistantMessage
from tokrace.tui.chat.screen import ChatScreen
from tokrace.tui.race.screen import RaceScreen
from tokrace.tui.race.setup import RaceSetup

GEMMA = LoadedModel(
    name="gemma3-270m:q4_k_m", path="/models/gemma-3-270m-Q4_K_M.gguf", architecture="gemma3",
    quantization="Q4_K_M", size_bytes=253_115_648, n_params=268_098_176, n_layers=18, n_ctx_train=32768,
    n_ctx=4096, n_threads=2, template="plain completion (no chat template)", gpu_offload=False,
)
REPLY = re.findall(r"\S+\s*", "Paris is the capital of **France**, on the Seine; about two million "
                                "people live in the city itself.")


class ScriptedModel(ScriptedBackend):
    """A scripted backend that presents another model (the race needs two)."""

    def __init__(self, model: LoadedModel, pieces: list[str], **kw: float) -> None:
        super().__init__(pieces, **kw)
        self._loaded = model

    def load(self) -> LoadedModel:
        return self._loaded

    @property
    def model(self) -> LoadedModel:
        return self._loaded


def scripted_lanes(real_delay: float = 0.0) -> list[Lane]:
    fast = ScriptedBackend(REPLY, token_interval_s=0.008, ttft_s=0.05, real_delay=real_delay)
    slow = ScriptedModel(GEMMA, REPLY, token_interval_s=0.015, ttft_s=0.09, real_delay=real_delay)
    return [Lane("A", "smollm2", backend=fast), Lane("B", "gemma3", backend=slow)]


def race_app(setup: RaceSetup, params: GenerationParams | None = None) -> TokraceApp:
    return TokraceApp(params=params or GenerationParams(max_tokens=200), race=setup,
                      sampler=FixedSampler())  # type: ignore[arg-type]


async def send(pilot: Pilot, text: str) -> None:
    await pilot.click("#race-prompt")
    await pilot.press(*text, "enter")


def verdict_text(app: TokraceApp) -> str:
    return str(app.screen.query_one("#verdict", Static).render())


def summaries(app: TokraceApp) -> list[str]:
    return [str(m.query_one(".summary", Static).render()) for m in app.screen.query(AssistantMessage)]


async def test_fair_race_replays_both_lanes_and_gives_a_verdict() -> None:
    app = race_app(RaceSetup(lanes=scripted_lanes(), mode="fair", record=False))
    async with app.run_test(size=(140, 40)) as pilot:
        race = app.race
        assert isinstance(app.screen, RaceScreen) and race is not None
        await wait_for(pilot, lambda: race._ready)
        await send(pilot, "What is the capital of France?")
        await wait_for(pilot, lambda: bool(race.results) and not race.racing)
        await pilot.pause(0.2)
        a, b = race.results
        # Replayed events keep the recorded intervals: the figures are exactly the scripted ones.
        assert a.stats.gen_tok_s is not None and abs(a.stats.gen_tok_s - 125.0) < 0.01
        assert b.stats.gen_tok_s is not None and abs(b.stats.gen_tok_s - 1 / 0.015) < 0.01
        for meter, stats in zip(race.meters, (a.stats, b.stats), strict=True):
            assert meter is not None and abs((meter.stats.gen_tok_s or 0) - (stats.gen_tok_s or 0)) < 1e-6
        verdict = verdict_text(app)
        assert verdict.startswith("smollm2-135m-instruct:q4_1 1.9× faster than gemma3-270m:q4_k_m")
        assert "TTFT 0.050 ± 0.000 s vs 0.090 ± 0.000 s" in verdict
        assert [len(lane.history) for lane in race.lanes] == [2, 2]
        assert all(s.startswith(f"{len(REPLY)} tok · ") for s in summaries(app))
        sources = [m.markdown.source for m in app.screen.query(AssistantMessage)]
        assert sources == ["".join(REPLY)] * 2


async def test_simultaneous_rerun_and_swap() -> None:
    app = race_app(RaceSetup(lanes=scripted_lanes(), mode="simultaneous", record=False))
    async with app.run_test(size=(140, 40)) as pilot:
        race = app.race
        assert race is not None
        await wait_for(pilot, lambda: race._ready)
        await send(pilot, "hi")
        await wait_for(pilot, lambda: bool(race.results) and not race.racing)
        assert "shared it" in verdict_text(app)
        first = race.results
        await pilot.press("ctrl+g")  # rerun: the same prompt from the same context
        await wait_for(pilot, lambda: race.results is not first and not race.racing)
        assert [len(lane.history) for lane in race.lanes] == [2, 2]
        assert len(app.screen.query(AssistantMessage)) == 4
        gemma_requests = race.lanes[1].backend.requests  # type: ignore[union-attr]
        assert gemma_requests[0] == gemma_requests[1]  # the rerun sent exactly the first prompt again
        await pilot.press("ctrl+t")
        await pilot.pause(0.2)
        assert [lane.title for lane in race.lanes] == ["gemma3-270m:q4_k_m", SCRIPTED_MODEL.name]
        assert [lane.label for lane in race.lanes] == ["A", "B"]
        title = str(race.views[0].query_one(".lane-title", Static).render())
        assert title == "A · gemma3-270m:q4_k_m"
        assert len(race.views[0].query(AssistantMessage)) == 2  # its conversation moved with it
        await pilot.press("ctrl+n")
        await pilot.pause(0.1)
        assert not app.screen.query(AssistantMessage) and all(not lane.history for lane in race.lanes)


async def test_escape_stops_both_lanes_and_they_race_again() -> None:
    # Lanes that sleep between tokens (no CPU taken): Esc lands mid-reply however busy the machine is,
    # with 1,000 tokens × 10 ms of room before either lane could finish on its own.
    long_reply = REPLY * 70
    lanes = [Lane("A", "smollm2", backend=ScriptedBackend(long_reply, real_delay=0.01)),
             Lane("B", "gemma3", backend=ScriptedModel(GEMMA, long_reply, real_delay=0.01))]
    setup = RaceSetup(lanes=lanes, mode="simultaneous", record=False)
    app = race_app(setup, GenerationParams(max_tokens=1000, temperature=0))
    async with app.run_test(size=(140, 40)) as pilot:
        race = app.race
        assert race is not None
        await wait_for(pilot, lambda: race._ready)
        await send(pilot, "go on forever")
        await wait_for(pilot, lambda: all(m is not None and m.stats.completion_tokens > 10
                                          for m in race.meters))
        await pilot.press("escape")
        await wait_for(pilot, lambda: bool(race.results) and not race.racing)
        for result, lane in zip(race.results, race.lanes, strict=True):
            assert result.finished is not None and result.finished.stop_reason == "cancelled"
            assert 0 < result.stats.completion_tokens < 1000
            assert len(lane.history) == 2 and lane.history[1].content == result.text
        assert all("stopped" in s for s in summaries(app))
        assert "stopped after" in verdict_text(app)
        race.params = GenerationParams(max_tokens=5, temperature=0)
        first = race.results
        await send(pilot, "again")
        await wait_for(pilot, lambda: race.results is not first and not race.racing)
        assert [r.stats.completion_tokens for r in race.results] == [5, 5], [r.error for r in race.results]
        assert [len(lane.history) for lane in race.lanes] == [4, 4]


async def test_lane_that_cannot_load_shows_its_error_and_no_race_starts(tiny_model: Path,
                                                                         tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_text("nope")
    app = race_app(RaceSetup(refs=[str(tiny_model), str(bad)], record=False),
                   GenerationParams(max_tokens=12, temperature=0))
    async with app.run_test(size=(140, 40)) as pilot:
        race = app.race
        assert race is not None
        await wait_for(pilot, lambda: "no race" in str(race.query_one("#race-status", Static).render()))
        status = race.views[1].query_one(".lane-status", Static)
        assert status.has_class("error") and "not a GGUF" in str(status.render())
        assert "lane B: " in str(race.query_one("#race-status", Static).render())
        assert race.query_one("#race-prompt", Input).disabled and not race._ready
        assert not race.lanes[0].loaded  # lane A was not loaded for a race that cannot start


async def test_ctrl_r_goes_from_chat_to_race_and_back() -> None:
    app = TokraceApp(backend=ScriptedBackend(REPLY), sampler=FixedSampler())  # type: ignore[arg-type]
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: app.chat.backend is not None)
        await pilot.press("ctrl+r")
        await pilot.pause(0.1)
        assert isinstance(app.screen, RaceScreen)
        status = str(app.screen.query_one("#race-status", Static).render())
        assert "lane B has no model: Ctrl+O chooses one" in status
        race = app.screen
        assert str(race.views[1].query_one(".lane-title", Static).render()) == "B · no model yet"
        assert str(race.views[0].query_one(".lane-title", Static).render()).startswith("A · ")
        assert race.query_one("#race-prompt", Input).placeholder == "Choose lane B's model first (Ctrl+O)"
        # F2 and Ctrl+D act on the chat's model: on the race screen they say so instead.
        app.action_open_settings()
        app.action_choose_draft()
        await pilot.pause(0.1)
        assert app.screen is race
        assert any("go back to the chat (Ctrl+R)" in str(n.message) for n in app._notifications)
        await pilot.press("ctrl+r")
        await pilot.pause(0.1)
        assert isinstance(app.screen, ChatScreen)


def test_race_screen_snapshot(snap_compare) -> None:
    app = race_app(RaceSetup(lanes=scripted_lanes(), mode="fair", record=False))

    async def run_before(pilot: Pilot) -> None:
        race = app.race
        assert race is not None
        await wait_for(pilot, lambda: race._ready)
        await send(pilot, "What is the capital of France?")
        await wait_for(pilot, lambda: bool(race.results) and not race.racing)
        app.screen.query_one("#race-prompt", Input).cursor_blink = False
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(130, 36), run_before=run_before)
