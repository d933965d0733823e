"""The device panel: per GPU a VRAM bar with this process's share marked, a utilisation sparkline, power
and temperature; on a CPU-only machine the process's CPU %, RSS and the machine's RAM; then one
efficiency line ("efficiency: 67% of the 195 tok/s bandwidth limit").

Self-contained: call ``show(snapshot, efficiency)`` from a timer (it keeps its own short history for the
sparklines, one point per new snapshot). One widget rendering Rich text, so a redraw costs the same
however many GPUs there are.
"""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual import events
from textual.widget import Widget

from tokrace.backends.device_sampler import DeviceSnapshot
from tokrace.backends.device_telemetry import GpuSample
from tokrace.model_registry.units import format_bytes

HISTORY = 48
BLOCKS = "▁▂▃▄▅▆▇█"
OWN, OTHER, FREE = "█", "▓", "░"


def short_gpu_name(name: str) -> str:
    """"NVIDIA GeForce RTX 4090" → "RTX 4090"; the vendor is the same for every NVML device."""
    for prefix in ("NVIDIA ", "GeForce "):
        name = name.removeprefix(prefix)
    return name.removesuffix(" Generation")


def spark(values: list[float], width: int, top: float = 100.0) -> str:
    """Fixed scale 0..``top`` (a flat 90% must look high, not like noise): the last ``width`` points."""
    pts = values[-width:]
    return "".join(BLOCKS[min(len(BLOCKS) - 1, max(0, int(v / top * len(BLOCKS))))] for v in pts)


def share_bar(own: int, used: int, total: int, width: int) -> tuple[int, int, int]:
    """Cells for this process, other processes, free. Non-zero shares get at least one cell."""
    if total <= 0 or width <= 0:
        return 0, 0, max(width, 0)
    used = min(max(used, 0), total)
    own = min(max(own, 0), used)
    used_cells = round(used / total * width)
    own_cells = round(own / total * width)
    if own and not own_cells:
        own_cells = 1
    if used > own and used_cells <= own_cells:
        used_cells = own_cells + 1
    used_cells = min(max(used_cells, own_cells), width)
    return own_cells, used_cells - own_cells, width - used_cells


def _gb(n: float) -> str:
    return f"{n / (1 << 30):.1f}"


class DevicePanel(Widget):
    DEFAULT_CSS = """
    DevicePanel { height: auto; width: 1fr; }
    """

    def __init__(self, *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.snapshot: DeviceSnapshot | None = None
        self.efficiency: str | None = None
        self._util: dict[int, deque[float]] = {}
        self._cpu: deque[float] = deque(maxlen=HISTORY)
        self._last_t: float | None = None
        self._width = 32
        """The content width, kept from resize events: reading ``self.size`` in ``render`` makes
        Textual rebuild the map of every widget on screen, a cost that grows with the conversation."""
        self._lines = -1
        self._shown: tuple[str, tuple[object, ...]] | None = None
        """What the panel shows now (text and styles)."""

    def show(self, snapshot: DeviceSnapshot | None, efficiency: str | None = None) -> None:
        """The newest snapshot (``DeviceSampler.latest()``) and the efficiency line, if known."""
        if snapshot is not None and snapshot.t != self._last_t:
            self._last_t = snapshot.t
            cpu_share = snapshot.process_cpu_percent / max(1, snapshot.cpu_count)
            self._cpu.append(cpu_share)
            seen = set()
            for g in snapshot.gpus:
                seen.add(g.index)
                self._util.setdefault(g.index, deque(maxlen=HISTORY)).append(g.util_percent or 0.0)
            for gone in set(self._util) - seen:  # telemetry lost or a GPU vanished: no stale history
                del self._util[gone]
        self.snapshot = snapshot if snapshot is not None else self.snapshot
        self.efficiency = efficiency
        if not self.is_mounted:
            return
        # Nothing at all when the panel would show what it shows (an idle app polls at 4 Hz: each
        # repaint is a write to the terminal); a new layout of the whole screen only when its height
        # changes; else a repaint.
        text = self.render()
        shown = (text.plain, tuple(text.spans))
        if shown == self._shown:
            return
        self._shown = shown
        lines = len(text.wrap(self.app.console, max(1, self._width)))
        self.refresh(layout=lines != self._lines)
        self._lines = lines

    def on_resize(self, event: events.Resize) -> None:
        self._width = event.size.width or self._width
        self._lines = -1
        self._shown = None

    def render(self) -> Text:
        width = max(20, self._width)
        d = self.snapshot
        if d is None:
            return Text("devices: waiting for the first reading", style="dim")
        out = Text()
        if d.status:
            bad = d.status != "CPU only"
            out.append(f"{'⚠ ' if bad else ''}{d.status}\n", style="bold yellow" if bad else "dim")
        for g in d.gpus:
            self._render_gpu(out, g, width)
        self._render_cpu(out, d, width)
        if self.efficiency:
            out.append(self.efficiency, style="bold")
        out.rstrip()
        return out

    def _render_gpu(self, out: Text, g: GpuSample, width: int) -> None:
        head = [f"GPU{g.index} {short_gpu_name(g.name)}"]
        if g.temperature_c is not None:
            head.append(f"{g.temperature_c:.0f}°C")
        if g.power_w is not None:
            head.append(f"{g.power_w:.0f} W")
        out.append(" · ".join(head) + "\n", style="bold")
        suffix = f" {_gb(g.vram_used_bytes)}/{_gb(g.vram_total_bytes)} GB"
        bar_w = max(6, width - 5 - len(suffix))
        own, other, free = share_bar(g.vram_process_bytes or 0, g.vram_used_bytes, g.vram_total_bytes, bar_w)
        out.append("VRAM ")
        out.append(OWN * own, style="bold green")
        out.append(OTHER * other, style="yellow")
        out.append(FREE * free, style="dim")
        out.append(suffix + "\n")
        if g.vram_process_bytes is not None:
            # The legend of the bar; short enough for a 32-column side panel.
            # "Δ": not the driver's per-process figure but the VRAM gained since our load (containers).
            delta = "Δ" if g.vram_process_source == "load delta" else ""
            out.append(f"     {OWN} ours{delta} {_gb(g.vram_process_bytes)}", style="green")
            others = g.vram_used_bytes - g.vram_process_bytes
            out.append(f"  {OTHER} other {_gb(max(0, others))} GB\n", style="yellow")
        util = list(self._util.get(g.index, ()))
        pct = "–" if g.util_percent is None else f"{g.util_percent:.0f}%"
        out.append("util ")
        out.append(spark(util, max(4, width - 6 - len(pct))), style="cyan")
        out.append(f" {pct}\n")
        if g.throttle_reasons:
            out.append(f"     throttled: {', '.join(g.throttle_reasons)}\n", style="yellow")

    def _render_cpu(self, out: Text, d: DeviceSnapshot, width: int) -> None:
        if d.cpu_only:
            pct = f"{d.process_cpu_percent:.0f}% of {d.cpu_count} cores"
            out.append("CPU  ")
            out.append(spark(list(self._cpu), max(4, width - 6 - len(pct))), style="cyan")
            out.append(f" {pct}\n")
        else:
            out.append(f"CPU  {d.process_cpu_percent:.0f}% of {d.cpu_count} cores\n")
        out.append(f"RSS  {format_bytes(d.process_rss_bytes)}\n")
        suffix = f" {_gb(d.ram_used_bytes)}/{_gb(d.ram_total_bytes)} GB"
        bar_w = max(6, width - 5 - len(suffix))
        own, other, free = share_bar(d.process_rss_bytes, d.ram_used_bytes, d.ram_total_bytes, bar_w)
        out.append("RAM  ")
        out.append(OWN * own, style="bold green")
        out.append(OTHER * other, style="yellow")
        out.append(FREE * free, style="dim")
        out.append(suffix + "\n")
