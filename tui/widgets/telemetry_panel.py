"""The live speed panel: big generation tok/s, its sparkline over the reply, and the other figures.

It never listens to tokens: ``show()`` is called from a timer with the current meter and device
snapshot, so redraw cost is fixed however fast the model runs.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Digits, Label, Static

from tokrace.backends.device_telemetry import DeviceSnapshot
from tokrace.backends.meter import ReplyStats, SpeedMeter
from tokrace.tui.widgets.device_panel import DevicePanel

SPARK_POINTS = 32
_BARS = " ▁▂▃▄▅▆▇█"


def spark_text(values: list[float], rows: int = 2) -> str:
    """A sparkline scaled from 0 (not from the minimum, as Textual's is): a steady 117–146 tok/s must
    look steady, not like a sawtooth."""
    top = max(values, default=0.0)
    if top <= 0:
        return "\n".join(" " * len(values) for _ in range(rows))
    levels = [round(v / top * rows * 8) for v in values]
    lines = []
    for row in range(rows - 1, -1, -1):
        lines.append("".join(_BARS[max(0, min(8, lv - row * 8))] for lv in levels))
    return "\n".join(lines)


def _fmt(value: float | None, pattern: str, missing: str = "–") -> str:
    return missing if value is None else pattern.format(value)


def remote_lines(s: ReplyStats) -> list[str]:
    """For a remote engine: where it ran, which figures the client measured (TTFT includes the
    network) and which the server reported, and how tokens were counted. Empty in-process."""
    if s.engine is None:
        return []
    counted = {"logprobs": "tokens (logprobs)", "usage": "tokens (server usage)",
               "chunks": "chunks: may undercount"}.get(s.token_count_source or "", "tokens")
    lines = [f"engine    {s.engine}", f"          at {s.endpoint}", "figures   client-measured;",
             "          TTFT includes the network", f"counted   {counted}"]
    if s.server_gen_tok_s is not None or s.server_prompt_tok_s is not None:
        lines.append(f"server    gen {_fmt(s.server_gen_tok_s, '{:.1f}')} tok/s, prompt "
                     f"{_fmt(s.server_prompt_tok_s, '{:.0f}')} tok/s")
    return lines


class TelemetryPanel(Vertical):
    DEFAULT_CSS = """
    TelemetryPanel { width: 34; padding: 0 1; border-left: vkey $primary 30%; }
    TelemetryPanel .caption { color: $text-muted; }
    TelemetryPanel #tps { width: 100%; color: $success; }
    TelemetryPanel #spark { height: 2; color: $accent; margin-bottom: 1; }
    TelemetryPanel #figures { height: auto; }
    TelemetryPanel DevicePanel { margin-top: 1; }
    """

    def compose(self) -> ComposeResult:
        yield Label("generation tok/s (live)", classes="caption")
        yield Digits("–", id="tps")
        yield Static("", id="spark", markup=False)
        yield Static("", id="figures")
        yield DevicePanel(id="device")

    def show(self, meter: SpeedMeter | None, device: DeviceSnapshot | None,
             efficiency: str | None = None) -> None:
        if meter is not None:
            self._show_meter(meter)
        self.query_one(DevicePanel).show(device, efficiency)

    def _show_meter(self, meter: SpeedMeter) -> None:
        s = meter.stats
        live = meter.live_tok_s() if not meter.finished else s.gen_tok_s
        self.query_one("#tps", Digits).update(_fmt(live, "{:.1f}"))
        # At least 4 tokens per bar, or bars alternate between 1 and 2 tokens and saw-tooth.
        points = max(1, min(SPARK_POINTS, (s.completion_tokens - 1) // 4))
        self.query_one("#spark", Static).update(spark_text(meter.series(points)))
        prompt = f"{s.prompt_eval_tokens} tok @ {_fmt(s.prompt_tok_s, '{:.0f}')} tok/s"
        if s.cached_prompt_tokens:
            prompt += f" (+{s.cached_prompt_tokens} cached)"
        lines = [
            f"TTFT      {_fmt(s.ttft_s, '{:.3f} s')}",
            f"prompt    {prompt}",
            f"tokens    {s.completion_tokens}",
            f"average   {_fmt(s.gen_tok_s, '{:.1f} tok/s')}",
            f"elapsed   {meter.elapsed_s():.2f} s",
        ]
        if s.drafted:
            lines.append(f"draft     {s.accepted}/{s.drafted} accepted ÷ drafted "
                         f"({_fmt(s.acceptance_rate, '{:.0%}')})")
            if s.draft_steps:
                lines.append(f"          {s.accepted / s.draft_steps:.1f} accepted per step")
        lines += remote_lines(s)
        self.query_one("#figures", Static).update("\n".join(lines))
