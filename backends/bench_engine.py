"""llama-bench's pp and tg tests on the engine: decode token batches into a cleared KV cache and time it.

The definitions are llama-bench's (``tools/llama-bench/llama-bench.cpp``):

- ``pp<N>``: clear the KV cache, then decode N tokens (BOS first when the vocab adds one, the rest
  random) in chunks of ``n_batch``, then synchronize. Time the whole; tok/s = N ÷ time.
- ``tg<N>``: clear the KV cache, then decode one token at a time N times (BOS first, then random
  tokens: no sampling is timed), synchronizing after each. tok/s = N ÷ time.
- One untimed warm-up run first (a whole pp, or a single tg token), then ``reps`` timed repetitions.

We call ``llama_decode`` on the backend's own context (``LlamaCppBackend.llama``) rather than its chat
stream: a chat reply times sampling and detokenizing too, and a random-weight or base model may stop at
its first token, so ``tg`` through the stream would not be llama-bench's ``tg``. What the samples mean
(mean ± sd, history) is the speed log's business (``tokrace.speedlog.bench``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from tokrace.model_registry.errors import TokraceError

if TYPE_CHECKING:
    from tokrace.backends.base import Backend

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

    @classmethod
    def of(cls, backend: Backend) -> LlamaDecodeTarget:
        """The decode target of a loaded in-process llama.cpp backend (``backend.plain``); raises
        ``TokraceError`` for an engine that cannot decode raw token batches (a remote server)."""
        from tokrace.backends.llama_cpp_backend import LlamaCppBackend

        plain = backend.plain
        if not isinstance(plain, LlamaCppBackend):
            raise TokraceError(f"{plain.name} cannot run llama-bench's pp/tg tests: they decode token"
                               " batches in process", kind="usage")
        return cls(plain.llama)

    def reset_perf(self) -> None:
        """Zero llama.cpp's own counters (``llama_perf_context``) before the timed repetitions."""
        self._lib.llama_perf_context_reset(self._ctx)

    def perf(self) -> dict[str, float]:
        """llama.cpp's own counters since ``reset_perf`` (a cross-check of our clock)."""
        from tokrace.backends.llama_open import llama_perf

        return llama_perf(self._ctx)

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
    n_depth: int = 0,
) -> list[int]:
    """Nanoseconds of each repetition of one test (pp when ``n_gen == 0``, tg when ``n_prompt == 0``).

    ``n_depth``: tokens already in the cache when the timed part starts, as llama-bench's ``-d``: before
    each repetition (and the warm-up) the cache is cleared and ``n_depth`` random tokens are decoded,
    untimed; the timed part then starts as at depth 0 (a pp test's first token is BOS, as llama-bench's)."""
    if reps < 1 or n_prompt < 0 or n_gen < 0 or n_depth < 0 or n_prompt + n_gen == 0:
        raise ValueError("need reps ≥ 1, a non-empty test and a depth ≥ 0")
    rng = random.Random(seed)

    def clear() -> None:
        target.clear()
        if n_depth:
            run_pp(target, n_depth, rng)

    if warmup:
        clear()
        if n_prompt:
            run_pp(target, n_prompt, rng)
        if n_gen:
            run_tg(target, 1, rng)
    if before_reps is not None:
        before_reps()
    samples: list[int] = []
    for i in range(reps):
        clear()
        t0 = clock()
        if n_prompt:
            run_pp(target, n_prompt, rng)
        if n_gen:
            run_tg(target, n_gen, rng)
        samples.append(clock() - t0)
        if progress is not None:
            progress(f"repetition {i + 1}/{reps}: {(n_prompt + n_gen) * 1e9 / samples[-1]:.1f} tok/s")
    return samples
