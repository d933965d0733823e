"""llama.cpp in-process through llama-cpp-python, one token event at a time.

We drive ``Llama.eval`` / ``Llama.sample`` ourselves instead of ``create_chat_completion``: that is what
lets every token carry its own timestamp and id (a completion stream yields text chunks, not tokens),
times the prompt evaluation separately, and makes KV-cache reuse between chat turns explicit.

Cancellation: a ``CancelToken`` is checked between tokens; during prompt evaluation llama.cpp's abort
callback watches it too, so a long prompt stops within one graph node. The callback is armed only
around prompt evaluation because ggml calls it once per graph node: during decode that would cost a
Python call per node per token, measurably slowing generation.

Prompts are tokenized by ``prompt_tokens``: special tokens are parsed only in the chat template's own
markup (a message's text stays text), and BOS follows the vocabulary's add-BOS flag. A reply ends at
llama.cpp's end-of-generation tokens and also at the control token the template closes a turn with
(``PromptFormat.turn_end``), even when the metadata does not declare it.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import Llama
from llama_cpp._internals import LlamaBatch

from tokrace.backends import llama_log
from tokrace.backends.base import (
    Backend,
    CancelToken,
    Capabilities,
    ChatMessage,
    DraftInfo,
    GenerationParams,
    LoadConfig,
    LoadedModel,
    default_threads,
)
from tokrace.backends.chat_template import (
    PromptFormat,
    RenderedPrompt,
    choose_format,
    looks_instruction_tuned,
    tolerate_broken_templates_at_load,
)
from tokrace.backends.events import (
    GenerationFinished,
    PromptProcessed,
    RequestStarted,
    StopReason,
    StreamEvent,
    TokenGenerated,
)
from tokrace.backends.llama_open import PromptAborted, llama_perf, open_llama
from tokrace.backends.prompt_tokens import LlamaVocab, tokenize_parts
from tokrace.backends.textstream import TextAssembler
from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.gguf_meta import GGUFInfo, read_gguf_info

llama_log.install()
tolerate_broken_templates_at_load()
_NO_ABORT = llama_cpp.ggml_abort_callback()  # a NULL function pointer


class LlamaCppBackend(Backend):
    name = "llama.cpp"
    CAPABILITIES = Capabilities()

    @property
    def capabilities(self) -> Capabilities:
        return self.CAPABILITIES

    def __init__(self, config: LoadConfig, *, flash_attn: bool | None = None) -> None:
        """``flash_attn``: ``True``/``False`` forces ``config.flash_attn`` to ``"on"``/``"off"``."""
        if flash_attn is not None:
            config = replace(config, flash_attn="on" if flash_attn else "off")
        self.config = config
        self._llama: Llama | None = None
        self._model: LoadedModel | None = None
        self.info: GGUFInfo | None = None
        self._format: PromptFormat | None = None
        self._vocab: LlamaVocab | None = None
        self._turn_end_ids: frozenset[int] = frozenset()
        self._load_notice: str | None = None
        self._cancel: CancelToken | None = None
        # One generation at a time per instance: a cancelled reply still winding down on its thread
        # must finish before the next starts (llama.cpp contexts are not thread-safe).
        self._busy = threading.Lock()
        self._piece_buf = ctypes.create_string_buffer(256)
        self._one: LlamaBatch | None = None
        """A one-token batch, built once per load (``decode_one``)."""
        self._pieces: dict[int, tuple[bytes, bool]] = {}
        """token id → (its bytes, whether it ends the turn), filled as tokens are generated."""
        # Keep a reference: llama.cpp holds only the raw function pointer.
        self._abort_cb = llama_cpp.ggml_abort_callback(self._should_abort)

    # -- loading -----------------------------------------------------------------------------------
    def load(self) -> LoadedModel:
        cfg = self.config
        info = read_gguf_info(cfg.path)  # a missing, non-GGUF or truncated file fails here, clearly
        self.info = info
        n_ctx = cfg.n_ctx
        if info.n_ctx_train and n_ctx > info.n_ctx_train:
            n_ctx = info.n_ctx_train  # llama.cpp would allow it, but quality falls off past training
        n_threads = cfg.n_threads or default_threads()
        n_batch = max(1, min(cfg.n_batch, n_ctx))
        llama, fa_used = open_llama(cfg, n_ctx=n_ctx, n_batch=n_batch, n_threads=n_threads)
        self._llama = llama
        vocab = llama._model

        def text_of(token_id: int | None) -> str:
            return vocab.token_get_text(token_id) if token_id is not None and token_id >= 0 else ""

        def has_token(text: str) -> bool:
            ids = llama.tokenize(text.encode(), add_bos=False, special=True)
            return len(ids) == 1 and text_of(ids[0]) == text

        self._vocab = LlamaVocab(llama)
        self._format = choose_format(
            architecture=info.architecture,
            file_template=info.chat_template,
            override=cfg.chat_template,
            bos=text_of(vocab.token_bos()),
            eos=text_of(vocab.token_eos()),
            has_token=has_token,
            instruction_tuned=looks_instruction_tuned(info.metadata, cfg.path),
        )
        self._turn_end_ids = self._turn_end_tokens(self._format.turn_end)
        self._pieces = {}
        self._one = LlamaBatch(n_tokens=1, embd=0, n_seq_max=1, verbose=False)
        one = self._one.batch
        one.n_tokens, one.n_seq_id[0], one.seq_id[0][0], one.logits[0] = 1, 1, 0, True
        self._load_notice = self._format.warning
        self._model = LoadedModel(
            name=cfg.name or info.name or os.path.basename(cfg.path),
            path=str(cfg.path),
            architecture=info.architecture,
            quantization=info.quantization,
            size_bytes=info.file_size or info.tensors_bytes,
            # What the engine counts (it knows tensor types a lagging gguf package may not).
            n_params=int(llama_cpp.llama_model_n_params(llama._model.model)) or info.n_params,
            n_layers=info.n_layers,
            n_ctx_train=info.n_ctx_train,
            n_ctx=n_ctx,
            n_threads=n_threads,
            template=self._format.label,
            gpu_offload=bool(llama_cpp.llama_supports_gpu_offload()),
            flash_attn=fa_used,
            n_batch=int(llama.context_params.n_batch),
            n_ubatch=int(llama.context_params.n_ubatch),
            type_k=cfg.type_k,
            type_v=cfg.type_v,
        )
        return self._model

    @property
    def flash_attn(self) -> bool:
        """Whether flash attention is in use (as loaded; before ``load()``, whether it will be asked
        for: ``"auto"`` counts as on, which is what llama.cpp picks on CPUs and most GPUs)."""
        if self._model is not None and self._model.flash_attn is not None:
            return self._model.flash_attn == "on"
        return self.config.flash_attn != "off"

    @property
    def model(self) -> LoadedModel:
        if self._model is None:
            raise RuntimeError("load() first")
        return self._model

    @property
    def llama(self) -> Llama:
        if self._llama is None:
            raise RuntimeError("load() first")
        return self._llama

    def unload(self) -> None:
        if self._llama is not None:
            self._llama.close()
            self._llama = None
        if self._one is not None:
            self._one.close()
            self._one = None

    def reset(self) -> None:
        if self._llama is not None:
            self._llama.reset()

    # -- hooks for a backend that drives this one (speculative decoding) ----------------------------
    @property
    def prompt_format(self) -> PromptFormat:
        if self._format is None:
            raise RuntimeError("load() first")
        return self._format

    @property
    def generation_lock(self) -> threading.Lock:
        """Held for the whole of a generation; a driver holds it too, so the two never overlap."""
        return self._busy

    def reuse_prefix(self, tokens: list[int]) -> int:
        """Keep the KV cache of the longest common prefix with ``tokens``; return its length."""
        return self._reuse_prefix(tokens)

    def evaluate_prompt(self, tokens: Sequence[int], cancel: CancelToken) -> None:
        """Evaluate ``tokens`` with the abort callback watching ``cancel``.

        Raises ``PromptAborted`` when cancelled, ``TokraceError`` when llama.cpp fails."""
        self._cancel = cancel
        try:
            self._evaluate_prompt(tokens)
        finally:
            self._cancel = None

    def start_sampler(self, params: GenerationParams) -> None:
        """Seed and build the sampler chain for one reply (what ``stream_chat`` does first)."""
        llama = self.llama
        llama.set_seed(params.seed if params.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED)
        llama._sampler = llama._init_sampler(
            top_k=params.top_k, top_p=params.top_p, min_p=params.min_p,
            temp=params.temperature, repeat_penalty=params.repeat_penalty,
        )

    # -- generation --------------------------------------------------------------------------------
    def _should_abort(self, _data: Any) -> bool:
        return self._cancel is not None and self._cancel.cancelled

    def _arm_abort(self, armed: bool) -> None:
        cb = self._abort_cb if armed else _NO_ABORT
        llama_cpp.llama_set_abort_callback(self.llama._ctx.ctx, cb, None)

    def token_bytes(self, token_id: int) -> bytes:
        vocab = self.llama._model.vocab
        n = llama_cpp.llama_token_to_piece(vocab, token_id, self._piece_buf, 256, 0, False)
        if n < 0:  # buffer too small: -n is the size needed
            self._piece_buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(vocab, token_id, self._piece_buf, -n, 0, False)
        return self._piece_buf.raw[:n]

    def tokenize_prompt(self, prompt: str | RenderedPrompt) -> list[int]:
        """Token ids of a prompt: raw text is all markup (special tokens parsed, as llama.cpp does);
        a rendered chat prompt has its messages' text tokenized as text. BOS per the vocabulary."""
        if self._vocab is None:
            raise RuntimeError("load() first")
        parts = prompt.pieces() if isinstance(prompt, RenderedPrompt) else ((prompt, True),)
        return tokenize_parts(self._vocab, parts)

    def _turn_end_tokens(self, turn_end: str) -> frozenset[int]:
        """The control token the template closes an assistant turn with, when llama.cpp does not
        already count it as end of generation (empty when the turn ends with plain text)."""
        if self._vocab is None or not turn_end.strip():
            return frozenset()
        ids = self._vocab.tokenize(turn_end.lstrip(), special=True)
        if ids and self._vocab.token_attr(ids[0]) & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL:
            return frozenset(ids[:1])
        return frozenset()

    def turn_end_stops(self) -> tuple[str, ...]:
        """A turn terminator that is plain text (first line of the template's turn end), as a stop
        string; '' when it is a control token (``ends_turn`` handles those)."""
        fmt = self.prompt_format
        if self._turn_end_ids or not fmt.turn_end.strip():
            return ()
        first = fmt.turn_end.strip().splitlines()[0].strip()
        return (first,) if len(first) >= 2 else ()

    def take_load_notice(self) -> str | None:
        """What the first reply after load should say about the prompt format (then ``None``)."""
        notice, self._load_notice = self._load_notice, None
        return notice

    def ends_turn(self, token: int) -> bool:
        """End of generation for llama.cpp, or the template's own turn terminator."""
        vocab = self.llama._model.vocab
        return token in self._turn_end_ids or bool(llama_cpp.llama_vocab_is_eog(vocab, token))

    def piece(self, token: int) -> tuple[bytes, bool]:
        """``(token_bytes(token), ends_turn(token))``, each token's computed once per load."""
        found = self._pieces.get(token)
        if found is None:
            found = self._pieces[token] = (self.token_bytes(token), self.ends_turn(token))
        return found

    # -- the per-token path: what runs between two decodes, kept to a few microseconds -------------
    def decode_one(self, token: int) -> None:
        """Decode ``token`` at the next position of the cache: what llama-cpp-python's
        ``eval([token])`` does, without its per-call KV trim, batch rebuild and numpy copies. Keeps
        its ``n_tokens`` / ``input_ids`` in step. Raises ``RuntimeError`` when ``llama_decode`` fails.
        """
        llama, one = self._llama, self._one
        assert llama is not None and one is not None, "load() first"
        n = llama.n_tokens
        batch = one.batch
        batch.token[0] = token
        batch.pos[0] = n
        rc = llama_cpp.llama_decode(llama._ctx.ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        llama.input_ids[n] = token
        llama.n_tokens = n + 1

    def greedy_token(self, i: int = -1) -> int:
        """The highest-logit token at output row ``i`` of the last decode (-1: the last row). The
        same token llama.cpp's greedy sampler picks (the first maximum), without building its
        n_vocab-entry candidate array: ~4 µs instead of ~35 µs for a 49k vocabulary."""
        llama = self.llama
        logits = llama_cpp.llama_get_logits_ith(llama._ctx.ctx, i)
        return int(np.ctypeslib.as_array(logits, shape=(llama._n_vocab,)).argmax())

    def logits_row(self, i: int = -1) -> np.ndarray:
        """The logits of output row ``i`` of the last decode (-1: the last row), shape (n_vocab,), a
        view of llama.cpp's buffer: valid until the next decode."""
        llama = self.llama
        logits = llama_cpp.llama_get_logits_ith(llama._ctx.ctx, i)
        return np.ctypeslib.as_array(logits, shape=(llama._n_vocab,))

    def greedy_tokens(self, n: int) -> list[int]:
        """``greedy_token`` of each of the ``n`` output rows of the last decode, which must have asked
        logits for exactly ``n`` tokens (a verification batch): one argmax over the rows."""
        llama = self.llama
        logits = llama_cpp.llama_get_logits(llama._ctx.ctx)  # rows in batch order
        rows: list[int] = np.ctypeslib.as_array(logits, shape=(n, llama._n_vocab)).argmax(axis=1).tolist()
        return rows

    @staticmethod
    def is_greedy(params: GenerationParams) -> bool:
        """Whether ``params``' sampler chain reduces to argmax (temperature 0, no repeat penalty):
        then ``greedy_token`` samples exactly what the chain would (and the chain keeps no state)."""
        return params.temperature == 0.0 and params.repeat_penalty == 1.0

    def _reuse_prefix(self, tokens: list[int]) -> int:
        """Keep the KV cache of the longest common prefix with what was evaluated last time."""
        llama = self.llama
        cached = llama.input_ids[: llama.n_tokens]
        n = 0
        for a, b in zip(cached, tokens, strict=False):
            if a != b:
                break
            n += 1
        n = min(n, len(tokens) - 1)  # at least one token must be evaluated to get logits
        if n <= 0 or not llama._ctx.kv_cache_seq_rm(-1, n, -1):
            llama.reset()
            return 0
        llama.n_tokens = n
        return n

    def _evaluate_prompt(self, tokens: Sequence[int]) -> None:
        self._arm_abort(True)
        try:
            self.llama.eval(tokens)
        except RuntimeError as err:
            if self._cancel is not None and self._cancel.cancelled:
                raise PromptAborted from None
            raise TokraceError(f"llama.cpp failed while evaluating the prompt ({err})",
                               kind="engine") from None
        finally:
            self._arm_abort(False)

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams,
        cancel: CancelToken | None = None,
    ) -> Iterator[StreamEvent]:
        fmt = self._format
        if fmt is None:
            raise RuntimeError("load() first")
        rendered = fmt.render(messages)
        stops = (*rendered.stops, *self.turn_end_stops())
        with self._busy:
            yield from self._generate(rendered, params, cancel, stops)

    def stream_prompt(
        self,
        prompt: str,
        params: GenerationParams,
        cancel: CancelToken | None = None,
        *,
        stops: Sequence[str] = (),
    ) -> Iterator[StreamEvent]:
        """Generate from raw prompt text (no chat template); ``stream_chat`` formats then calls this."""
        with self._busy:
            yield from self._generate(prompt, params, cancel, stops)

    def open_request(
        self, prompt: str | RenderedPrompt, params: GenerationParams, draft: DraftInfo | None = None
    ) -> tuple[list[int], int | None, list[StreamEvent]]:
        """The start every generation shares (plain or speculative): tokenize, check the context,
        reuse the KV prefix, reset llama.cpp's counters and build the sampler.

        Returns ``(tokens, reused, events)``: yield ``events``; ``reused is None`` means the request
        already failed (``events`` then ends with ``GenerationFinished``). ``draft`` is the speculative
        decoding the request runs with, stated in its ``RequestStarted``. ``prompt``: raw text, or a
        rendered chat prompt (its messages' text is never parsed for special tokens).
        """
        model = self.model
        t_submit = time.perf_counter()
        tokens = self.tokenize_prompt(prompt)
        if len(tokens) >= model.n_ctx:
            return tokens, None, [
                RequestStarted(t_submit, model.name, len(tokens), 0, model.template, draft),
                GenerationFinished(
                    time.perf_counter(), "error", "", 0,
                    error=f"the prompt is {len(tokens)} tokens but the context holds {model.n_ctx}:"
                    " {action:new_chat} or raise {setting:n_ctx}",
                ),
            ]
        reused = self._reuse_prefix(tokens)
        started = RequestStarted(t_submit, model.name, len(tokens), reused, model.template, draft)
        llama_cpp.llama_perf_context_reset(self.llama._ctx.ctx)
        self.start_sampler(params)
        return tokens, reused, [started]

    def _generate(
        self, prompt: str | RenderedPrompt, params: GenerationParams, cancel: CancelToken | None,
        stops: Sequence[str],
    ) -> Iterator[StreamEvent]:
        llama = self.llama
        model = self.model
        self._cancel = cancel = cancel or CancelToken()
        tokens, reused, opening = self.open_request(prompt, params)
        yield from opening
        if reused is None:
            return
        assembler = TextAssembler([*stops, *params.stop])
        n_generated = 0
        reason: StopReason = "length"
        error: str | None = None
        notice: str | None = None
        try:
            t0 = time.perf_counter()
            self._evaluate_prompt(tokens[reused:])
            t1 = time.perf_counter()
            yield PromptProcessed(t1, len(tokens) - reused, t1 - t0)
            sample = self.greedy_token if self.is_greedy(params) else llama.sample
            piece, decode_one, push, clock = self.piece, self.decode_one, assembler.push, time.perf_counter
            while True:
                if cancel.cancelled:
                    reason = "cancelled"
                    break
                token = sample()
                t = clock()
                data, ends = piece(token)
                if ends:
                    reason = "stop"
                    break
                yield TokenGenerated(n_generated, token, push(data), t)
                n_generated += 1
                if assembler.stopped_by is not None:
                    reason = "stop"
                    break
                if n_generated >= params.max_tokens:
                    break
                if llama.n_tokens + 1 >= model.n_ctx:
                    reason = "context"
                    notice = f"the context ({model.n_ctx} tokens) is full: {{action:new_chat}}"
                    break
                decode_one(token)
        except PromptAborted:
            reason = "cancelled"
        except TokraceError as err:
            reason, error = "error", err.template
        except RuntimeError as err:  # llama_decode failing mid-reply (e.g. out of memory)
            reason, error = "error", f"llama.cpp failed mid-reply ({err})"
        finally:
            self._cancel = None
        assembler.finish()
        notices = [n for n in (self.take_load_notice(), prompt.notice if isinstance(prompt, RenderedPrompt)
                               else None) if n]
        if n_generated == 0 and reason == "stop":
            notices.append(
                f"the model ended its reply at once (0 tokens) with {model.template}; a base model may"
                " need plain completion"
            )
        if notice:
            notices.append(notice)
        notice = "; ".join(notices) or None
        yield GenerationFinished(
            time.perf_counter(), reason, assembler.text, n_generated,
            error=error, notice=notice, llama_perf=llama_perf(llama._ctx.ctx),
        )
