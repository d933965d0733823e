"""The speed meter's definitions, on synthetic event streams with known timestamps."""

from __future__ import annotations

import pytest

from tokrace.backends.events import (
    DraftStep,
    GenerationFinished,
    PromptProcessed,
    RequestStarted,
    TokenGenerated,
)
from tokrace.backends.meter import SpeedMeter, rate


def feed(meter: SpeedMeter, token_times: list[float], *, t0: float = 100.0, prompt_s: float = 0.1,
         finish: bool = True) -> None:
    meter.observe(RequestStarted(t0, "m", prompt_tokens=31, cached_tokens=0, template="x"))
    meter.observe(PromptProcessed(t0 + prompt_s, n_evaluated=31, duration_s=prompt_s))
    for i, t in enumerate(token_times):
        meter.observe(TokenGenerated(i, 1000 + i, "a", t))
    if finish:
        meter.observe(GenerationFinished(token_times[-1] + 0.001, "length", "a" * len(token_times),
                                         len(token_times)))


def test_llama_cpp_definitions() -> None:
    meter = SpeedMeter()
    # First token 0.12 s after submit, then one token every 10 ms: 100 tok/s decode.
    times = [100.12 + 0.01 * i for i in range(129)]
    feed(meter, times)
    s = meter.stats
    assert s.completion_tokens == 129
    assert s.ttft_s == pytest.approx(0.12)
    assert s.prompt_tok_s == pytest.approx(310.0)
    assert s.gen_tok_s == pytest.approx(100.0)  # (129 − 1) ÷ 1.28 s
    assert s.gen_s == pytest.approx(1.28)
    assert s.stop_reason == "length"
    assert len(s.token_times_s) == 129 and s.token_times_s[0] == pytest.approx(0.12)
    assert s.summary_line() == "129 tok · 100.0 tok/s · TTFT 0.12 s · prompt 31 tok @ 310 tok/s · max tokens"


def test_single_token_has_no_rate() -> None:
    meter = SpeedMeter()
    feed(meter, [100.5])
    assert meter.stats.gen_tok_s is None
    assert meter.stats.summary_line().startswith("1 tok · – tok/s")


def test_live_rate_uses_recent_window_and_shows_stalls() -> None:
    meter = SpeedMeter()
    # 2 s at 50 tok/s, then 1 s at 200 tok/s: the live rate must reflect the recent 200.
    times = [100.0 + 0.02 * i for i in range(100)] + [102.0 + 0.005 * i for i in range(1, 201)]
    feed(meter, times, finish=False)
    now = times[-1]
    assert meter.live_tok_s(now) == pytest.approx(200.0, rel=0.02)
    assert meter.stats.gen_tok_s == pytest.approx(299 / 3.0)
    # Generation stalls for 2 s: the live rate must drop, not freeze at its last value.
    assert meter.live_tok_s(now + 2.0) < 70


def test_series_bins_tokens_over_time() -> None:
    meter = SpeedMeter()
    times = [100.0 + 0.01 * i for i in range(101)]  # 1 s at 100 tok/s
    feed(meter, times)
    series = meter.series(points=10)
    assert len(series) == 10
    assert sum(series) * 0.1 == pytest.approx(100)  # every interval counted once
    assert all(s == pytest.approx(100, abs=11) for s in series)


def test_draft_steps_accumulate_acceptance() -> None:
    meter = SpeedMeter()
    meter.observe(DraftStep(1.0, drafted=4, accepted=3))
    meter.observe(DraftStep(1.1, drafted=4, accepted=1))
    assert meter.stats.acceptance_rate == pytest.approx(0.5)
    assert meter.stats.draft_steps == 2


def test_rate_edge_cases() -> None:
    assert rate(1, 0.0, 1.0) is None
    assert rate(5, 1.0, 1.0) is None
    assert rate(3, 0.0, 1.0) == 2.0
