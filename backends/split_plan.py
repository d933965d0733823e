"""A split plan as data: the GPUs it is for, what each GPU and the CPU will hold, and how it is shown.

- the devices: ``GpuDevice`` (real, from telemetry: ``gpus_from_samples``; or simulated with
  ``--gpus 24,24``: ``simulated_gpus``);
- the plan: ``DevicePlan`` per GPU, ``HostPlan`` for what stays in RAM, ``SplitPlan`` for the whole, whose
  ``load_kwargs()`` feed ``backends.base.LoadConfig`` and whose ``to_dict()`` is ``tokrace plan --json``;
- ``layer_ranges`` writes a layer list the way llama.cpp's logs do ("0-2,5").

``backends.split_planner.plan_split`` makes these; ``backends.model_bytes`` sizes what goes in them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import count, groupby
from typing import Any, Literal

from tokrace.model_registry.errors import TokraceError

SplitModeName = Literal["none", "layer", "row"]
GIB = 1 << 30


@dataclass(frozen=True, slots=True)
class GpuDevice:
    index: int
    name: str
    total_bytes: int
    free_bytes: int


def simulated_gpus(sizes_gib: Sequence[float]) -> list[GpuDevice]:
    """``[24, 24]`` → two empty 24 GiB GPUs ("24 GB" on a box is 24 GiB as nvidia-smi counts)."""
    gpus = []
    for i, size in enumerate(sizes_gib):
        if not size > 0:
            raise TokraceError(f"GPU {i} size must be above 0 GiB, got {size}; e.g. --gpus 24,24",
                               kind="usage")
        n = int(size * GIB)
        gpus.append(GpuDevice(i, f"simulated {size:g} GiB", n, n))
    return gpus


def gpus_from_samples(samples: Sequence[Any], *, count_own_as_free: bool = False) -> list[GpuDevice]:
    """From telemetry ``GpuSample``s. ``count_own_as_free``: planning a reload, so VRAM this process
    holds now will be released first."""
    out = []
    for s in samples:
        free = s.vram_total_bytes - s.vram_used_bytes
        if count_own_as_free and s.vram_process_bytes:
            free += s.vram_process_bytes
        out.append(GpuDevice(s.index, s.name, s.vram_total_bytes, max(0, free)))
    return out


@dataclass(slots=True)
class DevicePlan:
    index: int
    name: str
    total_bytes: int
    free_bytes: int
    reserve_bytes: int
    layers: list[int] = field(default_factory=list)
    """Repeating layers held here (whole layers in layer mode; a share of each in row mode)."""
    has_output: bool = False
    weights_bytes: int = 0
    kv_bytes: int = 0
    compute_bytes: int = 0

    @property
    def planned_bytes(self) -> int:
        return self.weights_bytes + self.kv_bytes + self.compute_bytes

    @property
    def usable_bytes(self) -> int:
        return max(0, self.free_bytes - self.reserve_bytes)

    @property
    def fits(self) -> bool:
        return self.planned_bytes <= self.usable_bytes


@dataclass(slots=True)
class HostPlan:
    """What stays in RAM: the input embedding, CPU layers, their KV cache."""

    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    layers: list[int]
    free_bytes: int | None = None
    embedding_bytes: int = 0
    """The input embedding matrix (``token_embd.weight``), part of ``weights_bytes``."""
    unread_bytes: int = 0
    """What a decode step does not read of ``weights_bytes``: the input embedding is a lookup of one
    row, so all of it but that row, unless the tied output head on the CPU reads it whole anyway."""

    @property
    def planned_bytes(self) -> int:
        return self.weights_bytes + self.kv_bytes + self.compute_bytes


@dataclass(slots=True)
class SplitPlan:
    n_layers: int
    n_gpu_layers: int
    """Offloaded layers counting the output head, as llama.cpp counts them (``n_layers + 1`` = all)."""
    tensor_split: list[float]
    split_mode: SplitModeName
    main_gpu: int
    n_ctx: int
    kv_bytes_per_token: int
    per_device: list[DevicePlan]
    host: HostPlan
    overridden: bool = False

    @property
    def cpu_layers(self) -> int:
        """Repeating layers that stay on the CPU."""
        return len(self.host.layers)

    @property
    def fits(self) -> bool:
        """GPUs: the whole model is offloaded and every GPU holds its share. No GPU: it fits in RAM."""
        if not self.per_device:
            return self.fits_in_ram is not False
        return self.n_gpu_layers == self.n_layers + 1 and all(d.fits for d in self.per_device)

    @property
    def fits_in_ram(self) -> bool | None:
        """Whether what stays on the CPU fits the RAM available; ``None``: RAM not known (not checked)."""
        if self.host.free_bytes is None:
            return None
        return self.host.planned_bytes <= self.host.free_bytes

    def load_kwargs(self) -> dict[str, Any]:
        """Fields for ``backends.base.LoadConfig``."""
        multi = len(self.per_device) > 1 and self.split_mode != "none"
        return {"n_gpu_layers": self.n_gpu_layers, "split_mode": self.split_mode,
                "tensor_split": list(self.tensor_split) if multi else None, "main_gpu": self.main_gpu}

    def to_dict(self) -> dict[str, Any]:
        def gib(n: int) -> float:
            return round(n / GIB, 2)

        h = self.host
        return {
            "n_layers": self.n_layers, "n_gpu_layers": self.n_gpu_layers, "cpu_layers": self.cpu_layers,
            "tensor_split": self.tensor_split, "split_mode": self.split_mode, "main_gpu": self.main_gpu,
            "fits": self.fits, "fits_in_ram": self.fits_in_ram, "n_ctx": self.n_ctx,
            "kv_bytes_per_token": self.kv_bytes_per_token,
            "units": "GiB (2**30 bytes), as llama.cpp and nvidia-smi count",
            "per_device": [
                {"index": d.index, "name": d.name, "total_gib": gib(d.total_bytes),
                 "free_gib": gib(d.free_bytes), "planned_gib": gib(d.planned_bytes),
                 "weights_gib": gib(d.weights_bytes), "kv_gib": gib(d.kv_bytes),
                 "compute_gib": gib(d.compute_bytes), "layers": layer_ranges(d.layers),
                 "output_head": d.has_output, "fits": d.fits}
                for d in self.per_device
            ],
            "cpu": {"planned_gib": gib(h.planned_bytes), "weights_gib": gib(h.weights_bytes),
                    "kv_gib": gib(h.kv_bytes), "layers": layer_ranges(h.layers),
                    "available_gib": gib(h.free_bytes) if h.free_bytes is not None else None},
        }


def layer_ranges(layers: Sequence[int]) -> str:
    """[0, 1, 2, 5] → "0-2,5"."""
    step = count()
    runs = [list(g) for _, g in groupby(layers, key=lambda i: i - next(step))]
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else f"{r[0]}" for r in runs)


