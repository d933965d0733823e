from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pytest
from test_speedlog_fixtures import sample_records

from tokrace.backends.bench_engine import time_test
from tokrace.speedlog import SpeedLog
from tokrace.speedlog.bench import (
    BenchResult,
    compare,
    markdown_table,
    regression_message,
)
from tokrace.speedlog.stats import compare_with_history, mean_sd, stdev


class FakeTarget:
    """Decoding costs 1 ms per token in a batch plus 5 ms per call, on a fake nanosecond clock."""

    def __init__(self, n_batch: int = 512, bos: int | None = 1) -> None:
        self.n_vocab, self.n_batch, self.bos = 1000, n_batch, bos
        self.now = 0
        self.calls: list[list[int]] = []
        self.clears = 0
        self.kv = 0

    def clear(self) -> None:
        self.clears += 1
        self.kv = 0

    def decode(self, tokens: Sequence[int]) -> None:
        assert 0 < len(tokens) <= self.n_batch
        assert all(0 <= t < self.n_vocab for t in tokens)
        self.calls.append(list(tokens))
        self.kv += len(tokens)
        self.now += 5_000_000 + 1_000_000 * len(tokens)

    def clock(self) -> int:
        return self.now


def test_pp_is_one_prompt_in_batches_with_a_warmup() -> None:
    t = FakeTarget(n_batch=200)
    samples = time_test(t, 512, 0, 3, clock=t.clock)
    # 512 tokens in batches of 200, 200, 112: 3 calls × 5 ms + 512 × 1 ms per repetition.
    assert samples == [527_000_000] * 3
    assert [len(c) for c in t.calls] == [200, 200, 112] * 4  # warm-up + 3 repetitions
    assert t.calls[0][0] == 1 and t.calls[3][0] == 1  # BOS starts every prompt
    assert t.clears == 4


def test_tg_is_single_token_decodes_into_a_cleared_cache() -> None:
    t = FakeTarget(bos=None)
    samples = time_test(t, 0, 128, 2, clock=t.clock)
    assert samples == [128 * 6_000_000] * 2
    assert [len(c) for c in t.calls] == [1] * (1 + 2 * 128)  # a one-token warm-up, then 2 × 128
    assert t.kv == 128


def test_no_warmup_and_bad_arguments() -> None:
    t = FakeTarget()
    time_test(t, 0, 4, 1, warmup=False, clock=t.clock)
    assert len(t.calls) == 4
    with pytest.raises(ValueError):
        time_test(t, 0, 0, 1)
    with pytest.raises(ValueError):
        time_test(t, 4, 0, 0)


def test_mean_sd_formatting_and_sample_sd() -> None:
    assert stdev([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]) == pytest.approx(2.138, abs=1e-3)
    assert mean_sd([306.0]) == "306.00"
    assert mean_sd([]) == "–"


def test_regression_needs_both_significance_and_size() -> None:
    history = [128.0, 120.0, 136.0, 128.0, 128.0]
    assert not compare_with_history([127.0, 129.0, 126.0], history).regression  # noise
    slow = compare_with_history([100.0, 101.0, 99.0], history)
    assert slow.regression and slow.drop == pytest.approx(0.21875)
    # Clearly significant but tiny: machines drift that much, no warning.
    tight = compare_with_history([126.0, 126.0, 126.1], [128.0, 128.0, 128.1])
    assert tight.z > 3 and not tight.regression
    assert compare_with_history([1.0], []) is None
    assert not compare_with_history([200.0, 210.0], history).regression  # faster is not a regression


def _bench(samples_ts: list[float], session: str, threads: int = 2) -> BenchResult:
    tg = sample_records()[4]
    rec = dataclasses.replace(tg, session_id=session, record_id=f"r-{session}", n_threads=threads,
                              samples_ts=samples_ts)
    return BenchResult(rec)


def test_history_is_same_model_and_settings_from_other_sessions() -> None:
    past = [_bench([128.0, 127.0, 129.0], f"old{i}").record for i in range(3)]
    past.append(_bench([500.0, 500.0], "other-threads", threads=1).record)
    current = _bench([100.0, 99.0, 101.0], "now").record
    result = compare(current, [*past, current])
    assert result.history_runs == 3
    assert result.comparison is not None and result.comparison.history_mean == pytest.approx(128.0)
    message = regression_message(result)
    assert message is not None and "22% slower" in message and "3 earlier run(s)" in message
    assert regression_message(compare(current, [])) is None


def test_markdown_table_like_llama_bench() -> None:
    table = markdown_table([BenchResult(r) for r in sample_records()[3:]])
    lines = table.splitlines()
    assert lines[0] == "| model | size | params | backend | threads | test | t/s |"
    assert lines[2].endswith("| CPU | 2 | pp512 | 512.10 ± 12.14 |")
    assert lines[3].endswith("| tg128 | 63.25 ± 1.06 |")


llama_cpp = pytest.importorskip("llama_cpp")


def test_bench_runs_a_real_model_through_the_backend(tiny_model: Path) -> None:
    from tokrace.bench import bench_model
    from tokrace.load import LoadSpec, resolve

    log = SpeedLog.open()
    found = resolve(LoadSpec(model=str(tiny_model), n_threads=1))
    results = bench_model(found, [(32, 0, 0), (0, 8, 0)], 2, gpus=[], session_id="b1", log=log)
    log.close()
    pp, tg = results
    assert (pp.record.test, pp.record.n_prompt, pp.record.n_gen) == ("pp32", 32, 0)
    assert (tg.record.test, tg.record.n_prompt, tg.record.n_gen) == ("tg8", 0, 8)
    for r in results:
        assert len(r.samples_ts) == 2 and all(x > 0 for x in r.samples_ts)
        assert r.record.n_threads == 1 and r.record.model_sha256
        assert r.record.build_commit  # read from the bundled llama.cpp
    assert [r.test for r in log.read(session_id="b1")] == ["pp32", "tg8"]
    # llama.cpp's counters cover exactly the timed repetitions (the warm-up is excluded).
    assert pp.record.llama_perf is not None and pp.record.llama_perf["n_p_eval"] == 2 * 32
    assert tg.record.llama_perf is not None and tg.record.llama_perf["n_eval"] == 2 * 8
    assert pp.to_json()["llama_perf_ts"] > 0 and tg.to_json()["llama_perf_ts"] > 0


def test_bench_tg_counts_decodes_as_llama_perf_does(tiny_model: Path) -> None:
    """Cross-check with llama.cpp's own counters: tg N is N single-token evals, pp N one N-token batch."""
    from tokrace.backends.base import LoadConfig
    from tokrace.backends.bench_engine import LlamaDecodeTarget
    from tokrace.backends.llama_cpp_backend import LlamaCppBackend
    from tokrace.backends.llama_open import llama_perf

    backend = LlamaCppBackend(LoadConfig(path=str(tiny_model), n_ctx=64, n_threads=1))
    backend.load()
    try:
        ctx = backend.llama._ctx.ctx
        target = LlamaDecodeTarget.of(backend)
        llama_cpp.llama_perf_context_reset(ctx)
        time_test(target, 0, 16, 1, warmup=False)
        perf = llama_perf(ctx)
        # llama_perf_context reports max(1, count), so "no prompt eval" reads as 1.
        assert (perf["n_eval"], perf["n_p_eval"]) == (16, 1)
        llama_cpp.llama_perf_context_reset(ctx)
        time_test(target, 40, 0, 1, warmup=False)
        perf = llama_perf(ctx)
        assert (perf["n_eval"], perf["n_p_eval"]) == (1, 40)
    finally:
        backend.unload()
