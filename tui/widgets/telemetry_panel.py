"""The live speed panel: big generation tok/s, its sparkline over the reply, and the other figures.

It never listens to tokens: ``show()`` is called from a timer with the current meter and device
snapshot, so redraw cost is fixed however fast the model runs.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Digits, Label, Sparkline, Static

from backends.device_telemetry import DeviceSnapshot
from backends.meter import SpeedMeter
from backends.units import format_bytes

SPARK_POINTS = 32


def _fmt(value: float | None, pattern: str, missing: str = "–") -> str:
    return missing if value is None else pattern.format(value)


class TelemetryPanel(Vertical):
    DEFAULT_CSS = """
    TelemetryPanel { width: 34; padding: 0 1; border-left: vkey $primary 30%; }
    TelemetryPanel .caption { color: $text-muted; }
    TelemetryPanel #tps { width: 100%; color: $success; }
    TelemetryPanel Sparkline { height: 3; margin-bottom: 1; }
    TelemetryPanel #figures { height: auto; }
    TelemetryPanel #device { height: auto; margin-top: 1; color: $text-muted; }
    """

    def compose(self) -> ComposeResult:
        yield Label("generation tok/s (live)", classes="caption")
        yield Digits("–", id="tps")
        yield Sparkline([], id="spark")
        yield Static("", id="figures")
        yield Static("", id="device")

    def show(self, meter: SpeedMeter | None, device: DeviceSnapshot | None) -> None:
        if meter is not None:
            self._show_meter(meter)
        if device is not None:
            self.query_one("#device", Static).update(self._device_text(device))

    def _show_meter(self, meter: SpeedMeter) -> None:
        s = meter.stats
        live = meter.live_tok_s() if not meter.finished else s.gen_tok_s
        self.query_one("#tps", Digits).update(_fmt(live, "{:.1f}"))
        # About 4 tokens per bar: with fewer, bars alternate between 1 and 2 tokens and saw-tooth.
        points = max(2, min(SPARK_POINTS, (s.completion_tokens - 1) // 4))
        self.query_one("#spark", Sparkline).data = meter.series(points) or [0.0]
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
        self.query_one("#figures", Static).update("\n".join(lines))

    @staticmethod
    def _device_text(d: DeviceSnapshot) -> str:
        lines = [
            f"CPU       {d.process_cpu_percent:.0f}% (of {d.cpu_count} cores)",
            f"RSS       {format_bytes(d.process_rss_bytes)}",
            f"RAM       {format_bytes(d.ram_used_bytes)} / {format_bytes(d.ram_total_bytes)}",
        ]
        for g in d.gpus:
            lines.append(f"GPU{g.index}      {format_bytes(g.vram_used_bytes)} / "
                         f"{format_bytes(g.vram_total_bytes)}")
        if d.status:
            lines.append(d.status)
        return "\n".join(lines)
