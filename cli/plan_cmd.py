"""``tokrace plan``: which layers go on which GPU, how many GiB each, and whether the model fits.

Works without GPUs: ``--gpus 24,24`` simulates two 24 GiB cards (a "24 GB" card, as nvidia-smi counts
it). What stays on the CPU is checked against this machine's available RAM, or ``--ram GIB`` for the
machine the plan is for; ``models info`` gives the same answer from the same plan. An ``hf:`` model that
is not downloaded is planned from its header alone (range reads of a few MiB), so a user learns whether a
70B fits before fetching 40 GB. Overrides (``--gpu-layers``, ``--tensor-split``, ``--split-mode``,
``--main-gpu``) are checked, and a split that cannot work is refused with one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from tokrace.cli import common
from tokrace.model_registry.errors import TokraceError

if TYPE_CHECKING:
    from pathlib import Path

    from tokrace.backends.model_bytes import HeadBytes
    from tokrace.backends.split_plan import GpuDevice, SplitPlan
    from tokrace.model_registry.gguf_meta import GGUFInfo

CUDA_ADVICE = (
    "this llama.cpp build is CPU-only, so GPU settings are ignored; for an NVIDIA GPU reinstall it with "
    "CMAKE_ARGS=\"-DGGML_CUDA=on\" pip install --force-reinstall --no-cache-dir llama-cpp-python"
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "plan", help="plan GPU offload: which layers go where, and whether it fits",
        description="Plan how a model splits over the GPUs (real, or simulated with --gpus) and the CPU.",
    )
    common.add_model_args(p)
    p.add_argument("--ctx", type=common.positive_int, default=None,
                   help="context size in tokens (default: 4096, or the model's if smaller)")
    p.add_argument("--gpus", default=None, metavar="GIB,GIB",
                   help="simulate empty GPUs of these sizes in GiB (a 24 GB card is 24), e.g. 24,24")
    add_ram_arg(p)
    common.add_gpu_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def gpu_offload_support() -> tuple[bool | None, str | None]:
    """(``llama_supports_gpu_offload()``, advice): None when llama-cpp-python is not importable."""
    try:
        import llama_cpp
    except ImportError:
        return None, "llama-cpp-python is not installed, so nothing can run yet; pip install tokrace"
    if bool(llama_cpp.llama_supports_gpu_offload()):
        return True, None
    return False, CUDA_ADVICE


def parse_gpus(text: str) -> list[float]:
    try:
        sizes = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise TokraceError(
            f"--gpus {text!r}: expected GPU sizes in GiB separated by commas, e.g. 24,24", kind="usage"
        ) from None
    if not sizes:
        raise TokraceError("--gpus needs at least one size in GiB, e.g. --gpus 24", kind="usage")
    return sizes


def add_ram_arg(p: argparse.ArgumentParser) -> None:
    """``--ram GIB``, shared by ``plan`` and ``models info``."""
    p.add_argument("--ram", type=float, default=None, metavar="GIB",
                   help="RAM available for what stays on the CPU, in GiB (default: this machine's)")


def host_ram(ram_gib: float | None) -> int:
    """Bytes of RAM a plan checks the CPU's share against: ``--ram`` or this machine's available."""
    if ram_gib is None:
        import psutil

        return int(psutil.virtual_memory().available)
    if not ram_gib > 0:
        raise TokraceError(f"--ram {ram_gib:g}: give the RAM in GiB, above 0, e.g. --ram 64", kind="usage")
    return int(ram_gib * (1 << 30))


def load_model_info(ref: str | None) -> tuple[GGUFInfo, HeadBytes | None, str]:
    """The model's header, exact head sizes when the file is local, and where it came from. Never
    downloads Hub weights: a Hub model not on disk is read remotely."""
    from tokrace.backends.model_bytes import HeadBytes
    from tokrace.model_registry.gguf_meta import read_gguf_info
    from tokrace.model_registry.resolve import looks_like_path, resolve_model

    def local(path: str | Path, source: str) -> tuple[GGUFInfo, HeadBytes | None, str]:
        # A header without its tensor data (an interrupted download) still plans, with a warning.
        return read_gguf_info(path, allow_incomplete=True), HeadBytes.from_file(str(path)), source

    text = (ref or "").strip()
    if text and not text.startswith("hf:") and looks_like_path(text):
        return local(text, text)
    if text:
        from tokrace.model_registry.catalog import load_catalog
        from tokrace.model_registry.resolve import local_path
        from tokrace.model_registry.store import find_pull

        if text.startswith("hf:"):
            from tokrace.model_registry.hub import parse_hf_ref

            pull = find_pull(str(parse_hf_ref(text)))
            entry, on_disk = None, (pull.path if pull is not None else None)
        else:
            entry = load_catalog().find(text)
            on_disk = local_path(entry) if entry is not None else None
        if on_disk is not None:
            return local(on_disk, text)
        if text.startswith("hf:") or (entry is not None and entry.hf_ref() is not None):
            return _remote(text), None, f"{text} (header read remotely)"
    resolved = resolve_model(ref or None)  # catalog (PyPI) or discovered models: small or already local
    return local(resolved.path, resolved.model_id)


def _remote(ref: str) -> GGUFInfo:
    try:
        from tokrace.model_registry.remote_header import read_remote_gguf_info
    except ImportError:
        raise TokraceError(
            f"planning {ref} needs the model registry's remote header reader, which this install lacks; "
            "download the model first ('tokrace models pull') and plan the file", kind="usage"
        ) from None
    return read_remote_gguf_info(ref)


def build_plan(args: argparse.Namespace) -> tuple[SplitPlan, GGUFInfo, str, list[GpuDevice], bool]:
    from tokrace.backends.device_telemetry import detect_gpus
    from tokrace.backends.placement import plan_for_info
    from tokrace.backends.split_plan import gpus_from_samples, simulated_gpus

    info, head, source = load_model_info(args.model)
    simulated = args.gpus is not None
    gpus = simulated_gpus(parse_gpus(args.gpus)) if simulated else gpus_from_samples(detect_gpus())
    plan = plan_for_info(
        info, gpus, n_ctx=args.ctx, n_gpu_layers=args.gpu_layers,
        tensor_split=common.parse_tensor_split(args.tensor_split), split_mode=args.split_mode,
        main_gpu=args.main_gpu, head=head, host_free_bytes=host_ram(args.ram),
    )
    return plan, info, source, gpus, simulated


def price_line(plan: SplitPlan, price_per_hour: float, simulated: bool) -> tuple[str, dict[str, Any]]:
    """``--price-per-hour`` for a plan: the cheapest a generated token can be here, at the decode
    roofline (real replies run slower, so they cost more). Simulated GPUs have no measured bandwidth."""
    from tokrace.backends.device_sampler import DeviceSampler
    from tokrace.backends.placement import ceiling_tok_s
    from tokrace.backends.roofline import cost_per_1k_tokens, cpu_bandwidth, gpu_bandwidths

    gpu_bw = None if simulated else gpu_bandwidths(DeviceSampler(use_gpu=bool(plan.per_device)).latest())
    ceiling = ceiling_tok_s(plan, gpu_bw, cpu_bandwidth().bytes_per_s, 0)
    if ceiling is None:
        return (f"cost at ${price_per_hour:g}/h: needs the GPUs' bandwidth (simulated GPUs have none);"
                " race or chat on the real hardware measures it", {"price_per_hour": price_per_hour})
    per_1k = cost_per_1k_tokens(price_per_hour, ceiling)
    return (f"cost at ${price_per_hour:g}/h: at least ${per_1k:.5f} per 1K generated tokens (at the "
            f"{ceiling:.0f} tok/s decode ceiling; real replies run slower and cost more)",
            {"price_per_hour": price_per_hour, "ceiling_tok_s": ceiling, "min_cost_per_1k_generated": per_1k})


def run(args: argparse.Namespace) -> int:
    plan, info, source, gpus, simulated = build_plan(args)
    offload, advice = gpu_offload_support()
    price = common.settings_for(args).price_per_hour
    cost = price_line(plan, price, simulated) if price else None
    if args.json:
        data = {"model": info.name or source, "source": source, **plan.to_dict(),
                "gpus_simulated": simulated, "gpu_offload": offload, "advice": advice,
                "warnings": list(info.warnings), **(cost[1] if cost else {})}
        print(json.dumps(data, indent=2))
        return 0
    for warning in info.warnings:  # estimated sizes, or a file without its tensor data
        print(f"tokrace: warning: {warning}", file=sys.stderr)
    from tokrace.backends.placement import describe_plan
    from tokrace.cli.words import say

    for line in describe_plan(plan, info, source):
        print(say(line))
    if cost is not None:
        print(cost[0])
    if not gpus and not simulated:
        print("no NVIDIA GPU found (NVML): planned for the CPU; simulate GPUs with --gpus 24,24")
    if simulated and args.ram is None and plan.host.layers:
        print("RAM checked against this machine's; plan for another machine's with --ram GIB")
    if advice and (gpus or offload is None):
        print(f"note: {advice}")
    return 0
