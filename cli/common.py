"""Flags shared by ``tokrace``, ``tokrace chat``, ``tokrace race`` and ``tokrace bench``."""

from __future__ import annotations

import argparse
import sys

from backends.base import GenerationParams, LoadConfig
from backends.placement import PlacementRequest
from model_registry.errors import TokraceError
from model_registry.resolve import ResolvedModel
from model_registry.units import format_bytes

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
    g.add_argument("--ctx", type=positive_int, default=None,
                   help="context size in tokens (default: 4096, or the model's own if smaller)")


def add_gpu_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("GPU offload (ignored by CPU-only llama.cpp builds)")
    g.add_argument("--gpu-layers", type=int, default=None, metavar="N",
                   help="layers to offload (-1 = all; default: planned)")
    g.add_argument("--tensor-split", default=None, metavar="A,B,...",
                   help="fraction of the model per GPU, e.g. 1,1")
    g.add_argument("--split-mode", choices=["none", "layer", "row"], default=None)
    g.add_argument("--main-gpu", type=int, default=None, metavar="I")
    g.add_argument("--price-per-hour", type=non_negative_float, default=None, metavar="USD",
                   help="what the hardware costs per hour: adds $ per 1K prompt/generated tokens")


def generation_params(args: argparse.Namespace) -> GenerationParams:
    return GenerationParams(
        max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed
    )


def parse_tensor_split(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise TokraceError(
            f"--tensor-split {text!r}: expected numbers separated by commas, e.g. 1,1"
        ) from None
    if not values or any(v < 0 for v in values) or sum(values) <= 0:
        raise TokraceError(f"--tensor-split {text!r}: expected non-negative numbers with a positive sum")
    return values


def load_config(args: argparse.Namespace, model: ResolvedModel) -> LoadConfig:
    """A ``LoadConfig`` from the shared flags; GPU placement is filled in by ``placement.place``."""
    config = LoadConfig(path=str(model.path), name=model.model_id, chat_template=model.chat_template)
    config.n_threads = getattr(args, "threads", None)
    return config


def placement_request(args: argparse.Namespace) -> PlacementRequest:
    """The user's context and GPU overrides (``None`` where the planner should choose)."""
    return PlacementRequest(
        n_ctx=getattr(args, "ctx", None),
        n_gpu_layers=getattr(args, "gpu_layers", None),
        tensor_split=parse_tensor_split(getattr(args, "tensor_split", None)),
        split_mode=getattr(args, "split_mode", None),
        main_gpu=getattr(args, "main_gpu", None),
    )


class StderrProgress:
    """A one-line progress display on stderr for model fetches (``progress(done, total, what)``)."""

    def __init__(self) -> None:
        self._last = ""
        self._tty = sys.stderr.isatty()
        self._said: set[str] = set()

    def __call__(self, done: int, total: int, what: str) -> None:
        if not self._tty:  # a log file or a pipe: one line per stage, no carriage-return animation
            stage = what.split(" ", 1)[0]
            if stage not in self._said:
                self._said.add(stage)
                print(f"{what}: {format_bytes(total)}", file=sys.stderr)
            return
        pct = f"{100 * done / total:5.1f}%" if total else ""
        line = f"\r{what}: {format_bytes(done)} / {format_bytes(total)} {pct}"
        if line != self._last:
            sys.stderr.write(line.ljust(len(self._last)))
            sys.stderr.flush()
            self._last = line
        if total and done >= total and what.startswith("extracting"):
            sys.stderr.write("\n")
            self._last = ""
