"""Race mode without the UI: real llama.cpp on two tiny models of different depth (2 and 16 layers),
the verdict, cancelling, failing lanes, the memory guard and the replay's timing."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tokrace.backends.base import (
    Backend,
    CancelToken,
    Capabilities,
    ChatMessage,
    GenerationParams,
    LoadConfig,
    LoadedModel,
)
from tokrace.backends.events import StreamEvent, TokenGenerated
from tokrace.backends.llama_cpp_backend import LlamaCppBackend
from tokrace.backends.meter import SpeedMeter
from tokrace.backends.placement import PlacementRequest
from tokrace.backends.race import default_mode, run_race, split_threads
from tokrace.backends.race_lane import Lane, lane_title
from tokrace.backends.race_memory import memory_guard
from tokrace.backends.race_replay import replay_events
from tokrace.race_setup import plan_race

GREEDY = GenerationParams(max_tokens=48, temperature=0.0)


def llama_lane(label: str, path: Path, threads: int = 1) -> Lane:
    # One thread each: two spinning thread pools on a busy 2-core machine would measure the contention.
    config = LoadConfig(path=str(path), n_threads=threads)
    return Lane(label, str(path), factory=lambda: LlamaCppBackend(config), config=config)


class CancelAfter(Backend):
    """Wraps a real backend and pulls the race's cancel token after ``n`` tokens (a user's Esc)."""

    name = "cancel-after"

    def __init__(self, inner: Backend, cancel: CancelToken, n: int) -> None:
        self.inner, self.cancel, self.n = inner, cancel, n

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    def load(self) -> LoadedModel:
        return self.inner.load()

    @property
    def model(self) -> LoadedModel:
        return self.inner.model

    def stream_chat(self, messages: Sequence[ChatMessage], params: GenerationParams,
                    cancel: CancelToken | None = None) -> Iterator[StreamEvent]:
        for event in self.inner.stream_chat(messages, params, cancel):
            if isinstance(event, TokenGenerated) and event.index + 1 == self.n:
                self.cancel.cancel()
            yield event

    def unload(self) -> None:
        self.inner.unload()


class BreaksMidReply(CancelAfter):
    """A backend that raises after a few tokens instead of ending its stream properly."""

    def stream_chat(self, messages: Sequence[ChatMessage], params: GenerationParams,
                    cancel: CancelToken | None = None) -> Iterator[StreamEvent]:
        for event in self.inner.stream_chat(messages, params, cancel):
            yield event
            if isinstance(event, TokenGenerated) and event.index + 1 == self.n:
                raise RuntimeError("device lost")


@pytest.mark.parametrize("mode", ["fair", "simultaneous"])
def test_deeper_model_is_slower_and_the_verdict_says_so(tiny_model: Path, deep_model: Path, mode) -> None:
    lanes = [llama_lane("A", tiny_model), llama_lane("B", deep_model)]
    race = run_race(lanes, "hello", GREEDY, mode=mode, cancel=CancelToken())
    a, b = race.lanes
    assert a.ok and b.ok
    assert a.stats.completion_tokens == b.stats.completion_tokens == 48
    v = race.verdict
    # Which lane wins is the machine's to say (a busy 2-core machine can stall either lane); the
    # verdict's rules are tested on exact timings in test_race_verdict.py. Here: a complete verdict.
    assert v.speed_ratio is not None and v.speed_ratio >= 1
    if v.faster is not None:
        slow = {"A": "tiny-deep", "B": "tiny-llama"}[v.faster]
        assert f"× faster than {slow} F32 (" in v.lines[0]
    else:
        assert v.speed_tie and "tie on speed" in v.lines[0]
    assert set(v.finish_s) == {"A", "B"} and v.first in ("A", "B", None)
    assert v.tokens == {"A": 48, "B": 48}
    assert (mode == "simultaneous") == race.shared_device
    assert any("shared" in line for line in v.lines) == (mode == "simultaneous")
    # Each lane's turn is in its own history, and the events keep their true order and timestamps.
    assert [m.role for m in lanes[0].history] == ["user", "assistant"]
    assert lanes[1].history[1].content == b.text
    times = [e.t for e in a.events]
    assert times == sorted(times)
    for lane in lanes:
        lane.unload()


def test_fair_lanes_run_one_after_the_other(tiny_model: Path, deep_model: Path) -> None:
    lanes = [llama_lane("A", tiny_model), llama_lane("B", deep_model)]
    race = run_race(lanes, "x", GREEDY, mode="fair", cancel=CancelToken())
    a, b = race.lanes
    assert a.t_end is not None and b.t_start is not None and a.t_end <= b.t_start


def test_second_turn_uses_each_lanes_own_history(tiny_model: Path, deep_model: Path) -> None:
    lanes = [llama_lane("A", tiny_model), llama_lane("B", deep_model)]
    params = GenerationParams(max_tokens=8, temperature=0.0)
    run_race(lanes, "one", params, mode="fair", cancel=CancelToken())
    race = run_race(lanes, "two", params, mode="fair", cancel=CancelToken())
    for lane, result in zip(lanes, race.lanes, strict=True):
        assert [m.content for m in lane.history[::2]] == ["one", "two"]
        assert result.stats.cached_prompt_tokens > 0  # the lane's own previous turn was reused


@pytest.mark.parametrize("mode", ["fair", "simultaneous"])
def test_cancel_mid_race_leaves_both_lanes_consistent(tiny_model: Path, deep_model: Path, mode) -> None:
    cancel = CancelToken()
    lanes = [llama_lane("A", tiny_model), llama_lane("B", deep_model)]
    for lane in lanes:
        lane.load()
    inner = lanes[0].backend
    assert inner is not None
    lanes[0].backend = CancelAfter(inner, cancel, n=10)
    lanes[0].factory = None  # handed over loaded
    long = GenerationParams(max_tokens=1500, temperature=0.0)
    race = run_race(lanes, "go", long, mode=mode, cancel=cancel, warm_up=False)
    a, b = race.lanes
    assert race.cancelled
    assert a.finished is not None and a.finished.stop_reason == "cancelled"
    assert 10 <= a.stats.completion_tokens < 1500
    if mode == "simultaneous":  # B was stopped mid-reply too
        assert b.ran and b.finished is not None and b.finished.stop_reason == "cancelled"
        assert b.stats.completion_tokens < 1500
    else:  # B never started
        assert not b.ran and b.error is None and b.stats.completion_tokens == 0
        assert lanes[1].history == []
        assert any("did not run" in line for line in race.verdict.lines)
    # Both lanes keep the same user turns: the turn stays only when both replied (a stopped lane keeps
    # its partial reply); when B never ran it is dropped from A too. Both race again normally.
    both_replied = all(r.text for r in race.lanes)
    assert race.kept == both_replied
    if mode == "fair":
        assert not race.kept
    assert [len(lane.history) for lane in lanes] == [2 if both_replied else 0] * 2
    again = run_race(lanes, "again", GenerationParams(max_tokens=6, temperature=0.0), mode=mode,
                     cancel=CancelToken(), warm_up=False)
    assert all(r.ok and r.stats.completion_tokens == 6 for r in again.lanes)


def test_one_lane_failing_to_load_the_other_finishes(tiny_model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_text("not a model")
    lanes = [llama_lane("A", bad), llama_lane("B", tiny_model)]
    race = run_race(lanes, "hi", GREEDY, mode="fair", cancel=CancelToken())
    a, b = race.lanes
    assert not a.ran and a.error is not None and "not a GGUF" in a.error
    assert b.ok and b.stats.completion_tokens == 48
    assert any(line.startswith(f"{bad} failed:") for line in race.verdict.lines)
    assert race.verdict.faster is None and "only tiny-llama F32 finished" in race.verdict.lines[0]


def test_lane_breaking_mid_reply_shows_its_error(tiny_model: Path, deep_model: Path) -> None:
    lanes = [llama_lane("A", tiny_model), llama_lane("B", deep_model)]
    lanes[1].load()
    assert lanes[1].backend is not None
    lanes[1].backend = BreaksMidReply(lanes[1].backend, CancelToken(), n=5)
    lanes[1].factory = None
    race = run_race(lanes, "hi", GREEDY, mode="simultaneous", cancel=CancelToken())
    a, b = race.lanes
    assert a.ok and a.stats.completion_tokens == 48
    assert b.error is not None and "device lost" in b.error and b.stats.completion_tokens == 5
    assert lanes[0].history == lanes[1].history == []  # a failed turn is dropped from both lanes


def test_memory_guard_sends_the_race_to_fair_with_load_in_turn(tiny_model: Path, deep_model: Path) -> None:
    guard = memory_guard([600, 500], ram_available=1000)
    assert not guard.fits_together and "cannot be resident at once" in guard.line()
    assert memory_guard([6, 5], ram_available=0, gpu_free=[8, 8]).where == "VRAM"
    plan = plan_race([str(tiny_model), str(deep_model)], mode="simultaneous", threads=2,
                     request=PlacementRequest(), gpus=[], ram_available=1 << 20)
    assert plan.mode == "fair" and plan.load_in_turn and not plan.shared_device
    assert any("cannot be resident" in n for n in plan.notes)
    assert any("racing fair instead" in n for n in plan.notes)
    race = run_race(plan.lanes, "hi", GenerationParams(max_tokens=4, temperature=0.0), mode=plan.mode,
                    cancel=CancelToken(), load_in_turn=plan.load_in_turn)
    assert all(r.ok for r in race.lanes)
    assert all(lane.backend is None for lane in plan.lanes)  # each unloaded after its turn


def test_simultaneous_on_one_device_splits_threads(tiny_model: Path, deep_model: Path) -> None:
    plan = plan_race([str(tiny_model), str(deep_model)], mode="simultaneous", threads=4,
                     request=PlacementRequest(), gpus=[])
    assert plan.mode == "simultaneous" and plan.shared_device and plan.threads_per_lane == 2
    assert all(lane.config is not None and lane.config.n_threads == 2 for lane in plan.lanes)
    fair = plan_race([str(tiny_model), str(deep_model)], mode=None, threads=4,
                     request=PlacementRequest(), gpus=[])
    assert fair.mode == "fair" and fair.threads_per_lane == 4


def test_scheduling_defaults() -> None:
    assert default_mode(0) == default_mode(1) == "fair"
    assert default_mode(2) == "simultaneous"
    assert split_threads(2) == 1 and split_threads(1) == 1 and split_threads(16) == 8


def test_lane_title_adds_the_quantization_when_the_name_lacks_it() -> None:
    def model(name: str, quant: str) -> LoadedModel:
        return LoadedModel(name, "", "llama", quant, 1, None, None, None, 1, 1, "", False)

    assert lane_title(model("Llama 3 8B", "Q4_K_M")) == "Llama 3 8B Q4_K_M"
    assert lane_title(model("smollm2-135m-instruct:q4_1", "Q4_1")) == "smollm2-135m-instruct:q4_1"
    assert lane_title(model("gemma-3-270m-q4-k-m", "Q4_K_M")) == "gemma-3-270m-q4-k-m"


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_replay_keeps_true_timing_and_figures(tiny_model: Path, deep_model: Path) -> None:
    lanes = [llama_lane("A", tiny_model), llama_lane("B", deep_model)]
    race = run_race(lanes, "hi", GREEDY, mode="fair", cancel=CancelToken())
    for result in race.lanes:
        clock = FakeClock()
        replayed = list(replay_events(result.events, start=100.0, clock=clock, sleep=clock.sleep))
        offsets = [e.t - result.events[0].t for e in result.events]
        assert [e.t - 100.0 for e in replayed] == pytest.approx(offsets, abs=1e-9)
        assert clock.now >= 100.0 + offsets[-1]  # it really waited for each event
        meter = SpeedMeter()
        for event in replayed:
            meter.observe(event)
        assert meter.stats.gen_tok_s == pytest.approx(result.stats.gen_tok_s, rel=1e-9)
        assert meter.stats.ttft_s == pytest.approx(result.stats.ttft_s, rel=1e-9)


def test_cancelled_replay_shows_the_rest_at_once(tiny_model: Path) -> None:
    lanes = [llama_lane("A", tiny_model), llama_lane("B", tiny_model)]
    race = run_race(lanes, "hi", GREEDY, mode="fair", cancel=CancelToken())
    cancel = CancelToken()
    cancel.cancel()
    clock = FakeClock()
    replayed = list(replay_events(race.lanes[0].events, cancel, clock=clock, sleep=clock.sleep))
    assert len(replayed) == len(race.lanes[0].events) and clock.slept == []
    # The same model twice: the verdict tells the lanes apart by letter.
    assert race.verdict.lines[0].startswith(("A (tiny-llama F32)", "B (tiny-llama F32)"))


def test_a_lane_races_on_the_chat_model_instead_of_a_second_copy(tiny_model: Path, deep_model: Path) -> None:
    from tokrace.backends.placement import PlacementRequest
    from tokrace.load import LoadSpec
    from tokrace.race_setup import plan_race
    from tokrace.session import open_session

    chat = open_session(LoadSpec(model=str(tiny_model), n_threads=2), [], record=False)
    try:
        plan = plan_race([str(tiny_model), str(deep_model)], mode="fair", threads=2,
                         request=PlacementRequest(), gpus=[], reuse=chat)
        a, b = plan.lanes
        assert a.backend is chat.backend and a.factory is None and a.loaded  # the chat's copy
        assert b.backend is None and b.factory is not None  # another file: its own load
        a.unload()
        assert chat.backend.model.name  # a lane never unloads the chat's model
        # Other settings (here: threads) mean another load, not the chat's.
        other = plan_race([str(tiny_model), str(deep_model)], mode="fair", threads=1,
                          request=PlacementRequest(), gpus=[], reuse=chat)
        assert other.lanes[0].backend is None and other.lanes[0].factory is not None
    finally:
        chat.unload()


def test_both_lanes_get_the_system_prompt_and_the_record_its_sampling(tiny_model: Path, deep_model: Path,
                                                                      capsys: pytest.CaptureFixture[str],
                                                                      ) -> None:
    from tokrace.cli.main import main
    from tokrace.speedlog import SpeedLog

    code = main(["race", str(tiny_model), str(deep_model), "--prompt", "hi", "--system", "Be brief.",
                 "-n", "4", "--temp", "0", "--top-k", "7", "--json", "--threads", "1"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    alone = main(["race", str(tiny_model), str(deep_model), "--prompt", "hi", "-n", "4", "--temp", "0",
                  "--json", "--threads", "1"])
    without = json.loads(capsys.readouterr().out)
    assert alone == 0
    for lane, plain in zip(data["lanes"], without["lanes"], strict=True):
        assert lane["prompt_tokens"] > plain["prompt_tokens"]  # the system turn is in both lanes' prompts
    records = [r for r in SpeedLog.open().read() if r.kind == "race"]
    assert records and all(r.sampling is not None for r in records)
    assert {r.sampling["top_k"] for r in records[:2]} == {7}


def test_system_prompt_on_a_lane_without_template_is_said_in_its_reply(
        tiny_model: Path, tiny_model_no_template: Path) -> None:
    # Lane A has a chat template (the system prompt goes in), lane B runs as plain completion: its
    # reply says the system prompt was not sent, as the chat does, instead of dropping it silently.
    lanes = [llama_lane("A", tiny_model), llama_lane("B", tiny_model_no_template)]
    for lane in lanes:
        lane.system = "Answer in one word."
    result = run_race(lanes, "hello", GenerationParams(max_tokens=4, temperature=0.0), mode="fair",
                      cancel=CancelToken(), warm_up=False)
    a, b = result.lanes
    assert a.finished is not None and b.finished is not None
    assert a.finished.notice is None
    assert b.finished.notice is not None and b.finished.notice.startswith("the system prompt was not sent")
