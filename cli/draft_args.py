"""``--draft``, ``--draft-k``, ``--adaptive-k``, ``--lookup``: speculative decoding from the command line.

``build_backend(args, config)`` turns the flags into the right backend; ``build_drafted_backend`` is
the same without argparse (the TUI's draft picker and A/B rerun call it).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from backends.base import Backend, LoadConfig
from cli.common import positive_int
from model_registry.errors import TokraceError

if TYPE_CHECKING:
    from backends.meter import ReplyStats
    from model_registry.resolve import ProgressFn


def add_draft_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("speculative decoding")
    g.add_argument("--draft", default=None, metavar="ID|PATH",
                   help="a small draft model with the same vocabulary (catalog id or .gguf path)")
    g.add_argument("--draft-k", type=positive_int, default=None, metavar="K",
                   help="tokens drafted per verification step (default: 4, measured)")
    g.add_argument("--adaptive-k", action="store_true",
                   help="shrink k while acceptance is low, grow it back while it is high")
    g.add_argument("--lookup", action="store_true",
                   help="prompt-lookup decoding: draft by n-gram lookup in the context (no draft model)")


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


def build_backend(args: argparse.Namespace, config: LoadConfig, *,
                  progress: ProgressFn | None = None) -> Backend:
    """``build_drafted_backend`` from the flags of ``add_draft_args`` (absent flags = no draft)."""
    return build_drafted_backend(
        config, getattr(args, "draft", None), lookup=getattr(args, "lookup", False),
        k=getattr(args, "draft_k", None), adaptive=getattr(args, "adaptive_k", False),
        progress=progress,
    )


def draft_json(backend: Backend, stats: ReplyStats) -> dict[str, Any] | None:
    """The ``draft`` object of ``--json`` (``None`` without speculative decoding)."""
    from backends.speculative import SpeculativeBackend

    return backend.draft_summary(stats) if isinstance(backend, SpeculativeBackend) else None
