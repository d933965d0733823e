"""The race verdict compares like with like: per-token figures when token counts differ, TTFT only for
equal prompt work, a tie within the measured noise, mean ± sd over ``--repeat`` runs; and the race's
conversation policy (both lanes keep the same user turns). Scripted lanes with exact timestamps."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
from scripted_backend import SCRIPTED_MODEL

from tokrace.backends.base import (
    Backend,
    CancelToken,
    Capabilities,
    ChatMessage,
    GenerationParams,
    LoadedModel,
)
from tokrace.backends.events import (
    GenerationFinished,
    PromptProcessed,
    RequestStarted,
    StreamEvent,
    TokenGenerated,
)
from tokrace.backends.race import run_race
from tokrace.backends.race_lane import Lane, commit_turn
from tokrace.backends.race_noise import Measure, compare, interval_spread

OTHER = LoadedModel(
    name="gemma-3-270m", path="/models/gemma-3-270m.gguf", architecture="gemma3", quantization="Q4_K_M",
    size_bytes=253_000_000, n_params=268_000_000, n_layers=18, n_ctx_train=32768, n_ctx=4096, n_threads=2,
    template="", gpu_offload=False,
)


class Timed(Backend):
    """Tokens at exactly the given intervals after a TTFT; the prompt's new tokens are the context not
    cached from the previous request (like llama.cpp's KV reuse), counted as 10 tokens per message."""

    name = "timed"

    def __init__(self, model: LoadedModel, intervals: Sequence[float], *, ttft_s: float = 0.05,
                 fail: bool = False) -> None:
        self._model, self.intervals, self.ttft_s, self.fail = model, list(intervals), ttft_s, fail
        self.cached = 0
        self.resets = 0
        self.requests: list[list[ChatMessage]] = []

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities()

    def load(self) -> LoadedModel:
        return self._model

    @property
    def model(self) -> LoadedModel:
        return self._model

    def reset(self) -> None:
        self.cached = 0
        self.resets += 1

    def stream_chat(self, messages: Sequence[ChatMessage], params: GenerationParams,
                    cancel: CancelToken | None = None) -> Iterator[StreamEvent]:
        self.requests.append(list(messages))
        prompt = 10 * len(messages)
        new = prompt - min(self.cached, prompt - 1)
        t = 100.0
        yield RequestStarted(t, self._model.name, prompt, prompt - new, "")
        yield PromptProcessed(t + self.ttft_s * 0.9, new, self.ttft_s * 0.9)
        if self.fail:
            yield GenerationFinished(t + 0.1, "error", "", 0, error="the prompt does not fit")
            return
        t += self.ttft_s
        n = min(params.max_tokens, len(self.intervals) + 1)
        for i in range(n):
            if i:
                t += self.intervals[i - 1]
            yield TokenGenerated(i, i, "x", t)
        self.cached = prompt + n
        yield GenerationFinished(t + 0.001, "length" if n == params.max_tokens else "stop", "x" * n, n)

    def unload(self) -> None:
        pass


def lanes(a: Backend, b: Backend) -> list[Lane]:
    return [Lane("A", "a", backend=a), Lane("B", "b", backend=b)]


def race(a: Backend, b: Backend, max_tokens: int = 64, **kw: object):  # type: ignore[no-untyped-def]
    return run_race(lanes(a, b), "hi", GenerationParams(max_tokens=max_tokens), mode="fair",
                    cancel=CancelToken(), warm_up=False, **kw)  # type: ignore[arg-type]


JITTER = [0.010, 0.012, 0.008, 0.011, 0.009] * 12  # mean 10 ms, cv ≈ 16 %


def test_equal_speeds_and_ttfts_are_a_tie_not_a_winner() -> None:
    result = race(Timed(SCRIPTED_MODEL, JITTER, ttft_s=0.01), Timed(OTHER, JITTER, ttft_s=0.01))
    v = result.verdict
    assert v.faster is None and v.speed_tie and v.first is None and v.quicker_ttft is None
    assert "tie on speed" in v.lines[0] and "× faster" not in " ".join(v.lines)
    assert any(line.startswith("finished together within noise") for line in v.lines)
    assert any("TTFT 0.010 ± " in line and "a tie within noise" in line for line in v.lines)


def test_a_difference_within_the_measured_noise_is_a_tie() -> None:
    # 2 % slower with 16 % jitter over 60 intervals: the standard error of each mean is ≈ 2 %.
    slower = [x * 1.02 for x in JITTER]
    v = race(Timed(SCRIPTED_MODEL, JITTER), Timed(OTHER, slower)).verdict
    assert v.speed_tie and v.faster is None
    # The same 2 % with no jitter at all is a real difference.
    steady = [0.010] * 60
    v = race(Timed(SCRIPTED_MODEL, steady), Timed(OTHER, [0.0102] * 60)).verdict
    assert v.faster == "A" and not v.speed_tie and "1.02× faster than" in v.lines[0]


def test_clearly_faster_lane_is_named_with_its_noise() -> None:
    v = race(Timed(SCRIPTED_MODEL, JITTER), Timed(OTHER, [x * 2 for x in JITTER])).verdict
    assert v.faster == "A" and v.speed_ratio == pytest.approx(2.0)
    assert v.lines[0].startswith("smollm2-135m-instruct:q4_1 2.0× faster than gemma-3-270m Q4_K_M (")
    assert " ± " in v.lines[0] and v.first == "A"
    assert any(line.startswith("noise: one run each") for line in v.lines)


def test_numbers_follow_the_names_when_lane_b_wins() -> None:
    # B decodes twice as fast and answers sooner: every sentence names B first, so B's figure comes
    # first ("smollm2 1.7× faster than gemma (84.1 vs 144.8 tok/s)" read backwards).
    v = race(Timed(OTHER, [0.020] * 63, ttft_s=0.2), Timed(SCRIPTED_MODEL, [0.010] * 63, ttft_s=0.05)).verdict
    assert v.faster == "B" and v.first == "B" and v.quicker_ttft == "B"
    speed, finish = v.lines[0], next(line for line in v.lines if "finished first" in line)
    assert speed.startswith("smollm2-135m-instruct:q4_1 2.0× faster than gemma-3-270m Q4_K_M (100.0 ")
    assert " vs 50.0 " in speed and speed.endswith(" tok/s)")
    assert finish.startswith("smollm2-135m-instruct:q4_1 finished first: 0.68 ")  # 0.05 + 63 × 0.01
    assert " vs 1.46 " in finish  # 0.2 + 63 × 0.02
    ttft = next(line for line in v.lines if "quicker to the first token" in line)
    assert ttft.startswith("smollm2-135m-instruct:q4_1 4.0× quicker to the first token (TTFT 0.050 ")
    assert " vs 0.200 " in ttft


class Blind(Timed):
    """A server that says nothing about the prompt: no size, no evaluation (no usage, no timings)."""

    def stream_chat(self, messages: Sequence[ChatMessage], params: GenerationParams,
                    cancel: CancelToken | None = None) -> Iterator[StreamEvent]:
        for event in super().stream_chat(messages, params, cancel):
            if isinstance(event, RequestStarted):
                yield RequestStarted(event.t, event.model, None, 0, event.template)
            elif not isinstance(event, PromptProcessed):
                yield event


def test_an_unknown_prompt_is_said_not_compared_as_zero() -> None:
    v = race(Timed(SCRIPTED_MODEL, [0.010] * 7), Blind(OTHER, [0.010] * 7), max_tokens=8).verdict
    assert v.context["B"] == {"in_context": None, "new": None}
    line = next(line for line in v.lines if "TTFT" in line)
    assert line.startswith("TTFT not compared: the size of gemma-3-270m Q4_K_M's prompt is unknown")
    assert "context A 10 tok (10 new) · B – tok (– new)" in " ".join(v.lines)


def test_unequal_token_counts_compare_per_token_and_name_no_finisher() -> None:
    a = Timed(SCRIPTED_MODEL, [0.010] * 39)  # 40 tokens, then stops
    b = Timed(OTHER, [0.008] * 127)  # 128 tokens: finishes later, yet faster per token
    v = race(a, b, max_tokens=128).verdict
    assert v.tokens == {"A": 40, "B": 128} and v.tokens_differ
    assert v.first is None and v.faster == "B"
    line = next(line for line in v.lines if line.startswith("token counts differ"))
    assert "(A 40, B 128): finish times not compared" in line
    assert "10.0 ms/token" in line and "8.0 ms/token" in line


def test_repeat_gives_mean_and_sd_over_runs_each_from_a_clean_cache() -> None:
    a, b = Timed(SCRIPTED_MODEL, [0.010] * 15), Timed(OTHER, [0.020] * 15)
    result = race(a, b, max_tokens=16, repeat=3)
    assert len(result.runs) == 3 and a.resets == b.resets == 3
    assert all(r.stats.cached_prompt_tokens == 0 for run in result.runs for r in run)
    v = result.verdict
    assert v.runs == 3 and v.gen_tok_s["A"]["runs"] == 3 and v.gen_tok_s["A"]["sd"] == pytest.approx(0)
    assert any(line == "noise: 3 runs each, mean ± sd over the runs" for line in v.lines)
    assert v.faster == "A"
    # Only the last run's turn enters the histories: one user turn each.
    assert all(len(req) == 1 for req in a.requests)


def test_different_prompt_work_compares_prompt_speed_not_ttft_and_states_context() -> None:
    a, b = Timed(SCRIPTED_MODEL, [0.010] * 7), Timed(OTHER, [0.010] * 3)
    ls = lanes(a, b)
    params = GenerationParams(max_tokens=8)
    run_race(ls, "one", params, mode="fair", cancel=CancelToken(), warm_up=False)
    a.cached = 0  # lane A lost its KV cache: it evaluates its whole context again
    second = run_race(ls, "two", params, mode="fair", cancel=CancelToken(), warm_up=False)
    v = second.verdict
    assert v.context == {"A": {"in_context": 30, "new": 30}, "B": {"in_context": 30, "new": 16}}
    assert v.quicker_ttft is None
    assert any(line.startswith("prompts differ in new tokens: TTFT not compared; ")
               and "faster per prompt token (" in line for line in v.lines)
    assert "tokens A 8 · B 4; context A 30 tok (30 new) · B 30 tok (16 new)" in v.lines


def test_failed_lane_drops_the_turn_from_both_lanes() -> None:
    a, b = Timed(SCRIPTED_MODEL, [0.01] * 7), Timed(OTHER, [0.01] * 7, fail=True)
    ls = lanes(a, b)
    params = GenerationParams(max_tokens=8)
    first = run_race(ls, "one", params, mode="fair", cancel=CancelToken(), warm_up=False)
    assert not first.kept and ls[0].history == [] and ls[1].history == []
    b.fail = False
    second = run_race(ls, "two", params, mode="fair", cancel=CancelToken(), warm_up=False)
    assert second.kept
    # Both lanes saw the same user turns: only "two" (not "one" for A alone).
    assert [m.content for m in a.requests[-1]] == [m.content for m in b.requests[-1]] == ["two"]
    assert [m.content for m in ls[0].history[::2]] == [m.content for m in ls[1].history[::2]] == ["two"]
    # A rerun undoes only a kept turn.
    for lane in ls:
        lane.undo_last_turn("two")
    assert ls[0].history == ls[1].history == []


def test_commit_turn_keeps_a_stopped_lanes_partial_reply() -> None:
    ls = lanes(Timed(SCRIPTED_MODEL, [0.01]), Timed(OTHER, [0.01]))
    result = race(*(lane.backend for lane in ls if lane.backend is not None), max_tokens=2)
    assert result.kept
    ls2 = lanes(Timed(SCRIPTED_MODEL, [0.01]), Timed(OTHER, [0.01]))
    assert commit_turn(ls2, "p", result.lanes)
    assert [m.content for m in ls2[1].history] == ["p", "xx"]


def test_price_per_hour_gives_cost_per_1k_generated_tokens() -> None:
    v = race(Timed(SCRIPTED_MODEL, [0.010] * 63), Timed(OTHER, [0.020] * 63), price_per_hour=3.6).verdict
    # $3.6/h = $0.001/s; 100 tok/s → $0.01 per 1K tokens.
    assert v.cost_per_1k_generated["A"] == pytest.approx(0.01)
    assert v.cost_per_1k_generated["B"] == pytest.approx(0.02)
    assert "cost at $3.6/h: A $0.0100 · B $0.0200 per 1K generated tokens" in v.lines


def test_noise_helpers() -> None:
    assert interval_spread([0.0, 0.1]) is None
    n, mean, sd = interval_spread([0.0, 0.1, 0.3]) or (0, 0.0, 0.0)
    assert (n, mean) == (2, pytest.approx(0.15)) and sd == pytest.approx(1.4826 * 0.05)
    assert compare(Measure(100, 1), Measure(101, 1), higher_is_better=True).better is None
    assert compare(Measure(100, 1), Measure(110, 1), higher_is_better=True).better == 1
    assert compare(Measure(0.5, 0.01), Measure(0.6, 0.01), higher_is_better=False).better == 0
    # Unknown noise: a 5 % margin decides.
    assert compare(Measure(100, None), Measure(104, None), higher_is_better=True).better is None
    assert compare(Measure(100, None), Measure(110, None), higher_is_better=True).better == 1
    assert Measure(100.0, 2.5, 3).show("{:.1f}") == "100.0 ± 2.5"
