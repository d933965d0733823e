"""The headless bench: llama-bench's pp and tg tests, run through tokrace's own llama.cpp backend.

The definitions are llama-bench's (``tools/llama-bench/llama-bench.cpp``):

- ``pp<N>``: clear the KV cache, then decode N tokens (BOS first when the vocab adds one, the rest
  random) in chunks of ``n_batch``, then synchronize. Time the whole; tok/s = N ÷ time.
- ``tg<N>``: clear the KV cache, then decode one token at a time N times (BOS first, then random
  tokens: no sampling is timed), synchronizing after each. tok/s = N ÷ time.
- One untimed warm-up run first (a whole pp, or a single tg token), then ``reps`` timed repetitions;
  the result is the mean ± sample sd of the per-repetition tok/s (``avg_ts``/``stddev_ts``).

We call ``llama_decode`` on the backend's own context (``LlamaCppBackend.llama``) rather than its chat
stream: a chat reply times sampling and detokenizing too, and a random-weight or base model may stop at
its first token, so ``tg`` through the stream would not be llama-bench's ``tg``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from speedlog.record import ReplyRecord
from speedlog.stats import Comparison, compare_with_history, mean, stdev

ProgressFn = Callable[[str], None]


class DecodeTarget(Protocol):
    """What a bench needs from an engine: decode token batches into a clearable KV cache."""

    n_vocab: int
    n_batch: int
    bos: int | None
    """The BOS token when the vocab adds one, else ``None`` (llama-bench then starts at random)."""

    def clear(self) -> None: ...

    def decode(self, tokens: Sequence[int]) -> None:
        """Decode one batch and wait for it to finish (``llama_synchronize``)."""


class LlamaDecodeTarget:
    """``DecodeTarget`` over a llama-cpp-python ``Llama`` (what ``LlamaCppBackend.llama`` returns)."""

    def __init__(self, llama: Any) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self._llama = llama
        self._ctx = llama._ctx.ctx
        vocab = llama_cpp.llama_model_get_vocab(llama._model.model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(vocab))
        self.n_batch = int(llama.n_batch)
        self.bos = int(llama_cpp.llama_vocab_bos(vocab)) if llama_cpp.llama_vocab_get_add_bos(vocab) else None
        self._arrays: dict[int, Any] = {}

    def clear(self) -> None:
        self._lib.llama_memory_clear(self._lib.llama_get_memory(self._ctx), False)
        # Keep llama-cpp-python's own bookkeeping in step with the cleared cache.
        self._llama.n_tokens = 0

    def decode(self, tokens: Sequence[int]) -> None:
        n = len(tokens)
        array = self._arrays.get(n)
        if array is None:
            array = self._arrays[n] = (self._lib.llama_token * n)()
        array[:] = tokens
        rc = self._lib.llama_decode(self._ctx, self._lib.llama_batch_get_one(array, n))
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        self._lib.llama_synchronize(self._ctx)


def run_pp(target: DecodeTarget, n_prompt: int, rng: random.Random) -> None:
    done = 0
    while done < n_prompt:
        n = min(n_prompt - done, target.n_batch)
        first = target.bos if done == 0 and target.bos is not None else rng.randrange(target.n_vocab)
        target.decode([first, *(rng.randrange(target.n_vocab) for _ in range(n - 1))])
        done += n


def run_tg(target: DecodeTarget, n_gen: int, rng: random.Random) -> None:
    token = target.bos if target.bos is not None else rng.randrange(target.n_vocab)
    batch = [token]
    for _ in range(n_gen):
        target.decode(batch)
        batch[0] = rng.randrange(target.n_vocab)


def time_test(
    target: DecodeTarget,
    n_prompt: int,
    n_gen: int,
    reps: int,
    *,
    warmup: bool = True,
    seed: int = 0,
    clock: Callable[[], int] = time.perf_counter_ns,
    progress: ProgressFn | None = None,
    before_reps: Callable[[], None] | None = None,
) -> list[int]:
    """Nanoseconds of each repetition of one test (pp when ``n_gen == 0``, tg when ``n_prompt == 0``)."""
    if reps < 1 or n_prompt < 0 or n_gen < 0 or n_prompt + n_gen == 0:
        raise ValueError("need reps ≥ 1 and a non-empty test")
    rng = random.Random(seed)
    if warmup:
        target.clear()
        if n_prompt:
            run_pp(target, n_prompt, rng)
        if n_gen:
            run_tg(target, 1, rng)
    if before_reps is not None:
        before_reps()
    samples: list[int] = []
    for i in range(reps):
        target.clear()
        t0 = clock()
        if n_prompt:
            run_pp(target, n_prompt, rng)
        if n_gen:
            run_tg(target, n_gen, rng)
        samples.append(clock() - t0)
        if progress is not None:
            progress(f"repetition {i + 1}/{reps}: {(n_prompt + n_gen) * 1e9 / samples[-1]:.1f} tok/s")
    return samples


@dataclass(slots=True)
class BenchResult:
    """One model × test, in llama-bench's terms, plus tokrace's record and history comparison."""

    record: ReplyRecord
    comparison: Comparison | None = None
    history_runs: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def samples_ts(self) -> list[float]:
        return list(self.record.samples_ts or [])

    @property
    def avg_ts(self) -> float:
        return mean(self.samples_ts)

    @property
    def stddev_ts(self) -> float:
        return stdev(self.samples_ts)

    def to_json(self) -> dict[str, Any]:
        r = self.record
        ns = list(r.samples_ns or [])
        out: dict[str, Any] = {
            "model": r.model,
            "model_filename": r.model_filename,
            "model_type": r.model_type,
            "model_size": r.model_size,
            "model_n_params": r.model_n_params,
            "test": r.test,
            "n_prompt": r.n_prompt,
            "n_gen": r.n_gen,
            "n_threads": r.n_threads,
            "n_batch": r.n_batch,
            "n_gpu_layers": r.n_gpu_layers,
            "split_mode": r.split_mode,
            "tensor_split": "/".join(f"{v:.2f}" for v in r.tensor_split) if r.tensor_split else "0.00",
            "build_commit": r.build_commit,
            "cpu_info": r.cpu_info,
            "gpu_info": ", ".join(r.gpu_info),
            "test_time": r.time,
            "avg_ns": round(mean(ns)),
            "stddev_ns": round(stdev(ns)),
            "avg_ts": self.avg_ts,
            "stddev_ts": self.stddev_ts,
            "samples_ns": ns,
            "samples_ts": self.samples_ts,
        }
        perf = r.llama_perf or {}
        n_perf, t_perf = (perf.get("n_eval"), perf.get("t_eval_ms")) if r.n_gen else (
            perf.get("n_p_eval"), perf.get("t_p_eval_ms"))
        if n_perf and t_perf:
            # Inside llama_decode only, over all repetitions: ours also counts the Python per call.
            out["llama_perf_ts"] = n_perf * 1000.0 / t_perf
        if r.draft_model:
            out["draft_model"], out["draft_k"] = r.draft_model, r.draft_k
        out.update(self.extra)  # bench --draft: acceptance_rate, speedup
        if self.comparison is not None:
            out["history_avg_ts"] = self.comparison.history_mean
            out["history_runs"] = self.history_runs
            out["regression"] = self.comparison.regression
        return out


def settings_key(r: ReplyRecord) -> tuple[Any, ...]:
    """Runs are comparable when the same file ran the same test with the same settings."""
    model = r.model_sha256 or f"{r.model_filename}:{r.model_size}"
    split = tuple(r.tensor_split or ())
    return (model, r.test, r.n_threads, r.n_batch, r.n_gpu_layers, r.split_mode, split, r.backend)


HISTORY_RUNS = 5
"""Compare with at most this many of the latest comparable runs (older ones may predate upgrades)."""


def history_for(record: ReplyRecord, past: Sequence[ReplyRecord]) -> list[ReplyRecord]:
    key = settings_key(record)
    same = [r for r in past if r.kind == "bench" and r.record_id != record.record_id
            and r.session_id != record.session_id and settings_key(r) == key and r.samples_ts]
    return same[-HISTORY_RUNS:]


def compare(record: ReplyRecord, past: Sequence[ReplyRecord]) -> BenchResult:
    runs = history_for(record, past)
    history = [x for r in runs for x in (r.samples_ts or [])]
    return BenchResult(record, compare_with_history(record.samples_ts or [], history), len(runs))


def regression_message(result: BenchResult) -> str | None:
    c = result.comparison
    if c is None or not c.regression:
        return None
    r = result.record
    return (
        f"{r.model} {r.test} is {c.drop:.0%} slower than your history ({c.history_mean:.1f} → "
        f"{c.current_mean:.1f} tok/s, {result.history_runs} earlier run(s), beyond noise); "
        "check for other load on the machine, thermal throttling or a changed build"
    )


def markdown_table(results: Sequence[BenchResult]) -> str:
    """llama-bench's default table: model | size | params | backend | threads | test | t/s."""
    from model_registry.units import format_bytes, format_params

    lines = [
        "| model | size | params | backend | threads | test | t/s |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for res in results:
        r = res.record
        backend = "GPU" if r.gpu_offload and r.n_gpu_layers and r.gpu_info else "CPU"
        test = r.test
        if res.extra.get("speedup"):
            acc = res.extra.get("acceptance_rate")
            test += f" ({res.extra['speedup']:.2f}×" + (f", {acc:.0%} accepted ÷ drafted)" if acc else ")")
        lines.append(
            f"| {r.model_type} | {format_bytes(r.model_size)} | {format_params(r.model_n_params)} | "
            f"{backend} | {r.n_threads} | {test} | {res.avg_ts:.2f} ± {res.stddev_ts:.2f} |"
        )
    return "\n".join(lines) + "\n"


def bench_model(
    path: str,
    tests: Sequence[tuple[int, int]],
    reps: int,
    *,
    session_id: str,
    threads: int | None = None,
    model_id: str | None = None,
    chat_template: str | None = None,
    log: Any = None,
    history: Sequence[ReplyRecord] = (),
    progress: ProgressFn | None = None,
) -> list[BenchResult]:
    """Load ``path`` with tokrace's llama.cpp backend and run each (n_prompt, n_gen) test ``reps`` times.

    Each test is appended to ``log`` (a ``SpeedLog``) as soon as it finishes and compared with
    ``history`` (earlier records).
    """
    import llama_cpp

    from backends.base import LoadConfig
    from backends.llama_cpp_backend import LlamaCppBackend, llama_perf
    from model_registry.errors import TokraceError
    from speedlog.record import make_bench_record

    n_ctx = max(p + g for p, g in tests)
    config = LoadConfig(path=str(path), n_ctx=n_ctx, n_threads=threads, chat_template=chat_template)
    backend = LlamaCppBackend(config)
    model = backend.load()
    results: list[BenchResult] = []
    try:
        if model.n_ctx < n_ctx:
            raise TokraceError(
                f"{model.name} was trained for a context of {model.n_ctx} tokens but the tests need"
                f" {n_ctx}; use smaller -p / -n"
            )
        target = LlamaDecodeTarget(backend.llama)
        for n_prompt, n_gen in tests:
            test = f"pp{n_prompt}" if n_prompt else f"tg{n_gen}"

            def report(msg: str, test: str = test) -> None:
                if progress is not None:
                    progress(f"{model.name} {test}: {msg}")

            ctx = backend.llama._ctx.ctx
            samples = time_test(target, n_prompt, n_gen, reps, progress=report,
                                before_reps=lambda ctx=ctx: llama_cpp.llama_perf_context_reset(ctx))
            record = make_bench_record(
                model, config, session_id, n_prompt=n_prompt, n_gen=n_gen, samples_ns=samples,
                model_id=model_id,
            )
            # llama.cpp's own counters over the timed repetitions: a cross-check of our clock.
            record.llama_perf = llama_perf(ctx)
            if log is not None:
                log.append(record)
            results.append(compare(record, history))
    finally:
        backend.unload()
    return results
