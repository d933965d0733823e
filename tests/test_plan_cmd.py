"""``tokrace plan`` end to end: local files, hf: refs planned from the header alone, overrides, advice."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from fake_hub import FakeHub, use_fake_hub
from nvml_tables import TWO_RTX_4090, FakeNvml, llama3_70b

from tokrace.cli import plan_cmd
from tokrace.cli.main import main

REPO = "acme/Tiny-GGUF"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plan as on a machine without NVML, whatever this one has."""
    monkeypatch.setattr("tokrace.backends.device_telemetry.load_nvml", lambda: None)


def test_json_for_a_local_file(capsys, tiny_model: Path) -> None:
    code, out, _ = run(capsys, "plan", "-m", str(tiny_model), "--gpus", "24,24", "--json")
    data = json.loads(out)
    assert code == 0
    # 2 layers + the output head = 3 "layers"; equal GPUs split them 2/1.
    assert (data["n_layers"], data["n_gpu_layers"], data["fits"]) == (2, 3, True)
    assert data["tensor_split"] == [2.0, 1.0] and data["split_mode"] == "layer" and data["main_gpu"] == 0
    assert data["kv_bytes_per_token"] == 2 * 2 * 4 * 16 * 2  # K+V × layers × KV heads × head dim × f16
    assert [d["total_gib"] for d in data["per_device"]] == [24.0, 24.0]
    assert {"name", "total_gib", "planned_gib"} <= set(data["per_device"][0])
    assert data["gpus_simulated"] is True and data["n_ctx"] == 2048  # the tiny model's own context
    assert data["gpu_offload"] in (True, False, None)


def test_text_for_a_cpu_machine(capsys, tiny_model: Path, no_gpus: None) -> None:
    code, out, _ = run(capsys, "plan", "-m", str(tiny_model))
    assert code == 0
    assert "CPU: layers 0-1 (2)" in out and "no GPU: everything runs on the CPU, fits in RAM" in out
    assert "simulate GPUs with --gpus 24,24" in out
    assert "GPU 0" not in out


def test_detected_gpus_are_planned(capsys, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tokrace.backends.device_telemetry.load_nvml", lambda: FakeNvml(TWO_RTX_4090()))
    code, out, _ = run(capsys, "plan", "-m", str(tiny_model), "--json")
    data = json.loads(out)
    assert code == 0 and data["gpus_simulated"] is False
    assert [d["name"] for d in data["per_device"]] == ["NVIDIA GeForce RTX 4090"] * 2
    assert data["per_device"][0]["free_gib"] == round((24564 - 20_100) / 1024, 2)  # real free VRAM


def test_hf_ref_is_planned_from_the_remote_header(capsys, monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path, tiny_model: Path) -> None:
    with FakeHub() as hub:
        use_fake_hub(monkeypatch, tmp_path, hub)
        hub.add_repo(REPO, {"tiny-Q4_K_M.gguf": tiny_model.read_bytes()})
        code, out, _ = run(capsys, "plan", "-m", f"hf:{REPO}:Q4_K_M", "--gpus", "8", "--json")
    data = json.loads(out)
    assert code == 0 and data["source"].endswith("(header read remotely)")
    assert data["n_gpu_layers"] == 3 and data["fits"]
    assert not list(Path(tmp_path).rglob("tiny-Q4_K_M.gguf"))  # nothing downloaded


def test_70b_on_two_4090s_by_header(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    # The hand-computed plan of tests/test_split_planner.py, through the command.
    monkeypatch.setattr("tokrace.model_registry.remote_header.read_remote_gguf_info",
                        lambda ref: llama3_70b())
    code, out, _ = run(capsys, "plan", "-m", "hf:meta/Llama-3-70B-GGUF:Q4_K_M", "--ctx", "8192",
                       "--gpus", "24,24", "--json")
    data = json.loads(out)
    assert code == 0
    assert (data["n_gpu_layers"], data["tensor_split"], data["fits"]) == (81, [41.0, 40.0], True)
    assert [d["planned_gib"] for d in data["per_device"]] == [21.89, 21.61]
    assert [d["layers"] for d in data["per_device"]] == ["0-40", "41-79"]
    assert data["kv_bytes_per_token"] == 327_680
    code, out, _ = run(capsys, "plan", "-m", "hf:meta/Llama-3-70B-GGUF:Q4_K_M", "--ctx", "8192",
                       "--gpus", "24")
    assert code == 0
    assert "does not fit: 44/81 layers on GPU, 36 repeating layers and the output head stay on CPU" in out
    assert "GPU 0 simulated 24 GiB: layers 36-79 (44)" in out


@pytest.mark.parametrize("ram, ending", [
    ("16", "18.18 GiB of RAM, 16.00 GiB available → does NOT fit in RAM either"),
    ("64", "18.18 GiB of RAM, 64.00 GiB available → runs partly offloaded")])
def test_plan_and_models_info_give_one_answer_in_one_unit(capsys, monkeypatch: pytest.MonkeyPatch, ram: str,
                                                          ending: str) -> None:
    # A 70B header on one 24 GiB GPU: `plan` showed "… GB in RAM" unchecked while `models info` said it did
    # not fit, in GiB, at another default context. Now both check the CPU's share against the RAM (this
    # machine's, or --ram), in GiB, from the same plan.
    monkeypatch.setattr("tokrace.model_registry.remote_header.read_remote_gguf_info",
                        lambda ref: llama3_70b())
    monkeypatch.setattr("tokrace.model_registry.model_info.read_hf_ref_info", lambda ref: llama3_70b())
    ref = "hf:meta/Llama-3-70B-GGUF:Q4_K_M"
    code, plan_out, _ = run(capsys, "plan", "-m", ref, "--gpus", "24", "--ram", ram)
    assert code == 0
    verdict = next(line for line in plan_out.splitlines() if line.startswith("does not fit"))
    assert verdict.endswith(ending), verdict
    code, info_out, _ = run(capsys, "models", "info", ref, "--gpus", "24", "--ram", ram)
    assert code == 0
    assert info_out.splitlines()[-1].endswith("→ " + verdict)  # the same words, the same numbers
    assert "at 4k context" in info_out and "context 4,096" in plan_out  # the same default context
    for out in (plan_out, info_out):
        assert " GB" not in out.replace("24 GB card", "")  # GiB everywhere, named so
    data = json.loads(run(capsys, "plan", "-m", ref, "--gpus", "24", "--ram", ram, "--json")[1])
    assert data["fits_in_ram"] is (ram == "64") and data["cpu"]["available_gib"] == float(ram)


def test_hf_without_the_registry_says_so_in_one_line(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tokrace.model_registry.remote_header", None)  # import fails
    code, _, err = run(capsys, "plan", "-m", "hf:meta/Llama-3-70B-GGUF:Q4_K_M", "--gpus", "24")
    assert code == 2 and "needs the model registry's remote header reader" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--gpus", "24,24", "--tensor-split", "1,1,1"], "has 3 entries but there are 2 GPUs"),
        (["--gpus", "24,24", "--tensor-split", "0,0"], "--tensor-split '0,0'"),
        (["--gpus", "24,24", "--main-gpu", "5"], "--main-gpu 5 does not exist"),
        (["--gpus", "24,x"], "--gpus '24,x': expected GPU sizes in GiB"),
        (["--gpus", "24", "--ctx", "4096"], "larger than the model's 2048-token context"),
        (["--gpus", "0.0001", "--gpu-layers", "3"], "--gpu-layers 3 does not fit"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, tiny_model: Path, argv: list[str], message: str) -> None:
    code, out, err = run(capsys, "plan", "-m", str(tiny_model), *argv)
    assert code == 2 and out == "" and message in err and err.count("\n") == 1


def test_gpu_offload_support(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu_build = types.SimpleNamespace(llama_supports_gpu_offload=lambda: False)
    monkeypatch.setitem(sys.modules, "llama_cpp", cpu_build)
    ok, advice = plan_cmd.gpu_offload_support()
    assert ok is False and advice is not None and 'CMAKE_ARGS="-DGGML_CUDA=on"' in advice
    assert "\n" not in advice
    monkeypatch.setitem(sys.modules, "llama_cpp", types.SimpleNamespace(llama_supports_gpu_offload=lambda: 1))
    assert plan_cmd.gpu_offload_support() == (True, None)
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    assert plan_cmd.gpu_offload_support()[0] is None


def test_cpu_build_advice_is_printed_with_gpus(capsys, tiny_model: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", types.SimpleNamespace(llama_supports_gpu_offload=lambda: 0))
    code, out, _ = run(capsys, "plan", "-m", str(tiny_model), "--gpus", "24")
    assert code == 0 and out.count('CMAKE_ARGS="-DGGML_CUDA=on"') == 1
    assert "settings: --gpu-layers 3 --split-mode layer --main-gpu 0" in out


def test_price_per_hour_gives_the_cheapest_token_the_plan_allows(capsys, tiny_model: Path, no_gpus: None,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from tokrace.backends import roofline

    fixed = roofline.CpuBandwidth(20e9, 2, 1 << 20, 0.01, "test box", 0.0)
    monkeypatch.setattr(roofline, "cpu_bandwidth", lambda **_: fixed)
    code, out, _ = run(capsys, "plan", "-m", str(tiny_model), "--price-per-hour", "3.6", "--json")
    data = json.loads(out)
    assert code == 0 and data["price_per_hour"] == 3.6
    # $3.60/h is $0.001/s: at the ceiling's tok/s, 1K tokens cost 1000 / ceiling × $0.001.
    assert data["min_cost_per_1k_generated"] == pytest.approx(1.0 / data["ceiling_tok_s"])
    code, out, _ = run(capsys, "plan", "-m", str(tiny_model), "--price-per-hour", "3.6")
    assert code == 0 and "cost at $3.6/h: at least $" in out and "decode ceiling" in out
    # Simulated GPUs have no bandwidth to price from: said, not guessed.
    code, out, _ = run(capsys, "plan", "-m", str(tiny_model), "--gpus", "24", "--price-per-hour", "2")
    assert code == 0 and "needs the GPUs' bandwidth" in out
