"""Shared builders for the speedlog tests: deterministic records from real meter events.

(``tests/conftest.py`` points ``TOKRACE_HOME`` at a tmp dir for every test.)
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from tokrace.backends.base import LoadConfig, LoadedModel
from tokrace.backends.events import GenerationFinished, PromptProcessed, RequestStarted, TokenGenerated
from tokrace.backends.meter import ReplyStats, SpeedMeter
from tokrace.speedlog.hardware import Hardware
from tokrace.speedlog.record import ReplyRecord, make_bench_record, make_record

HW_CPU = Hardware(cpu_model="Test CPU 9000", cpu_count=2, build_commit="abc1234")
HW_GPU = Hardware(cpu_model="Test CPU 9000", cpu_count=2, gpu_names=("RTX 4090", "RTX 4090"),
                  gpu_driver="550.1", build_commit="abc1234", gpu_offload=True)
SHA = "0" * 64


def fake_stats(n_tokens: int, interval: float, *, ttft: float = 0.25, prompt: int = 32,
               prompt_s: float = 0.125, cached: int = 0) -> ReplyStats:
    """A reply measured by the real ``SpeedMeter`` from synthetic, exactly representable timestamps."""
    meter = SpeedMeter()
    t0 = 1000.0
    meter.observe(RequestStarted(t0, "m", prompt + cached, cached, "gguf chat template"))
    meter.observe(PromptProcessed(t0 + prompt_s, prompt, prompt_s))
    t = t0 + ttft
    for i in range(n_tokens):
        meter.observe(TokenGenerated(i, 100 + i, "x", t))
        t += interval
    meter.observe(GenerationFinished(t, "length", "x" * n_tokens, n_tokens))
    return meter.stats


def loaded_model(name: str = "Llama 3 8B", quant: str = "Q4_K_M", path: str = "/models/l3-8b.gguf",
                 n_params: int = 8_030_261_248) -> LoadedModel:
    return LoadedModel(
        name=name, path=path, architecture="llama", quantization=quant, size_bytes=4_920_000_000,
        n_params=n_params, n_layers=32, n_ctx_train=8192, n_ctx=4096, n_threads=2,
        template="gguf chat template", gpu_offload=True,
    )


def fixed(record: ReplyRecord, n: int) -> ReplyRecord:
    return dataclasses.replace(record, record_id=f"rec{n:03d}")


def sample_records() -> list[ReplyRecord]:
    """Two sessions: chat on a GPU pair and on CPU, a race lane, and a bench pp/tg pair."""
    when = datetime(2025, 1, 31, 12, 0, 0, tzinfo=UTC)
    l3 = loaded_model()
    l3_f16 = loaded_model(quant="F16", path="/models/l3-8b-f16.gguf")
    gpu_cfg = LoadConfig(path=l3.path, n_gpu_layers=-1, tensor_split=[0.5, 0.5])
    cpu_cfg = LoadConfig(path=l3.path, n_gpu_layers=0)
    out = [
        make_record(fake_stats(9, 0.0078125), l3, gpu_cfg, "s1", "chat", hardware=HW_GPU, sha256=SHA,
                    now=when, with_token_times=True),
        make_record(fake_stats(5, 0.0078125 * 1.25), l3, gpu_cfg, "s1", "chat", hardware=HW_GPU,
                    sha256=SHA, now=when, with_token_times=False),
        make_record(fake_stats(5, 0.0625), l3_f16, cpu_cfg, "s1", "race", lane="B", hardware=HW_CPU,
                    sha256=SHA, now=when, with_token_times=False),
        make_bench_record(l3, cpu_cfg, "s2", n_prompt=512, n_gen=0,
                          samples_ns=[1_000_000_000, 1_024_000_000, 976_562_500], hardware=HW_CPU,
                          sha256=SHA, now=when),
        make_bench_record(l3, cpu_cfg, "s2", n_prompt=0, n_gen=128,
                          samples_ns=[2_000_000_000, 2_048_000_000], hardware=HW_CPU, sha256=SHA,
                          now=when),
    ]
    return [fixed(r, i) for i, r in enumerate(out)]


def test_fake_stats_follow_the_meter_definitions() -> None:
    s = fake_stats(9, 0.125)
    assert s.completion_tokens == 9
    assert s.gen_tok_s == pytest.approx(8.0)  # (9 − 1) tokens over 8 × 0.125 s
    assert s.ttft_s == pytest.approx(0.25)
