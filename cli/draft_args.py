"""``--draft``, ``--draft-k``, ``--adaptive-k``, ``--lookup``: speculative decoding from the command line.

``build_backend(args, config)`` turns the flags into the right backend; ``build_drafted_backend`` is
the same without argparse (the TUI's draft picker and A/B rerun call it).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from backends.base import Backend, LoadConfig
from backends.draft_setup import build_drafted_backend
from cli.common import positive_int

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
