"""The race verdict: which lane is faster and by how much, only where the lanes did comparable work and
the difference is larger than the measured noise.

Figures come from each lane's ``ReplyStats`` (llama.cpp's definitions: generation tok/s excludes the
first token). Rules:

- **Numbers follow the names.** A sentence that names the better lane first gives its figure first
  (``B 1.7× faster than A (144.8 vs 84.1 tok/s)``); a tie gives them in lane order.
- **Per-token figures first.** Generation speed (tok/s, ms/token) is compared always. "Finished first"
  is named only when both lanes generated the same number of tokens; otherwise the verdict says the
  counts differ and the finish times are not compared. TTFT is compared only when both lanes evaluated
  the same number of new prompt tokens; otherwise prompt speed (tok/s) is compared instead.
- **Noise.** With ``--repeat N`` (N ≥ 2) each figure is the mean over the runs ± their sample standard
  deviation, as llama-bench reports; with one run, the noise of a figure is estimated from that reply's
  per-token interval spread (coefficient of variation ``cv`` of the intervals between tokens, with a
  robust sd: ``interval_spread``): tok/s has relative noise ``cv / √intervals``, a single timed span
  (TTFT, prompt evaluation) ``cv``, a finish time ``√(TTFT² cv² + intervals · sd²)``. A difference
  within two standard errors of the difference (``2·√(se_a² + se_b²)``, about 95 %) is a **tie**; with
  no noise estimate (fewer than 3 tokens) a difference under ``FALLBACK_MARGIN`` is a tie.
- **Conversation.** Both lanes see the same user turns, each with its own replies (``race_lane.commit_turn``).
- **Context.** The verdict states each lane's context (prompt tokens in context and how many were new).

``finish_s`` is measured from each lane's own submit in fair mode (the lanes ran one after the other)
and from the common start in simultaneous mode.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tokrace.backends.roofline import token_cost

if TYPE_CHECKING:
    from tokrace.backends.race_lane import Lane, LaneResult

Z = 2.0
"""Standard errors of the difference within which two figures tie (≈ 95 %)."""
FALLBACK_MARGIN = 0.05
"""Relative difference below which two figures tie when their noise cannot be measured."""


# -- noise -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Measure:
    """One lane's figure: ``value`` (mean over runs), ``sd`` (the noise of one run's value, same unit;
    ``None`` when it cannot be measured) and ``runs`` (how many runs the mean is over)."""

    value: float
    sd: float | None
    runs: int = 1

    @property
    def se(self) -> float | None:
        """Standard error of ``value``: ``sd / √runs``."""
        return None if self.sd is None else self.sd / math.sqrt(self.runs)

    def show(self, pattern: str) -> str:
        """``120.3 ± 2.1`` (``pattern`` formats both numbers), or just the value when noise is unknown."""
        if self.sd is None:
            return pattern.format(self.value)
        return f"{pattern.format(self.value)} ± {pattern.format(self.sd)}"


MAD_TO_SD = 1.4826
"""Median absolute deviation × this = the standard deviation of a normal distribution."""


def interval_spread(token_times_s: Sequence[float]) -> tuple[int, float, float] | None:
    """``(intervals, mean_s, sd_s)`` of the intervals between consecutive tokens, or ``None`` with
    fewer than two intervals (no spread to measure). ``sd_s`` is robust (1.4826 × the median absolute
    deviation): the typical jitter between tokens, not blown up by one stall (a stall still counts in
    the mean, so in the figure; it is not noise the next run would repeat)."""
    gaps = [b - a for a, b in itertools.pairwise(token_times_s)]
    if len(gaps) < 2:
        return None
    mean = statistics.fmean(gaps)
    median = statistics.median(gaps)
    mad = statistics.median(abs(g - median) for g in gaps)
    return (len(gaps), mean, MAD_TO_SD * mad) if mean > 0 else None


def _single_run_noise(r: LaneResult) -> dict[str, float | None]:
    """Each figure's noise (sd, same unit) in one reply, from its per-token interval spread."""
    s = r.stats
    spread = interval_spread(s.token_times_s)
    if spread is None:
        return {"gen": None, "ttft": None, "prompt": None, "finish": None}
    n, mean, sd = spread
    cv = sd / mean
    ttft_sd = s.ttft_s * cv if s.ttft_s is not None else None
    return {
        "gen": s.gen_tok_s * cv / math.sqrt(n) if s.gen_tok_s else None,
        "ttft": ttft_sd,
        "prompt": s.prompt_tok_s * cv if s.prompt_tok_s else None,
        "finish": math.sqrt((ttft_sd or 0.0) ** 2 + n * sd * sd),
    }


def measure(runs: Sequence[LaneResult], key: str, value: Callable[[LaneResult], float | None]
            ) -> Measure | None:
    """The figure ``value`` of one lane over its ``runs``: mean ± sample sd over the runs that have it
    (two or more), else the single run's value with its per-token noise (``key`` in
    ``_single_run_noise``). ``None`` when no run has the figure."""
    values = [(r, v) for r in runs if (v := value(r)) is not None]
    if not values:
        return None
    if len(values) >= 2:
        xs = [v for _, v in values]
        return Measure(statistics.fmean(xs), statistics.stdev(xs), len(xs))
    r, v = values[0]
    return Measure(v, _single_run_noise(r)[key], 1)


@dataclass(frozen=True, slots=True)
class Comparison:
    """Two measures compared: ``better`` is the index (0/1) of the better one, ``None`` on a tie;
    ``ratio`` is better ÷ worse for higher-is-better figures, worse ÷ better for times (≥ 1)."""

    better: int | None
    ratio: float
    threshold: float | None
    """The difference a non-tie needs (``Z`` standard errors), ``None`` when noise was unknown."""


def compare(a: Measure, b: Measure, *, higher_is_better: bool) -> Comparison:
    diff = abs(a.value - b.value)
    lo, hi = sorted((a.value, b.value))
    ratio = hi / lo if lo > 0 else math.inf
    if a.se is not None and b.se is not None:
        threshold: float | None = Z * math.hypot(a.se, b.se)
        tie = diff <= (threshold or 0.0)
    else:
        threshold = None
        tie = diff <= FALLBACK_MARGIN * hi
    if tie:
        return Comparison(None, ratio, threshold)
    a_better = (a.value > b.value) == higher_is_better
    return Comparison(0 if a_better else 1, ratio, threshold)


def _times(ratio: float) -> str:
    return f"{ratio:.2f}×" if ratio < 1.1 else f"{ratio:.1f}×"


def _count(n: int | None) -> str:
    return "–" if n is None else str(n)


def _pair(pair: Sequence[Measure | None], first: int, pattern: str, unit: str = "") -> str:
    """The two lanes' figures, lane ``first``'s first: the order of the names in the sentence around it
    (``B 1.7× faster than A (144.8 vs 84.1 tok/s)``), lane order on a tie."""
    a, b = pair[first], pair[1 - first]
    assert a is not None and b is not None
    return f"{a.show(pattern)}{unit} vs {b.show(pattern)}{unit}"


# -- the verdict -----------------------------------------------------------------------------------
@dataclass(slots=True)
class Verdict:
    mode: str
    shared_device: bool
    lines: list[str] = field(default_factory=list)
    first: str | None = None
    """Label of the lane that finished first; ``None`` on a tie, or when the token counts differ."""
    faster: str | None = None
    """Label of the lane with the higher generation tok/s; ``None`` on a tie."""
    speed_ratio: float | None = None
    """Faster lane's tok/s ÷ slower lane's (≥ 1); set on a tie too (≈ 1)."""
    speed_tie: bool = False
    quicker_ttft: str | None = None
    ttft_ratio: float | None = None
    """Slower TTFT ÷ quicker TTFT (≥ 1), only when both lanes evaluated the same prompt tokens."""
    tokens: dict[str, int] = field(default_factory=dict)
    tokens_differ: bool = False
    finish_s: dict[str, float | None] = field(default_factory=dict)
    efficiency: dict[str, float | None] = field(default_factory=dict)
    """Each lane's tok/s as a share (0–1) of its bandwidth roofline, when known."""
    context: dict[str, dict[str, int | None]] = field(default_factory=dict)
    """Per lane: ``in_context`` (prompt tokens) and ``new`` (evaluated this turn); ``None``: the lane's
    engine does not say (a remote server without ``usage`` or ``timings``)."""
    gen_tok_s: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    """Per lane: ``mean``, ``sd`` (None: unknown), ``runs``."""
    runs: int = 1
    cost_per_1k_generated: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode, "shared_device": self.shared_device, "first": self.first,
            "faster": self.faster, "speed_ratio": self.speed_ratio, "speed_tie": self.speed_tie,
            "quicker_ttft": self.quicker_ttft, "ttft_ratio": self.ttft_ratio, "tokens": self.tokens,
            "tokens_differ": self.tokens_differ, "finish_s": self.finish_s, "efficiency": self.efficiency,
            "context": self.context, "gen_tok_s": self.gen_tok_s, "runs": self.runs,
            "cost_per_1k_generated": self.cost_per_1k_generated, "lines": self.lines,
        }

    @property
    def headline(self) -> str:
        return self.lines[0] if self.lines else ""


def _prompt_work(timed: Sequence[Sequence[LaneResult]], titles: Mapping[str, str]) -> tuple[str, str]:
    """Whether the lanes' TTFTs measure the same prompt work: ``same`` (equal new prompt tokens, or,
    where an engine does not say how many it evaluated, equal prompts in context: then the caveat names
    it), ``differ``, or ``unknown`` (a prompt's size is unknown; the caveat says whose)."""
    runs = [r for rs in timed for r in rs]
    blind = [r for r in runs if r.stats.prompt_eval_tokens is None]
    if not blind:
        return ("same" if len({r.stats.prompt_eval_tokens for r in runs}) == 1 else "differ"), ""
    unsized = [r for r in runs if r.stats.prompt_tokens is None]
    if unsized:
        who = " and ".join(dict.fromkeys(titles[r.label] for r in unsized))
        return "unknown", (f"the size of {who}'s prompt is unknown (its server sent no usage and there is no"
                           " tokenizer here for its model)")
    if len({r.stats.prompt_tokens for r in runs}) != 1:
        return "differ", ""
    who = " and ".join(dict.fromkeys(titles[r.label] for r in blind))
    return "same", (f"; equal prompts ({runs[0].stats.prompt_tokens} tok), but {who}'s server does not say"
                    " how many of them it had cached")


def _finish(r: LaneResult, mode: str, t0: float | None) -> float | None:
    origin = r.t_start if mode == "fair" else t0
    end = r.t_end
    return end - origin if r.ok and end is not None and origin is not None else None


def judge(
    lanes: Sequence[Lane],
    results: Sequence[LaneResult],
    *,
    mode: str,
    shared_device: bool,
    ceilings: Mapping[str, float | None] | None = None,
    runs: Sequence[Sequence[LaneResult]] | None = None,
    price_per_hour: float | None = None,
) -> Verdict:
    """Judge one race turn. ``results``: the last run, one per lane in lane order; ``runs``: every run
    of the turn (``--repeat``), each a list like ``results`` (default: just ``results``)."""
    all_runs = [list(run) for run in (runs or [results])]
    v = Verdict(mode=mode, shared_device=shared_device, runs=len(all_runs))
    titles = {lane.label: lane.title for lane in lanes}
    if len(set(titles.values())) < len(titles):  # the same model twice: the lane letter tells them apart
        titles = {label: f"{label} ({title})" for label, title in titles.items()}
    v.tokens = {r.label: r.stats.completion_tokens for r in results}

    problems: list[str] = []
    for r in results:
        if r.error is not None:
            problems.append(f"{titles[r.label]} failed: {r.error}")
        elif not r.ran:
            problems.append(f"{titles[r.label]} did not run (race stopped)")
        elif r.finished is not None and r.finished.stop_reason == "cancelled":
            problems.append(f"{titles[r.label]} stopped after {r.stats.completion_tokens} tokens")

    per_lane: list[list[LaneResult]] = [[run[i] for run in all_runs] for i in range(len(results))]
    ok_runs = [[r for r in rs if r.ok] for rs in per_lane]
    labels = [r.label for r in results]
    lines: list[str] = []

    # Generation speed: per token, so it compares whatever the token counts.
    gen = [measure(rs, "gen", lambda r: r.stats.gen_tok_s) for rs in ok_runs]
    for label, m in zip(labels, gen, strict=True):
        if m is not None:
            v.gen_tok_s[label] = {"mean": m.value, "sd": m.sd, "runs": m.runs}
    if len(gen) == 2 and gen[0] is not None and gen[1] is not None:
        c = compare(gen[0], gen[1], higher_is_better=True)
        v.speed_ratio = c.ratio
        if c.better is None:
            v.speed_tie = True
            figures = _pair(gen, 0, "{:.1f}")
            lines.append(f"{titles[labels[0]]} and {titles[labels[1]]} tie on speed: {figures} tok/s"
                         " (the difference is within the run-to-run noise)")
        else:
            fast, slow = labels[c.better], labels[1 - c.better]
            v.faster = fast
            lines.append(f"{titles[fast]} {_times(c.ratio)} faster than {titles[slow]}"
                         f" ({_pair(gen, c.better, '{:.1f}')} tok/s)")
    else:
        rated = [(label, m) for label, m in zip(labels, gen, strict=True) if m is not None]
        if len(rated) == 1:
            label, m = rated[0]
            lines.append(f"only {titles[label]} finished: {m.show('{:.1f}')} tok/s")

    # Finish times: only for equal work.
    starts = [r.t_start for r in results if r.ran and r.t_start is not None]
    t0 = min(starts) if starts else None
    for r in results:
        v.finish_s[r.label] = _finish(r, mode, t0)
    counts = [{r.stats.completion_tokens for r in rs} for rs in ok_runs]
    both_ok = len(ok_runs) == 2 and all(ok_runs)
    v.tokens_differ = both_ok and counts[0] != counts[1]
    if both_ok and v.tokens_differ:
        per_tok = [f"{titles[label]} {1000 / m.value:.1f} ms/token"
                   for label, m in zip(labels, gen, strict=True) if m is not None and m.value > 0]
        lines.append(f"token counts differ ({labels[0]} {v.tokens[labels[0]]}, {labels[1]}"
                     f" {v.tokens[labels[1]]}): finish times not compared; per token: "
                     + " vs ".join(per_tok))
    elif both_ok:
        ends: dict[int, float | None] = {}
        for run in all_runs:
            run_starts = [r.t_start for r in run if r.ran and r.t_start is not None]
            for r in run:
                ends[id(r)] = _finish(r, mode, min(run_starts) if run_starts else None)
        finish = [measure(rs, "finish", lambda r: ends.get(id(r))) for rs in ok_runs]
        f0, f1 = finish
        if f0 is not None and f1 is not None:
            v.finish_s = {labels[0]: f0.value, labels[1]: f1.value}
            c = compare(f0, f1, higher_is_better=False)
            if c.better is None:
                lines.append(f"finished together within noise: {_pair(finish, 0, '{:.2f}', ' s')}")
            else:
                v.first = labels[c.better]
                lines.append(f"{titles[v.first]} finished first: {_pair(finish, c.better, '{:.2f}', ' s')}")

    # Prompt: TTFT only for equal prompt work, prompt speed otherwise.
    for r in results:
        if r.ran:
            v.context[r.label] = {"in_context": r.stats.prompt_tokens, "new": r.stats.prompt_eval_tokens}
    timed = [[r for r in rs if r.ran and r.stats.ttft_s] for rs in per_lane]
    if len(timed) == 2 and all(timed):
        work, caveat = _prompt_work(timed, titles)
        if work == "unknown":
            lines.append(f"TTFT not compared: {caveat}")
        elif work == "same":
            t = [measure(rs, "ttft", lambda r: r.stats.ttft_s) for rs in timed]
            if t[0] is not None and t[1] is not None:
                c = compare(t[0], t[1], higher_is_better=False)
                if c.better is None:
                    lines.append(f"TTFT {_pair(t, 0, '{:.3f}', ' s')}: a tie within noise{caveat}")
                else:
                    v.quicker_ttft, v.ttft_ratio = labels[c.better], c.ratio
                    lines.append(f"{titles[v.quicker_ttft]} {_times(c.ratio)} quicker to the first token"
                                 f" (TTFT {_pair(t, c.better, '{:.3f}', ' s')}){caveat}")
        else:
            p = [measure(rs, "prompt", lambda r: r.stats.prompt_tok_s) for rs in timed]
            text = "prompts differ in new tokens: TTFT not compared"
            if p[0] is not None and p[1] is not None:
                c = compare(p[0], p[1], higher_is_better=True)
                if c.better is None:
                    text += f"; prompt speed {_pair(p, 0, '{:.0f}')} tok/s (a tie within noise)"
                else:
                    text += (f"; {titles[labels[c.better]]} {_times(c.ratio)} faster per prompt token"
                             f" ({_pair(p, c.better, '{:.0f}')} tok/s)")
            lines.append(text)
    if any(r.ran for r in results):
        line = "tokens " + " · ".join(f"{r.label} {r.stats.completion_tokens}" for r in results)
        if v.context:
            line += "; context " + " · ".join(
                f"{label} {_count(c['in_context'])} tok ({_count(c['new'])} new)"
                for label, c in v.context.items())
        lines.append(line)
    if gen and any(m is not None for m in gen):
        if v.runs >= 2:
            lines.append(f"noise: {v.runs} runs each, mean ± sd over the runs")
        else:
            lines.append("noise: one run each, ± from the spread between tokens"
                         " (repeat the race for run-to-run noise)")

    for r in results:
        ceiling = (ceilings or {}).get(r.label)
        v.efficiency[r.label] = (r.stats.gen_tok_s / ceiling
                                 if ceiling and r.ok and r.stats.gen_tok_s else None)
    if any(e is not None for e in v.efficiency.values()):
        lines.append("efficiency " + " · ".join(
            f"{label} {e:.0%}" if e is not None else f"{label} –" for label, e in v.efficiency.items()
        ) + " of the bandwidth limit")
    if price_per_hour:
        parts = []
        for label, m in zip(labels, gen, strict=True):
            cost = token_cost(price_per_hour, None, m.value if m is not None else None)
            v.cost_per_1k_generated[label] = cost.generated_per_1k
            x = cost.generated_per_1k
            parts.append(f"{label} " + ("–" if x is None else f"${x:.5f}" if x < 0.01 else f"${x:.4f}"))
        lines.append(f"cost at ${price_per_hour:g}/h: " + " · ".join(parts) + " per 1K generated tokens")

    if mode == "simultaneous" and shared_device:
        lines.append("simultaneous on one device: the lanes shared it (threads split), so each ran"
                     " slower than alone; fair mode gives solo speeds")
    v.lines = lines + problems
    if results and not v.lines:
        v.lines.append("no lane produced a reply")
    return v
