"""``tokrace tune``: the fastest load and draft settings for this machine and model, measured.

Stages run in order, each with the winners of the ones before (coordinate descent, the way one tunes
llama.cpp by hand), every candidate of a stage loaded side by side and measured once per round, rounds
interleaved (``tokrace.tune_decide`` reads winners and ties from the paired samples):

=============  ==========================================  =====================================
stage          candidates                                  measured as
=============  ==========================================  =====================================
n_threads      1 (on ≤ 4 CPUs), half the cores, the        tg (llama-bench's ``tg``)
               physical cores, the logical CPUs
flash_attn     auto and the opposite of what auto chose    tg at depth (``-d``)
n_ubatch       128, 256, 512 (≤ the pp size)               pp (llama-bench's ``pp``)
type_k/type_v  f16, q8_0, q4_0 (V stays f16 without FA)    tg at depth
draft_k        1, 2, 3, 4, 6, 8, and no draft (reference)  greedy generation with the draft
draft_p_min    0, 0.5, 0.75, 0.9                           greedy generation with the draft
=============  ==========================================  =====================================

The timing is ``tokrace bench``'s own: pp/tg through ``bench_engine.time_test`` (llama-bench's
definitions), drafted generation through ``bench.timed_generation`` (``bench --draft``'s ``tgN-draft``),
one repetition per candidate per round, the first round warming up. A drafted run must produce the
plain run's tokens (greedy); a mismatch is reported.

A quantized KV cache changes the numbers the model computes (slightly); tune measures speed only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from tokrace.backends.base import DEFAULT_N_UBATCH, Backend, default_threads
from tokrace.bench import _without_draft, check_context
from tokrace.load import DraftSpec, LoadSpec, ResolvedSpec, place_resolved
from tokrace.model_registry.errors import TokraceError
from tokrace.tune_decide import decide
from tokrace.tune_stage import (
    DRAFT_STAGES,
    StageResult,
    TuneOptions,
    interleave,
)

if TYPE_CHECKING:
    from tokrace.backends.device_telemetry import GpuSample

ProgressFn = Callable[[str], None]

@dataclass(slots=True)
class TuneResult:
    model: str
    draft: str | None
    stages: list[StageResult]
    baseline: dict[str, Any]
    """The settings tune started from (the file's and the flags', defaults resolved)."""
    chosen: dict[str, Any]
    """The settings after every stage: each stage's winner, the baseline where it tied."""

    def changes(self) -> dict[str, Any]:
        """The settings whose winner differs from the baseline (what ``--write`` writes)."""
        return {k: v for k, v in self.chosen.items() if self.baseline.get(k) != v}


def thread_candidates(physical: int, logical: int) -> list[int]:
    """Thread counts worth measuring: 1 on small machines, half the physical cores, the physical cores
    (llama.cpp's default) and the logical CPUs (hyper-threads rarely help a memory-bound decode)."""
    found = {max(1, physical // 2), physical, logical}
    if logical <= 4:
        found.add(1)
    return sorted(found)


def ubatch_candidates(n_prompt: int) -> list[int]:
    """Physical batch sizes for the pp test: 128, 256, 512, only those a prompt of ``n_prompt`` fills."""
    return [u for u in (128, 256, 512) if u <= max(n_prompt, 128)]


def _kv_label(type_k: str, type_v: str) -> str:
    return type_k if type_k == type_v else f"{type_k}/{type_v}"


class _Loaded:
    """Candidate backends of one load stage, loaded side by side (weights are mmapped: shared)."""

    def __init__(self, found: ResolvedSpec, gpus: Sequence[GpuSample], n_ctx: int) -> None:
        self.found, self.gpus, self.n_ctx = _without_draft(found), gpus, n_ctx
        self.backends: list[Backend] = []

    def load(self, spec: LoadSpec) -> Backend:
        prepared = place_resolved(self.found, self.gpus, spec=replace(spec, draft=DraftSpec()),
                                  min_ctx=self.n_ctx)
        backend = prepared.build()
        self.backends.append(backend)
        backend.load()
        return backend

    def close(self) -> None:
        for backend in self.backends:
            backend.unload()
        self.backends.clear()


def _engine_run(backend: Backend, n_prompt: int, n_gen: int, n_depth: int) -> Callable[[bool], float]:
    from tokrace.backends.bench_engine import LlamaDecodeTarget, time_test

    target = LlamaDecodeTarget.of(backend)

    def run(first: bool) -> float:
        ns = time_test(target, n_prompt, n_gen, 1, warmup=first, n_depth=n_depth)[0]
        return (n_prompt + n_gen) * 1e9 / ns

    return run


def _load_stage(name: str, metric: tuple[int, int, int], candidates: dict[str, dict[str, Any]],
                baseline: str, base: LoadSpec, loaded: _Loaded, options: TuneOptions,
                progress: ProgressFn | None) -> StageResult:
    n_prompt, n_gen, n_depth = metric
    runs = {}
    notes = []
    try:
        for label, values in list(candidates.items()):
            try:
                backend = loaded.load(replace(base, **values))
            except TokraceError as err:
                if label == baseline:
                    raise
                # e.g. a q8_0 K cache on heads whose size is not a multiple of its 32-value blocks
                said = str(err)
                if "(" in said and ")" in said:  # the reason llama.cpp gave, without our remedy
                    said = said[said.index("(") + 1: said.rindex(")")]
                notes.append(f"{label}: not measured, llama.cpp refused it: {said}")
                del candidates[label]
                continue
            runs[label] = _engine_run(backend, n_prompt, n_gen, n_depth)
        samples = interleave(runs, options.rounds, name, progress)
    finally:
        loaded.close()
    test = f"pp{n_prompt}" if n_prompt else f"tg{n_gen}" + (f" @ d{n_depth}" if n_depth else "")
    return StageResult(name, test, decide(samples, baseline), candidates, notes)


def tune_model(found: ResolvedSpec, options: TuneOptions, *, gpus: Sequence[GpuSample],
               progress: ProgressFn | None = None) -> TuneResult:
    """Measure every stage of ``options.stages`` for ``found`` (its draft, if any, for the draft stages)
    starting from ``found.spec``'s settings. Raises ``TokraceError`` for a context the model was not
    trained for, a stage that needs a draft without one, or a model that cannot be loaded."""
    spec = found.spec
    if options.rounds < 1:
        raise TokraceError("tune needs at least one round (2 or more to tell a winner from noise)",
                           kind="usage")
    if found.draft is None and any(s in DRAFT_STAGES for s in options.stages):
        options = replace(options, stages=tuple(s for s in options.stages if s not in DRAFT_STAGES))
    n_ctx = max(options.n_prompt, options.n_depth + options.n_gen, 256)
    check_context(found, n_ctx)
    current = replace(spec, n_threads=spec.n_threads or default_threads(),
                      n_ubatch=spec.n_ubatch or DEFAULT_N_UBATCH)
    baseline: dict[str, Any] = {"n_threads": current.n_threads, "flash_attn": current.flash_attn,
                                "n_ubatch": current.n_ubatch, "type_k": current.type_k,
                                "type_v": current.type_v}
    stages: list[StageResult] = []
    loaded = _Loaded(found, gpus, n_ctx)
    tg = (0, options.n_gen, 0)
    tg_deep = (0, options.n_gen, options.n_depth)
    pp = (options.n_prompt, 0, 0)

    def record(stage: StageResult) -> None:
        nonlocal current
        stages.append(stage)
        current = replace(current, **stage.chosen)

    if "n_threads" in options.stages:
        threads = thread_candidates(default_threads(), os.cpu_count() or 1)
        if current.n_threads not in threads:
            threads = sorted({*threads, current.n_threads or 1})
        record(_load_stage("n_threads", tg, {str(n): {"n_threads": n} for n in threads},
                           str(current.n_threads), current, loaded, options, progress))
    if "flash_attn" in options.stages:
        record(_flash_attn_stage(current, loaded, tg_deep, options, progress))
    if "n_ubatch" in options.stages:
        sizes = sorted({*ubatch_candidates(options.n_prompt), current.n_ubatch or DEFAULT_N_UBATCH})
        record(_load_stage("n_ubatch", pp, {str(u): {"n_ubatch": u} for u in sizes},
                           str(current.n_ubatch), current, loaded, options, progress))
    if "kv_cache" in options.stages:
        record(_kv_stage(current, loaded, tg_deep, options, progress))
    chosen: dict[str, Any] = {"n_threads": current.n_threads, "flash_attn": current.flash_attn,
                              "n_ubatch": current.n_ubatch, "type_k": current.type_k,
                              "type_v": current.type_v}
    if found.draft is not None and any(s in DRAFT_STAGES for s in options.stages):
        from tokrace.tune_draft import draft_stages

        draft_baseline, draft_chosen, results = draft_stages(
            replace(found, spec=current), gpus, options, progress)
        stages += results
        baseline |= draft_baseline
        chosen |= draft_chosen
    return TuneResult(found.resolved.model_id, found.draft.model_id if found.draft else None, stages,
                      baseline, chosen)


def _flash_attn_stage(current: LoadSpec, loaded: _Loaded, metric: tuple[int, int, int],
                      options: TuneOptions, progress: ProgressFn | None) -> StageResult:
    """``auto`` (or the setting in use) against the other choice(s); ``auto`` is measured as what it
    resolves to, so it and that explicit value are not both measured."""
    first = loaded.load(current)
    resolved = first.model.flash_attn  # "on"/"off" as llama.cpp used it
    loaded.close()
    values = [current.flash_attn]
    as_used = resolved if current.flash_attn == "auto" else current.flash_attn
    values += [v for v in ("on", "off") if v != as_used and v not in values]
    candidates: dict[str, dict[str, Any]] = {v: {"flash_attn": v} for v in values}
    stage = _load_stage("flash_attn", metric, candidates, current.flash_attn, current, loaded, options,
                        progress)
    if current.flash_attn == "auto" and resolved:
        stage.notes.append(f"auto = {resolved} here")
    return stage


def _kv_stage(current: LoadSpec, loaded: _Loaded, metric: tuple[int, int, int], options: TuneOptions,
              progress: ProgressFn | None) -> StageResult:
    fa_off = current.flash_attn == "off"
    pairs = [(current.type_k, current.type_v), ("f16", "f16")]
    pairs += [(t, "f16") if fa_off else (t, t) for t in ("q8_0", "q4_0")]
    candidates: dict[str, dict[str, Any]] = {}
    for k, v in pairs:
        candidates.setdefault(_kv_label(k, v), {"type_k": k, "type_v": v})
    stage = _load_stage("kv_cache", metric, candidates, _kv_label(current.type_k, current.type_v), current,
                        loaded, options, progress)
    stage.notes.append("a quantized KV cache changes the model's numbers slightly: speed is measured,"
                       " not quality")
    if fa_off:
        stage.notes.append("V stays f16: a quantized V cache needs flash attention")
    return stage
