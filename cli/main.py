"""Entry point of the ``tokrace`` console script.

``tokrace [--model M]`` opens the TUI; subcommands run headless. Each subcommand lives in its own module
with ``register(subparsers)``; heavy imports (llama.cpp, textual) happen inside the handlers so
``tokrace --help`` stays instant. Every ``TokraceError`` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from tokrace import __version__
from tokrace.model_registry.errors import TokraceError

COMMAND_MODULES: list[str] = [
    "tokrace.cli.chat_cmd",
    "tokrace.cli.models_cmd",
    "tokrace.cli.export_cmd",
    "tokrace.cli.bench_cmd",
    "tokrace.cli.plan_cmd",
    "tokrace.cli.race_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    from tokrace.cli import common

    parser = argparse.ArgumentParser(
        prog="tokrace",
        description="Chat with local GGUF models and measure exactly how fast they run.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common.add_model_args(parser)
    common.add_generation_args(parser, defaults_only=True)
    common.add_gpu_args(parser)
    importlib.import_module("tokrace.cli.draft_args").add_draft_args(parser)
    parser.set_defaults(func=_run_tui)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def _run_tui(args: argparse.Namespace) -> int:
    from tokrace.cli import common
    from tokrace.tui.app import TokraceApp

    app = TokraceApp(settings=common.settings_for(args))
    app.run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TokraceError as err:
        from tokrace.cli.words import say

        print(f"tokrace: error: {say(err)}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("tokrace: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
