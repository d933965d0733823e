"""Speculative decoding: a drafter proposes k tokens, the target verifies them in one batch.

Each step decodes ``[pending, d1 … dk]`` on the target as one ``llama_decode`` batch that asks for
logits at exactly those k + 1 positions (our own ``llama_batch``; the target keeps ``logits_all=False``),
so memory stays O(k × n_vocab), where llama-cpp-python's built-in ``draft_model`` path needs
``logits_all=True`` (n_ctx × n_vocab floats). Then, position by position, the target's own sampler
chain samples a token from that position's logits; while it equals the draft's token the next position
is valid too, so we go on; the first token that differs (or the bonus token after the last draft) ends
the step. The target's cache then drops the rejected positions (``llama_memory_seq_rm``) and the
drafter rolls its own cache back on its next call.

Why "sample from the target and accept while it matches" rather than accept-with-min(1, p/q) plus a
residual: our drafters are deterministic (greedy draft model, prompt lookup), for which the two rules
are the same (q is a point mass, so min(1, p/q) = p(d) and the residual is p without d), and this
one needs no explicit p or q: the target's full sampler chain (penalties, top-k/p, min-p,
temperature) runs unchanged, consuming its RNG once per emitted token exactly as plain decoding does.
So the output distribution is the target's, and with a seed the reply is the same as without a draft
(greedy replies are identical token for token; the tests check both).

Speed is measured from the token events (one ``TokenGenerated`` per token, timestamped as it is
sampled), never from llama.cpp's counters, which book verification batches as prompt evaluation.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import llama_cpp

from tokrace.backends.base import (
    MAX_DRAFT_K,
    Backend,
    CancelToken,
    Capabilities,
    ChatMessage,
    DraftInfo,
    GenerationParams,
    LoadedModel,
)
from tokrace.backends.chat_template import RenderedPrompt
from tokrace.backends.draft_compat import Drafter, ModelDrafter
from tokrace.backends.events import (
    DraftStep,
    GenerationFinished,
    PromptProcessed,
    StopReason,
    StreamEvent,
    TokenGenerated,
)
from tokrace.backends.llama_cpp_backend import LlamaCppBackend
from tokrace.backends.llama_open import PromptAborted, llama_perf
from tokrace.backends.meter import ReplyStats
from tokrace.backends.textstream import TextAssembler
from tokrace.backends.token_batch import TokenBatch
from tokrace.model_registry.errors import TokraceError

DEFAULT_K = 4
"""Draft length by default, by measurement (``bench/speculative.py``, 2 shared cores): on a 100%-
acceptance pair (target 35× the draft's cost) k = 2/4/8 gave 2.3/3.1/4.3×, but prompt lookup on a real
code edit (~60% acceptance) was best at k = 4 (1.0–1.1×; k = 8: 0.9–1.0×): wasted drafts widen every
verification batch. 4 is the safe default; ``adaptive`` grows it while drafts keep being accepted."""
MAX_K = MAX_DRAFT_K


class AdaptiveK:
    """Draft length that follows acceptance: +1 after a fully accepted step (up to ``k_max``),
    −1 after a step that kept less than half of its draft (down to 1). A rejected token costs a
    wasted draft decode and a wider verification batch; an accepted one saves a target decode."""

    def __init__(self, k_max: int) -> None:
        self.k_max = k_max
        self.k = k_max

    def update(self, drafted: int, accepted: int) -> int:
        if drafted > 0:
            if accepted >= drafted:
                self.k = min(self.k + 1, self.k_max)
            elif accepted * 2 < drafted:
                self.k = max(self.k - 1, 1)
        return self.k


@dataclass(slots=True)
class _Reply:
    """One reply's mutable state."""

    assembler: TextAssembler
    context: list[int]
    max_tokens: int
    n_ctx: int
    n_generated: int = 0
    reason: StopReason = "length"
    notice: str | None = None
    error: str | None = None
    done: bool = False
    notices: list[str] = field(default_factory=list)


class SpeculativeBackend(Backend):
    """A target ``LlamaCppBackend`` driven with a ``Drafter``; same events plus ``DraftStep``."""

    name = "llama.cpp + draft"

    def __init__(self, target: LlamaCppBackend, drafter: Drafter, *, k: int = DEFAULT_K,
                 adaptive: bool = False, p_min: float = 0.0) -> None:
        """``p_min``: a draft model stops drafting before a token it gives less than this probability
        (llama.cpp's ``--draft-p-min``, its confidence among its 10 likeliest tokens; 0: always k)."""
        if not 1 <= k <= MAX_K:
            # Settings refuses such a k first; this names it in the words of whichever interface shows it.
            raise TokraceError(f"{{setting:draft_k}} must be from 1 to {MAX_K}, got {k}", kind="settings")
        if not 0.0 <= p_min <= 1.0:
            raise TokraceError(f"{{setting:draft_p_min}} must be a number from 0 to 1, got {p_min:g}",
                               kind="settings")
        self.p_min = p_min
        self.target = target
        self.drafter = drafter
        self.k = k
        self.adaptive = adaptive
        self._batch: TokenBatch | None = None
        self.last_k: int = k
        """The draft length in use at the end of the last reply (changes only with ``adaptive``)."""

    @property
    def capabilities(self) -> Capabilities:
        draft = DraftInfo(self.drafter.label, self.drafter.kind, self.k, self.adaptive, self.p_min)
        return replace(self.target.capabilities, draft=draft)

    @property
    def plain(self) -> Backend:
        return self.target

    # -- loading -----------------------------------------------------------------------------------
    def load(self) -> LoadedModel:
        # Refuse a mismatched draft from the file headers, before loading any weights.
        self.drafter.check(self.target)
        model = self.target.model if self.target._llama is not None else self.target.load()
        self.drafter.load()
        self._batch = TokenBatch(MAX_K + 1)
        return model

    @property
    def model(self) -> LoadedModel:
        return self.target.model

    @property
    def draft_model(self) -> LoadedModel | None:
        """The draft model, when the drafter is one (for the UI: name, size)."""
        return self.drafter.backend.model if isinstance(self.drafter, ModelDrafter) else None

    def unload(self) -> None:
        self.drafter.unload()
        self.target.unload()
        if self._batch is not None:
            self._batch.close()
            self._batch = None

    def reset(self) -> None:
        self.target.reset()
        self.drafter.reset()

    def draft_summary(self, stats: ReplyStats) -> dict[str, Any]:
        """The ``draft`` object of ``tokrace chat --json`` and the reply record."""
        return {
            "model": self.drafter.label,
            "kind": self.drafter.kind,
            "k": self.k,
            "adaptive": self.adaptive,
            "k_last": self.last_k,
            "p_min": self.p_min,
            "drafted": stats.drafted,
            "accepted": stats.accepted,
            "acceptance_rate": stats.acceptance_rate,
            "acceptance_rate_label": "accepted ÷ drafted",
            "steps": stats.draft_steps,
            "mean_accepted_per_step": stats.accepted / stats.draft_steps if stats.draft_steps else None,
            "memory_bytes": self.drafter.memory_bytes(),
        }

    # -- generation --------------------------------------------------------------------------------
    def stream_chat(self, messages: Sequence[ChatMessage], params: GenerationParams,
                    cancel: CancelToken | None = None) -> Iterator[StreamEvent]:
        # Rendered and tokenized exactly as the target does it (message text is never special tokens).
        rendered = self.target.prompt_format.render(messages)
        with self.target.generation_lock:
            yield from self._generate(rendered, params, cancel or CancelToken(),
                                      (*rendered.stops, *self.target.turn_end_stops()))

    def stream_prompt(self, prompt: str, params: GenerationParams, cancel: CancelToken | None = None,
                      *, stops: Sequence[str] = ()) -> Iterator[StreamEvent]:
        """Generate from raw prompt text (no chat template)."""
        with self.target.generation_lock:
            yield from self._generate(prompt, params, cancel or CancelToken(), stops)

    def _decode(self, tokens: Sequence[int]) -> None:
        """Decode ``tokens`` after the target's cache, asking logits for every one of them. The cache
        holds exactly ``llama.n_tokens`` positions here (each step trims what it rejected)."""
        assert self._batch is not None, "load() first"
        self._batch.decode(self.target.llama, tokens, all_logits=True)

    def _take(self, r: _Reply, token: int, t: float, drafted: bool, n_cached: int) -> TokenGenerated | None:
        """Account one sampled token (``n_cached``: tokens in the target's cache before it, as plain
        decoding would have it). Sets ``r.done`` when the reply ends; ``None`` for end-of-generation."""
        data, ends = self.target.piece(token)
        if ends:
            r.reason, r.done = "stop", True
            return None
        event = TokenGenerated(r.n_generated, token, r.assembler.push(data), t, drafted)
        r.n_generated += 1
        r.context.append(token)
        if r.assembler.stopped_by is not None:
            r.reason, r.done = "stop", True
        elif r.n_generated >= r.max_tokens:
            r.done = True
        elif n_cached + 1 >= r.n_ctx:  # the same limit as plain decoding
            r.notice = f"the context ({r.n_ctx} tokens) is full: {{action:new_chat}}"
            r.reason, r.done = "context", True
        return event

    def _draft_failed(self, r: _Reply, err: BaseException) -> None:
        r.notices.append(
            f"the draft ({self.drafter.label}) failed mid-reply ({type(err).__name__}: {err});"
            " the rest of the reply was decoded without it"
        )
        # Its cache may be half-updated: forget it (the next reply re-evaluates the prompt). We are
        # already falling back, so a failure here changes nothing.
        with contextlib.suppress(Exception):
            self.drafter.reset()

    def _generate(self, prompt: str | RenderedPrompt, params: GenerationParams, cancel: CancelToken,
                  stops: Sequence[str]) -> Iterator[StreamEvent]:
        target = self.target
        llama, model = target.llama, target.model
        tokens, reused, opening = target.open_request(prompt, params, self.capabilities.draft)
        yield from opening
        if reused is None:
            return
        assert llama._sampler is not None  # open_request built it
        sampler, ctx = llama._sampler.sampler, llama._ctx.ctx
        # Greedy: argmax of each position's logits, exactly what the chain would pick (and what plain
        # decoding picks), without building an n_vocab candidate array per position.
        greedy = target.greedy_token if target.is_greedy(params) else None
        r = _Reply(TextAssembler([*stops, *params.stop]), list(tokens), params.max_tokens, model.n_ctx)
        r.notices += [n for n in (target.take_load_notice(),
                                  prompt.notice if isinstance(prompt, RenderedPrompt) else None) if n]
        k_now = AdaptiveK(self.k) if self.adaptive else None
        drafting = True
        try:
            t0 = time.perf_counter()
            target.evaluate_prompt(tokens[reused:], cancel)
            # The draft reads the prompt too; like llama.cpp's speculative example, that time is part
            # of prompt processing (the cost of drafting is visible there and in TTFT).
            try:
                self.drafter.prefill(tokens, cancel)
            except PromptAborted:
                raise
            except Exception as err:  # any draft failure → plain decoding
                drafting = False
                self._draft_failed(r, err)
            t1 = time.perf_counter()
            yield PromptProcessed(t1, len(tokens) - reused, t1 - t0)
            if cancel.cancelled:
                raise PromptAborted
            first = greedy(-1) if greedy else llama_cpp.llama_sampler_sample(sampler, ctx, -1)
            event = self._take(r, first, time.perf_counter(), False, llama.n_tokens)
            if event is not None:
                yield event
            while not r.done:
                if cancel.cancelled:
                    r.reason = "cancelled"
                    break
                n0 = llama.n_tokens
                k = k_now.k if k_now is not None else self.k
                k = max(0, min(k, r.max_tokens - r.n_generated - 1, r.n_ctx - n0 - 2))
                draft: list[int] = []
                if drafting and k > 0:
                    try:
                        draft = (self.drafter.propose(r.context, k, self.p_min) if self.p_min
                                 else self.drafter.propose(r.context, k))[:k]
                    except Exception as err:  # any draft failure → plain decoding
                        drafting = False
                        self._draft_failed(r, err)
                self._decode([r.context[-1], *draft])
                picks = target.greedy_tokens(len(draft) + 1) if greedy else None
                accepted = 0
                for i in range(len(draft) + 1):
                    if i and cancel.cancelled:
                        r.reason, r.done = "cancelled", True
                        break
                    token = picks[i] if picks is not None else llama_cpp.llama_sampler_sample(sampler, ctx, i)
                    t = time.perf_counter()
                    is_draft = i < len(draft) and token == draft[i]
                    event = self._take(r, token, t, is_draft, n0 + i + 1)
                    if event is not None:
                        yield event
                    if r.done or not is_draft:
                        break
                    accepted += 1
                # Keep the pending token and the accepted drafts; drop the rejected positions.
                keep = n0 + 1 + accepted
                if llama.n_tokens > keep:
                    llama._ctx.kv_cache_seq_rm(0, keep, -1)
                    llama.n_tokens = keep
                if draft:
                    yield DraftStep(time.perf_counter(), len(draft), accepted)
                    if k_now is not None:
                        k_now.update(len(draft), accepted)
        except PromptAborted:
            r.reason = "cancelled"
        except TokraceError as err:
            r.reason, r.error = "error", err.template
        except RuntimeError as err:  # llama_decode failing mid-reply (e.g. out of memory)
            r.reason, r.error = "error", f"llama.cpp failed mid-reply ({err})"
        self.last_k = k_now.k if k_now is not None else self.k
        r.assembler.finish()
        if r.n_generated == 0 and r.reason == "stop":
            r.notices.append(f"the model ended its reply at once (0 tokens) with {model.template};"
                             " a base model may need plain completion")
        if r.notice:
            r.notices.append(r.notice)
        yield GenerationFinished(
            time.perf_counter(), r.reason, r.assembler.text, r.n_generated, error=r.error,
            notice="; ".join(r.notices) or None, llama_perf=llama_perf(llama._ctx.ctx),
        )
