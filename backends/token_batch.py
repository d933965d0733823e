"""A reusable ``llama_batch`` for the short decodes of speculative decoding (k + 1 verification tokens,
the draft's catch-up after a step), built once instead of per call as llama-cpp-python's ``Llama.eval``
does (with its KV trim and numpy copies: ~35 µs a call more, measured with ``bench/speculative.py``)."""

from __future__ import annotations

from collections.abc import Sequence

import llama_cpp
from llama_cpp import Llama
from llama_cpp._internals import LlamaBatch


class TokenBatch:
    """Up to ``n_max`` tokens of sequence 0. ``decode(llama, tokens, all_logits=…)`` appends ``tokens``
    after ``llama``'s cache (positions ``llama.n_tokens`` on) and keeps its ``n_tokens`` / ``input_ids``
    in step; logits for every token (``all_logits``) or for the last only. Raises ``ValueError`` for
    more than ``n_max`` tokens, ``RuntimeError`` when ``llama_decode`` fails."""

    def __init__(self, n_max: int) -> None:
        self.n_max = n_max
        self._batch: LlamaBatch | None = LlamaBatch(n_tokens=n_max, embd=0, n_seq_max=1, verbose=False)

    def decode(self, llama: Llama, tokens: Sequence[int], *, all_logits: bool) -> None:
        n = len(tokens)
        if not 0 < n <= self.n_max:
            raise ValueError(f"{n} tokens for a batch of at most {self.n_max}")
        assert self._batch is not None, "closed"
        batch = self._batch.batch
        n0 = llama.n_tokens
        for i, token in enumerate(tokens):
            batch.token[i] = token
            batch.pos[i] = n0 + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = all_logits or i == n - 1
        batch.n_tokens = n
        rc = llama_cpp.llama_decode(llama._ctx.ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        llama.input_ids[n0: n0 + n] = tokens
        llama.n_tokens = n0 + n

    def close(self) -> None:
        if self._batch is not None:
            self._batch.close()
            self._batch = None
