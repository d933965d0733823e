"""tok/s plots: over one reply and across replies, as plain text for the terminal and as PNG or SVG
files.

The terminal charts are plain text (the same string serves the CLI and the TUI's sessions screen). The
files are drawn by matplotlib with its Agg backend (no display needed): a maintained library that
writes real PNG and SVG from one figure, with proper axes, ticks and layout, instead of hand-written
SVG markup. It is imported only when a file is written.

Over a reply, tok/s is the rate over the most recent few decode steps (``reply_series``), sampled evenly
in time: counting tokens per fixed time bin would draw a comb (bins holding 0, 1 or 2 tokens) whose peaks
are far above the real speed, and a window of a few tokens would spike wherever a speculative step
releases a batch of accepted tokens microseconds apart (~90,000 tok/s over a near-zero interval).
Files get one row of panels per model file (its sha256, one name), each with its own scale: a
13,000 tok/s tiny model does not flatten a 20 tok/s one.
"""

from __future__ import annotations

import bisect
import io
import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tokrace.model_registry.errors import TokraceError
from tokrace.speedlog.record import ReplyRecord

if TYPE_CHECKING:
    from matplotlib.axes import Axes

PLOT_FORMATS = ("png", "svg")
WINDOW_MIN_STEPS = 4
"""The rate at a point is taken over at least this many decode steps (fewer only in short replies)."""
STEP_GAP = 0.25
"""Tokens closer together than this share of the reply's mean token interval came out of one step (a
draft's accepted batch, or one chunk of a remote stream): a window starts and ends between steps."""

_BLOCKS = " ▁▂▃▄▅▆▇█"


def decode_steps(token_times_s: Sequence[float]) -> tuple[list[float], list[int]]:
    """The reply as steps: each step's time (its last token's) and the tokens released up to and with
    it. Tokens less than ``STEP_GAP`` × the mean interval after the one before belong to its step (a
    draft's accepted tokens, a chunk's tokens); plain decoding is one token per step."""
    times = list(token_times_s)
    if len(times) < 2:
        return times, list(range(1, len(times) + 1))
    close = STEP_GAP * (times[-1] - times[0]) / (len(times) - 1)
    ends, counts = [times[0]], [1]
    for i in range(1, len(times)):
        if times[i] - times[i - 1] <= close:
            ends[-1], counts[-1] = times[i], i + 1
        else:
            ends.append(times[i])
            counts.append(i + 1)
    return ends, counts


def reply_series(token_times_s: Sequence[float], points: int = 40) -> list[float]:
    """tok/s at ``points`` evenly spaced times after the first token (the last at the last token): at
    each, the rate over the most recent ``k`` decode steps (``decode_steps``), tokens released by them ÷
    the time they took, ``k = max(4, steps ÷ points)`` (capped at the steps so far). A window starts and
    ends between steps, so a batch of accepted draft tokens counts with the whole step that produced it
    and cannot spike the line; in a stall (no token for longer than the median step) the time waited
    counts too, so the line dips. ``[]`` with fewer than two steps."""
    times = list(token_times_s)
    if len(times) < 2 or points < 1 or times[-1] <= times[0]:
        return []
    ends, counts = decode_steps(times)
    steps = len(ends) - 1
    if steps < 1:
        return []
    k = min(steps, max(WINDOW_MIN_STEPS, math.ceil(steps / points)))
    first, span = times[0], times[-1] - times[0]
    gaps = sorted(b - a for a, b in itertools.pairwise(ends))
    typical = gaps[len(gaps) // 2]
    out: list[float] = []
    for p in range(points):
        at = first + span * (p + 1) / points
        j = max(1, bisect.bisect_right(ends, at + 1e-12) - 1)
        i = max(0, j - k)
        # In a stall (no token for longer than the typical step) the rate falls as time passes.
        dt = max(ends[j] - ends[i], at - ends[i] - typical)
        out.append((counts[j] - counts[i]) / dt if dt > 0 else (out[-1] if out else 0.0))
    return out


def block_rows(values: Sequence[float], rows: int, top: float) -> list[str]:
    """``values`` as columns of eighth-blocks ``rows`` tall, one character per value, the top row first,
    scaled from 0 to ``top`` (not from the minimum: a steady 117–146 tok/s must look steady, not like a
    sawtooth). ``top`` ≤ 0 draws blanks. The text charts here and the TUI's live sparklines."""
    levels = [round(v / top * rows * 8) if top > 0 else 0 for v in values]
    return ["".join(_BLOCKS[max(0, min(8, lv - row * 8))] for lv in levels)
            for row in range(rows - 1, -1, -1)]


def bar_chart(values: Sequence[float], *, height: int = 8, title: str = "", unit: str = "tok/s") -> str:
    """Columns of eighth-blocks, ``height`` rows tall, with the scale on the left; ``title`` (or else
    ``unit``) on top."""
    if not values:
        return f"{title}\n(no data)" if title else "(no data)"
    top = max(values) or 1.0
    label_w = len(f"{top:.0f}")
    rows = []
    for row, line in zip(range(height, 0, -1), block_rows(values, height, top), strict=True):
        label = f"{top:.0f}" if row == height else "0".rjust(label_w) if row == 1 else ""
        rows.append(f"{label.rjust(label_w)} ┤{line}")
    rows.append(" " * label_w + " └" + "─" * len(values))
    return (title or unit) + "\n" + "\n".join(rows)


def reply_chart(record: ReplyRecord, *, width: int = 60, height: int = 6) -> str:
    """tok/s over one reply, from its per-token times."""
    series = reply_series(record.token_times_s or [], width)
    span = (record.token_times_s[-1] - record.token_times_s[0]) if record.token_times_s else 0.0
    title = f"{record.model} · tok/s over the reply ({span:.2f} s, {record.n_gen} tok)"
    return bar_chart(series, height=height, title=title, unit="tok/s")


def replies_chart(records: Sequence[ReplyRecord], *, width: int = 60, height: int = 6) -> str:
    """Generation tok/s of each reply (bench tg: each repetition), oldest left, the last ``width``."""
    values = [x for r in records for x in r.rates()][-width:]
    return bar_chart(values, height=height, title=f"tok/s across {len(values)} replies", unit="tok/s")


# ---- PNG / SVG files ---------------------------------------------------------------------------

def plot_format(path: str | Path) -> str:
    """``png`` or ``svg`` from the file name; anything else is a one-line ``TokraceError``."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in PLOT_FORMATS:
        raise TokraceError(f"--plot {path}: name a .png or .svg file (the format follows the name)",
                           kind="usage")
    return suffix


def _by_model(records: Sequence[ReplyRecord]) -> list[tuple[str, list[ReplyRecord]]]:
    from tokrace.speedlog.store import model_key, model_names

    names = model_names(records)
    groups: dict[str, list[ReplyRecord]] = {}
    for r in records:
        groups.setdefault(model_key(r), []).append(r)
    return [(names.get(key, recs[0].model), recs) for key, recs in groups.items()]


def render_plots(records: Sequence[ReplyRecord], fmt: str = "svg", *, max_replies: int = 6,
                 points: int = 80) -> bytes:
    """The plot file's bytes (``fmt``: ``png`` or ``svg``): one row per model file, left: tok/s over
    each of its last ``max_replies`` replies against seconds since the request (so TTFT shows as the
    start of each line), right: generation tok/s of each reply (bench tg: each repetition) in order.
    Each row has its own tok/s scale. No records: one panel saying so."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    groups = _by_model(records)
    rows = max(1, len(groups))
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "tokrace",
                                "font.size": 9}):
        fig, axes = plt.subplots(rows, 2, figsize=(11, 2.8 * rows), squeeze=False,
                                 gridspec_kw={"width_ratios": [3, 2]})
        try:
            if not groups:
                for ax in axes[0]:
                    ax.text(0.5, 0.5, "nothing recorded yet", ha="center", va="center",
                            transform=ax.transAxes)
                    ax.set_axis_off()
            for (name, recs), (over, across) in zip(groups, axes, strict=False):
                _reply_panel(over, name, recs, max_replies, points)
                _across_panel(across, name, recs)
            fig.tight_layout()
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, dpi=110, metadata={"Date": None} if fmt == "svg" else None)
        finally:
            plt.close(fig)
    return buf.getvalue()


def _reply_panel(ax: Axes, name: str, recs: Sequence[ReplyRecord], max_replies: int,
                 points: int) -> None:
    timed = [r for r in recs if r.token_times_s and len(r.token_times_s) >= 2][-max_replies:]
    ax.set_title(f"{name} · tok/s over a reply (last {len(timed)})", loc="left")
    ax.set_xlabel("seconds since the request")
    ax.set_ylabel("tok/s")
    if not timed:
        ax.text(0.5, 0.5, "no per-token times (bench tests have none)", ha="center", va="center",
                transform=ax.transAxes, color="#666")
    top = 0.0
    for r in timed:
        times = r.token_times_s or []
        series = reply_series(times, points)
        span = times[-1] - times[0]
        xs = [times[0] + span * (p + 1) / points for p in range(points)]
        top = max([top, *series])
        ax.plot(xs, series, linewidth=1.2,
                label=f"{r.time[11:19]} · {r.gen_tok_s or 0:.1f} tok/s")
    if timed:
        ax.set_xlim(left=0)
        ax.set_ylim(0, top * 1.15 or 1.0)  # from 0, with room above a steady line
        ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)


def _across_panel(ax: Axes, name: str, recs: Sequence[ReplyRecord]) -> None:
    values = [x for r in recs for x in r.rates()]
    ax.set_title(f"{name} · tok/s per reply", loc="left")
    ax.set_xlabel("reply (oldest first)")
    ax.set_ylabel("tok/s")
    if values:
        from matplotlib.ticker import MaxNLocator

        xs = list(range(1, len(values) + 1))
        ax.plot(xs, values, marker="o", markersize=3, linewidth=1)
        ax.set_ylim(0, max(values) * 1.15 or 1.0)
        ax.set_xlim(0.5, len(values) + 0.5)
        if len(values) <= 10:
            ax.set_xticks(xs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def svg_plots(records: Sequence[ReplyRecord]) -> str:
    """``render_plots`` as SVG text."""
    return render_plots(records, "svg").decode("utf-8")
