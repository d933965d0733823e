"""Where a model's layers go: which GPU holds what, and what stays on the CPU.

Pure logic over a ``GGUFInfo`` and a list of ``GpuDevice`` (``backends.split_plan``). The answer is a
``SplitPlan`` (``backends.split_plan``) whose ``load_kwargs()`` feed ``backends.base.LoadConfig``; the
sizes it places come from ``backends.model_bytes``. This module holds the placement rule and the search:

- ``llama_layer_devices``: llama.cpp's rule for which device holds each layer;
- ``plan_split``: checks the user's overrides (``n_gpu_layers``, ``tensor_split``, ``split_mode``,
  ``main_gpu``, ``n_ctx``) or chooses them: the most layers that fit, in a split that fits every GPU.

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
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tokrace.backends.model_bytes import HeadBytes, estimate_compute_bytes, kv_bytes_per_layer
from tokrace.backends.split_plan import GIB, DevicePlan, GpuDevice, HostPlan, SplitModeName, SplitPlan
from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.gguf_meta import GGUFInfo

DEFAULT_RESERVE_BYTES = 512 << 20
"""Per GPU, kept free for the CUDA context and cuBLAS workspace (about 300–500 MiB in practice)."""
DEFAULT_CTX = 4096


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
