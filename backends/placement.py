"""Where a model's layers go: the split planner applied to a ``LoadConfig`` before loading.

Every load goes through here (chat, TUI, race, bench), so the settings llama.cpp gets are the ones the
planner computed or checked, and the same ones go into every reply's record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from tokrace.backends.base import LoadConfig, SplitMode
from tokrace.backends.device_telemetry import GpuSample
from tokrace.backends.model_bytes import HeadBytes
from tokrace.backends.roofline import plan_ceiling_tok_s
from tokrace.backends.split_plan import GpuDevice, SplitPlan, gpus_from_samples
from tokrace.backends.split_planner import plan_split
from tokrace.model_registry.gguf_meta import GGUFInfo, read_gguf_info


@dataclass(frozen=True, slots=True)
class PlacementRequest:
    """What the user asked for; ``None`` = let the planner choose."""

    n_ctx: int | None = None
    n_gpu_layers: int | None = None
    tensor_split: Sequence[float] | None = None
    split_mode: SplitMode | None = None
    main_gpu: int | None = None


def place(config: LoadConfig, gpus: Sequence[GpuSample],
          request: PlacementRequest) -> tuple[LoadConfig, SplitPlan]:
    """Plan (or check the user's overrides against) ``gpus``: a copy of ``config`` with the planned
    ``n_ctx``, ``n_gpu_layers``, ``tensor_split``, ``split_mode`` and ``main_gpu``, and the plan.
    ``config`` itself is left as it was.

    Raises ``TokraceError`` (kind ``placement``) for an impossible request (a split with more entries
    than GPUs, a context larger than the model's, ...).
    """
    info = read_gguf_info(config.path)
    plan = plan_split(
        info, gpus_from_samples(gpus),
        n_ctx=request.n_ctx, n_gpu_layers=request.n_gpu_layers, tensor_split=request.tensor_split,
        split_mode=request.split_mode, main_gpu=request.main_gpu,
        head=HeadBytes.from_file(config.path),
    )
    return replace(config, **plan.load_kwargs(), n_ctx=plan.n_ctx), plan


def ceiling_tok_s(plan: SplitPlan, gpu_bandwidths: Sequence[float] | None, cpu_bandwidth: float | None,
                  n_past: int) -> float | None:
    """The decode roofline for this placement at ``n_past`` tokens of context, when it is known."""
    if cpu_bandwidth is None or (plan.per_device and not gpu_bandwidths):
        return None
    return plan_ceiling_tok_s(plan, list(gpu_bandwidths or []), cpu_bandwidth, n_past=n_past)


def fit_verdict(plan: SplitPlan) -> str:
    """Whether the model fits, in one line: the one answer ``tokrace plan`` and ``models info`` give
    (both build the plan with ``plan_for_info``). What stays on the CPU is checked against the RAM the
    plan was given (``HostPlan.free_bytes``); without it the line says RAM was not checked."""
    from tokrace.model_registry.units import format_gib

    total = plan.n_layers + 1
    h = plan.host
    ram = f"{format_gib(h.planned_bytes)} of RAM" + (
        f", {format_gib(h.free_bytes)} available" if h.free_bytes is not None else "")
    if not plan.per_device:
        verdict = {True: "fits in RAM", False: "does NOT fit in RAM", None: "RAM not checked"}
        return f"no GPU: everything runs on the CPU, {verdict[plan.fits_in_ram]} ({ram})"
    if plan.fits:
        return f"fits: all {total}/{total} layers (the output head counted) on GPU"
    head = " and the output head" if plan.n_gpu_layers <= plan.n_layers else ""
    partial = (f"does not fit: {plan.n_gpu_layers}/{total} layers on GPU, {plan.cpu_layers} repeating "
               f"layers{head} stay on CPU: {ram}")
    if plan.fits_in_ram is None:
        return partial + " (RAM not checked)"
    return partial + (" → runs partly offloaded" if plan.fits_in_ram else " → does NOT fit in RAM either")


def plan_for_info(info: GGUFInfo, gpus: Sequence[GpuDevice], *, n_ctx: int | None = None,
                  host_free_bytes: int | None = None, head: HeadBytes | None = None,
                  **overrides: Any) -> SplitPlan:
    """The plan both ``tokrace plan`` and ``models info`` answer from (one answer): the split planner
    with the header's exact head sizes, at ``n_ctx`` (default: the loader's, 4096 or the model's smaller
    context), what stays on the CPU checked against ``host_free_bytes`` of RAM."""
    return plan_split(info, gpus, n_ctx=n_ctx, head=head or HeadBytes.from_info(info),
                      host_free_bytes=host_free_bytes, **overrides)


def placement_label(plan: SplitPlan) -> str:
    """One line for the status bar: where the layers went."""
    total = plan.n_layers + 1  # llama.cpp counts the output head as a layer to offload
    if not plan.per_device or plan.n_gpu_layers == 0:
        return "all layers on CPU"
    gpus = f"{len(plan.per_device)} GPUs ({plan.split_mode} split)" if len(plan.per_device) > 1 else "GPU"
    cpu = f", {plan.cpu_layers} on CPU" if plan.cpu_layers else ""
    return f"{plan.n_gpu_layers}/{total} layers on {gpus}{cpu}"


def describe_plan(plan: SplitPlan, info: GGUFInfo, source: str) -> list[str]:
    """The plan in words, for the CLI and the TUI. The last line names settings as
    ``{setting:n_gpu_layers}``: show each line through the interface's ``say``."""
    from tokrace.model_registry.units import format_bytes
    from tokrace.model_registry.units import format_gib as gb

    size = info.file_size or info.tensors_bytes
    lines = [
        f"{info.name or source}: {info.quantization}, {format_bytes(size)}, {plan.n_layers} layers · "
        f"context {plan.n_ctx:,} · KV cache {format_bytes(plan.kv_bytes_per_token)}/token "
        f"({gb(plan.kv_bytes_per_token * plan.n_ctx)} at full context)"
    ]
    for d in plan.per_device:
        layers = _layer_words(d.layers, d.has_output, plan.split_mode)
        lines.append(
            f"GPU {d.index} {d.name}: {layers} · weights {gb(d.weights_bytes)} + KV {gb(d.kv_bytes)} + "
            f"compute {gb(d.compute_bytes)} = {gb(d.planned_bytes)} of {gb(d.usable_bytes)} usable "
            f"({gb(d.total_bytes)} total, {gb(d.free_bytes)} free)"
        )
    h = plan.host
    cpu_what = _layer_words(h.layers, False, "layer") if h.layers else "input embedding only"
    lines.append(f"CPU: {cpu_what} · {gb(h.planned_bytes)} in RAM"
                 + (f" ({gb(h.free_bytes)} available)" if h.free_bytes is not None else ""))
    lines.append(fit_verdict(plan))
    if plan.per_device:
        kw = plan.load_kwargs()
        flags = f"{{setting:n_gpu_layers}} {kw['n_gpu_layers']} {{setting:split_mode}} {kw['split_mode']}"
        if kw["tensor_split"]:
            flags += " {setting:tensor_split} " + ",".join(f"{x:g}" for x in kw["tensor_split"])
        flags += f" {{setting:main_gpu}} {kw['main_gpu']}"
        lines.append(f"settings: {flags}")
    return lines


def _layer_words(layers: list[int], output: bool, mode: str) -> str:
    from tokrace.backends.split_plan import layer_ranges

    if not layers and not output:
        return "nothing"
    share = " (a row share of each)" if mode == "row" else ""
    text = f"layers {layer_ranges(layers)} ({len(layers)}){share}" if layers else ""
    return text + (" + output head" if output and text else "output head" if output else "")
