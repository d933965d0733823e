"""Building the backend for a target model with or without a draft (speculative decoding).

The application layer (``tokrace.session``) resolves both models and hands their ``LoadConfig`` down;
nothing here resolves or downloads a model.
"""

from __future__ import annotations

from dataclasses import replace

from tokrace.backends.base import Backend, LoadConfig


def draft_load_config(target: LoadConfig, path: str, name: str) -> LoadConfig:
    """The draft model's load settings: the target's context size, threads, batch sizes and flash
    attention, all of it on the target's main GPU (a draft is small; splitting it across GPUs would
    only add latency)."""
    return LoadConfig(
        path=path, name=name, n_ctx=target.n_ctx, n_threads=target.n_threads, n_batch=target.n_batch,
        n_ubatch=target.n_ubatch, flash_attn=target.flash_attn, n_gpu_layers=-1, split_mode="none",
        main_gpu=target.main_gpu,
    )


def build_drafted_backend(
    config: LoadConfig,
    draft: LoadConfig | None = None,
    *,
    lookup: bool = False,
    k: int | None = None,
    adaptive: bool = False,
    p_min: float = 0.0,
) -> Backend:
    """The backend for a target ``config``, not loaded yet: a plain ``LlamaCppBackend`` without a
    draft, else a ``SpeculativeBackend`` drafting with the ``draft`` model (see ``draft_load_config``)
    or with prompt lookup (``p_min``: a draft model's confidence floor, llama.cpp's ``--draft-p-min``).
    ``load()`` then refuses a mismatched vocabulary in one line, and
    ``.plain`` of the result is the target alone, for an A/B rerun on the very same loaded model.

    Raises ``ValueError`` when both ``draft`` and ``lookup`` are given (the caller checks user input).
    """
    from tokrace.backends.llama_cpp_backend import LlamaCppBackend

    if draft is not None and lookup:
        raise ValueError("a draft model and prompt lookup exclude each other")
    if draft is None and not lookup:
        return LlamaCppBackend(config)

    from tokrace.backends.draft_compat import Drafter, ModelDrafter, PromptLookupDrafter
    from tokrace.backends.speculative import DEFAULT_K, SpeculativeBackend

    drafter: Drafter = PromptLookupDrafter() if draft is None else ModelDrafter(draft)
    # The same flash-attention setting as a plain load of ``config`` (``.plain`` is this very target):
    # with it on (llama.cpp's "auto" on CPUs and most GPUs) a token's logits do not depend on how many
    # tokens share its batch, so verification batches reproduce plain decoding's greedy choices, on
    # quantized models too. With "off", llama.cpp's CPU attention may round a 1-token decode and a
    # batch differently, and a drafted reply can then part from the plain one.
    target = LlamaCppBackend(replace(config))
    return SpeculativeBackend(target, drafter, k=k or DEFAULT_K, adaptive=adaptive, p_min=p_min)
