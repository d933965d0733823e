"""Draft proposers for speculative decoding, and the check that a draft model can serve a target.

A drafter proposes up to k next tokens for a context (prompt + reply so far); the target verifies them
(``backends.speculative``). Two kinds:

- ``ModelDrafter``: a small model sharing the target's vocabulary, proposing greedily. It keeps its
  own KV cache in step with the accepted prefix: on each call, tokens past the longest common prefix
  with the context (rejected proposals) are removed from its cache before it evaluates what is new.
- ``PromptLookupDrafter``: n-gram lookup in the context itself (no second model): the tokens that
  followed the most recent earlier occurrence of the context's last n tokens. Cheap and good when the
  reply copies from the prompt (code editing, quoting).

Both are deterministic, so "sample from the target and accept while it matches the draft" is exactly
standard speculative sampling (accept with probability min(1, p/q) with q a point mass = p(draft)).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import llama_cpp
import numpy as np

from tokrace.backends.base import CancelToken, LoadConfig
from tokrace.backends.llama_cpp_backend import LlamaCppBackend
from tokrace.backends.token_batch import TokenBatch
from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.gguf_meta import GGUFInfo, read_gguf_info


def vocab_mismatch(target: GGUFInfo, draft: GGUFInfo) -> str | None:
    """Why ``draft`` cannot draft for ``target`` (``None`` when the vocabularies match).

    Token ids pass between the two models unchanged, so the token tables must be identical: same
    count and same sha256 of the token list (``GGUFInfo.vocab_hash``). The TUI's draft picker uses
    this to list only usable drafts."""
    if not target.vocab_hash or not draft.vocab_hash:
        return "one of the files has no token list in its GGUF metadata"
    if target.n_vocab != draft.n_vocab:
        return f"the draft has {draft.n_vocab} tokens, the target {target.n_vocab}"
    if target.vocab_hash != draft.vocab_hash:
        return (f"same token count ({target.n_vocab}) but a different token table"
                f" (hash {draft.vocab_hash[:12]} vs {target.vocab_hash[:12]})")
    return None


def check_draft_path(target_path: str | Path, draft_path: str | Path) -> None:
    """Raise the one-line ``TokraceError`` when the draft's vocabulary differs (reads headers only)."""
    why = vocab_mismatch(read_gguf_info(target_path), read_gguf_info(draft_path))
    if why is not None:
        raise TokraceError(
            f"{os.path.basename(str(draft_path))} cannot draft for {os.path.basename(str(target_path))}:"
            f" {why}; pick a draft model from the same family (same tokenizer)", kind="draft"
        )


class Drafter(ABC):
    """Proposes tokens for the target to verify."""

    kind: Literal["draft model", "prompt lookup"]
    """What drafts (shown to the user)."""

    @property
    @abstractmethod
    def label(self) -> str:
        """What drafts, for the UI and ``--json`` (a model name, or ``prompt lookup``)."""

    def check(self, target: LlamaCppBackend) -> None:  # noqa: B027 - optional hook
        """Raise ``TokraceError`` when this drafter cannot serve ``target`` (before any weights load)."""

    def load(self) -> None:  # noqa: B027 - optional hook
        """Load whatever the drafter needs."""

    @abstractmethod
    def prefill(self, prompt_tokens: Sequence[int], cancel: CancelToken) -> None:
        """A new reply starts from ``prompt_tokens`` (evaluated during the prompt phase)."""

    @abstractmethod
    def propose(self, context: Sequence[int], k: int, p_min: float = 0.0) -> list[int]:
        """Up to ``k`` tokens likely to follow ``context`` (may be fewer, or none). ``p_min``: a drafter
        that knows its confidence stops before a token it gives less than that probability."""

    def memory_bytes(self) -> int:
        """Memory the drafter holds (model weights; 0 for prompt lookup)."""
        return 0

    def reset(self) -> None:  # noqa: B027 - optional hook
        """Forget cached conversation state."""

    def unload(self) -> None:  # noqa: B027 - optional hook
        """Free what ``load`` took."""


P_MIN_TOP_K = 10
"""Candidates the draft's confidence is computed over: llama.cpp's draft sampler is top-k 10, and
``--draft-p-min`` compares the first candidate's probability after it (``common/speculative.cpp``)."""


def top_probability(logits: np.ndarray, top_k: int = P_MIN_TOP_K) -> float:
    """The likeliest token's probability among the ``top_k`` likeliest (softmax over those logits), as
    llama.cpp's draft sampler reports it for ``--draft-p-min``. ``logits``: one row, shape (n_vocab,)."""
    top = np.partition(logits, -top_k)[-top_k:] if logits.shape[0] > top_k else logits
    top = top.astype(np.float64)
    return float(1.0 / np.exp(top - top.max()).sum())


TAIL_MAX = 64
"""The longest catch-up ``ModelDrafter.propose`` decodes through its prebuilt batch."""


class ModelDrafter(Drafter):
    """A small model proposing its greedy continuation, with a KV cache that follows the target's."""

    kind: Literal["draft model", "prompt lookup"] = "draft model"

    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self.backend = LlamaCppBackend(config)
        self._synced = 0
        """Leading tokens of the draft's cache known to equal the context: only what lies past them
        needs comparing, so a step costs O(k) Python work, not O(context)."""
        self._n_vocab = 0
        self._tail: TokenBatch | None = None
        """The catch-up after a step (the last proposal and the target's bonus token, or what it
        sampled instead): a prebuilt batch, cheaper than ``Llama.eval``."""

    @property
    def label(self) -> str:
        return self.config.name or os.path.basename(self.config.path)

    def check(self, target: LlamaCppBackend) -> None:
        check_draft_path(target.config.path, self.config.path)

    def load(self) -> None:
        if self.backend._llama is None:
            self.backend.load()
        self._n_vocab = self.backend.llama.n_vocab()
        if self._tail is None:
            self._tail = TokenBatch(TAIL_MAX)

    def memory_bytes(self) -> int:
        return self.backend.model.size_bytes or 0  # a local file: always known

    def prefill(self, prompt_tokens: Sequence[int], cancel: CancelToken) -> None:
        tokens = list(prompt_tokens)
        reused = self.backend.reuse_prefix(tokens)
        self.backend.evaluate_prompt(tokens[reused:], cancel)
        self._synced = len(tokens)

    def propose(self, context: Sequence[int], k: int, p_min: float = 0.0) -> list[int]:
        """The draft's greedy continuation, up to ``k`` tokens; with ``p_min`` > 0 it stops before the
        first token whose ``top_probability`` is below ``p_min`` (llama.cpp's ``--draft-p-min``), so a
        step may propose nothing."""
        llama = self.backend.llama
        # Roll back to the longest common prefix: the tail of our cache may hold proposals the target
        # rejected (and, after full acceptance, lacks the target's bonus token).
        limit = min(llama.n_tokens, len(context) - 1)  # re-evaluate ≥ 1 token: we need its logits
        n = min(self._synced, limit)  # (a context that did not grow since the last call: its last token)
        while n < limit and llama.input_ids[n] == context[n]:
            n += 1
        if n < llama.n_tokens:
            if not llama._ctx.kv_cache_seq_rm(0, n, -1):
                raise RuntimeError("the draft's KV cache refused a partial removal")
            llama.n_tokens = n
        k = min(k, self.backend.model.n_ctx - len(context) - 1)
        if k <= 0:
            return []
        tail = context[n:]
        if self._tail is not None and len(tail) <= self._tail.n_max:
            self._tail.decode(llama, tail, all_logits=False)
        else:  # a long catch-up (the first step after a prompt the prefill did not see)
            llama.eval(tail)
        self._synced = len(context)
        vocab = llama._model.vocab
        out: list[int] = []
        while True:
            if p_min > 0.0:
                row = self.backend.logits_row()
                if top_probability(row) < p_min:
                    return out
                token = int(row.argmax())
            else:
                token = self.backend.greedy_token()  # argmax of the last position's logits
            out.append(token)
            # Nothing follows an end-of-generation token; the last proposal need not be evaluated
            # (the next call evaluates it if the target accepts it).
            if len(out) >= k or llama_cpp.llama_vocab_is_eog(vocab, token):
                return out
            self.backend.decode_one(token)  # llama.eval([token]) without its per-call Python

    def reset(self) -> None:
        self.backend.reset()
        self._synced = 0

    def unload(self) -> None:
        self.backend.unload()
        if self._tail is not None:
            self._tail.close()
            self._tail = None


class PromptLookupDrafter(Drafter):
    """N-gram lookup: propose what followed the most recent earlier occurrence of the last n tokens."""

    kind: Literal["draft model", "prompt lookup"] = "prompt lookup"

    def __init__(self, max_ngram: int = 3, min_ngram: int = 2) -> None:
        # min_ngram 2 by measurement (bench/speculative.py, SmolLM2 code edit): single-token matches
        # propose mostly wrong continuations, and each wasted draft widens the verification batch.
        if not 1 <= min_ngram <= max_ngram:
            raise ValueError("need 1 <= min_ngram <= max_ngram")
        self.max_ngram = max_ngram
        self.min_ngram = min_ngram
        # n-gram → position right after its most recent occurrence; built incrementally, since
        # within a reply the context only grows.
        self._next_after: dict[tuple[int, ...], int] = {}
        self._indexed = 0

    @property
    def label(self) -> str:
        return "prompt lookup"

    def prefill(self, prompt_tokens: Sequence[int], cancel: CancelToken) -> None:
        self._next_after.clear()
        self._indexed = 0

    def _index(self, context: Sequence[int]) -> None:
        if len(context) < self._indexed:  # not a continuation of what we indexed: start over
            self._next_after.clear()
            self._indexed = 0
        for j in range(max(self._indexed, 1), len(context)):
            for n in range(self.min_ngram, min(self.max_ngram, j) + 1):
                self._next_after[tuple(context[j - n: j])] = j
        self._indexed = len(context)

    def propose(self, context: Sequence[int], k: int, p_min: float = 0.0) -> list[int]:
        # Index only positions with a continuation: the context's own last n-gram must not match
        # itself.
        self._index(context)
        for n in range(min(self.max_ngram, len(context)), self.min_ngram - 1, -1):
            at = self._next_after.get(tuple(context[len(context) - n:]))
            if at is not None:
                return list(context[at: at + k])
        return []
