"""``tokrace bench MODEL --draft D``: what a draft model buys, measured like the other bench tests.

llama-bench's tg decodes random tokens, which a draft cannot predict, so drafted decoding is measured on
real text: greedy generation of ``n_gen`` tokens from a fixed prompt, once through the plain target
(``tg{n}-gen``) and once with the draft (``tg{n}-draft``), on the same loaded model, alternating
repetitions so noise hits both alike. Both are timed from the first generated token to the last, as
the chat's generation tok/s is, and recorded as tg tests of ``n_gen`` tokens (a sample's duration is
scaled from the ``n − 1`` measured intervals to ``n``). Greedy output is the same with and without
the draft, so the two rows time the very same tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from backends.base import Backend, GenerationParams, LoadConfig
from backends.meter import SpeedMeter
from model_registry.errors import TokraceError
from speedlog.bench import BenchResult, compare
from speedlog.record import ReplyRecord, make_bench_record

BENCH_PROMPT = (
    "Write a detailed, step-by-step explanation of how a refrigerator keeps food cold, "
    "covering the compressor, the condenser, the expansion valve and the evaporator."
)


def _timed_generation(backend: Backend, n_gen: int) -> tuple[int, list[int], float | None]:
    """(ns for n_gen tokens, token ids, acceptance) of one greedy generation from a fresh context."""
    backend.reset()
    meter = SpeedMeter()
    tokens: list[int] = []
    for event in backend.stream_prompt(BENCH_PROMPT, GenerationParams(max_tokens=n_gen, temperature=0.0)):  # type: ignore[attr-defined]
        meter.observe(event)
        token_id = getattr(event, "token_id", None)
        if token_id is not None:
            tokens.append(token_id)
    s = meter.stats
    if s.gen_s is None or s.completion_tokens < 2:
        raise TokraceError("the model ended its reply at once; bench --draft needs a model that generates")
    per_interval = s.gen_s / (s.completion_tokens - 1)
    return int(per_interval * n_gen * 1e9), tokens, s.acceptance_rate


def bench_draft(
    path: str,
    draft: str,
    n_gens: Sequence[int],
    reps: int,
    *,
    session_id: str,
    threads: int | None = None,
    k: int | None = None,
    model_id: str | None = None,
    log: Any = None,
    history: Sequence[ReplyRecord] = (),
    progress: Callable[[str], None] | None = None,
) -> list[BenchResult]:
    from backends.draft_setup import build_drafted_backend

    config = LoadConfig(path=path, n_ctx=max(n_gens) + 256, n_threads=threads)
    backend = build_drafted_backend(config, draft, k=k)
    model = backend.load()
    plain = backend.target  # type: ignore[attr-defined]
    results: list[BenchResult] = []
    try:
        for n_gen in n_gens:
            samples: dict[str, list[int]] = {"gen": [], "draft": []}
            acceptance: list[float] = []
            texts: dict[str, list[int]] = {}
            _timed_generation(plain, 8)  # warm-up, as llama-bench does
            for rep in range(reps):
                for variant, be in (("gen", plain), ("draft", backend)):
                    ns, tokens, acc = _timed_generation(be, n_gen)
                    samples[variant].append(ns)
                    texts.setdefault(variant, tokens)
                    if acc is not None:
                        acceptance.append(acc)
                if progress is not None:
                    progress(f"{model.name} tg{n_gen} with and without {draft}: {rep + 1}/{reps}")
            for variant in ("gen", "draft"):
                record = make_bench_record(model, config, session_id, n_prompt=0, n_gen=n_gen,
                                           samples_ns=samples[variant], model_id=model_id)
                record.test = f"tg{n_gen}-{variant}"
                if variant == "draft":
                    record.draft_model = draft
                    record.draft_k = getattr(backend, "k", None)
                if log is not None:
                    log.append(record)
                result = compare(record, history)
                if variant == "draft" and acceptance:
                    result.extra["acceptance_rate"] = sum(acceptance) / len(acceptance)
                results.append(result)
            gen, drafted = results[-2], results[-1]
            drafted.extra["speedup"] = drafted.avg_ts / gen.avg_ts if gen.avg_ts else None
            # Greedy decoding with a draft must produce the plain tokens; say so if it did not.
            drafted.extra["same_tokens"] = texts["gen"] == texts["draft"]
    finally:
        backend.unload()
    return results
