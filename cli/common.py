"""Flags shared by ``tokrace``, ``tokrace chat``, ``tokrace race`` and ``tokrace bench``.

The flags are generated from ``tokrace.settings.Settings``; ``settings_for(args)`` is the file's settings
overlaid with the flags given, and every helper here goes through it, so ``settings.toml`` applies to
every command.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.units import format_bytes
from tokrace.setting_values import split_fractions, whole_number
from tokrace.settings import Settings
from tokrace.settings_args import add_settings_args, settings_from_args
from tokrace.settings_file import load_settings

if TYPE_CHECKING:  # the --help path imports this module: no numpy, gguf or psutil (placement's)
    from tokrace.backends.base import GenerationParams
    from tokrace.backends.placement import PlacementRequest

_POSITIVE_INT = whole_number(1)


def positive_int(text: str) -> int:
    """argparse ``type``: a whole number above 0."""
    try:
        return _POSITIVE_INT(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{err}, got {text!r}") from None


def add_model_args(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """``--model/-m`` (from ``Settings.model``)."""
    add_settings_args(parser, ["model"], required=["model"] if required else ())


def add_generation_args(parser: argparse.ArgumentParser) -> None:
    """The "generation" group: ``--max-tokens/-n``, ``--temperature/-t``, ``--seed``, ``--ctx``,
    ``--threads`` (from the ``Settings`` fields in that group)."""
    add_settings_args(parser, Settings.names(group="generation"))


def add_gpu_args(parser: argparse.ArgumentParser) -> None:
    """The GPU offload group: ``--gpu-layers``, ``--tensor-split``, ``--split-mode``, ``--main-gpu``,
    ``--price-per-hour`` (from the ``Settings`` fields in that group)."""
    add_settings_args(parser, Settings.names(group="gpu"))


def settings_for(args: argparse.Namespace) -> Settings:
    """This run's settings: ``settings.toml`` (bad file: ``TokraceError``) overlaid with the flags given."""
    return settings_from_args(args, load_settings())


def generation_params(args: argparse.Namespace) -> GenerationParams:
    """Sampling settings from the file and the flags."""
    return settings_for(args).generation_params()


def parse_tensor_split(text: str | list[float] | None) -> list[float] | None:
    """``"1,1"`` → ``[1.0, 1.0]``; ``None`` stays ``None``; a bad value is a one-line ``TokraceError``."""
    if text is None:
        return None
    try:
        return split_fractions(text)
    except ValueError as err:
        raise TokraceError(f"--tensor-split {text!r}: {err}", kind="settings") from None


def placement_request(args: argparse.Namespace) -> PlacementRequest:
    """The user's context and GPU overrides from the file and the flags (``None``: the planner chooses)."""
    return settings_for(args).placement_request()


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
