"""``tokrace bench``: llama-bench's pp/tg tests and the draft comparison, loaded through the application
layer like every other front end, timed on the engine (``tokrace.backends.bench_engine``), recorded in
the speed log and compared with history (``tokrace.speedlog.bench``).

``bench --draft``: llama-bench's tg decodes random tokens, which a draft cannot predict, so drafted
decoding is measured on real text: greedy generation of ``n_gen`` tokens from a fixed prompt, once
through the plain target (``tg{n}-gen``) and once with the draft (``tg{n}-draft``), on the same loaded
model, alternating repetitions so noise hits both alike. Both are timed from the first generated token
to the last, as the chat's generation tok/s is, and recorded as tg tests of ``n_gen`` tokens (a sample's
duration is scaled from the ``n − 1`` measured intervals to ``n``). Greedy output is the same with and
without the draft, so the two rows time the very same tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from tokrace.backends.base import GenerationParams
from tokrace.backends.bench_engine import LlamaDecodeTarget, time_test
from tokrace.backends.events import TokenGenerated
from tokrace.load import DraftSpec, ResolvedSpec, place_resolved
from tokrace.model_registry.errors import TokraceError
from tokrace.session import Session
from tokrace.speedlog.bench import BenchResult, compare
from tokrace.speedlog.record import ReplyRecord, bench_test_name, make_bench_record
from tokrace.speedup import paired_speedup

if TYPE_CHECKING:
    from tokrace.backends.device_telemetry import GpuSample
    from tokrace.speedlog.store import SpeedLog

ProgressFn = Callable[[str], None]

BENCH_PROMPT = (
    "Write a detailed, step-by-step explanation of how a refrigerator keeps food cold, "
    "covering the compressor, the condenser, the expansion valve and the evaporator."
)
DRAFT_CTX_MARGIN = 256
"""Context beyond the longest generation for ``bench --draft`` (the prompt and the draft's lookahead)."""


def check_context(found: ResolvedSpec, n_ctx: int) -> None:
    """Raise ``TokraceError`` when the tests need more context than the model was trained for."""
    trained = found.info.n_ctx_train
    if trained and n_ctx > trained:
        raise TokraceError(
            f"{found.resolved.model_id} was trained for a context of {trained} tokens but the tests need"
            f" {n_ctx}; use smaller -p / -n", kind="usage", facts={"n_ctx": n_ctx, "n_ctx_train": trained},
        )


def bench_model(
    found: ResolvedSpec,
    tests: Sequence[tuple[int, int, int]],
    reps: int,
    *,
    gpus: Sequence[GpuSample],
    session_id: str,
    log: SpeedLog | None = None,
    history: Sequence[ReplyRecord] = (),
    progress: ProgressFn | None = None,
) -> list[BenchResult]:
    """Load the model of ``found`` (no draft) and run each (n_prompt, n_gen, n_depth) test ``reps`` times.

    Each test is appended to ``log`` as soon as it finishes and compared with ``history``.
    """
    n_ctx = max(p + g + d for p, g, d in tests)
    check_context(found, n_ctx)
    # pp/tg time the plain model: random tokens give a draft nothing to predict (bench_draft does).
    prepared = place_resolved(_without_draft(found), gpus, min_ctx=n_ctx)
    backend = prepared.build()
    model = backend.load()
    results: list[BenchResult] = []
    try:
        target = LlamaDecodeTarget.of(backend)
        for n_prompt, n_gen, n_depth in tests:
            test = bench_test_name(n_prompt, n_gen, n_depth)

            def report(msg: str, test: str = test) -> None:
                if progress is not None:
                    progress(f"{model.name} {test}: {msg}")

            samples = time_test(target, n_prompt, n_gen, reps, progress=report, before_reps=target.reset_perf,
                                n_depth=n_depth)
            record = make_bench_record(model, prepared.config, session_id, n_prompt=n_prompt, n_gen=n_gen,
                                       n_depth=n_depth, samples_ns=samples, model_id=prepared.model_id)
            # llama.cpp's own counters over the timed repetitions: a cross-check of our clock.
            record.llama_perf = target.perf()
            if log is not None:
                log.append(record)
            results.append(compare(record, history))
    finally:
        backend.unload()
    return results


def _without_draft(found: ResolvedSpec) -> ResolvedSpec:
    return replace(found, spec=replace(found.spec, draft=DraftSpec()), draft=None)


def timed_generation(session: Session, n_gen: int, *, plain: bool = False, prompt: str = BENCH_PROMPT
                      ) -> tuple[int, list[int], float | None, int]:
    """(ns for n_gen tokens, token ids, acceptance, prompt tokens: the KV depth generation starts at)
    of one greedy generation of ``session``'s model from a fresh context: a ``Turn`` on a raw ``prompt``
    (no chat template), with the draft or without it (``plain``)."""
    session.backend.reset()
    turn = session.turn(GenerationParams(max_tokens=n_gen, temperature=0.0), prompt=prompt, plain=plain)
    tokens = [event.token_id for event in turn if isinstance(event, TokenGenerated)]
    s = turn.stats
    if s.error is not None:
        raise TokraceError(f"the bench generation failed: {s.error}", kind="engine")
    if s.gen_s is None or s.completion_tokens < 2:
        raise TokraceError("the model ended its reply at once; bench --draft needs a model that generates",
                           kind="draft")
    per_interval = s.gen_s / (s.completion_tokens - 1)
    return int(per_interval * n_gen * 1e9), tokens, s.acceptance_rate, s.prompt_tokens or 0


def bench_draft(
    found: ResolvedSpec,
    n_gens: Sequence[int],
    reps: int,
    *,
    gpus: Sequence[GpuSample],
    session_id: str,
    log: SpeedLog | None = None,
    history: Sequence[ReplyRecord] = (),
    progress: ProgressFn | None = None,
) -> list[BenchResult]:
    """Greedy generation with and without ``found``'s draft (``tgN-gen`` / ``tgN-draft``) on one loaded
    target; the draft rows carry the acceptance rate, the speedup and whether the tokens matched."""
    draft = found.spec.draft
    if not draft.active:
        raise ValueError("bench_draft needs a LoadSpec with a draft")
    n_ctx = max(n_gens) + DRAFT_CTX_MARGIN
    check_context(found, n_ctx)
    prepared = place_resolved(found, gpus, min_ctx=n_ctx)
    backend = prepared.build()
    model = backend.load()
    session = Session(backend, prepared, kind="bench", record=False)  # bench rows are logged below
    info = backend.capabilities.draft
    assert info is not None  # a drafted spec builds a drafted backend
    results: list[BenchResult] = []
    try:
        for n_gen in n_gens:
            samples: dict[str, list[int]] = {"gen": [], "draft": []}
            acceptance: list[float] = []
            texts: dict[str, list[int]] = {}
            timed_generation(session, 8, plain=True)  # warm-up, as llama-bench does
            for rep in range(reps):
                for variant in ("gen", "draft"):
                    ns, tokens, acc, depth = timed_generation(session, n_gen, plain=variant == "gen")
                    samples[variant].append(ns)
                    texts.setdefault(variant, tokens)
                    if acc is not None:
                        acceptance.append(acc)
                if progress is not None:
                    progress(f"{model.name} tg{n_gen} with and without {info.name}: {rep + 1}/{reps}")
            for variant in ("gen", "draft"):
                # Generation starts after the prompt: at that depth, not at llama-bench's tg depth 0.
                record = make_bench_record(model, prepared.config, session_id, n_prompt=0, n_gen=n_gen,
                                           n_depth=depth, samples_ns=samples[variant],
                                           model_id=prepared.model_id)
                record.test = f"tg{n_gen}-{variant} @ d{depth}"
                if variant == "draft":  # the loaded draft's id, as chat and race record it
                    record.draft_model, record.draft_k = info.name, info.k
                if log is not None:
                    log.append(record)
                result = compare(record, history)
                if variant == "draft" and acceptance:
                    result.extra["acceptance_rate"] = sum(acceptance) / len(acceptance)
                results.append(result)
            drafted = results[-1]
            # One definition (tokrace.speedup): the median of the interleaved pairs' ratios, with spread.
            speedup = paired_speedup([n_gen * 1e9 / ns for ns in samples["gen"]],
                                     [n_gen * 1e9 / ns for ns in samples["draft"]])
            drafted.extra.update(speedup.to_json() if speedup is not None else {"speedup": None})
            # Greedy decoding with a draft must produce the plain tokens; say so if it did not.
            drafted.extra["same_tokens"] = texts["gen"] == texts["draft"]
    finally:
        backend.unload()
    return results
