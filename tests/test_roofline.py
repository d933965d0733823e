"""Roofline and cost arithmetic against the seeds' figures, and the CPU bandwidth test for real."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from nvml_tables import ONE_RTX_6000_ADA, Q4K, Q6K, TWO_RTX_4090, FakeNvml, llama3_8b, llama3_70b

from tokrace.backends import roofline
from tokrace.backends.device_sampler import DeviceSampler, DeviceSnapshot
from tokrace.backends.roofline import (
    bytes_per_token,
    cost_per_1k_tokens,
    cpu_bandwidth,
    decode_ceiling_tok_s,
    decode_read_bytes,
    efficiency_line,
    efficiency_percent,
    gpu_bandwidths,
    measure_cpu_bandwidth,
    plan_ceiling_tok_s,
    prompt_ceiling_tok_s,
    token_cost,
)
from tokrace.backends.split_plan import simulated_gpus
from tokrace.backends.split_planner import plan_split
from tokrace.model_registry.gguf_meta import GGUFInfo


def test_seed_rtx_6000_ada_llama3_8b() -> None:
    # 960 GB/s ÷ 4.92 GB = 195.1 tok/s; the seed's 130.99 tok/s is 67.1% of it.
    ceiling = decode_ceiling_tok_s(960e9, 4.92e9)
    assert ceiling == pytest.approx(195.12, abs=0.01)
    assert efficiency_percent(130.99, ceiling) == pytest.approx(67.13, abs=0.01)
    assert efficiency_line(130.99, ceiling) == "efficiency: 67% of the 195 tok/s bandwidth limit"
    assert efficiency_line(None, ceiling) == "bandwidth limit: 195 tok/s"
    assert efficiency_line(10.0, None) == "efficiency: bandwidth limit unknown"


def exact_head(info: GGUFInfo) -> GGUFInfo:
    """The Llama 3 shapes with their tensor table's head sizes: token_embd Q4_K, output.weight Q6_K."""
    return replace(info, embd_bytes=int(info.n_vocab * info.n_embd * Q4K),
                   output_bytes=int(info.n_vocab * info.n_embd * Q6K))


def test_plan_ceiling_on_one_gpu_reads_all_but_the_embedding() -> None:
    # The whole 8B (4,912,898,048 B) on one 960 GB/s card. Decode reads every layer and the output head
    # but one 2,304 B row of the 295,501,824 B embedding (a lookup, on the CPU): 4,617,396,224 B from
    # VRAM → 960e9 / 4,617,396,224 = 207.9 tok/s at an empty context (the quick "bandwidth ÷ file size"
    # says 195.4: it counts the embedding as read).
    info = exact_head(llama3_8b())
    plan = plan_split(info, simulated_gpus([48]), n_ctx=8192)
    assert decode_read_bytes(plan) == [4_617_396_224, 2_304]
    assert plan_ceiling_tok_s(plan, [960e9], 20e9) == pytest.approx(207.90, abs=0.01)
    # At 4,096 tokens of context each step also reads 4,096 × 131,072 B of KV: 5,154,267,136 B → 186.2.
    assert plan_ceiling_tok_s(plan, [960e9], 20e9, n_past=4096) == pytest.approx(186.25, abs=0.01)
    assert bytes_per_token(4_617_396_224, 131_072, 4096) == 5_154_267_136


def test_tied_embedding_is_read_once(tmp_path) -> None:
    # Without output.weight llama.cpp uses token_embd.weight as the output matrix: on the CPU it is the
    # same tensor (no copy, no second read), read in full once per token by the output projection. So a
    # tied model reads its tensors once: bandwidth ÷ tensor bytes (SmolLM2-135M: 96,576,768 B, not
    # + 30,081,024 again, which read 228 instead of 299 tok/s on a 29 GB/s machine).
    from tiny_gguf import write_tiny_llama

    from tokrace.backends.model_bytes import HeadBytes
    from tokrace.model_registry.gguf_meta import read_gguf_info

    tied = write_tiny_llama(tmp_path / "tied.gguf", n_embd=64, tied=True)
    info = read_gguf_info(tied)
    assert info.output_bytes is None and info.embd_bytes == 259 * 64 * 4
    plan = plan_split(info, [], n_ctx=512, head=HeadBytes.from_file(str(tied)))
    assert plan.host.weights_bytes == info.tensors_bytes  # in RAM once, as llama.cpp maps it
    assert decode_read_bytes(plan) == [info.tensors_bytes]
    assert plan_ceiling_tok_s(plan, [], 20e9) == pytest.approx(20e9 / info.tensors_bytes)
    # Offloaded, the head is a GPU copy of the embedding, read there; the CPU reads one row.
    gpu = plan_split(info, simulated_gpus([8]), n_ctx=512, head=HeadBytes.from_file(str(tied)))
    embd_row = 64 * 4
    assert decode_read_bytes(gpu) == [info.tensors_bytes - 64 * 4, embd_row + 64 * 4]  # + output_norm
    # Untied: the embedding is a lookup (one row), output.weight is read in full.
    untied = write_tiny_llama(tmp_path / "untied.gguf", n_embd=64)
    info = read_gguf_info(untied)
    plan = plan_split(info, [], n_ctx=512, head=HeadBytes.from_file(str(untied)))
    assert decode_read_bytes(plan) == [info.tensors_bytes - info.embd_bytes + embd_row]


def test_layer_split_adds_times_and_row_split_overlaps_them() -> None:
    # 70B on 2 × 4090 (1008 GB/s each), layer split: the GPUs take turns, so 20,990,197,760 +
    # 20,889,387,008 B (everything but the 591,003,648 B embedding) at 1008 GB/s = 24.07 tok/s, no
    # faster than one GPU of that bandwidth; the CPU reads the 4,608 B embedding row. The seed's 19.06
    # is 79% of it.
    layer = plan_split(exact_head(llama3_70b()), simulated_gpus([24, 24]), n_ctx=8192)
    assert decode_read_bytes(layer) == [20_990_197_760, 20_889_387_008, 4_608]
    ceiling = plan_ceiling_tok_s(layer, [1008e9, 1008e9], 20e9)
    assert ceiling == pytest.approx(1 / (41_879_584_768 / 1008e9 + 4_608 / 20e9))
    assert efficiency_percent(19.06, ceiling) == pytest.approx(79.2, abs=0.1)
    # Row split: GPU 0 reads half the layers (20,508,835,840) + head (861,880,320) + norm = 21,370,748,928
    # B while GPU 1 reads its 20,508,835,840 B: the slower one counts.
    row = plan_split(exact_head(llama3_70b()), simulated_gpus([24, 24]), n_ctx=8192, split_mode="row")
    assert decode_read_bytes(row)[:2] == [21_370_748_928, 20_508_835_840]
    assert plan_ceiling_tok_s(row, [1008e9, 1008e9], 20e9) == pytest.approx(
        1 / (21_370_748_928 / 1008e9 + 4_608 / 20e9))


def test_partial_offload_pays_cpu_bandwidth() -> None:
    # 70B on one 4090: 44 of 81 offloaded (22,559,719,424 B of weights at n_past 0); on the CPU layers
    # 0-35 (18,457,952,256 B) + the head and its norm (861,913,088 B) + one embedding row (4,608 B).
    plan = plan_split(exact_head(llama3_70b()), simulated_gpus([24]), n_ctx=8192)
    assert decode_read_bytes(plan) == [22_559_719_424, 19_319_869_952]
    expected = 1 / (22_559_719_424 / 1008e9 + 19_319_869_952 / 20e9)
    assert plan_ceiling_tok_s(plan, [1008e9], 20e9) == pytest.approx(expected)
    assert plan_ceiling_tok_s(plan, [1008e9], 20e9) < 1.1  # why partial offload of a 70B crawls
    cpu_only = plan_split(exact_head(llama3_8b()), [], n_ctx=8192)
    cpu_read = 4_912_898_048 - 295_501_824 + 2_304  # all but the embedding, and one row of it
    assert plan_ceiling_tok_s(cpu_only, [], 20e9) == pytest.approx(20e9 / cpu_read)
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
