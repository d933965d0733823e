"""GPU check kit: are tokrace's GPU figures right on this machine? One command, one table, one JSON.

    python bench/gpu_check.py [--params 1.5e9] [--model M.gguf] [--json out.json] [--cpu]

1. Can the installed llama.cpp offload (``llama_supports_gpu_offload``)? If a GPU is there but the build
   cannot use it, say how to build for this card (its CUDA architecture, ``CMAKE_ARGS``).
2. A model large enough to matter: ``--model``, or a random-weight llama GGUF of ``--params`` parameters
   written with the ``gguf`` package (decode speed depends on bytes, not on what the weights mean).
3. Each configuration is loaded through tokrace's own load path (``tokrace.session``) and compared:
   - memory: the split planner's bytes per device vs llama.cpp's own buffer sizes (model + KV +
     compute, from its load log) and, on GPUs, vs the used VRAM NVML saw appear across the load;
   - decode: llama-bench's tg (``tokrace.backends.bench_engine``) vs the roofline ceiling;
   - energy: J/token from NVML's energy counter over the tg run (GPUs only).
   Configurations: full offload, half the layers, a layer split over all GPUs (2+), and the CPU.
   Without a GPU (or with ``--cpu``) only the CPU configuration runs: CI exercises that path.
4. Prints one table, writes JSON (``--json``), exits 1 when a planned figure is off by more than
   ``--tolerance`` (10%) or a figure the configuration must have is missing.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MIB = 1 << 20
BUFFER_LINE = re.compile(r"(\S+)\s+(model|KV|compute|output) buffer size =\s+([\d.]+) MiB")


@dataclass
class CheckRow:
    """One configuration's figures; ``None`` = not measured here."""

    config: str
    n_gpu_layers: int
    planned_bytes: dict[str, int] = field(default_factory=dict)
    """Per device (``CPU``, ``GPU0``…): what the split planner said the load needs."""
    llama_bytes: dict[str, int] = field(default_factory=dict)
    """Per device: llama.cpp's own buffers after the load (model + KV + compute + output)."""
    nvml_delta_bytes: dict[str, int] = field(default_factory=dict)
    """Per GPU: used VRAM gained across the load (NVML)."""
    tg_tok_s: float | None = None
    ceiling_tok_s: float | None = None
    joules_per_token: float | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What the reader should know that does not fail the check."""

    @property
    def efficiency(self) -> float | None:
        return self.tg_tok_s / self.ceiling_tok_s if self.tg_tok_s and self.ceiling_tok_s else None


class LogLines(logging.Handler):
    """Collects llama.cpp's log lines (``tokrace.llama_cpp`` logger) while a model loads."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def random_llama_dims(n_params: float) -> dict[str, int]:
    """Dimensions of a llama whose weights hold about ``n_params`` parameters (16·e² per layer with
    n_ff = 4e, 16–32 layers, head dim 64)."""
    n_layer = 16 if n_params < 5e8 else 24 if n_params < 2e9 else 32
    n_embd = max(64, int(math.sqrt(n_params / (16 * n_layer)) // 64 * 64))
    return {"n_layer": n_layer, "n_embd": n_embd, "n_ff": 4 * n_embd, "n_head": n_embd // 64}


def write_random_llama(path: Path, n_params: float, *, seed: int = 0) -> Path:
    """A random-weight F16 llama GGUF with a byte vocabulary (259 tokens); returns ``path``."""
    from gguf import GGUFWriter, TokenType

    d = random_llama_dims(n_params)
    e, ff, n_layer = d["n_embd"], d["n_ff"], d["n_layer"]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL] + [TokenType.BYTE] * 256
    rng = np.random.default_rng(seed)
    w = GGUFWriter(str(path), "llama")
    w.add_name(f"random-llama-{n_params / 1e9:.2f}B")
    for add, value in ((w.add_context_length, 4096), (w.add_embedding_length, e),
                       (w.add_block_count, n_layer), (w.add_feed_forward_length, ff),
                       (w.add_head_count, d["n_head"]), (w.add_head_count_kv, d["n_head"]),
                       (w.add_rope_dimension_count, 64), (w.add_file_type, 1)):
        add(value)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * len(tokens))
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def weights(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float16)

    w.add_tensor("token_embd.weight", weights(len(tokens), e))
    w.add_tensor("output_norm.weight", np.ones(e, dtype=np.float32))
    w.add_tensor("output.weight", weights(len(tokens), e))
    for i in range(n_layer):
        p = f"blk.{i}."
        for name, shape in (("attn_q", (e, e)), ("attn_k", (e, e)), ("attn_v", (e, e)),
                            ("attn_output", (e, e)), ("ffn_gate", (ff, e)), ("ffn_up", (ff, e)),
                            ("ffn_down", (e, ff))):
            w.add_tensor(p + name + ".weight", weights(*shape))
        w.add_tensor(p + "attn_norm.weight", np.ones(e, dtype=np.float32))
        w.add_tensor(p + "ffn_norm.weight", np.ones(e, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def llama_buffers(lines: list[str]) -> dict[str, int]:
    """llama.cpp's buffer sizes from its load log, summed per device: ``CPU``, ``CPU_Mapped`` and the
    pinned host buffers of a GPU backend (``CUDA_Host``: host RAM) → ``CPU``; ``CUDA0`` → ``GPU0``."""
    out: dict[str, int] = {}
    for line in lines:
        m = BUFFER_LINE.search(line)
        if m:
            dev = m.group(1)
            host = dev.startswith("CPU") or dev.endswith("_Host")
            key = "CPU" if host else re.sub(r"^\D+", "GPU", dev)
            out[key] = out.get(key, 0) + int(float(m.group(3)) * MIB)
    return out


def cuda_advice(nvml: Any) -> str:
    """How to build llama-cpp-python for the first GPU (its compute capability → CUDA architecture)."""
    try:
        major, minor = nvml.nvmlDeviceGetCudaComputeCapability(nvml.nvmlDeviceGetHandleByIndex(0))
        arch = f" -DCMAKE_CUDA_ARCHITECTURES={major}{minor}"
    except Exception:
        arch = ""
    return (f'CMAKE_ARGS="-DGGML_CUDA=on{arch}" pip install --force-reinstall --no-cache-dir '
            "llama-cpp-python==0.3.36")


def check(path: Path, config: str, gpus: list[Any], n_gpu_layers: int | None, *, split: bool,
          n_gen: int, threads: int | None, tolerance: float) -> CheckRow:
    """Load ``path`` as ``config`` through tokrace's load path and compare planned vs measured."""
    from tokrace.backends import llama_log
    from tokrace.backends.bench_engine import LlamaDecodeTarget, time_test
    from tokrace.backends.device_sampler import DeviceSampler
    from tokrace.backends.placement import PlacementRequest, ceiling_tok_s
    from tokrace.backends.roofline import cpu_bandwidth, gpu_bandwidths
    from tokrace.load import LoadSpec, prepare

    request = PlacementRequest(n_ctx=512, n_gpu_layers=n_gpu_layers,
                               split_mode=None if split else ("none" if gpus else None))
    prepared = prepare(LoadSpec(model=str(path), n_threads=threads, request=request), gpus,
                       min_ctx=512)
    plan = prepared.plan
    if plan is None:
        raise SystemExit(f"gpu_check: no placement plan for {path} (is it a local GGUF file?)")
    row = CheckRow(config, plan.n_gpu_layers)
    row.planned_bytes = {f"GPU{d.index}": d.planned_bytes for d in plan.per_device}
    row.planned_bytes["CPU"] = plan.host.planned_bytes
    sampler = DeviceSampler(use_gpu=bool(gpus)).start()
    sampler.mark_load_start()
    before = {g.index: g.vram_used_bytes for g in sampler.latest().gpus}
    lines = LogLines()
    llama_logger = logging.getLogger(llama_log.log.name)
    level = llama_logger.level
    llama_logger.addHandler(lines)
    llama_logger.setLevel(logging.DEBUG)  # every line of the load, not the ring buffer's last 200
    try:
        backend = prepared.build()
        backend.load()
    finally:
        llama_logger.removeHandler(lines)
        llama_logger.setLevel(level)
    try:
        row.llama_bytes = llama_buffers(lines.lines)
        time.sleep(2 * sampler.interval_s)  # a sample taken after the load
        snap = sampler.latest()
        row.nvml_delta_bytes = {f"GPU{g.index}": g.vram_used_bytes - before.get(g.index, 0)
                                for g in snap.gpus}
        target = LlamaDecodeTarget.of(backend)
        window = sampler.begin_window()
        samples = time_test(target, 0, n_gen, 3)
        stats = sampler.end_window(window)
        row.tg_tok_s = n_gen * 1e9 / (sum(samples) / len(samples))
        if stats.energy_j is not None:
            row.joules_per_token = stats.energy_j / (n_gen * (len(samples) + 1))  # + the warm-up token run
        row.ceiling_tok_s = ceiling_tok_s(plan, gpu_bandwidths(snap), cpu_bandwidth().bytes_per_s, 0)
    finally:
        backend.unload()
        sampler.stop()
    for dev, planned in row.planned_bytes.items():
        real = row.llama_bytes.get(dev)
        if planned and not real:
            row.problems.append(f"{dev}: llama.cpp reported no buffers")
        elif real and abs(planned - real) > tolerance * real:
            row.problems.append(f"{dev}: planned {planned / MIB:.0f} MiB, llama.cpp {real / MIB:.0f} MiB "
                                f"({planned / real - 1:+.0%})")
    if row.tg_tok_s is None or row.ceiling_tok_s is None:
        row.problems.append("decode speed or its ceiling is missing")
    else:
        over_roofline(row, tolerance)
    if gpus and row.n_gpu_layers and row.joules_per_token is None:
        row.problems.append("no energy reading from NVML")
    return row


def over_roofline(row: CheckRow, tolerance: float) -> None:
    """A decode faster than its roofline by more than ``tolerance``: on GPUs the ceiling is wrong (a
    problem: the card's bandwidth figure is too low); on the CPU a model small enough for the caches
    beats the DRAM bandwidth the ceiling assumes (a note)."""
    eff = row.efficiency
    if eff is None or eff <= 1 + tolerance:
        return
    if row.n_gpu_layers:
        row.problems.append(f"decode at {eff:.0%} of its roofline: the GPU bandwidth figure is too low")
    else:
        row.notes.append(f"decode at {eff:.0%} of the DRAM roofline: the model fits in the CPU caches")


def table(rows: list[CheckRow]) -> str:
    def mib(d: dict[str, int]) -> str:
        return " ".join(f"{k} {v / MIB:.0f}" for k, v in sorted(d.items())) or "–"

    lines = ["| config | GPU layers | planned MiB | llama.cpp MiB | NVML Δ MiB | tg tok/s | ceiling | eff. "
             "| J/token | problems |", "|" + " --- |" * 10]
    for r in rows:
        eff = f"{r.efficiency:.0%}" if r.efficiency is not None else "–"
        lines.append(
            f"| {r.config} | {r.n_gpu_layers} | {mib(r.planned_bytes)} | {mib(r.llama_bytes)} | "
            f"{mib(r.nvml_delta_bytes)} | {r.tg_tok_s or 0:.1f} | {r.ceiling_tok_s or 0:.1f} | {eff} | "
            f"{r.joules_per_token if r.joules_per_token is not None else '–'} | "
            f"{'; '.join([*r.problems, *(f'note: {n}' for n in r.notes)]) or 'ok'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import llama_cpp

    from tokrace.backends.device_telemetry import detect_gpus, load_nvml

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=None, help="a GGUF to check (default: a random one)")
    ap.add_argument("--params", type=float, default=1.5e9, help="parameters of the random model")
    ap.add_argument("--cpu", action="store_true", help="the CPU configuration only")
    ap.add_argument("--n-gen", type=int, default=64, help="tokens per tg repetition")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tolerance", type=float, default=0.10)
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args(argv)

    gpus = [] if args.cpu else detect_gpus()
    offload = bool(llama_cpp.llama_supports_gpu_offload())
    report: dict[str, Any] = {"gpu_offload": offload, "gpus": [g.name for g in gpus], "rows": []}
    print(f"llama.cpp GPU offload: {'yes' if offload else 'no'}; GPUs: {', '.join(report['gpus']) or 'none'}")
    if gpus and not offload:
        nvml = load_nvml()
        report["advice"] = cuda_advice(nvml) if nvml is not None else "build llama-cpp-python with CUDA"
        print(f"this llama.cpp build cannot use the GPU; build it for this card:\n  {report['advice']}")
        gpus = []
    with tempfile.TemporaryDirectory() as tmp:
        path = args.model or write_random_llama(Path(tmp) / "random-llama.gguf", args.params)
        configs: list[tuple[str, list[Any], int | None, bool]] = []
        if gpus:
            from tokrace.model_registry.gguf_meta import read_gguf_info

            half = read_gguf_info(path).n_layers // 2
            configs += [("GPU, full offload", gpus[:1], -1, False),
                        ("GPU, half the layers", gpus[:1], half, False)]
            if len(gpus) > 1:
                configs.append((f"{len(gpus)} GPUs, layer split", gpus, -1, True))
        configs.append(("CPU", [], 0, False))
        rows = [check(path, name, g, n, split=s, n_gen=args.n_gen, threads=args.threads,
                      tolerance=args.tolerance) for name, g, n, s in configs]
    report["rows"] = [{**asdict(r), "efficiency": r.efficiency} for r in rows]
    print(table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    failed = [r for r in rows if r.problems]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
