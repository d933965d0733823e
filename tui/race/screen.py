"""The race screen: two lanes, one prompt box that sends to both, and a verdict when both finish.

Simultaneous: both lanes stream at once, each through ``stream_events_to_markdown`` (its own pump
thread). Fair: the lanes generate one after the other with the whole machine (each lane's status shows
its progress), then both replies are replayed side by side at their true timing from their recorded
events, so the user still sees a race, and every figure is the solo one.
"""

from __future__ import annotations

import asyncio
import time

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Header, Input, Static

from tokrace.backends.base import CancelToken, GenerationParams
from tokrace.backends.meter import SpeedMeter
from tokrace.backends.race import RaceMode
from tokrace.backends.race_lane import LABELS, Lane, LaneResult, commit_turn, not_run, run_lane
from tokrace.backends.race_replay import replay_events
from tokrace.backends.race_verdict import Verdict, judge
from tokrace.backends.reply_run import ReplyRun
from tokrace.model_registry.errors import TokraceError
from tokrace.race_setup import RacePlan
from tokrace.session import Session
from tokrace.tui.chat.messages import AssistantMessage
from tokrace.tui.race.lane_view import LaneView, Turn
from tokrace.tui.race.setup import RaceSetup
from tokrace.tui.streaming import StreamSafeScreen, stream_events_to_markdown, ui_cpu_budget
from tokrace.tui.words import key, keyed, say

TELEMETRY_HZ = 4
SHORT_ROWS = 34
RACE_PLACEHOLDER = ("Prompt for both (Enter races, {key:race.stop} stops both, {key:race.rerun} rerun,"
                    " {key:race.swap} swap)")
"""Enter is the Input's own key (no binding id: not remappable); the others are this screen's."""


class RaceScreen(StreamSafeScreen):
    BINDINGS = [
        Binding("escape", "stop", "Stop both", id="race.stop"),
        Binding("ctrl+g", "rerun", "Rerun", id="race.rerun"),
        Binding("ctrl+t", "swap", "Swap lanes", id="race.swap"),
        Binding("ctrl+n", "new_race", "New race", id="race.new"),
        Binding("ctrl+o", "choose_b", "Lane B model", id="race.choose_b"),
    ]
    DEFAULT_CSS = """
    RaceScreen #lanes { height: 1fr; }
    RaceScreen #verdict-box { height: auto; max-height: 10; padding: 0 1; border-top: hkey $primary 30%; }
    RaceScreen #verdict-box.empty { display: none; }
    RaceScreen #race-status { height: auto; padding: 0 1; color: $text-muted; }
    RaceScreen #race-prompt { margin: 0 1; }
    RaceScreen.-short #verdict-box { max-height: 5; }
    RaceScreen.-short LaneView .lane-tps { display: none; }
    RaceScreen.-short LaneView .lane-spark { display: none; }
    RaceScreen.-short LaneView .lane-live { display: block; }
    RaceScreen.-short LaneView .lane-info { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    """
    VERTICAL_BREAKPOINTS = [(0, "-short"), (SHORT_ROWS, "-tall")]
    """Below ``SHORT_ROWS`` rows (80×24) the lanes drop their big tok/s digits and sparkline for one
    line, and the verdict scrolls in 4 rows, so both replies stay in sight under it."""

    def __init__(self, setup: RaceSetup, params: GenerationParams) -> None:
        super().__init__()
        self.setup = setup
        self.params = params
        self.lanes: list[Lane] = list(setup.lanes or [])
        self.plan: RacePlan | None = None
        self.mode: RaceMode = setup.mode or "fair"
        self.turns: list[list[Turn]] = [[], []]
        self.meters: list[SpeedMeter | None] = [None, None]
        self.ceilings: dict[str, float | None] | None = None
        self.last_prompt: str | None = None
        self.results: list[LaneResult] = []
        self.verdict: Verdict | None = None
        self._cancel: CancelToken | None = None
        self._ready = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="lanes"):
            yield LaneView(0, id="lane-a")
            yield LaneView(1, id="lane-b")
        with VerticalScroll(id="verdict-box", classes="empty"):  # scrolls when the screen is short
            yield Static("", id="verdict", markup=False)
        yield Static("resolving the models…", id="race-status", markup=False)
        yield Input(placeholder="Waiting for both lanes…", id="race-prompt", disabled=True)
        yield Footer()

    @property
    def views(self) -> list[LaneView]:
        return [self.query_one("#lane-a", LaneView), self.query_one("#lane-b", LaneView)]

    @property
    def racing(self) -> bool:
        return self._cancel is not None

    def on_mount(self) -> None:
        self.title = "race"
        self.set_interval(1 / TELEMETRY_HZ, self.refresh_telemetry)
        if self.lanes:
            self._lanes_ready()
        else:
            self.load_lanes()

    def set_status(self, text: str) -> None:
        self.query_one("#race-status", Static).update(text)

    # -- loading ----------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="race-load")
    def load_lanes(self) -> None:
        from tokrace.backends.device_telemetry import detect_gpus
        from tokrace.backends.roofline import cpu_bandwidth
        from tokrace.race_setup import lane_ceilings, plan_race

        refs = [ref or "" for ref in self.setup.refs]
        if not refs[1]:
            self.app.call_from_thread(self._waiting_for_b, refs[0])
            return
        try:
            plan = plan_race(refs, mode=self.setup.mode, threads=self.setup.threads,
                             request=self.setup.request, gpus=detect_gpus(), drafts=self.setup.drafts,
                             draft_k=self.setup.draft_k, reuse=self._chat_session(), base=self.setup.base,
                             system=self.setup.system)
        except TokraceError as err:
            self.app.call_from_thread(self.set_status, f"no race: {err}")
            return
        for lane in plan.lanes:
            if plan.load_in_turn or any(other.load_error for other in plan.lanes):
                break  # loaded just before its turn / no race with a bad lane: load nothing
            self.app.call_from_thread(self.set_status, f"loading {lane.label}: {lane.ref}…")
            if lane.load():
                lane.warm_up()
        self.plan = plan
        self.lanes = plan.lanes
        self.mode = plan.mode
        self.ceilings = lane_ceilings(plan.lanes, None, cpu_bandwidth().bytes_per_s)
        self.app.call_from_thread(self._lanes_ready)

    def _chat_session(self) -> Session | None:
        """The chat's loaded model, which a lane may race on instead of loading a second copy."""
        from tokrace.tui.app import TokraceApp

        app = self.app
        return app.session if isinstance(app, TokraceApp) else None

    def _waiting_for_b(self, ref_a: str) -> None:
        """Nothing loads until lane B has a model: say so, in the lanes, the status and the prompt."""
        self.views[0].query_one(".lane-title", Static).update(f"A · {ref_a or 'the default model'}")
        self.views[1].query_one(".lane-title", Static).update("B · no model yet")
        for view in self.views:
            view.set_status("")
        choose = key("race.choose_b")
        self.sub_title = f"{ref_a or 'the default model'} vs (lane B: {choose})"
        self.set_status(f"lane B has no model: {choose} chooses one")
        self.query_one("#race-prompt", Input).placeholder = f"Choose lane B's model first ({choose})"

    def _lanes_ready(self) -> None:
        for lane, view in zip(self.lanes, self.views, strict=True):
            view.show_lane(lane)
            if not lane.load_error:
                view.set_status("ready")
        self.sub_title = " vs ".join(lane.title for lane in self.lanes)
        bad = [lane for lane in self.lanes if lane.load_error]
        if bad:  # a race with a bad lane would compare one model with nothing: do not start
            for lane in self.lanes:
                lane.unload()
            self.set_status("no race: " + "; ".join(f"lane {lane.label}: {say(lane.load_error or '')}"
                                                      for lane in bad)
                            + keyed(" · {key:race.choose_b} chooses lane B's model"))
            return
        notes = self.plan.notes if self.plan is not None else []
        how = self.plan.describe() if self.plan is not None else self.mode
        self.set_status(" · ".join([f"mode {how}", *notes]))
        prompt = self.query_one("#race-prompt", Input)
        prompt.disabled = False
        prompt.placeholder = keyed(RACE_PLACEHOLDER)
        prompt.focus()
        self._ready = True

    # -- racing -----------------------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if not text or not self._ready:
            return
        if self.racing:
            self.notify(keyed("The race is still running: wait for it or press {key:race.stop}."),
                        severity="warning")
            return
        event.input.value = ""
        self.send(text)

    def send(self, prompt: str) -> None:
        self.last_prompt = prompt
        self.query_one("#verdict", Static).update("")
        self.query_one("#verdict-box").add_class("empty")
        replies = [view.add_turn(prompt) for view in self.views]
        self._cancel = CancelToken()
        self.race(prompt, replies, self._cancel)

    @work(exclusive=True, group="race")
    async def race(self, prompt: str, replies: list[AssistantMessage], cancel: CancelToken) -> None:
        lanes = list(self.lanes)
        try:
            if self.mode == "simultaneous":
                results = await self._race_simultaneous(lanes, prompt, replies, cancel)
            else:
                results = await self._race_fair(lanes, prompt, replies, cancel)
        finally:
            if self._cancel is cancel:
                self._cancel = None
        self._finish(lanes, prompt, replies, results, cancel)

    async def _race_simultaneous(self, lanes: list[Lane], prompt: str, replies: list[AssistantMessage],
                                 cancel: CancelToken) -> list[LaneResult]:
        for i, view in enumerate(self.views):
            self.meters[i] = SpeedMeter()
            view.set_status("generating (simultaneous)", error=bool(lanes[i].load_error))
        jobs = [self._stream_live(lane, prompt, reply, meter, cancel)
                for lane, reply, meter in zip(lanes, replies, self.meters, strict=True)]
        return list(await asyncio.gather(*jobs))

    async def _stream_live(self, lane: Lane, prompt: str, reply: AssistantMessage,
                           meter: SpeedMeter | None, cancel: CancelToken) -> LaneResult:
        if not lane.loaded or lane.backend is None or meter is None:
            return not_run(lane.label, lane.title, lane.load_error or "not loaded")
        run = lane.reply(prompt, self.params, cancel, meter)
        await stream_events_to_markdown(lambda: iter(run), reply.markdown, cancel,
                                        budget=ui_cpu_budget(lane.backend.model))
        return lane.result(run)

    async def _race_fair(self, lanes: list[Lane], prompt: str, replies: list[AssistantMessage],
                         cancel: CancelToken) -> list[LaneResult]:
        load_in_turn = self.plan is not None and self.plan.load_in_turn
        results: list[LaneResult] = []
        for view in self.views:
            view.set_status("waiting for its turn (fair: one after the other)")
        for i, (lane, view) in enumerate(zip(lanes, self.views, strict=True)):
            if cancel.cancelled:
                results.append(not_run(lane.label, lane.title))
                continue
            if load_in_turn:
                view.set_status("loading…")
                if await asyncio.to_thread(lane.load):
                    await asyncio.to_thread(lane.warm_up)
            view.set_status("generating alone (fair), replay follows")
            self.meters[i] = phase = SpeedMeter()
            result = await asyncio.to_thread(run_lane, lane, prompt, self.params, cancel, phase)
            if load_in_turn:
                await asyncio.to_thread(lane.unload)
            results.append(result)
            view.set_status(f"done alone: {result.stats.completion_tokens} tok · waiting for the replay")
        # The replay: both lanes from one start, each event at its true offset.
        start = time.perf_counter() + 0.05
        for i, view in enumerate(self.views):
            self.meters[i] = SpeedMeter()
            view.set_status("replaying at true timing" if results[i].ran else "")
        await asyncio.gather(*(self._replay(r, reply, meter, cancel, start)
                               for r, reply, meter in zip(results, replies, self.meters, strict=True)))
        return results

    async def _replay(self, result: LaneResult, reply: AssistantMessage, meter: SpeedMeter | None,
                      cancel: CancelToken, start: float) -> None:
        if not result.events or meter is None:
            return
        replay = ReplyRun(lambda: replay_events(result.events, cancel, start=start), meter=meter)
        await stream_events_to_markdown(lambda: iter(replay), reply.markdown, cancel)

    def _finish(self, lanes: list[Lane], prompt: str, replies: list[AssistantMessage],
                results: list[LaneResult], cancel: CancelToken) -> None:
        commit_turn(lanes, prompt, results)  # both lanes keep the same user turns, or neither
        for i, (_lane, result, reply, view) in enumerate(zip(lanes, results, replies, self.views,
                                                            strict=True)):
            turn = Turn(prompt, result.text)
            if result.error:
                turn.summary, turn.state = f"error: {say(result.error)}", "error"
            elif not result.ran:
                turn.summary, turn.state = "not run (race stopped)", "stopped"
            else:
                turn.summary = result.stats.summary_line()
                turn.state = "stopped" if result.stats.stop_reason == "cancelled" else ""
                notice = result.finished.notice if result.finished else None
                turn.notice = say(notice) if notice else None
            if not result.ran and not result.error:
                reply.markdown.display = False
            reply.set_summary(turn.summary, state=turn.state, notice=turn.notice)
            self.turns[i].append(turn)
            view.set_status("stopped" if cancel.cancelled else ("failed" if result.error else "finished"),
                            error=bool(result.error))
        shared = self.plan.shared_device if self.plan is not None else self.mode == "simultaneous"
        price = getattr(self.app, "price_per_hour", None)
        verdict = judge(lanes, results, mode=self.mode, shared_device=shared, ceilings=self.ceilings,
                        price_per_hour=price if isinstance(price, (int, float)) else None)
        self.results = results
        self.verdict = verdict
        self.query_one("#verdict", Static).update("\n".join(verdict.lines))
        box = self.query_one("#verdict-box", VerticalScroll)
        box.remove_class("empty")
        box.scroll_home(animate=False)
        self.refresh_telemetry()
        if self.setup.record:
            self.record(lanes, results)

    @work(thread=True, group="race-record")
    def record(self, lanes: list[Lane], results: list[LaneResult]) -> None:
        from tokrace.race_setup import record_race

        for error in record_race(lanes, results, sampling=self.params):
            self.app.call_from_thread(self.notify, f"speed log not written: {error}", severity="error")

    # -- actions ----------------------------------------------------------------------------------
    def action_stop(self) -> None:
        if self._cancel is not None:
            self._cancel.cancel()

    def action_rerun(self) -> None:
        if self.racing or self.last_prompt is None or not self._ready:
            return
        for lane in self.lanes:
            lane.undo_last_turn(self.last_prompt)  # the same race again, from the same context
        self.send(self.last_prompt)

    async def action_swap(self) -> None:
        if self.racing or len(self.lanes) != 2:
            return
        self.lanes.reverse()
        self.turns.reverse()
        self.meters.reverse()
        if self.ceilings is not None:
            self.ceilings = {LABELS[i]: self.ceilings.get(lane.label) for i, lane in enumerate(self.lanes)}
        for label, lane in zip(LABELS, self.lanes, strict=True):
            lane.label = label
        for lane, view, turns in zip(self.lanes, self.views, self.turns, strict=True):
            view.show_lane(lane)
            await view.redraw(turns)
        self.sub_title = " vs ".join(lane.title for lane in self.lanes)

    async def action_new_race(self) -> None:
        self.action_stop()
        self.workers.cancel_group(self, "race")
        self._cancel = None
        for lane in self.lanes:
            lane.history.clear()
        self.turns = [[], []]
        self.meters = [None, None]
        self.last_prompt = None
        for view in self.views:
            await view.clear()
        self.query_one("#verdict-box").add_class("empty")

    def action_choose_b(self) -> None:
        if self.racing:
            self.notify(keyed("Stop the race ({key:race.stop}) before changing models."), severity="warning")
            return
        from tokrace.tui.screens.models_screen import ModelsScreen

        def chosen(ref: str | None) -> None:
            if ref is None:
                return
            for lane in self.lanes:
                lane.unload()
            self.setup.refs = [self.lanes[0].ref if self.lanes else self.setup.refs[0], ref]
            self.setup.lanes = None
            self.lanes = []
            self._ready = False
            self.query_one("#race-prompt", Input).disabled = True
            self.set_status(f"loading {ref}…")
            self.load_lanes()

        self.app.push_screen(ModelsScreen(), callback=chosen)

    def refresh_key_texts(self) -> None:
        """The keymap changed: say the new keys in the prompt's placeholder."""
        if self._ready:
            self.query_one("#race-prompt", Input).placeholder = keyed(RACE_PLACEHOLDER)

    def stop_all(self) -> None:
        """The app is closing: stop both lanes."""
        self.action_stop()

    # -- telemetry --------------------------------------------------------------------------------
    def refresh_telemetry(self) -> None:
        if not self.is_mounted:
            return
        for view, meter in zip(self.views, self.meters, strict=True):
            view.show_meter(meter)
