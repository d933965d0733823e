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
from typing import Any

import llama_cpp
from llama_cpp import Llama

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
from tokrace.backends.prompt_tokens import LlamaVocab, tokenize_parts
from tokrace.backends.textstream import TextAssembler
from tokrace.model_registry.errors import ModelFileError, TokraceError
from tokrace.model_registry.gguf_meta import GGUFInfo, read_gguf_info

_SPLIT_MODES = {"none": 0, "layer": 1, "row": 2}
llama_log.install()
tolerate_broken_templates_at_load()
_NO_ABORT = llama_cpp.ggml_abort_callback()  # a NULL function pointer


class PromptAborted(Exception):
    """Prompt evaluation was stopped by the abort callback."""


def llama_perf(ctx: Any) -> dict[str, float]:
    data = llama_cpp.llama_perf_context(ctx)
    return {
        "t_p_eval_ms": data.t_p_eval_ms,
        "n_p_eval": data.n_p_eval,
        "t_eval_ms": data.t_eval_ms,
        "n_eval": data.n_eval,
    }


class LlamaCppBackend(Backend):
    name = "llama.cpp"
    CAPABILITIES = Capabilities(token_ids=True, gpu_split=True, prompt_abort=True, raw_prompt=True)

    @property
    def capabilities(self) -> Capabilities:
        return self.CAPABILITIES

    def __init__(self, config: LoadConfig, *, flash_attn: bool = False) -> None:
        self.config = config
        # Flash attention computes each query row on its own, so a token's logits do not depend on
        # how many tokens share its batch (without it llama.cpp's CPU attention rounds a 1-token
        # decode differently from a batch): speculative decoding turns it on to match plain decoding.
        self.flash_attn = flash_attn
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
        n_threads = cfg.n_threads or os.cpu_count() or 1
        log_mark = llama_log.mark()
        try:
            llama = Llama(
                model_path=str(cfg.path),
                n_ctx=n_ctx,
                n_batch=min(cfg.n_batch, n_ctx),
                n_threads=n_threads,
                n_threads_batch=n_threads,
                n_gpu_layers=cfg.n_gpu_layers,
                split_mode=_SPLIT_MODES[cfg.split_mode],
                main_gpu=cfg.main_gpu,
                tensor_split=cfg.tensor_split,
                logits_all=False,
                flash_attn=self.flash_attn,
                verbose=False,
            )
        except (ValueError, RuntimeError) as err:
            said = llama_log.load_failure_reason(log_mark)
            raise ModelFileError(
                f"llama.cpp could not load {cfg.path} ({said or err}); the file may be damaged or of an"
                " architecture this llama.cpp build does not know"
            ) from None
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
        )
        return self._model

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
            raise TokraceError(f"llama.cpp failed while evaluating the prompt ({err})") from None
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
            while True:
                if cancel.cancelled:
                    reason = "cancelled"
                    break
                token = llama.sample(idx=None)
                t = time.perf_counter()
                if self.ends_turn(token):
                    reason = "stop"
                    break
                text = assembler.push(self.token_bytes(token))
                yield TokenGenerated(n_generated, token, text, t)
                n_generated += 1
                if assembler.stopped_by is not None:
                    reason = "stop"
                    break
                if n_generated >= params.max_tokens:
                    break
                if llama.n_tokens + 1 >= model.n_ctx:
                    notice = f"the context ({model.n_ctx} tokens) is full: {{action:new_chat}}"
                    break
                llama.eval([token])
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
