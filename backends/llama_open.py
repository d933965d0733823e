"""Opening a model in llama.cpp the way its own tools do, through llama-cpp-python.

llama-cpp-python 0.3.36 writes flash attention as on/off only and has no repack switch; ``TokraceLlama``
creates the context with llama.cpp's own auto/on/off and sets ``use_extra_bufts`` (``--no-repack``), and
``open_llama`` reads back from llama.cpp's log what "auto" became. The per-token engine is
``llama_cpp_backend``; this module only opens the model and names llama.cpp's load parameters.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import llama_cpp
from llama_cpp import Llama

from tokrace.backends import llama_log
from tokrace.backends.base import LoadConfig
from tokrace.model_registry.errors import ModelFileError, TokraceError

SPLIT_MODES = {"none": 0, "layer": 1, "row": 2}
GGML_TYPES = {"f32": llama_cpp.GGML_TYPE_F32, "f16": llama_cpp.GGML_TYPE_F16,
               "bf16": 30,  # GGML_TYPE_BF16 (ggml.h; not in the Python binding)
               "q8_0": llama_cpp.GGML_TYPE_Q8_0,
               "q4_0": llama_cpp.GGML_TYPE_Q4_0, "q4_1": llama_cpp.GGML_TYPE_Q4_1,
               "iq4_nl": llama_cpp.GGML_TYPE_IQ4_NL, "q5_0": llama_cpp.GGML_TYPE_Q5_0,
               "q5_1": llama_cpp.GGML_TYPE_Q5_1}
"""KV cache type names (``LoadConfig.type_k``/``type_v``) → ggml type ids."""


FLASH_ATTN_TYPES = {
    "auto": llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO,
    "on": llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
    "off": llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED,
}
# llama.cpp states what "auto" became while creating the context ("Flash Attention enabled").
_FA_RESOLVED = re.compile(r"\bFlash Attention (enabled|disabled)\b", re.IGNORECASE)


class ContextParams(llama_cpp.llama_context_params):
    """llama.cpp's context parameters with ``flash_attn_type`` pinned to ``forced_fa``:
    llama-cpp-python 0.3.36 takes ``flash_attn: bool`` and writes ENABLED/DISABLED, never AUTO."""

    forced_fa: int = llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, self.forced_fa if name == "flash_attn_type" else value)


class TokraceLlama(Llama):
    """``Llama`` that creates its context with the flash-attention type given (auto/on/off), the
    way llama.cpp's own tools take it. Everything else is llama-cpp-python's."""

    def __init__(self, flash_attn_type: int, *, repack: bool = True, **kwargs: Any) -> None:
        self.__dict__["_fa_type"] = flash_attn_type
        self.__dict__["_repack"] = repack
        super().__init__(**kwargs)

    @property
    def model_params(self) -> Any:
        return self.__dict__["_tokrace_model_params"]

    @model_params.setter
    def model_params(self, value: Any) -> None:
        # llama.cpp's ``use_extra_bufts`` (its CLI's ``--no-repack`` clears it): CPU weight repacking.
        value.use_extra_bufts = self.__dict__["_repack"]
        self.__dict__["_tokrace_model_params"] = value

    @property
    def context_params(self) -> Any:
        return self.__dict__["_tokrace_context_params"]

    @context_params.setter
    def context_params(self, value: Any) -> None:
        params = ContextParams.from_buffer_copy(value)
        params.__dict__["forced_fa"] = self.__dict__["_fa_type"]
        params.flash_attn_type = 0  # any value: pinned to forced_fa
        self.__dict__["_tokrace_context_params"] = params


class FlashAttnWatch(logging.Handler):
    """Catches llama.cpp's "Flash Attention enabled|disabled" line while a context is created (a load
    logs thousands of debug lines, more than ``llama_log.recent`` keeps)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.found: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if (m := _FA_RESOLVED.search(record.getMessage())) is not None:
            self.found = "on" if m.group(1).lower() == "enabled" else "off"


@contextmanager
def watch_flash_attn() -> Iterator[FlashAttnWatch]:
    logger = llama_log.log
    watch, level = FlashAttnWatch(), logger.level
    logger.addHandler(watch)
    if not logger.isEnabledFor(logging.DEBUG):
        logger.setLevel(logging.DEBUG)
    try:
        yield watch
    finally:
        logger.removeHandler(watch)
        logger.setLevel(level)


def flash_attn_used(asked: str, watch: FlashAttnWatch) -> str | None:
    """``"on"``/``"off"``: what llama.cpp used (``asked`` when it was forced; ``None`` when "auto"
    was not reported)."""
    return asked if asked in ("on", "off") else watch.found


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


def open_llama(cfg: LoadConfig, *, n_ctx: int, n_batch: int, n_threads: int) -> tuple[Llama, str | None]:
    """``cfg``'s model opened in llama.cpp with llama.cpp's own load parameters (``n_ctx``,
    ``n_batch`` and ``n_threads`` as the backend settled them), and the flash attention it used
    (``"on"``/``"off"``, ``None`` when "auto" was not reported). Raises ``TokraceError`` (kind
    ``usage``) for a quantized V cache without flash attention, ``ModelFileError`` when llama.cpp
    cannot load the file (with the reason it logged)."""
    if cfg.type_v not in ("f32", "f16", "bf16") and cfg.flash_attn == "off":
        raise TokraceError(
            f"a quantized V cache ({{setting:type_v}} {cfg.type_v}) needs flash attention in llama.cpp:"
            " set {setting:flash_attn} to auto or on, or {setting:type_v} to f16", kind="usage")
    log_mark = llama_log.mark()
    try:
        with watch_flash_attn() as fa_watch:
            llama = TokraceLlama(
                FLASH_ATTN_TYPES[cfg.flash_attn],
                repack=cfg.repack,
                model_path=str(cfg.path),
                n_ctx=n_ctx,
                n_batch=n_batch,
                n_ubatch=max(1, min(cfg.n_ubatch, n_batch)),
                n_threads=n_threads,
                n_threads_batch=n_threads,
                n_gpu_layers=cfg.n_gpu_layers,
                split_mode=SPLIT_MODES[cfg.split_mode],
                main_gpu=cfg.main_gpu,
                tensor_split=cfg.tensor_split,
                type_k=GGML_TYPES[cfg.type_k],
                type_v=GGML_TYPES[cfg.type_v],
                logits_all=False,
                verbose=False,
            )
    except (ValueError, RuntimeError) as err:
        said = llama_log.load_failure_reason(log_mark)
        raise ModelFileError(
            f"llama.cpp could not load {cfg.path} ({said or err}); the file may be damaged or of an"
            " architecture this llama.cpp build does not know"
        ) from None
    return llama, flash_attn_used(cfg.flash_attn, fa_watch)
