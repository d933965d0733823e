"""Roofline and cost arithmetic against the seeds' figures, and the CPU bandwidth test for real."""

from __future__ import annotations

import json

import pytest
from nvml_tables import ONE_RTX_6000_ADA, TWO_RTX_4090, FakeNvml, llama3_8b, llama3_70b

from tokrace.backends import roofline
from tokrace.backends.device_telemetry import DeviceSampler, DeviceSnapshot
from tokrace.backends.roofline import (
    bytes_per_token,
    cost_per_1k_tokens,
    cpu_bandwidth,
    decode_ceiling_tok_s,
    efficiency_line,
    efficiency_percent,
    gpu_bandwidths,
    measure_cpu_bandwidth,
    plan_ceiling_tok_s,
    prompt_ceiling_tok_s,
    token_cost,
)
from tokrace.backends.split_planner import plan_split, simulated_gpus


def test_seed_rtx_6000_ada_llama3_8b() -> None:
    # 960 GB/s ÷ 4.92 GB = 195.1 tok/s; the seed's 130.99 tok/s is 67.1% of it.
    ceiling = decode_ceiling_tok_s(960e9, 4.92e9)
    assert ceiling == pytest.approx(195.12, abs=0.01)
    assert efficiency_percent(130.99, ceiling) == pytest.approx(67.13, abs=0.01)
    assert efficiency_line(130.99, ceiling) == "efficiency: 67% of the 195 tok/s bandwidth limit"
    assert efficiency_line(None, ceiling) == "bandwidth limit: 195 tok/s"
    assert efficiency_line(10.0, None) == "efficiency: bandwidth limit unknown"


def test_plan_ceiling_on_one_gpu_is_bandwidth_over_file_size() -> None:
    # The whole 8B (4,912,898,048 B, the embedding counted whole as the seeds do) on one 960 GB/s card:
    # 960e9 / 4,912,898,048 = 195.40 tok/s at an empty context.
    plan = plan_split(llama3_8b(), simulated_gpus([48]), n_ctx=8192)
    assert plan_ceiling_tok_s(plan, [960e9], 20e9) == pytest.approx(960e9 / 4_912_898_048)
    # At 4,096 tokens of context each step also reads 4,096 × 131,072 B of KV: 5,449,768,960 B → 176.2.
    assert plan_ceiling_tok_s(plan, [960e9], 20e9, n_past=4096) == pytest.approx(176.15, abs=0.01)
    assert bytes_per_token(4_912_898_048, 131_072, 4096) == 5_449_768_960


def test_layer_split_adds_times_and_row_split_overlaps_them() -> None:
    # 70B on 2 × 4090 (1008 GB/s each), layer split: the GPUs take turns, so 42,470,588,416 B at
    # 1008 GB/s = 23.73 tok/s, no faster than one GPU of that bandwidth. The seed's 19.06 is 80%.
    layer = plan_split(llama3_70b(), simulated_gpus([24, 24]), n_ctx=8192)
    ceiling = plan_ceiling_tok_s(layer, [1008e9, 1008e9], 20e9)
    assert ceiling == pytest.approx(1008e9 / 42_470_588_416)
    assert efficiency_percent(19.06, ceiling) == pytest.approx(80.3, abs=0.1)
    # Row split: GPU 0 reads half the layers (20,508,835,840) + head (726,458,368) + embedding
    # (726,458,368) = 21,961,752,576 B while GPU 1 reads its 20,508,835,840 B: 1008e9 / 21,961,752,576.
    row = plan_split(llama3_70b(), simulated_gpus([24, 24]), n_ctx=8192, split_mode="row")
    assert plan_ceiling_tok_s(row, [1008e9, 1008e9], 20e9) == pytest.approx(1008e9 / 21_961_752_576)


def test_partial_offload_pays_cpu_bandwidth() -> None:
    # 70B on one 4090: layers 36-79 on the GPU (24,036,114,432 B incl. KV at full 8K; weights only at
    # n_past 0: 22 × 544,079,872 + 22 × 481,361,920 = 22,559,719,424 B); on the CPU layers 0-35
    # (18 A + 18 B = 18,457,952,256 B) + embedding + head (1,452,916,736 B) = 19,910,868,992 B.
    plan = plan_split(llama3_70b(), simulated_gpus([24]), n_ctx=8192)
    expected = 1 / (22_559_719_424 / 1008e9 + 19_910_868_992 / 20e9)
    assert plan_ceiling_tok_s(plan, [1008e9], 20e9) == pytest.approx(expected)
    assert plan_ceiling_tok_s(plan, [1008e9], 20e9) < 1  # why partial offload of a 70B crawls
    cpu_only = plan_split(llama3_8b(), [], n_ctx=8192)
    assert plan_ceiling_tok_s(cpu_only, [], 20e9) == pytest.approx(20e9 / 4_912_898_048)
    with pytest.raises(ValueError, match="need 1 GPU bandwidths"):
        plan_ceiling_tok_s(plan, [], 20e9)


def test_bandwidth_from_nvml() -> None:
    snap = DeviceSampler(nvml=FakeNvml(ONE_RTX_6000_ADA())).latest()
    (bw,) = gpu_bandwidths(snap) or [0]
    assert bw == pytest.approx(960.1e9, rel=1e-3)
    assert len(gpu_bandwidths(DeviceSampler(nvml=FakeNvml(TWO_RTX_4090())).latest()) or []) == 2
    assert gpu_bandwidths(DeviceSnapshot(0.0, 0.0, 1, 1, 2)) is None


def test_seed_002_prompt_cost_llama2_70b_on_a100s() -> None:
    # Seed 002 (Llama-2-70B, 2 × A100-80GB, 16-bit): prompt processing is compute bound at
    # 2 FLOPs per parameter per token = 140 GFLOP/token. Reconstructed assumptions (the seed gives the
    # result, not the inputs): 312 TFLOPS bf16 per A100, full utilisation → 624e12 / 140e9 = 4,457 tok/s;
    # $3.40 per A100-hour (2023 on-demand cloud rate, e.g. $27.20/h for an 8 × A100 VM) → $6.80/h.
    # $6.80 / 3600 / 4,457 × 1000 = $0.000424 per 1K prompt tokens ≈ $0.00042, 3.5× under GPT-3.5's
    # $0.0015.
    prompt_tok_s = prompt_ceiling_tok_s(2 * 312e12, 70e9)
    assert prompt_tok_s == pytest.approx(4457.1, abs=0.1)
    per_1k = cost_per_1k_tokens(2 * 3.40, prompt_tok_s)
    assert round(per_1k, 5) == 0.00042
    assert 0.0015 / per_1k == pytest.approx(3.54, abs=0.01)
    # Generation at batch 1 is bandwidth bound: 2 × 2,039 GB/s ÷ (140 GB + 320 KB × context) — the
    # post's point that completion tokens are what make Llama expensive.
    gen = decode_ceiling_tok_s(2 * 2039e9, bytes_per_token(140e9, 327_680, 0))
    cost = token_cost(2 * 3.40, prompt_tok_s, gen)
    assert cost.generated_per_1k == pytest.approx(0.0648, abs=0.0001)
    assert cost.line() == "cost: $0.00042 /1K prompt · $0.0648 /1K generated"
    assert token_cost(1.0, None, 10.0).prompt_per_1k is None
    with pytest.raises(ValueError):
        cost_per_1k_tokens(1.0, 0)


def test_cpu_bandwidth_measured_for_real() -> None:
    bw = measure_cpu_bandwidth(size_bytes=32 << 20, repeats=2)
    assert bw.gb_s > 0.2  # any machine that runs an LLM copies memory faster than this
    assert bw.threads >= 1 and bw.size_bytes > 0 and bw.seconds > 0


def test_cpu_bandwidth_is_cached_per_machine(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKRACE_HOME", str(tmp_path))
    calls = []
    real = roofline.measure_cpu_bandwidth

    def small() -> roofline.CpuBandwidth:
        calls.append(1)
        return real(size_bytes=16 << 20, repeats=1)

    monkeypatch.setattr(roofline, "measure_cpu_bandwidth", small)
    first = cpu_bandwidth()
    second = cpu_bandwidth()
    assert len(calls) == 1 and not first.cached and second.cached
    assert second.bytes_per_s == first.bytes_per_s
    cache = tmp_path / "cache" / roofline.CACHE_FILE
    data = json.loads(cache.read_text())
    cache.write_text(json.dumps({**data, "machine": "another box"}))
    assert not cpu_bandwidth().cached and len(calls) == 2  # a different machine measures again
    cache.write_text("{not json")
    assert not cpu_bandwidth().cached and len(calls) == 3
    assert cpu_bandwidth(refresh=True) and len(calls) == 4


def test_refresh_keeps_the_best_bandwidth(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A figure measured under load is replaced by a better one; a better cached one survives a busy
    re-measurement (a copy loop only ever reads low)."""
    monkeypatch.setenv("TOKRACE_HOME", str(tmp_path))
    readings = iter([5e9, 20e9, 12e9])

    def fake() -> roofline.CpuBandwidth:
        return roofline.CpuBandwidth(next(readings), 2, 1 << 20, 0.01, roofline.machine_fingerprint(), 0.0)

    monkeypatch.setattr(roofline, "measure_cpu_bandwidth", fake)
    assert cpu_bandwidth().bytes_per_s == 5e9  # first measured while something else ran
    assert cpu_bandwidth(refresh=True).bytes_per_s == 20e9  # a reply beat the ceiling: measure again
    assert cpu_bandwidth(refresh=True).bytes_per_s == 20e9  # a lower reading does not replace it
    assert cpu_bandwidth().bytes_per_s == 20e9 and cpu_bandwidth().cached


def test_a_reply_beating_the_ceiling_asks_for_a_new_measurement() -> None:
    assert roofline.beats_ceiling(150.0, 103.0)  # the 103 tok/s ceiling recorded under load
    assert not roofline.beats_ceiling(90.0, 103.0)
    assert not roofline.beats_ceiling(None, 103.0) and not roofline.beats_ceiling(150.0, None)
