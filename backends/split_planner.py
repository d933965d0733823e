"""Where a model's layers go: which GPU holds what, and what stays on the CPU.

Pure logic over a ``GGUFInfo`` and a list of ``GpuDevice`` (real, from telemetry, or simulated with
``--gpus 24,24``). The answer is a ``SplitPlan`` whose ``load_kwargs()`` feed ``backends.base.LoadConfig``.

It mirrors how llama.cpp (``llama_model::load_tensors``) places tensors, so a plan is what will happen:
- ``n_gpu_layers = N`` offloads the *last* N "layers", counting the output head as layer ``n_layers``
  (llama.cpp prints "offloaded 81/81 layers" for an 80-layer model). The input embedding always stays on
  the CPU.
- split mode "layer": offloaded layer ``j`` (0-based among them) goes to the first GPU ``i`` whose
  cumulative normalised ``tensor_split`` exceeds ``j / N``; each layer's KV cache sits with the layer.
- split mode "row": every offloaded matrix is cut by rows across the GPUs in ``tensor_split``
  proportions; the KV cache, output head and compute buffer live on ``main_gpu`` (approximation: norms and
  biases are counted as split too, a few KB per layer).
- split mode "none": one GPU, ``main_gpu``.

The compute buffer is an estimate (llama.cpp reports the real one on load).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import count, groupby
from typing import Any, Literal

import numpy as np

from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.gguf_meta import GGUFInfo

SplitModeName = Literal["none", "layer", "row"]
GIB = 1 << 30
DEFAULT_RESERVE_BYTES = 512 << 20
"""Per GPU, kept free for the CUDA context and cuBLAS workspace (about 300–500 MiB in practice)."""
DEFAULT_CTX = 4096
DEFAULT_UBATCH = 512


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


def estimate_compute_bytes(info: GGUFInfo, n_ctx: int, n_ubatch: int = DEFAULT_UBATCH) -> int:
    """4 bytes × ubatch × (max(heads × ctx, vocab) + 4 × embd): the attention scores or the logits,
    whichever is wider, plus hidden-state temporaries (f32, no flash attention)."""
    heads = info.n_head or 0
    widest = max(heads * n_ctx, info.n_vocab)
    return 4 * n_ubatch * (widest + 4 * (info.n_embd or 0))


def kv_bytes_per_layer(info: GGUFInfo, bytes_per_element: float = 2.0) -> list[int]:
    """Per token, per layer (models such as Gemma or OpenELM vary the KV head count by layer)."""
    if not info.n_layers:
        return []
    per_layer = info.metadata.get(f"{info.architecture}.attention.head_count_kv")
    if isinstance(per_layer, list) and len(per_layer) == info.n_layers and info.head_dim:
        return [int(2 * h * info.head_dim * bytes_per_element) for h in per_layer]
    total = info.kv_bytes_per_token(bytes_per_element)
    return [total // info.n_layers] * info.n_layers


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


def llama_layer_devices(split: Sequence[float], n_gpu_layers: int, n_layers: int) -> list[int | None]:
    """Device of each layer 0..n_layers (the last is the output head), ``None`` = CPU; llama.cpp's rule,
    in float32 as llama.cpp computes it so boundaries land on the same layer."""
    act = min(max(n_gpu_layers, 0), n_layers + 1)
    start = max(n_layers - n_gpu_layers, 0)
    cum = np.cumsum(np.asarray(split, dtype=np.float32), dtype=np.float32)
    points = cum / np.float32(cum[-1]) if len(cum) and cum[-1] > 0 else cum
    out: list[int | None] = []
    for il in range(n_layers + 1):
        if il < start or il - start >= act:
            out.append(None)
            continue
        x = np.float32(il - start) / np.float32(act)
        out.append(min(int(np.searchsorted(points, x, side="right")), len(split) - 1))
    return out


@dataclass(frozen=True, slots=True)
class HeadBytes:
    """The non-layer tensors: the input embedding (always on the CPU) and the output head (offloaded as
    the last "layer").

    A tied head (no ``output.weight``) is the embedding itself: llama.cpp (``create_tensor`` with
    ``TENSOR_DUPLICATED``) reuses the embedding's tensor when the head stays in the same CPU buffer, and
    copies it to the GPU when the head is offloaded. So ``output_bytes`` costs memory only on a GPU."""

    input_bytes: int
    """Non-layer bytes that stay in RAM: the input embedding (and, tied, the norms)."""
    output_bytes: int
    """The output head as placed on a GPU (tied: the embedding's copy)."""
    tied: bool = False
    embd_bytes: int | None = None
    """The input embedding matrix alone; ``None``: all of ``input_bytes``."""
    n_vocab: int = 0
    """Rows of the embedding (a decode step looks one up); 0: unknown, the whole matrix is counted."""

    @property
    def embedding_bytes(self) -> int:
        return self.input_bytes if self.embd_bytes is None else self.embd_bytes

    @property
    def embedding_row_bytes(self) -> int:
        """One row of the input embedding: what a decode step's lookup reads of it."""
        return self.embedding_bytes // self.n_vocab if self.n_vocab > 0 else self.embedding_bytes

    @classmethod
    def estimate(cls, info: GGUFInfo) -> HeadBytes:
        # Without the tensor table, assume embedding and head are the same size (same shape); the head
        # is often stored at more bits, which the per-GPU reserve absorbs. Use ``from_file`` when local.
        half = info.non_layer_bytes // 2
        return cls(info.non_layer_bytes - half, half, n_vocab=info.n_vocab)

    @classmethod
    def from_info(cls, info: GGUFInfo) -> HeadBytes:
        """Exact sizes from the header's tensor table (all shards of a split model)."""
        other = info.non_layer_bytes
        if not info.embd_bytes:  # a header without a tensor table: estimate
            return cls.estimate(info)
        if info.output_bytes is not None:
            return cls(info.embd_bytes, other - info.embd_bytes, n_vocab=info.n_vocab)
        # Tied: the head is the embedding (a GPU copy when offloaded).
        return cls(other, info.embd_bytes, tied=True, embd_bytes=info.embd_bytes, n_vocab=info.n_vocab)

    @classmethod
    def from_file(cls, path: str) -> HeadBytes:
        """Exact sizes from a local GGUF's tensor table (no weights read; a split model's first shard
        stands for all of them; a header without its tensor data is enough)."""
        from tokrace.model_registry.gguf_meta import read_gguf_info

        return cls.from_info(read_gguf_info(path, allow_incomplete=True))


def _check_overrides(
    n_gpus: int, tensor_split: Sequence[float] | None, main_gpu: int | None, mode: SplitModeName,
    n_gpu_layers: int | None,
) -> None:
    if main_gpu is not None and not 0 <= main_gpu < max(n_gpus, 1 if n_gpus else 0):
        have = f"{n_gpus} GPUs (0-{n_gpus - 1})" if n_gpus > 1 else ("1 GPU (0)" if n_gpus else "no GPU")
        raise TokraceError(f"{{setting:main_gpu}} {main_gpu} does not exist: there is {have}",
                           kind="placement")
    if n_gpu_layers is not None and n_gpu_layers < -1:
        raise TokraceError(
            f"{{setting:n_gpu_layers}} {n_gpu_layers} is invalid: use -1 (all), 0 (none) or a count",
            kind="placement")
    if tensor_split is None:
        return
    shown = ",".join(f"{x:g}" for x in tensor_split)
    if mode == "none":
        raise TokraceError(
            f"{{setting:tensor_split}} {shown} needs {{setting:split_mode}} layer or row (none uses one GPU)",
            kind="placement")
    if len(tensor_split) > n_gpus:
        raise TokraceError(
            f"{{setting:tensor_split}} {shown} has {len(tensor_split)} entries but there "
            f"{'is' if n_gpus == 1 else 'are'} {n_gpus} GPU{'' if n_gpus == 1 else 's'}; give one per GPU",
            kind="placement")
    if any(not (x >= 0 and math.isfinite(x)) for x in tensor_split) or not sum(tensor_split) > 0:
        raise TokraceError(
            f"{{setting:tensor_split}} {shown} must be shares of 0 or more that sum to more than 0, e.g. 1,1",
            kind="placement")


def _largest_remainder(total: int, weights: Sequence[float]) -> list[int]:
    s = sum(weights)
    if s <= 0:
        return [total] + [0] * (len(weights) - 1)
    exact = [total * w / s for w in weights]
    counts = [math.floor(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (counts[i] - exact[i], i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


class _Planner:
    def __init__(self, info: GGUFInfo, gpus: Sequence[GpuDevice], n_ctx: int, head: HeadBytes,
                 compute: int, reserve: int, kv_element_bytes: float) -> None:
        self.info, self.gpus, self.head = info, list(gpus), head
        self.n, self.compute, self.reserve = info.n_layers, compute, reserve
        self.kv_layer = [k * n_ctx for k in kv_bytes_per_layer(info, kv_element_bytes)] or [0] * self.n

    def host(self, layers: list[int], output_on_gpu: bool, free: int | None) -> HostPlan:
        head = self.head
        w = head.input_bytes + sum(self.info.layer_bytes[i] for i in layers)
        w += 0 if output_on_gpu or head.tied else head.output_bytes  # a tied head on the CPU is no copy
        # With nothing offloaded the CPU backend carries the compute buffer (else a small one, ignored).
        compute = self.compute if len(layers) == self.n and not output_on_gpu else 0
        # Decode reads one row of the embedding, unless the head on the CPU is that matrix (tied).
        unread = 0 if head.tied and not output_on_gpu else head.embedding_bytes - head.embedding_row_bytes
        return HostPlan(w, sum(self.kv_layer[i] for i in layers), compute, layers, free,
                        head.embedding_bytes, unread)

    def place(self, mode: SplitModeName, split: Sequence[float], n_gpu: int,
              main: int) -> tuple[list[DevicePlan], list[int], bool]:
        """Per-GPU plans, the layers left on the CPU, and whether the output head is offloaded."""
        devs = [DevicePlan(g.index, g.name, g.total_bytes, g.free_bytes, self.reserve) for g in self.gpus]
        where = llama_layer_devices([1.0] if mode == "row" else split, n_gpu, self.n)
        cpu = [il for il in range(self.n) if where[il] is None]
        out_gpu = where[self.n] is not None
        if mode == "row":
            # Every matrix is cut across the GPUs by the split; KV, head and scratch stay on main_gpu.
            on_gpu = [il for il in range(self.n) if where[il] is not None]
            weights, total = sum(self.info.layer_bytes[i] for i in on_gpu), sum(split)
            for d, share in zip(devs, split, strict=True):
                d.weights_bytes, d.layers = int(weights * share / total), on_gpu if share > 0 else []
            m = devs[main]
            m.kv_bytes, m.has_output = sum(self.kv_layer[i] for i in on_gpu), out_gpu
            m.weights_bytes += self.head.output_bytes if out_gpu else 0
            m.compute_bytes = self.compute if n_gpu > 0 else 0
            return devs, cpu, out_gpu
        for il, dev in enumerate(where):
            if dev is None:
                continue
            d = devs[dev]
            if il == self.n:
                d.has_output, d.weights_bytes = True, d.weights_bytes + self.head.output_bytes
            else:
                d.layers.append(il)
                d.weights_bytes += self.info.layer_bytes[il]
                d.kv_bytes += self.kv_layer[il]
        for d in devs:
            d.compute_bytes = self.compute if (d.layers or d.has_output) else 0
        return devs, cpu, out_gpu

    def fits(self, mode: SplitModeName, split: Sequence[float] | None, n_gpu: int, main: int) -> bool:
        return split is not None and all(d.fits for d in self.place(mode, split, n_gpu, main)[0])

    def auto_layer_split(self, n_gpu: int) -> list[float] | None:
        """A split holding ``n_gpu`` layers within every GPU's room: shared by room first (as llama.cpp
        shares by free memory), else filling GPU after GPU. Whole layer counts, so llama.cpp's float
        rule lands exactly on them."""
        room = [max(0, g.free_bytes - self.reserve - self.compute) for g in self.gpus]
        if n_gpu == 0:
            return [1.0] * len(self.gpus)
        for counts in (_largest_remainder(n_gpu, room), self._greedy_counts(n_gpu, room)):
            if counts and sum(counts) and self.fits("layer", [float(c) for c in counts], n_gpu, 0):
                return [float(c) for c in counts]
        return None

    def _greedy_counts(self, n_gpu: int, room: list[int]) -> list[int] | None:
        start = max(self.n - n_gpu, 0)
        sizes = [self.info.layer_bytes[i] + self.kv_layer[i] for i in range(start, self.n)]
        sizes += [self.head.output_bytes] if n_gpu > self.n else []
        counts, k = [], 0
        for r in room:
            used, c = 0, 0
            while k < len(sizes) and used + sizes[k] <= r:
                used, c, k = used + sizes[k], c + 1, k + 1
            counts.append(c)
        return counts if k == len(sizes) else None


def plan_split(
    info: GGUFInfo,
    gpus: Sequence[GpuDevice],
    *,
    n_ctx: int | None = None,
    n_gpu_layers: int | None = None,
    tensor_split: Sequence[float] | None = None,
    split_mode: SplitModeName | None = None,
    main_gpu: int | None = None,
    head: HeadBytes | None = None,
    compute_bytes: int | None = None,
    reserve_bytes: int = DEFAULT_RESERVE_BYTES,
    host_free_bytes: int | None = None,
    kv_element_bytes: float = 2.0,
) -> SplitPlan:
    """Plan, or check the user's overrides (``None`` = choose). Raises ``TokraceError`` on a bad one."""
    n = info.n_layers
    if n_ctx is None:
        n_ctx = min(DEFAULT_CTX, info.n_ctx_train or DEFAULT_CTX)
    if n_ctx <= 0:
        raise TokraceError(f"{{setting:n_ctx}} {n_ctx} is invalid: give a context size above 0",
                           kind="placement")
    if info.n_ctx_train and n_ctx > info.n_ctx_train:
        raise TokraceError(
            f"{{setting:n_ctx}} {n_ctx} is larger than the model's {info.n_ctx_train}-token context; "
            f"set {{setting:n_ctx}} to {info.n_ctx_train} or less",
            kind="placement", facts={"n_ctx": n_ctx, "n_ctx_train": info.n_ctx_train})
    mode: SplitModeName = split_mode or "layer"
    _check_overrides(len(gpus), tensor_split, main_gpu, mode, n_gpu_layers)
    main = main_gpu or 0
    compute = estimate_compute_bytes(info, n_ctx) if compute_bytes is None else compute_bytes
    p = _Planner(info, gpus, n_ctx, head or HeadBytes.from_info(info), compute, reserve_bytes,
                 kv_element_bytes)
    wanted = None if n_gpu_layers is None else (n + 1 if n_gpu_layers == -1 else min(n_gpu_layers, n + 1))

    fixed: list[float] | None = None
    if mode == "none":
        fixed = [1.0 if g.index == main else 0.0 for g in gpus]
    elif tensor_split is not None:
        fixed = list(tensor_split) + [0.0] * (len(gpus) - len(tensor_split))
    elif mode == "row":
        fixed = [round(max(0, g.free_bytes - reserve_bytes) / GIB, 2) for g in gpus]  # by room, in GiB

    def split_for(k: int) -> list[float] | None:
        return fixed if fixed is not None else p.auto_layer_split(k)

    split: list[float] | None
    if not gpus:
        n_gpu, split = 0, []
    elif wanted is not None or tensor_split is not None:
        n_gpu = n + 1 if wanted is None else wanted
        split = split_for(n_gpu)
        if not p.fits(mode, split, n_gpu, main):
            most = next(k for k in range(n + 1, -1, -1) if p.fits(mode, split_for(k), k, main))
            what = ("that {setting:tensor_split}" if tensor_split is not None
                    else f"{{setting:n_gpu_layers}} {n_gpu}")
            devs = p.place(mode, split, n_gpu, main)[0] if split else []
            raise TokraceError(_overfill(devs, what, most, n), kind="placement",
                                facts={"n_gpu_layers_max": most})
    else:
        n_gpu = next(k for k in range(n + 1, -1, -1) if p.fits(mode, split_for(k), k, main))
        split = split_for(n_gpu)
    assert split is not None
    devs, cpu, out_gpu = p.place(mode, split, n_gpu, main) if gpus else ([], list(range(n)), False)
    return SplitPlan(
        n_layers=n, n_gpu_layers=n_gpu, tensor_split=[float(round(x, 4)) for x in split], split_mode=mode,
        main_gpu=main, n_ctx=n_ctx, kv_bytes_per_token=sum(kv_bytes_per_layer(info, kv_element_bytes)),
        per_device=devs, host=p.host(cpu, out_gpu, host_free_bytes),
        overridden=any(x is not None for x in (n_gpu_layers, tensor_split, split_mode, main_gpu)),
    )


def _overfill(devs: Sequence[DevicePlan], what: str, most: int, n: int) -> str:
    over = next((d for d in devs if not d.fits), None)
    where = (f" puts {over.planned_bytes / GIB:.1f} GiB on GPU {over.index} ({over.name}), which has "
             f"{over.usable_bytes / GIB:.1f} GiB usable;") if over else " does not fit these GPUs;"
    return f"{what}{where} at most {most} of {n + 1} layers fit there at this context: " \
           "lower {setting:n_gpu_layers} or {setting:n_ctx}, or shift the split"
