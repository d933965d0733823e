"""Building the backend for a target model with or without a draft (speculative decoding).

Used by ``tokrace chat``/``tokrace`` (through ``cli.draft_args``), the TUI's draft picker and A/B rerun,
and race lanes, so every path builds drafted backends the same way.
"""

from __future__ import annotations

from typing import Any

from backends.base import Backend, LoadConfig
from model_registry.errors import TokraceError
from model_registry.pypi_source import ProgressFn


def build_drafted_backend(
    config: LoadConfig,
    draft: str | None = None,
    *,
    lookup: bool = False,
    k: int | None = None,
    adaptive: bool = False,
    progress: ProgressFn | None = None,
) -> Backend:
    """The backend for a target ``config``: plain ``LlamaCppBackend`` without a draft, else a
    ``SpeculativeBackend`` (not loaded yet: ``load()`` refuses a mismatched vocabulary in one line).

    ``draft`` is resolved like ``--model`` (catalog id, path, ``hf:``); the draft model gets the
    target's context size and threads. ``.target`` of the result is the plain backend, for an A/B
    rerun without the draft on the very same loaded model.
    """
    from backends.llama_cpp_backend import LlamaCppBackend

    if draft is not None and lookup:
        raise TokraceError("--draft and --lookup exclude each other: pick a draft model or prompt lookup")
    if draft is None and not lookup:
        if k is not None or adaptive:
            raise TokraceError("--draft-k and --adaptive-k need --draft D or --lookup")
        return LlamaCppBackend(config)

    from backends.draft_compat import Drafter, ModelDrafter, PromptLookupDrafter
    from backends.speculative import DEFAULT_K, SpeculativeBackend
    from model_registry.resolve import resolve_model

    drafter: Drafter
    if lookup:
        drafter = PromptLookupDrafter()
    else:
        resolved = resolve_model(draft, progress=progress)
        drafter = ModelDrafter(LoadConfig(
            path=str(resolved.path), name=resolved.model_id, n_ctx=config.n_ctx,
            n_threads=config.n_threads, n_batch=config.n_batch, n_gpu_layers=-1, split_mode="none",
            main_gpu=config.main_gpu,
        ))
    # Flash attention: a token's logits then do not depend on its batch, so verification batches
    # reproduce plain decoding's greedy choices on quantized models too (see LlamaCppBackend).
    target = LlamaCppBackend(config, flash_attn=True)
    return SpeculativeBackend(target, drafter, k=k or DEFAULT_K, adaptive=adaptive)


def draft_fields(backend: Backend) -> dict[str, Any]:
    """The speed log's ``draft_model`` / ``draft_k`` for ``backend`` (both ``None`` without a draft)."""
    if not backend.supports_draft:
        return {"draft_model": None, "draft_k": None}
    draft = getattr(backend, "draft_model", None)
    return {"draft_model": draft.name if draft is not None else "prompt lookup",
            "draft_k": getattr(backend, "k", None)}
