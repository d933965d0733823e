"""Split planner against hand-computed answers for Llama 3 70B and 8B Q4_K_M shapes.

Shapes (tests/nvml_tables.py, from the real tensor table rules):
  70B: 80 layers; a layer is 481,361,920 B ("B" layers) or 544,079,872 B ("A" layers: attn_v and
       ffn_down at Q6_K, layers 0-9, 70-79 and 12,15,…,69: 40 of them). Output head + embedding
       1,452,916,736 B, split half/half by the estimate (726,458,368 each). File 42.47 GB.
       KV: 2 × 8 heads × 128 × 2 B = 4,096 B per layer per token (327,680 B/token over 80 layers).
       Compute estimate at 8K: 4 × 512 × (64 × 8192 + 4 × 8192) = 1,140,850,688 B.
   8B: 32 layers of 122,716,160 B or 138,936,320 B ("A": 0-3, 28-31, 6,9,…,27: 16). 4.91 GB.
       KV 4,096 B per layer per token. Compute at 8K: 4 × 512 × (32 × 8192 + 4 × 4096) = 570,425,344 B.
Every GPU keeps 512 MiB (536,870,912 B) free for the CUDA context.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from nvml_tables import BUSY_RTX_4090, FakeNvml, llama3_8b, llama3_70b, more_bits

from tokrace.backends.base import LoadConfig
from tokrace.backends.device_telemetry import detect_gpus
from tokrace.backends.model_bytes import HeadBytes, estimate_compute_bytes
from tokrace.backends.split_plan import GIB, GpuDevice, gpus_from_samples, simulated_gpus
from tokrace.backends.split_planner import llama_layer_devices, plan_split
from tokrace.cli.words import say
from tokrace.model_registry.errors import TokraceError

A70, B70 = 544_079_872, 481_361_920
A8, B8 = 138_936_320, 122_716_160
KV_LAYER_8K = 4096 * 8192  # 33,554,432
RESERVE = 512 << 20


def test_shapes_match_the_real_files() -> None:
    big, small = llama3_70b(), llama3_8b()
    assert sorted(set(big.layer_bytes)) == [B70, A70]
    assert sum(more_bits(i, 80) for i in range(80)) == 40
    assert big.tensors_bytes == 42_470_588_416  # the 42.5 GB Q4_K_M file
    assert small.tensors_bytes == 4_912_898_048  # the seed's 4.92 GB
    assert big.kv_bytes_per_token() == 327_680  # the seed's "320 KB" (Llama 2 70B has the same GQA)
    assert estimate_compute_bytes(big, 8192) == 1_140_850_688
    assert estimate_compute_bytes(small, 8192) == 570_425_344


def test_70b_on_two_4090s_splits_41_40() -> None:
    # Room per GPU = 24 GiB − 512 MiB − compute: equal, so 81 "layers" (80 + output) share 40.5/40.5,
    # rounded to 41/40. GPU 0: layers 0-40 = 20 A (0-9; 12,15,…,39) + 21 B
    #   20 × 544,079,872 + 21 × 481,361,920 = 20,990,197,760 weights; KV 41 × 33,554,432 = 1,375,731,712
    # GPU 1: layers 41-79 = 20 A (42,…,69; 70-79) + 19 B, + output 726,458,368 = 20,753,932,288;
    #   KV 39 × 33,554,432 = 1,308,622,848.
    plan = plan_split(llama3_70b(), simulated_gpus([24, 24]), n_ctx=8192)
    assert (plan.n_gpu_layers, plan.tensor_split, plan.split_mode, plan.fits) == (81, [41.0, 40.0],
                                                                                  "layer", True)
    g0, g1 = plan.per_device
    assert g0.layers == list(range(41)) and not g0.has_output
    assert g1.layers == list(range(41, 80)) and g1.has_output
    assert g0.weights_bytes == 20_990_197_760 and g0.kv_bytes == 1_375_731_712
    assert g1.weights_bytes == 20_753_932_288 and g1.kv_bytes == 1_308_622_848
    assert g0.planned_bytes == 20_990_197_760 + 1_375_731_712 + 1_140_850_688  # 21.89 GiB
    assert g0.usable_bytes == 24 * GIB - RESERVE
    assert plan.cpu_layers == 0 and plan.host.weights_bytes == 726_458_368  # the input embedding
    assert LoadConfig(path="m.gguf", **plan.load_kwargs()).tensor_split == [41.0, 40.0]


def test_70b_on_one_rtx_6000_ada_fits_whole() -> None:
    # 41,017,671,680 layers + 726,458,368 head + 80 × 33,554,432 KV + 1,140,850,688 = 45,569,335,296 B
    # = 42.44 GiB of 47.5 usable: the seed's 18.36 tok/s run fits on one card.
    plan = plan_split(llama3_70b(), simulated_gpus([48]), n_ctx=8192)
    assert plan.fits and plan.n_gpu_layers == 81
    assert plan.per_device[0].planned_bytes == 45_569_335_296
    assert plan.load_kwargs()["tensor_split"] is None  # one GPU: nothing to split


def test_70b_on_one_4090_offloads_44_and_keeps_36_on_cpu() -> None:
    # Room 25,769,803,776 − 536,870,912 − 1,140,850,688 = 24,092,082,176. Offloading takes the last
    # layers: 36-79 = 22 A + 22 B, each + 33,554,432 KV:
    #   22 × 577,634,304 + 22 × 514,916,352 = 24,036,114,432 ≤ room; adding layer 35 (B, 514,916,352)
    #   makes 24,551,030,784 > room. So n_gpu_layers = 44 (output stays on CPU), 36 layers on CPU.
    plan = plan_split(llama3_70b(), simulated_gpus([24]), n_ctx=8192)
    assert (plan.n_gpu_layers, plan.cpu_layers, plan.fits) == (44, 36, False)
    assert plan.per_device[0].layers == list(range(36, 80))
    assert plan.host.layers == list(range(36))


def test_8b_partial_offload_on_a_4_gb_gpu() -> None:
    # Room 4 GiB − 512 MiB − 570,425,344 = 3,187,671,040. A+KV = 172,490,752, B+KV = 156,270,592.
    # Layers 13-31: 9 A (28-31; 27,24,21,18,15) + 10 B = 1,552,416,768 + 1,562,705,920 = 3,115,122,688
    # fits; with layer 12 (A) it is 3,287,613,440, too much. → 19 offloaded, 13 on CPU.
    plan = plan_split(llama3_8b(), simulated_gpus([4]), n_ctx=8192)
    assert (plan.n_gpu_layers, plan.cpu_layers) == (19, 13)
    assert plan.to_dict()["per_device"][0]["layers"] == "13-31"


def test_8b_on_two_4090s_and_on_a_busy_one() -> None:
    plan = plan_split(llama3_8b(), simulated_gpus([24, 24]), n_ctx=8192)
    assert (plan.n_gpu_layers, plan.tensor_split, plan.fits) == (33, [17.0, 16.0], True)
    # The busy 4090: 24,564 MiB − 21,504 MiB used by another process = 3,060 MiB free, usable 2,548 MiB
    # = 2,671,771,648. Default context 4,096: KV/layer 16,777,216, compute 4 × 512 × 147,456 =
    # 301,989,888 → room 2,369,781,760. A+KV 155,713,536, B+KV 139,493,376. Layers 16-31 = 8 A + 8 B
    # = 2,361,655,296 fits; with layer 15 (A) 2,517,368,832 does not. → 16 on GPU, 16 on CPU.
    gpus = gpus_from_samples(detect_gpus(FakeNvml(BUSY_RTX_4090())))
    assert gpus[0].free_bytes == 3060 << 20
    busy = plan_split(llama3_8b(), gpus)
    assert (busy.n_ctx, busy.n_gpu_layers, busy.cpu_layers) == (4096, 16, 16)


def test_row_mode_keeps_kv_and_head_on_main_gpu() -> None:
    # Weights 41,017,671,680 / 2 = 20,508,835,840 per GPU; main also holds KV 2,684,354,560, the head
    # 726,458,368 and the compute buffer 1,140,850,688 → 25,060,499,456 ≤ 25,232,932,864 usable.
    plan = plan_split(llama3_70b(), simulated_gpus([24, 24]), n_ctx=8192, split_mode="row")
    g0, g1 = plan.per_device
    assert plan.fits and plan.split_mode == "row"
    assert g0.planned_bytes == 25_060_499_456
    assert g1.planned_bytes == 20_508_835_840 and g1.kv_bytes == 0
    moved = plan_split(llama3_70b(), simulated_gpus([24, 24]), n_ctx=8192, split_mode="row", main_gpu=1)
    assert moved.per_device[1].kv_bytes == 80 * KV_LAYER_8K and moved.main_gpu == 1


def test_split_mode_none_uses_one_gpu_only() -> None:
    plan = plan_split(llama3_70b(), simulated_gpus([24, 24]), n_ctx=8192, split_mode="none", main_gpu=1)
    assert plan.n_gpu_layers == 44 and plan.per_device[0].planned_bytes == 0
    assert plan.load_kwargs() == {"n_gpu_layers": 44, "split_mode": "none", "tensor_split": None,
                                  "main_gpu": 1}


def test_no_gpu_plans_everything_on_cpu_and_checks_ram() -> None:
    plan = plan_split(llama3_8b(), [], n_ctx=8192, host_free_bytes=16 * GIB)
    assert (plan.n_gpu_layers, plan.cpu_layers, plan.per_device, plan.fits) == (0, 32, [], True)
    assert plan.host.weights_bytes == 4_912_898_048
    assert plan.host.kv_bytes == 32 * KV_LAYER_8K and plan.host.compute_bytes == 570_425_344
    assert not plan_split(llama3_70b(), [], host_free_bytes=16 * GIB).fits


def test_user_split_and_layers_are_honoured() -> None:
    plan = plan_split(llama3_70b(), simulated_gpus([24, 24]), n_ctx=8192, tensor_split=[1, 1],
                      n_gpu_layers=40)
    assert plan.n_gpu_layers == 40 and plan.overridden
    assert plan.per_device[0].layers == list(range(40, 60))
    assert plan.per_device[1].layers == list(range(60, 80))
    assert plan.cpu_layers == 40 and not plan.fits
    assert plan_split(llama3_8b(), simulated_gpus([24]), n_gpu_layers=-1).n_gpu_layers == 33
    assert plan_split(llama3_8b(), simulated_gpus([24]), n_gpu_layers=999).n_gpu_layers == 33


def test_llama_cpp_layer_rule() -> None:
    # llama.cpp: layer j of N offloaded goes to the first GPU whose cumulative share exceeds j / N.
    devs = llama_layer_devices([41, 40], 81, 80)
    assert devs[:41] == [0] * 41 and devs[41:] == [1] * 40
    # 0.6/0.4 of 33: j/33 < 0.6 for j ≤ 19, so GPU 0 takes 20 (layers 0-19) and the head sits on GPU 1.
    devs = llama_layer_devices([0.6, 0.4], 33, 32)
    assert devs.count(0) == 20 and devs[19] == 0 and devs[20] == 1 and devs[32] == 1
    assert llama_layer_devices([1.0], 10, 32) == [None] * 22 + [0] * 10 + [None]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tensor_split": [1, 1, 1]}, "has 3 entries but there are 2 GPUs"),
        ({"tensor_split": [0, 0]}, "sum to more than 0"),
        ({"tensor_split": [1, -1]}, "sum to more than 0"),
        ({"tensor_split": [3, 1]}, "puts 31.9 GiB on GPU 0"),
        ({"main_gpu": 2}, "--main-gpu 2 does not exist: there is 2 GPUs (0-1)"),
        ({"n_ctx": 16384}, "larger than the model's 8192-token context; set --ctx to 8192 or less"),
        ({"n_gpu_layers": -2}, "--gpu-layers -2 is invalid"),
        ({"split_mode": "none", "tensor_split": [1, 1]}, "needs --split-mode layer or row"),
    ],
)
def test_bad_overrides_are_one_clear_line(kwargs: dict, message: str) -> None:
    kwargs = {"n_ctx": 8192, **kwargs}
    with pytest.raises(TokraceError) as err:
        plan_split(llama3_70b(), simulated_gpus([24, 24]), **kwargs)
    # In the command line's words: the remedy names the flag (the TUI names its F2 field instead).
    shown = say(err.value)
    assert message in shown and "\n" not in shown
    assert err.value.kind == "placement"


def test_too_many_layers_names_what_fits() -> None:
    with pytest.raises(TokraceError, match="at most 44 of 81 layers fit"):
        plan_split(llama3_70b(), simulated_gpus([24]), n_ctx=8192, n_gpu_layers=81)
    with pytest.raises(TokraceError, match="above 0 GiB"):
        simulated_gpus([24, 0])


def test_reload_counts_own_vram_as_free() -> None:
    own = replace(detect_gpus(FakeNvml(BUSY_RTX_4090()))[0], vram_process_bytes=1 << 30)
    assert gpus_from_samples([own], count_own_as_free=True)[0].free_bytes == (3060 << 20) + (1 << 30)


def test_head_bytes_from_a_real_file(tmp_path) -> None:
    from tiny_gguf import write_tiny_llama

    path = write_tiny_llama(tmp_path / "t.gguf", n_embd=64)
    head = HeadBytes.from_file(str(path))
    n_vocab = 3 + 256
    assert head.input_bytes == n_vocab * 64 * 4  # token_embd, F32
    assert head.output_bytes == n_vocab * 64 * 4 + 64 * 4  # output.weight + output_norm


def test_devices_given_directly() -> None:
    gpus = [GpuDevice(0, "A", 24 * GIB, 20 * GIB), GpuDevice(1, "B", 24 * GIB, 4 * GIB)]
    plan = plan_split(llama3_8b(), gpus, n_ctx=8192)
    # Room 20 GiB vs 4 GiB (minus reserve and compute): the roomier GPU takes more layers.
    assert plan.fits and plan.tensor_split[0] > plan.tensor_split[1]
