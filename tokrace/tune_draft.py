"""``tokrace tune``'s draft stages: the draft length k (against no draft at all, as a reference) and then
the draft's confidence floor p-min (llama.cpp's ``--draft-p-min``), on one loaded target and draft.

Every candidate is a ``SpeculativeBackend`` over the same loaded target and draft model, timed by
``bench --draft``'s own ``timed_generation`` (greedy, first token to last), rounds interleaved. Each
drafted run's tokens are compared with the plain run's: greedy output must not depend on the draft.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from tokrace.bench import DRAFT_CTX_MARGIN, check_context, timed_generation
from tokrace.load import PreparedModel, ResolvedSpec, place_resolved
from tokrace.session import Session
from tokrace.tune_decide import decide
from tokrace.tune_stage import NO_DRAFT, StageResult, TuneOptions, interleave

if TYPE_CHECKING:
    from tokrace.backends.base import Backend
    from tokrace.backends.device_telemetry import GpuSample
    from tokrace.backends.speculative import SpeculativeBackend

ProgressFn = Callable[[str], None]


def _p_label(p: float) -> str:
    return f"{p:g}"


def draft_stages(found: ResolvedSpec, gpus: Sequence[GpuSample], options: TuneOptions,
                 progress: ProgressFn | None) -> tuple[dict[str, Any], dict[str, Any], list[StageResult]]:
    """(baseline, chosen, stage results) of the draft stages in ``options.stages``; ``found.spec`` holds
    the load settings already chosen and the draft settings in use."""
    from tokrace.backends.speculative import DEFAULT_K, SpeculativeBackend

    draft = found.spec.draft
    n_ctx = options.draft_gen + DRAFT_CTX_MARGIN + len(options.prompt)  # a byte-level tokenizer at worst
    check_context(found, n_ctx)
    prepared = place_resolved(found, gpus, min_ctx=n_ctx)
    assert isinstance(prepared, PreparedModel)  # a local model (tune refuses servers)
    built = prepared.build()
    built.load()
    assert isinstance(built, SpeculativeBackend)
    k_now, p_now = draft.k or DEFAULT_K, draft.p_min or 0.0
    baseline: dict[str, Any] = {"draft_k": k_now, "draft_p_min": p_now}
    chosen = dict(baseline)
    stages: list[StageResult] = []
    reference: list[int] = []
    mismatched: dict[str, set[str]] = {"draft_k": set(), "draft_p_min": set()}

    def variant(k: int, p_min: float) -> SpeculativeBackend:
        backend = SpeculativeBackend(built.target, built.drafter, k=k, p_min=p_min)
        backend.load()  # both models are loaded: this only checks and builds the verification batch
        return backend

    def timed(stage: str, label: str, backend: Backend) -> Callable[[bool], float]:
        session = Session(backend, record=False)  # tune's timings are its own table, not replies

        def run(first: bool) -> float:
            if first:
                timed_generation(session, 8, prompt=options.prompt)  # warm-up, as bench --draft does
            ns, tokens, _, _ = timed_generation(session, options.draft_gen, prompt=options.prompt)
            if backend is built.plain:
                reference[:] = tokens
            elif reference and tokens != reference:
                mismatched[stage].add(label)
            return options.draft_gen * 1e9 / ns
        return run

    try:
        if "draft_k" in options.stages:
            ks = sorted({*options.k_values, k_now})
            runs = {NO_DRAFT: timed("draft_k", NO_DRAFT, built.plain)}
            runs |= {f"k={k}": timed("draft_k", f"k={k}", variant(k, p_now)) for k in ks}
            samples = interleave(runs, options.rounds, "draft_k", progress)
            decision = decide(samples, f"k={k_now}", eligible=[f"k={k}" for k in ks])
            stage = StageResult("draft_k", f"gen{options.draft_gen} with the draft", decision,
                                {f"k={k}": {"draft_k": k} for k in ks})
            _speedup_note(stage, samples)
            stages.append(stage)
            chosen |= stage.chosen
        if "draft_p_min" in options.stages:
            k = chosen["draft_k"]
            ps = sorted({*options.p_min_values, p_now})
            runs = {NO_DRAFT: timed("draft_p_min", NO_DRAFT, built.plain)}  # first: the tokens to match
            runs |= {_p_label(p): timed("draft_p_min", _p_label(p), variant(k, p)) for p in ps}
            samples = interleave(runs, options.rounds, f"draft_p_min (k={k})", progress)
            decision = decide(samples, _p_label(p_now), eligible=[_p_label(p) for p in ps])
            stage = StageResult("draft_p_min", f"gen{options.draft_gen} with the draft, k={k}", decision,
                                {_p_label(p): {"draft_p_min": p} for p in ps})
            _speedup_note(stage, samples)
            stages.append(stage)
            chosen |= stage.chosen
    finally:
        built.unload()
    for stage in stages:
        bad = sorted(mismatched[stage.name])
        if bad:
            stage.notes.append(f"tokens differ from plain decoding with {', '.join(bad)}: a near-tie fell"
                               " the other way in a verification batch (llama.cpp's repacked CPU kernels"
                               " round a batch and a single token differently; --no-repack makes them"
                               " agree)")
    return baseline, chosen, stages


def _speedup_note(stage: StageResult, samples: dict[str, list[float]]) -> None:
    """Say whether the chosen draft setting beats plain decoding at all (paired, as every verdict)."""
    winner = stage.decision.winner
    vs_plain = decide({NO_DRAFT: samples[NO_DRAFT], winner: samples[winner]}, NO_DRAFT).result(winner)
    what = {"faster": "faster than", "slower": "slower than", "tie": "no faster than"}[vs_plain.verdict]
    stage.notes.append(f"{winner} is {what} no draft: ×{vs_plain.ratio:.2f}"
                       f" ({vs_plain.ratio_low:.2f}–{vs_plain.ratio_high:.2f} over the rounds)")

