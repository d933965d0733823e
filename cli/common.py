"""Flags shared by ``tokrace``, ``tokrace chat``, ``tokrace race`` and ``tokrace bench``."""

from __future__ import annotations

import argparse

from backends.base import GenerationParams, LoadConfig

_GEN_DEFAULTS = GenerationParams()


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {value}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of 0 or more, got {value}")
    return value


def add_model_args(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    parser.add_argument(
        "--model", "-m", required=required, metavar="M",
        help="a .gguf path or a catalog id (default: the embedded SmolLM2-135M-Instruct)",
    )


def add_generation_args(parser: argparse.ArgumentParser, *, defaults_only: bool = False) -> None:
    g = parser.add_argument_group("generation")
    g.add_argument("--max-tokens", "-n", type=positive_int, default=_GEN_DEFAULTS.max_tokens)
    g.add_argument("--temperature", "-t", type=non_negative_float,
                   default=_GEN_DEFAULTS.temperature, help="0 = greedy")
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads (default: all cores)")
    g.add_argument("--ctx", type=positive_int, default=LoadConfig.n_ctx, help="context size in tokens")


def add_gpu_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("GPU offload (ignored by CPU-only llama.cpp builds)")
    g.add_argument("--gpu-layers", type=int, default=None, metavar="N",
                   help="layers to offload (-1 = all; default: planned)")
    g.add_argument("--tensor-split", default=None, metavar="A,B,...",
                   help="fraction of the model per GPU, e.g. 1,1")
    g.add_argument("--split-mode", choices=["none", "layer", "row"], default=None)
    g.add_argument("--main-gpu", type=int, default=None, metavar="I")


def generation_params(args: argparse.Namespace) -> GenerationParams:
    return GenerationParams(
        max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed
    )
