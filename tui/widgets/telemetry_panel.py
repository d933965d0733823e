"""The live speed panel: big generation tok/s, its sparkline over the reply, and the other figures.

It never listens to tokens: ``show()`` is called from a timer with the current meter and device
snapshot, so redraw cost is fixed however fast the model runs.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Digits, Label, Static

from tokrace.backends.device_sampler import DeviceSnapshot
from tokrace.backends.meter import ReplyStats, SpeedMeter
from tokrace.model_registry.units import format_figure as _fmt
from tokrace.speedlog.plot import block_rows
from tokrace.tui.widgets.device_panel import DevicePanel

SPARK_POINTS = 32


def spark_text(values: list[float], rows: int = 2) -> str:
    """A sparkline scaled from 0 (not from the minimum, as Textual's is): the speed log's text charts'
    columns (``speedlog.plot.block_rows``), ``rows`` tall."""
    return "\n".join(block_rows(values, rows, max(values, default=0.0)))


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


def context_line(used: int | None, n_ctx: int | None) -> str:
    """``context   412/512 (80%)``: tokens the conversation holds after the last reply; empty when
    no model is loaded or its context is unknown (a remote engine that does not say: ``n_ctx`` 0)."""
    if not n_ctx:
        return ""
    if used is None:
        return f"context   –/{n_ctx}"
    return f"context   {used}/{n_ctx} ({used / n_ctx:.0%})"


def _rows(text: str, width: int = 28) -> tuple[int, ...]:
    """Roughly how ``text`` wraps in the panel (rows per line, at a width below the panel's): when this
    stays the same, so does the widget's height."""
    return tuple(1 + len(line) // width for line in text.split("\n"))


class TelemetryPanel(Vertical):
    DEFAULT_CSS = """
    TelemetryPanel { width: 34; padding: 0 1; border-left: vkey $primary 30%; }
    TelemetryPanel .caption { color: $text-muted; }
    TelemetryPanel #tps { width: 100%; color: $success; }
    TelemetryPanel #spark { height: 2; color: $accent; margin-bottom: 1; }
    TelemetryPanel #figures { height: auto; }
    TelemetryPanel #context { height: auto; }
    TelemetryPanel DevicePanel { margin-top: 1; }
    """

    def __init__(self, *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._shown: dict[str, str] = {"#tps": "–", "#spark": "", "#figures": "", "#context": ""}
        """What each figure widget shows (as composed), so unchanged figures are not redrawn."""

    def compose(self) -> ComposeResult:
        yield Label("generation tok/s (live)", classes="caption")
        yield Digits("–", id="tps")
        yield Static("", id="spark", markup=False)
        yield Static("", id="figures")
        yield Static("", id="context", markup=False)
        yield DevicePanel(id="device")

    def show(self, meter: SpeedMeter | None, device: DeviceSnapshot | None,
             efficiency: str | None = None, context: tuple[int | None, int | None] = (None, None)) -> None:
        """Redraw: the reply's figures (``meter``; ``None`` keeps the panel as it is), the device, and
        ``context`` = (tokens in use after the last reply, the context size), both in tokens."""
        if meter is not None:
            self._show_meter(meter)
        self._put("#context", Static, context_line(*context))
        self.query_one(DevicePanel).show(device, efficiency)

    def _put(self, selector: str, kind: type[Static] | type[Digits], value: str) -> None:
        """Show ``value`` in the widget ``selector`` unless it shows it already: an update asks
        Textual for a new layout of the whole screen, whose cost grows with the conversation (an
        idle app polled at 4 Hz would keep laying out every block of every reply)."""
        old = self._shown.get(selector)
        if old == value:
            return
        self._shown[selector] = value
        widget = self.query_one(selector, kind)
        if isinstance(widget, Digits):
            widget.update(value)  # lays out only when its width changes
        else:  # a new layout only when the height may change: rows, long lines wrapping
            widget.update(value, layout=old is None or _rows(old) != _rows(value))

    def reset(self) -> None:
        """No reply yet (a new chat, another model): clear the figures of the last one."""
        self._put("#tps", Digits, "–")
        self._put("#spark", Static, "")
        self._put("#figures", Static, "")
        self._put("#context", Static, "")

    def _show_meter(self, meter: SpeedMeter) -> None:
        s = meter.stats
        live = meter.live_tok_s() if not meter.finished else s.gen_tok_s
        self._put("#tps", Digits, _fmt(live, "{:.1f}"))
        # At least 4 tokens per bar, or bars alternate between 1 and 2 tokens and saw-tooth.
        points = max(1, min(SPARK_POINTS, (s.completion_tokens - 1) // 4))
        self._put("#spark", Static, spark_text(meter.series(points)))
        prompt = s.prompt_label()  # "31 tok @ 305 tok/s (+12 cached)"; "–" what the engine did not say
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
        self._put("#figures", Static, "\n".join(lines))
