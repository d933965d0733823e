"""One lane of the race screen: the model, its live speed (big tok/s, sparkline, TTFT, tokens, memory)
and its conversation. Telemetry is polled from the screen's timer via ``show_meter``, never per token.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Digits, Static

from tokrace.backends.meter import SpeedMeter
from tokrace.backends.race_lane import Lane
from tokrace.model_registry.units import format_bytes
from tokrace.model_registry.units import format_figure as _fmt
from tokrace.tui.chat.messages import AssistantMessage, UserMessage
from tokrace.tui.streaming import display_safe
from tokrace.tui.widgets.telemetry_panel import SPARK_POINTS, spark_text
from tokrace.tui.words import say


@dataclass(slots=True)
class Turn:
    """What a finished turn showed, so the conversation can be drawn again after a lane swap."""

    prompt: str
    text: str = ""
    summary: str = ""
    state: str = ""
    notice: str | None = None


def memory_line(lane: Lane) -> str:
    """What the lane holds: its planned memory, and where (VRAM per GPU, or RAM)."""
    parts = []
    if lane.need_bytes is not None:
        parts.append(f"needs {format_bytes(lane.need_bytes)}")
    plan = lane.plan
    if plan is not None and plan.per_device:
        on = ", ".join(f"GPU {d.index} {format_bytes(d.planned_bytes)}" for d in plan.per_device
                       if d.planned_bytes)
        parts.append(f"VRAM {on}" if on else "RAM only")
    elif lane.model is not None:
        m = lane.model
        parts.append(f"on the server ({m.threads_label()})" if m.remote else f"RAM · {m.threads_label()}")
    return " · ".join(parts)


class LaneView(Vertical):
    DEFAULT_CSS = """
    LaneView { width: 1fr; height: 1fr; padding: 0 1; }
    LaneView.lane-b { border-left: vkey $primary 30%; }
    LaneView .lane-title { text-style: bold; color: $accent; }
    LaneView .lane-info { color: $text-muted; }
    LaneView .lane-status { color: $text-muted; }
    LaneView .lane-status.error { color: $error; }
    LaneView .lane-tps { width: auto; color: $success; }
    LaneView .lane-spark { height: 2; color: $accent; }
    LaneView .lane-figures { height: 1; }
    LaneView .lane-messages { height: 1fr; }
    LaneView .lane-live { display: none; height: 1; color: $success; text-style: bold; }
    LaneView AssistantMessage { margin: 1 0 0 0; }
    LaneView UserMessage { margin: 1 0 0 4; }
    """

    def __init__(self, position: int, **kw: object) -> None:
        super().__init__(classes=f"lane-{'ab'[position]}", **kw)  # type: ignore[arg-type]
        self.position = position

    def compose(self) -> ComposeResult:
        yield Static("", classes="lane-title", markup=False)
        yield Static("", classes="lane-info", markup=False)
        yield Static("", classes="lane-status", markup=False)
        yield Digits("–", classes="lane-tps")
        yield Static("", classes="lane-live", markup=False)  # the digits' one-line form (short screens)
        yield Static("", classes="lane-spark", markup=False)
        yield Static("", classes="lane-figures", markup=False)
        yield VerticalScroll(classes="lane-messages")

    @property
    def messages(self) -> VerticalScroll:
        return self.query_one(".lane-messages", VerticalScroll)

    def show_lane(self, lane: Lane) -> None:
        self.query_one(".lane-title", Static).update(f"{lane.label} · {lane.title}")
        m = lane.model
        info = m.facts_line() if m is not None else ""
        memory = memory_line(lane)
        self.query_one(".lane-info", Static).update(" · ".join(p for p in (info, memory) if p))
        if lane.load_error:
            self.set_status(f"could not load: {say(lane.load_error)}", error=True)

    def set_status(self, text: str, *, error: bool = False) -> None:
        status = self.query_one(".lane-status", Static)
        status.update(text)
        status.set_class(error, "error")

    def show_meter(self, meter: SpeedMeter | None) -> None:
        if meter is None:
            return
        s = meter.stats
        live = meter.live_tok_s() if not meter.finished else s.gen_tok_s
        self.query_one(".lane-tps", Digits).update(_fmt(live, "{:.1f}"))
        self.query_one(".lane-live", Static).update(f"{_fmt(live, '{:.1f}')} tok/s")
        points = max(1, min(SPARK_POINTS, (s.completion_tokens - 1) // 4))
        self.query_one(".lane-spark", Static).update(spark_text(meter.series(points)))
        self.query_one(".lane-figures", Static).update(
            f"TTFT {_fmt(s.ttft_s, '{:.3f} s')} · {s.completion_tokens} tok · avg "
            f"{_fmt(s.gen_tok_s, '{:.1f} tok/s')} · {meter.elapsed_s():.2f} s"
        )

    def add_turn(self, prompt: str) -> AssistantMessage:
        reply = AssistantMessage()
        self.messages.mount(UserMessage(prompt), reply)
        self.messages.anchor()
        return reply

    async def redraw(self, turns: list[Turn]) -> None:
        """Draw the conversation again from its turns (after a swap)."""
        await self.messages.remove_children()
        for turn in turns:
            reply = AssistantMessage()
            await self.messages.mount(UserMessage(turn.prompt), reply)
            await reply.markdown.update(display_safe(turn.text))
            reply.set_summary(turn.summary, state=turn.state, notice=turn.notice)

    async def clear(self) -> None:
        await self.messages.remove_children()
        self.query_one(".lane-tps", Digits).update("–")
        self.query_one(".lane-live", Static).update("")
        self.query_one(".lane-spark", Static).update("")
        self.query_one(".lane-figures", Static).update("")
