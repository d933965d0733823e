"""The GPU check kit (bench/gpu_check.py): its CPU path runs here for real; its GPU parsing and advice
are checked on recorded llama.cpp log lines and a fake NVML."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import gpu_check  # noqa: E402

pytest.importorskip("llama_cpp")


def test_cpu_path_compares_the_plan_with_llama_cpp(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "check.json"
    code = gpu_check.main(["--cpu", "--params", "3e7", "--n-gen", "8", "--threads", "1", "--json", str(out)])
    report = json.loads(out.read_text())
    (row,) = report["rows"]
    assert row["config"] == "CPU" and row["n_gpu_layers"] == 0
    planned, real = row["planned_bytes"]["CPU"], row["llama_bytes"]["CPU"]
    assert real > 50 * gpu_check.MIB  # ~30 M F16 parameters, read from llama.cpp's own load log
    assert abs(planned / real - 1) <= 0.10, (planned, real)  # the planner within the kit's tolerance
    assert row["tg_tok_s"] > 0 and row["ceiling_tok_s"] > 0 and row["joules_per_token"] is None
    assert code == 0 and row["problems"] == []
    assert "| CPU | 0 |" in capsys.readouterr().out


def test_random_model_has_about_the_parameters_asked_for(tmp_path: Path) -> None:
    from tokrace.model_registry.gguf_meta import read_gguf_info

    info = read_gguf_info(gpu_check.write_random_llama(tmp_path / "r.gguf", 2e7))
    assert 1.4e7 < (info.n_params or 0) < 2.6e7 and info.n_layers == 16


def test_buffer_lines_per_device() -> None:
    lines = [  # as llama.cpp logs a partial CUDA offload
        "load_tensors:        CUDA0 model buffer size =  3860.00 MiB",
        "load_tensors:   CPU_Mapped model buffer size =   281.81 MiB",
        "llama_kv_cache:      CUDA0 KV buffer size =   256.00 MiB",
        "llama_context:  CUDA_Host  output buffer size =     0.49 MiB",
        "sched_reserve:      CUDA0 compute buffer size =   258.50 MiB",
        "sched_reserve:  CUDA_Host compute buffer size =    16.01 MiB",
        "sched_reserve:        CPU compute buffer size =     1.00 MiB",
        "load_tensors: offloaded 33/33 layers to GPU",
    ]
    got = gpu_check.llama_buffers(lines)
    assert got["GPU0"] == int((3860.0 + 256.0 + 258.5) * gpu_check.MIB)
    # Pinned host buffers (CUDA_Host) are host RAM: the CPU side, as the planner's host plan counts it.
    host = [281.81, 0.49, 16.01, 1.0]
    assert got["CPU"] == sum(int(x * gpu_check.MIB) for x in host) and set(got) == {"GPU0", "CPU"}


def test_cuda_build_advice_names_the_card_architecture() -> None:
    nvml = SimpleNamespace(nvmlDeviceGetHandleByIndex=lambda i: i,
                           nvmlDeviceGetCudaComputeCapability=lambda h: (9, 0))
    advice = gpu_check.cuda_advice(nvml)
    assert "-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90" in advice and "llama-cpp-python==0.3.36" in advice


def test_decode_over_its_roofline_fails_on_a_gpu_and_is_noted_on_the_cpu() -> None:
    gpu = gpu_check.CheckRow("full offload", 33, tg_tok_s=260.0, ceiling_tok_s=200.0)
    gpu_check.over_roofline(gpu, 0.10)
    assert gpu.problems and "bandwidth figure is too low" in gpu.problems[0] and not gpu.notes
    cpu = gpu_check.CheckRow("CPU", 0, tg_tok_s=774.0, ceiling_tok_s=700.0)
    gpu_check.over_roofline(cpu, 0.10)  # 111%: a cache-resident model
    assert not cpu.problems and "fits in the CPU caches" in cpu.notes[0]
    assert "note: decode at 111%" in gpu_check.table([cpu])
    within = gpu_check.CheckRow("CPU", 0, tg_tok_s=104.0, ceiling_tok_s=100.0)
    gpu_check.over_roofline(within, 0.10)
    assert not within.problems and not within.notes
