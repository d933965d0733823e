"""The race verdict: who finished first, how many times faster, TTFT, tokens, roofline efficiency.

Figures come from each lane's ``ReplyStats`` (llama.cpp's definitions: generation tok/s excludes the
first token). "Finished first" compares how long each lane took from its own submit to its last token
in fair mode (the lanes ran one after the other; the replay starts them together), and the real finish
times in simultaneous mode (they started together).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tokrace.backends.base import LoadedModel

if TYPE_CHECKING:
    from tokrace.backends.race import Lane, LaneResult


def lane_title(model: LoadedModel) -> str:
    """The model's name with its quantization when the name does not say it already:
    ``Llama 3 8B Q4_K_M``; ``smollm2-135m-instruct:q4_1`` stays as it is."""
    name = model.name
    quant = model.quantization
    squash = name.lower().replace("-", "_").replace(".", "_")
    if quant and quant.lower() not in squash:
        name = f"{name} {quant}"
    return name


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


@dataclass(slots=True)
class Verdict:
    mode: str
    shared_device: bool
    lines: list[str] = field(default_factory=list)
    first: str | None = None
    """Label of the lane that finished first (of those that finished)."""
    faster: str | None = None
    """Label of the lane with the higher generation tok/s."""
    speed_ratio: float | None = None
    """Faster lane's tok/s ÷ slower lane's (≥ 1)."""
    quicker_ttft: str | None = None
    ttft_ratio: float | None = None
    """Slower TTFT ÷ quicker TTFT (≥ 1)."""
    tokens: dict[str, int] = field(default_factory=dict)
    finish_s: dict[str, float | None] = field(default_factory=dict)
    efficiency: dict[str, float | None] = field(default_factory=dict)
    """Each lane's tok/s as a share (0–1) of its bandwidth roofline, when known."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode, "shared_device": self.shared_device, "first": self.first,
            "faster": self.faster, "speed_ratio": self.speed_ratio, "quicker_ttft": self.quicker_ttft,
            "ttft_ratio": self.ttft_ratio, "tokens": self.tokens, "finish_s": self.finish_s,
            "efficiency": self.efficiency, "lines": self.lines,
        }

    @property
    def headline(self) -> str:
        return self.lines[0] if self.lines else ""


def judge(
    lanes: Sequence[Lane],
    results: Sequence[LaneResult],
    *,
    mode: str,
    shared_device: bool,
    ceilings: Mapping[str, float | None] | None = None,
) -> Verdict:
    v = Verdict(mode=mode, shared_device=shared_device)
    titles = {lane.label: lane.title for lane in lanes}
    if len(set(titles.values())) < len(titles):  # the same model twice: the lane letter tells them apart
        titles = {label: f"{label} ({title})" for label, title in titles.items()}
    by_label = {r.label: r for r in results}
    v.tokens = {r.label: r.stats.completion_tokens for r in results}

    for r in results:
        if r.error is not None:
            v.lines.append(f"{titles[r.label]} failed: {r.error}")
        elif not r.ran:
            v.lines.append(f"{titles[r.label]} did not run (race stopped)")
        elif r.finished is not None and r.finished.stop_reason == "cancelled":
            v.lines.append(f"{titles[r.label]} stopped after {r.stats.completion_tokens} tokens")

    # Finish times: from the lane's own submit in fair mode, from the common start otherwise.
    starts = [r.t_start for r in results if r.ran and r.t_start is not None]
    t0 = min(starts) if starts else None
    for r in results:
        end, own = r.t_end, r.t_start
        origin = own if mode == "fair" else t0
        v.finish_s[r.label] = end - origin if r.ok and end is not None and origin is not None else None
    done = {label: s for label, s in v.finish_s.items() if s is not None}

    rated = [r for r in results if r.ok and r.stats.gen_tok_s]
    lines: list[str] = []
    if len(rated) == 2:
        fast, slow = sorted(rated, key=lambda r: r.stats.gen_tok_s or 0.0, reverse=True)
        v.faster = fast.label
        v.speed_ratio = _ratio(fast.stats.gen_tok_s, slow.stats.gen_tok_s)
        lines.append(f"{titles[fast.label]} {v.speed_ratio:.1f}× faster than {titles[slow.label]}"
                     f" ({fast.stats.gen_tok_s:.1f} vs {slow.stats.gen_tok_s:.1f} tok/s)")
    elif len(rated) == 1:
        only = rated[0]
        lines.append(f"only {titles[only.label]} finished: {only.stats.gen_tok_s:.1f} tok/s")
    if len(done) == 2:
        (a, sa), (_, sb) = sorted(done.items(), key=lambda kv: kv[1])
        v.first = a
        lines.append(f"{titles[a]} finished first: {sa:.2f} s vs {sb:.2f} s")
    elif len(done) == 1:
        v.first = next(iter(done))

    timed = [r for r in results if r.ran and r.stats.ttft_s]
    if len(timed) == 2:
        quick, slow = sorted(timed, key=lambda r: r.stats.ttft_s or 0.0)
        v.quicker_ttft = quick.label
        v.ttft_ratio = _ratio(slow.stats.ttft_s, quick.stats.ttft_s)
        lines.append(f"TTFT {quick.stats.ttft_s:.3f} s vs {slow.stats.ttft_s:.3f} s:"
                     f" {titles[quick.label]} {v.ttft_ratio:.1f}× quicker to the first token")
    if any(r.ran for r in results):
        lines.append("tokens " + " · ".join(f"{r.label} {r.stats.completion_tokens}" for r in results))

    for r in results:
        ceiling = (ceilings or {}).get(r.label)
        v.efficiency[r.label] = (r.stats.gen_tok_s / ceiling
                                 if ceiling and r.ok and r.stats.gen_tok_s else None)
    if any(e is not None for e in v.efficiency.values()):
        lines.append("efficiency " + " · ".join(
            f"{label} {e:.0%}" if e is not None else f"{label} –" for label, e in v.efficiency.items()
        ) + " of the bandwidth limit")

    if mode == "simultaneous" and shared_device:
        lines.append("simultaneous on one device: the lanes shared it (threads split), so each ran"
                     " slower than alone; fair mode gives solo speeds")
    v.lines = lines + v.lines
    if by_label and not v.lines:
        v.lines.append("no lane produced a reply")
    return v
