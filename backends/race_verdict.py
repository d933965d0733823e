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
- **Noise** (``backends.race_noise``). With ``--repeat N`` (N ≥ 2) each figure is the mean over the
  runs ± their sample standard deviation, as llama-bench reports; with one run, the noise of a figure
  is estimated from that reply's per-token interval spread. A difference within two standard errors of
  the difference (about 95 %) is a **tie**.
- **Conversation.** Both lanes see the same user turns, each with its own replies (``race_lane.commit_turn``).
- **Context.** The verdict states each lane's context (prompt tokens in context and how many were new).

``finish_s`` is measured from each lane's own submit in fair mode (the lanes ran one after the other)
and from the common start in simultaneous mode.

``judge`` composes the verdict from one function per part, each reading a ``RaceTurn``, setting its
fields of the ``Verdict`` and returning its sentences, in the order the verdict gives them:
``judge_speed``, ``judge_finish``, ``judge_prompt`` (``judge_ttft`` for equal prompt work, else
``judge_prompt_speed``), ``notes`` (tokens, context, noise), ``judge_efficiency``, ``judge_price``,
``caveats`` (a shared device, lanes that failed or stopped).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tokrace.backends.race_noise import Measure, compare, measure
from tokrace.backends.roofline import token_cost

if TYPE_CHECKING:
    from tokrace.backends.race_lane import Lane, LaneResult


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


@dataclass(slots=True)
class RaceTurn:
    """One race turn as the verdict reads it. ``results``: the last run, one per lane in lane order;
    ``runs``: every run of the turn (``--repeat``), each a list like ``results``; ``titles``: each lane's
    title by label (with the lane letter when both lanes run the same model); ``mode``: the schedule."""

    results: list[LaneResult]
    runs: list[list[LaneResult]]
    titles: dict[str, str]
    mode: str
    per_lane: list[list[LaneResult]] = field(init=False)
    """Each lane's runs (``runs`` transposed)."""
    ok_runs: list[list[LaneResult]] = field(init=False)
    """Each lane's runs that finished well (``LaneResult.ok``)."""
    gen: list[Measure | None] = field(init=False)
    """Each lane's generation tok/s over its good runs; ``None``: no good run."""

    def __post_init__(self) -> None:
        self.per_lane = [[run[i] for run in self.runs] for i in range(len(self.results))]
        self.ok_runs = [[r for r in rs if r.ok] for rs in self.per_lane]
        self.gen = [measure(rs, "gen", lambda r: r.stats.gen_tok_s) for rs in self.ok_runs]

    @classmethod
    def of(cls, lanes: Sequence[Lane], results: Sequence[LaneResult], *, mode: str,
           runs: Sequence[Sequence[LaneResult]] | None = None) -> RaceTurn:
        titles = {lane.label: lane.title for lane in lanes}
        if len(set(titles.values())) < len(titles):  # the same model twice: the lane letter tells them apart
            titles = {label: f"{label} ({title})" for label, title in titles.items()}
        return cls(list(results), [list(run) for run in (runs or [results])], titles, mode)

    @property
    def labels(self) -> list[str]:
        return [r.label for r in self.results]

    @property
    def timed(self) -> list[list[LaneResult]]:
        """Each lane's runs that ran and have a TTFT."""
        return [[r for r in rs if r.ran and r.stats.ttft_s] for rs in self.per_lane]


def judge_speed(turn: RaceTurn, v: Verdict) -> list[str]:
    """Generation speed: per token, so it compares whatever the token counts. Sets ``gen_tok_s``,
    ``speed_ratio``, ``speed_tie`` and ``faster``."""
    labels, titles, gen = turn.labels, turn.titles, turn.gen
    for label, m in zip(labels, gen, strict=True):
        if m is not None:
            v.gen_tok_s[label] = {"mean": m.value, "sd": m.sd, "runs": m.runs}
    if len(gen) == 2 and gen[0] is not None and gen[1] is not None:
        c = compare(gen[0], gen[1], higher_is_better=True)
        v.speed_ratio = c.ratio
        if c.better is None:
            v.speed_tie = True
            figures = _pair(gen, 0, "{:.1f}")
            return [f"{titles[labels[0]]} and {titles[labels[1]]} tie on speed: {figures} tok/s"
                    " (the difference is within the run-to-run noise)"]
        fast, slow = labels[c.better], labels[1 - c.better]
        v.faster = fast
        return [f"{titles[fast]} {_times(c.ratio)} faster than {titles[slow]}"
                f" ({_pair(gen, c.better, '{:.1f}')} tok/s)"]
    rated = [(label, m) for label, m in zip(labels, gen, strict=True) if m is not None]
    if len(rated) == 1:
        label, m = rated[0]
        return [f"only {titles[label]} finished: {m.show('{:.1f}')} tok/s"]
    return []


def judge_finish(turn: RaceTurn, v: Verdict) -> list[str]:
    """Finish order, only for equal work: when the token counts differ, per-token times instead. Sets
    ``tokens``, ``finish_s``, ``tokens_differ`` and ``first``."""
    results, labels, titles, ok_runs, mode = turn.results, turn.labels, turn.titles, turn.ok_runs, turn.mode
    v.tokens = {r.label: r.stats.completion_tokens for r in results}
    starts = [r.t_start for r in results if r.ran and r.t_start is not None]
    t0 = min(starts) if starts else None
    for r in results:
        v.finish_s[r.label] = _finish(r, mode, t0)
    counts = [{r.stats.completion_tokens for r in rs} for rs in ok_runs]
    both_ok = len(ok_runs) == 2 and all(ok_runs)
    v.tokens_differ = both_ok and counts[0] != counts[1]
    if not both_ok:
        return []
    if v.tokens_differ:
        per_tok = [f"{titles[label]} {1000 / m.value:.1f} ms/token"
                   for label, m in zip(labels, turn.gen, strict=True) if m is not None and m.value > 0]
        return [f"token counts differ ({labels[0]} {v.tokens[labels[0]]}, {labels[1]}"
                f" {v.tokens[labels[1]]}): finish times not compared; per token: " + " vs ".join(per_tok)]
    ends: dict[int, float | None] = {}
    for run in turn.runs:
        run_starts = [r.t_start for r in run if r.ran and r.t_start is not None]
        for r in run:
            ends[id(r)] = _finish(r, mode, min(run_starts) if run_starts else None)
    finish = [measure(rs, "finish", lambda r: ends.get(id(r))) for rs in ok_runs]
    f0, f1 = finish
    if f0 is None or f1 is None:
        return []
    v.finish_s = {labels[0]: f0.value, labels[1]: f1.value}
    c = compare(f0, f1, higher_is_better=False)
    if c.better is None:
        return [f"finished together within noise: {_pair(finish, 0, '{:.2f}', ' s')}"]
    v.first = labels[c.better]
    return [f"{titles[v.first]} finished first: {_pair(finish, c.better, '{:.2f}', ' s')}"]


def judge_prompt(turn: RaceTurn, v: Verdict) -> list[str]:
    """The prompt: TTFT only for equal prompt work (``judge_ttft``), prompt speed otherwise
    (``judge_prompt_speed``); neither when a prompt's size is unknown."""
    timed = turn.timed
    if not (len(timed) == 2 and all(timed)):
        return []
    work, caveat = _prompt_work(timed, turn.titles)
    if work == "unknown":
        return [f"TTFT not compared: {caveat}"]
    if work == "same":
        return judge_ttft(turn, v, caveat)
    return judge_prompt_speed(turn, v)


def judge_ttft(turn: RaceTurn, v: Verdict, caveat: str = "") -> list[str]:
    """TTFT of lanes that did the same prompt work (``caveat``: what makes that an assumption). Sets
    ``quicker_ttft`` and ``ttft_ratio``."""
    labels, titles = turn.labels, turn.titles
    t = [measure(rs, "ttft", lambda r: r.stats.ttft_s) for rs in turn.timed]
    if t[0] is None or t[1] is None:
        return []
    c = compare(t[0], t[1], higher_is_better=False)
    if c.better is None:
        return [f"TTFT {_pair(t, 0, '{:.3f}', ' s')}: a tie within noise{caveat}"]
    v.quicker_ttft, v.ttft_ratio = labels[c.better], c.ratio
    return [f"{titles[v.quicker_ttft]} {_times(c.ratio)} quicker to the first token"
            f" (TTFT {_pair(t, c.better, '{:.3f}', ' s')}){caveat}"]


def judge_prompt_speed(turn: RaceTurn, v: Verdict) -> list[str]:
    """Prompt speed (tok/s) of lanes whose prompts differ in new tokens, whose TTFTs do not compare."""
    labels, titles = turn.labels, turn.titles
    p = [measure(rs, "prompt", lambda r: r.stats.prompt_tok_s) for rs in turn.timed]
    text = "prompts differ in new tokens: TTFT not compared"
    if p[0] is not None and p[1] is not None:
        c = compare(p[0], p[1], higher_is_better=True)
        if c.better is None:
            text += f"; prompt speed {_pair(p, 0, '{:.0f}')} tok/s (a tie within noise)"
        else:
            text += (f"; {titles[labels[c.better]]} {_times(c.ratio)} faster per prompt token"
                     f" ({_pair(p, c.better, '{:.0f}')} tok/s)")
    return [text]


def notes(turn: RaceTurn, v: Verdict) -> list[str]:
    """What the figures stand on: each lane's tokens and context, and where the noise came from. Sets
    ``context``."""
    results = turn.results
    for r in results:
        if r.ran:
            v.context[r.label] = {"in_context": r.stats.prompt_tokens, "new": r.stats.prompt_eval_tokens}
    lines = []
    if any(r.ran for r in results):
        line = "tokens " + " · ".join(f"{r.label} {r.stats.completion_tokens}" for r in results)
        if v.context:
            line += "; context " + " · ".join(
                f"{label} {_count(c['in_context'])} tok ({_count(c['new'])} new)"
                for label, c in v.context.items())
        lines.append(line)
    if turn.gen and any(m is not None for m in turn.gen):
        if len(turn.runs) >= 2:
            lines.append(f"noise: {len(turn.runs)} runs each, mean ± sd over the runs")
        else:
            lines.append("noise: one run each, ± from the spread between tokens"
                         " (repeat the race for run-to-run noise)")
    return lines


def judge_efficiency(turn: RaceTurn, v: Verdict, ceilings: Mapping[str, float | None] | None) -> list[str]:
    """Each lane's tok/s as a share of its bandwidth roofline (``ceilings``, tok/s by label). Sets
    ``efficiency``."""
    for r in turn.results:
        ceiling = (ceilings or {}).get(r.label)
        v.efficiency[r.label] = (r.stats.gen_tok_s / ceiling
                                 if ceiling and r.ok and r.stats.gen_tok_s else None)
    if not any(e is not None for e in v.efficiency.values()):
        return []
    return ["efficiency " + " · ".join(
        f"{label} {e:.0%}" if e is not None else f"{label} –" for label, e in v.efficiency.items()
    ) + " of the bandwidth limit"]


def judge_price(turn: RaceTurn, v: Verdict, price_per_hour: float | None) -> list[str]:
    """Cost per 1K generated tokens at ``price_per_hour`` (``roofline.token_cost``). Sets
    ``cost_per_1k_generated``."""
    if not price_per_hour:
        return []
    parts = []
    for label, m in zip(turn.labels, turn.gen, strict=True):
        cost = token_cost(price_per_hour, None, m.value if m is not None else None)
        v.cost_per_1k_generated[label] = cost.generated_per_1k
        x = cost.generated_per_1k
        parts.append(f"{label} " + ("–" if x is None else f"${x:.5f}" if x < 0.01 else f"${x:.4f}"))
    return [f"cost at ${price_per_hour:g}/h: " + " · ".join(parts) + " per 1K generated tokens"]


def caveats(turn: RaceTurn, v: Verdict) -> list[str]:
    """What limits the figures: lanes that shared one device, lanes that failed, did not run or were
    stopped."""
    lines = []
    if v.mode == "simultaneous" and v.shared_device:
        lines.append("simultaneous on one device: the lanes shared it (threads split), so each ran"
                     " slower than alone; fair mode gives solo speeds")
    for r in turn.results:
        title = turn.titles[r.label]
        if r.error is not None:
            lines.append(f"{title} failed: {r.error}")
        elif not r.ran:
            lines.append(f"{title} did not run (race stopped)")
        elif r.finished is not None and r.finished.stop_reason == "cancelled":
            lines.append(f"{title} stopped after {r.stats.completion_tokens} tokens")
    return lines


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
    turn = RaceTurn.of(lanes, results, mode=mode, runs=runs)
    v = Verdict(mode=mode, shared_device=shared_device, runs=len(turn.runs))
    v.lines = [*judge_speed(turn, v), *judge_finish(turn, v), *judge_prompt(turn, v), *notes(turn, v),
               *judge_efficiency(turn, v, ceilings), *judge_price(turn, v, price_per_hour), *caveats(turn, v)]
    if results and not v.lines:
        v.lines.append("no lane produced a reply")
    return v
