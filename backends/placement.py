"""Where a model's layers go: the split planner applied to a ``LoadConfig`` before loading.

Every load goes through here (chat, TUI, race, bench), so the settings llama.cpp gets are the ones the
planner computed or checked, and the same ones go into every reply's record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from backends.base import LoadConfig, SplitMode
from backends.device_telemetry import GpuSample
from backends.roofline import plan_ceiling_tok_s
from backends.split_planner import HeadBytes, SplitPlan, gpus_from_samples, plan_split
from model_registry.gguf_meta import read_gguf_info


@dataclass(frozen=True, slots=True)
class PlacementRequest:
    """What the user asked for; ``None`` = let the planner choose."""

    n_ctx: int | None = None
    n_gpu_layers: int | None = None
    tensor_split: Sequence[float] | None = None
    split_mode: SplitMode | None = None
    main_gpu: int | None = None


def place(config: LoadConfig, gpus: Sequence[GpuSample], request: PlacementRequest) -> SplitPlan:
    """Plan (or check the user's overrides against) ``gpus`` and write the result into ``config``.

    Raises ``TokraceError`` for an impossible request (a split with more entries than GPUs, a context
    larger than the model's, ...).
    """
    info = read_gguf_info(config.path)
    plan = plan_split(
        info, gpus_from_samples(gpus),
        n_ctx=request.n_ctx, n_gpu_layers=request.n_gpu_layers, tensor_split=request.tensor_split,
        split_mode=request.split_mode, main_gpu=request.main_gpu,
        head=HeadBytes.from_file(config.path),
    )
    for key, value in plan.load_kwargs().items():
        setattr(config, key, value)
    config.n_ctx = plan.n_ctx
    return plan


def ceiling_tok_s(plan: SplitPlan, gpu_bandwidths: Sequence[float] | None, cpu_bandwidth: float | None,
                  n_past: int) -> float | None:
    """The decode roofline for this placement at ``n_past`` tokens of context, when it is known."""
    if cpu_bandwidth is None or (plan.per_device and not gpu_bandwidths):
        return None
    return plan_ceiling_tok_s(plan, list(gpu_bandwidths or []), cpu_bandwidth, n_past=n_past)


def placement_label(plan: SplitPlan) -> str:
    """One line for the status bar: where the layers went."""
    total = plan.n_layers + 1  # llama.cpp counts the output head as a layer to offload
    if not plan.per_device or plan.n_gpu_layers == 0:
        return "all layers on CPU"
    gpus = f"{len(plan.per_device)} GPUs ({plan.split_mode} split)" if len(plan.per_device) > 1 else "GPU"
    cpu = f", {plan.cpu_layers} on CPU" if plan.cpu_layers else ""
    return f"{plan.n_gpu_layers}/{total} layers on {gpus}{cpu}"
