"""Each part of the race verdict on its own (``judge`` composes them; its rules are tested end to end in
test_race_verdict.py): a hand-built ``RaceTurn`` with exact timestamps, one part, its sentences and the
``Verdict`` fields it sets, and nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from types import SimpleNamespace

import pytest

from tokrace.backends.events import GenerationFinished, RequestStarted
from tokrace.backends.meter import ReplyStats
from tokrace.backends.race_lane import Lane, LaneResult
from tokrace.backends.race_verdict import (
    RaceTurn,
    Verdict,
    caveats,
    judge,
    judge_efficiency,
    judge_finish,
    judge_price,
    judge_prompt,
    judge_prompt_speed,
    judge_speed,
    judge_ttft,
    notes,
)


def reply(label: str, n: int, interval: float, *, ttft: float = 0.05, prompt: int | None = 20,
          new: int | None = 20, prompt_tok_s: float | None = 400.0, stop: str = "stop",
          error: str | None = None, t0: float = 100.0) -> LaneResult:
    """``n`` tokens ``interval`` s apart after ``ttft``, submitted at ``t0``."""
    times = [ttft + i * interval for i in range(n)]
    stats = ReplyStats(model=label, prompt_tokens=prompt, prompt_eval_tokens=new, prompt_tok_s=prompt_tok_s,
                       completion_tokens=n, ttft_s=ttft if n else None,
                       gen_tok_s=(n - 1) / (times[-1] - times[0]) if n >= 2 else None, token_times_s=times)
    finished = GenerationFinished(t0 + (times[-1] if times else ttft) + 0.001, stop, "x" * n, n,  # type: ignore[arg-type]
                                  error=error)
    return LaneResult(label, stats, [RequestStarted(t0, label, prompt, 0, "")], finished, error=error)


def turn(*results: LaneResult, runs: Sequence[Sequence[LaneResult]] | None = None,
         mode: str = "fair") -> RaceTurn:
    lanes = [SimpleNamespace(label=r.label, title=f"model {r.label}") for r in results]
    return RaceTurn.of(lanes, results, mode=mode, runs=runs)  # type: ignore[arg-type]


def verdict(mode: str = "fair", shared: bool = False) -> Verdict:
    return Verdict(mode=mode, shared_device=shared)


def touched(v: Verdict) -> set[str]:
    """The Verdict fields a part changed from their defaults."""
    blank = verdict(v.mode, v.shared_device)
    return {f.name for f in fields(Verdict) if getattr(v, f.name) != getattr(blank, f.name)}


def test_speed_names_the_faster_lane_and_its_ratio() -> None:
    v = verdict()
    lines = judge_speed(turn(reply("A", 41, 0.010), reply("B", 41, 0.020)), v)
    assert lines == ["model A 2.0× faster than model B (100.0 ± 0.0 vs 50.0 ± 0.0 tok/s)"]  # steady tokens
    assert (v.faster, v.speed_ratio, v.speed_tie) == ("A", pytest.approx(2.0), False)
    assert v.gen_tok_s["B"] == {"mean": pytest.approx(50.0), "sd": pytest.approx(0.0), "runs": 1}
    assert touched(v) == {"faster", "speed_ratio", "gen_tok_s"}


def test_speed_of_a_lone_finisher_and_of_no_finisher() -> None:
    v = verdict()
    assert judge_speed(turn(reply("A", 11, 0.01), reply("B", 0, 0.01, error="boom")), v) == [
        "only model A finished: 100.0 ± 0.0 tok/s"]
    assert v.faster is None and v.speed_ratio is None
    assert judge_speed(turn(reply("A", 1, 0.01), reply("B", 1, 0.01)), verdict()) == []  # no tok/s at all


def test_finish_order_only_for_equal_token_counts() -> None:
    v = verdict()
    lines = judge_finish(turn(reply("A", 11, 0.010), reply("B", 11, 0.020, t0=200.0)), v)
    # Fair: each from its own submit. 0.05 + 10 × 0.01 (+ 1 ms to the finish event) vs 0.05 + 10 × 0.02.
    assert lines == ["model A finished first: 0.15 ± 0.00 s vs 0.25 ± 0.00 s"]
    assert v.first == "A" and v.finish_s == {"A": pytest.approx(0.151), "B": pytest.approx(0.251)}
    assert v.tokens == {"A": 11, "B": 11} and not v.tokens_differ
    v = verdict()
    lines = judge_finish(turn(reply("A", 11, 0.010), reply("B", 21, 0.008)), v)
    assert lines == ["token counts differ (A 11, B 21): finish times not compared; per token: "
                     "model A 10.0 ms/token vs model B 8.0 ms/token"]
    assert v.tokens_differ and v.first is None
    assert v.finish_s == {"A": pytest.approx(0.151), "B": pytest.approx(0.211)}


def test_finish_in_a_simultaneous_race_counts_from_the_common_start() -> None:
    v = verdict("simultaneous")
    judge_finish(turn(reply("A", 11, 0.010), reply("B", 11, 0.010, t0=100.5), mode="simultaneous"), v)
    assert v.finish_s == {"A": pytest.approx(0.151), "B": pytest.approx(0.651)} and v.first == "A"


def test_ttft_for_equal_prompt_work() -> None:
    t = turn(reply("A", 11, 0.01, ttft=0.05), reply("B", 11, 0.01, ttft=0.20))
    v = verdict()
    assert judge_ttft(t, v) == ["model A 4.0× quicker to the first token"
                                " (TTFT 0.050 ± 0.000 s vs 0.200 ± 0.000 s)"]
    assert (v.quicker_ttft, v.ttft_ratio) == ("A", pytest.approx(4.0))
    assert touched(v) == {"quicker_ttft", "ttft_ratio"}
    assert judge_prompt(t, verdict()) == judge_ttft(t, verdict())  # equal new prompt tokens: TTFT


def test_prompt_speed_when_the_prompts_differ_in_new_tokens() -> None:
    t = turn(reply("A", 11, 0.01, new=20, prompt_tok_s=400.0),
             reply("B", 11, 0.01, new=5, prompt_tok_s=100.0))
    v = verdict()
    assert judge_prompt_speed(t, v) == ["prompts differ in new tokens: TTFT not compared; model A 4.0× faster"
                                        " per prompt token (400 ± 0 vs 100 ± 0 tok/s)"]
    assert touched(v) == set()
    assert judge_prompt(t, v) == judge_prompt_speed(t, v) and v.quicker_ttft is None


def test_prompt_of_unknown_size_is_not_compared() -> None:
    t = turn(reply("A", 11, 0.01), reply("B", 11, 0.01, prompt=None, new=None))
    assert judge_prompt(t, verdict()) == [
        "TTFT not compared: the size of model B's prompt is unknown (its server sent no usage and there is no"
        " tokenizer here for its model)"]


def test_notes_give_tokens_context_and_the_noise_source() -> None:
    one = turn(reply("A", 11, 0.01), reply("B", 6, 0.01, new=4))
    v = verdict()
    assert notes(one, v) == ["tokens A 11 · B 6; context A 20 tok (20 new) · B 20 tok (4 new)",
                             "noise: one run each, ± from the spread between tokens"
                             " (repeat the race for run-to-run noise)"]
    assert v.context == {"A": {"in_context": 20, "new": 20}, "B": {"in_context": 20, "new": 4}}
    runs = [[reply("A", 11, 0.01), reply("B", 11, 0.02)] for _ in range(3)]
    assert notes(turn(*runs[-1], runs=runs), verdict())[1] == "noise: 3 runs each, mean ± sd over the runs"


def test_efficiency_against_each_lanes_roofline() -> None:
    t = turn(reply("A", 41, 0.010), reply("B", 41, 0.020))
    v = verdict()
    assert judge_efficiency(t, v, {"A": 125.0}) == ["efficiency A 80% · B – of the bandwidth limit"]
    assert v.efficiency == {"A": pytest.approx(0.8), "B": None}
    assert judge_efficiency(t, verdict(), None) == []


def test_price_per_1k_generated_tokens() -> None:
    t = turn(reply("A", 41, 0.010), reply("B", 41, 0.020))
    v = verdict()
    # $3.6/h = $0.001/s; 100 tok/s → $0.01 per 1K tokens.
    assert judge_price(t, v, 3.6) == ["cost at $3.6/h: A $0.0100 · B $0.0200 per 1K generated tokens"]
    assert v.cost_per_1k_generated == {"A": pytest.approx(0.01), "B": pytest.approx(0.02)}
    assert judge_price(t, verdict(), None) == [] and judge_price(t, verdict(), 0.0) == []


def test_caveats_name_a_shared_device_and_every_lane_that_did_not_finish() -> None:
    stopped = reply("B", 3, 0.01, stop="cancelled")
    t = turn(reply("A", 0, 0.01, stop="error", error="the prompt does not fit"), stopped)
    assert caveats(t, verdict("simultaneous", shared=True)) == [
        "simultaneous on one device: the lanes shared it (threads split), so each ran slower than alone;"
        " fair mode gives solo speeds",
        "model A failed: the prompt does not fit", "model B stopped after 3 tokens"]
    never = LaneResult("B", ReplyStats(model="B"), ran=False)
    assert caveats(turn(reply("A", 5, 0.01), never), verdict()) == ["model B did not run (race stopped)"]


def test_judge_is_its_parts_in_order() -> None:
    a, b = reply("A", 41, 0.010, ttft=0.05), reply("B", 41, 0.020, ttft=0.20)
    lanes = [Lane("A", "a"), Lane("B", "b")]
    t = RaceTurn.of(lanes, [a, b], mode="fair")
    v = verdict()
    parts = [*judge_speed(t, v), *judge_finish(t, v), *judge_prompt(t, v), *notes(t, v),
             *judge_efficiency(t, v, {"A": 200.0}), *judge_price(t, v, 1.0), *caveats(t, v)]
    whole = judge(lanes, [a, b], mode="fair", shared_device=False, ceilings={"A": 200.0}, price_per_hour=1.0)
    assert whole.lines == parts and len(parts) == 7
    assert whole.to_dict() == {**v.to_dict(), "lines": parts}
    assert t.titles == {"A": "a", "B": "b"}
    # The same model in both lanes: the lane letter tells them apart.
    same = RaceTurn.of([Lane("A", "m"), Lane("B", "m")], [a, b], mode="fair")
    assert same.titles == {"A": "A (m)", "B": "B (m)"}
