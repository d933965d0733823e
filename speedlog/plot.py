"""tok/s plots: over one reply and across replies, as plain text for the terminal and as SVG files.

Plain text rather than plotext: the same renderer serves the CLI and the TUI's sessions screen (a
Static shows the string), it needs no dependency, and its output is stable enough for tests. The SVG is
written by hand for the same reasons.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from tokrace.backends.meter import binned_rate
from tokrace.speedlog.record import ReplyRecord

_BLOCKS = " ▁▂▃▄▅▆▇█"


def reply_series(token_times_s: Sequence[float], points: int = 40) -> list[float]:
    """tok/s in ``points`` equal time bins between the first and last token (as the live sparkline)."""
    return binned_rate(list(token_times_s), points)


def bar_chart(values: Sequence[float], *, height: int = 8, title: str = "", unit: str = "tok/s") -> str:
    """Columns of eighth-blocks, ``height`` rows tall, with the scale on the left; ``title`` (or else
    ``unit``) on top."""
    if not values:
        return f"{title}\n(no data)" if title else "(no data)"
    top = max(values) or 1.0
    label_w = len(f"{top:.0f}")
    rows = []
    for row in range(height, 0, -1):
        line = []
        for v in values:
            eighths = round(v / top * height * 8) - (row - 1) * 8
            line.append(_BLOCKS[max(0, min(8, eighths))])
        label = f"{top:.0f}" if row == height else "0".rjust(label_w) if row == 1 else ""
        rows.append(f"{label.rjust(label_w)} ┤{''.join(line)}")
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


# ---- SVG -------------------------------------------------------------------------------------------

_W, _H, _PAD = 720, 240, 48
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _panel(y0: int, title: str, x_label: str, x_max: float, y_max: float,
           lines: list[tuple[list[tuple[float, float]], str, str]]) -> list[str]:
    """One chart: axes, ticks, a polyline per series (points in data units)."""
    x_max = x_max or 1.0
    y_max = y_max or 1.0
    plot_w, plot_h = _W - 2 * _PAD, _H - 2 * _PAD
    left, top = _PAD, y0 + _PAD

    def sx(x: float) -> float:
        return left + x / x_max * plot_w

    def sy(y: float) -> float:
        return top + plot_h - y / y_max * plot_h

    out = [
        f'<text x="{left}" y="{y0 + 28}" font-size="14" font-weight="bold">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#333"/>',
    ]
    for i in range(5):
        yv = y_max * i / 4
        out.append(f'<text x="{left - 6}" y="{sy(yv) + 4:.1f}" font-size="10" text-anchor="end">'
                   f'{yv:.3g}</text>')
        out.append(f'<line x1="{left}" y1="{sy(yv):.1f}" x2="{left + plot_w}" y2="{sy(yv):.1f}" '
                   'stroke="#ddd"/>')
        xv = x_max * i / 4
        out.append(f'<text x="{sx(xv):.1f}" y="{top + plot_h + 14}" font-size="10" '
                   f'text-anchor="middle">{xv:.3g}</text>')
    out.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h + 30}" font-size="11" '
               f'text-anchor="middle">{escape(x_label)}</text>')
    out.append(f'<text x="14" y="{top + plot_h / 2}" font-size="11" text-anchor="middle" '
               f'transform="rotate(-90 14 {top + plot_h / 2})">tok/s</text>')
    if not any(points for points, _, _ in lines):
        out.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" font-size="12" '
                   'text-anchor="middle" fill="#666">no data (bench tests and replies logged without '
                   'per-token times have none)</text>')
    for points, color, label in lines:
        if not points:
            continue
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{coords}">'
                   f"<title>{escape(label)}</title></polyline>")
    return out


def svg_plots(records: Sequence[ReplyRecord], *, max_replies: int = 8, points: int = 40) -> str:
    """Two panels: tok/s over each of the last replies (time since first token), and tok/s per reply."""
    with_times = [r for r in records if r.token_times_s and len(r.token_times_s) >= 2][-max_replies:]
    reply_lines = []
    x_max = y_max = 0.0
    for i, r in enumerate(with_times):
        times = r.token_times_s or []
        series = reply_series(times, points)
        span = times[-1] - times[0]
        pts = [((k + 0.5) * span / points, v) for k, v in enumerate(series)]
        x_max, y_max = max(x_max, span), max([y_max, *series])
        label = f"{r.model} {r.time} {r.gen_tok_s or 0:.1f} tok/s"
        reply_lines.append((pts, _COLORS[i % len(_COLORS)], label))
    across = [x for r in records for x in r.rates()]
    across_pts = [(float(i + 1), v) for i, v in enumerate(across)]
    across_top = (max(across, default=0.0) * 1.05) or 1.0
    body = _panel(0, "tok/s over a reply (last replies)", "seconds since first token",
                  x_max, y_max * 1.05, reply_lines)
    body += _panel(_H, "tok/s across replies", "reply", float(len(across)),
                   across_top, [(across_pts, _COLORS[0], "generation tok/s")])
    body += [f'<circle cx="{_PAD + x / max(len(across), 1) * (_W - 2 * _PAD):.1f}" '
             f'cy="{_H + _PAD + (_H - 2 * _PAD) * (1 - y / across_top):.1f}" r="2.5" '
             f'fill="{_COLORS[0]}"/>' for x, y in across_pts]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{2 * _H}" '
        f'viewBox="0 0 {_W} {2 * _H}" font-family="sans-serif">\n'
        f'<rect width="{_W}" height="{2 * _H}" fill="white"/>\n' + "\n".join(body) + "\n</svg>\n"
    )
