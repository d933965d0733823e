"""Entry point of the ``tokrace`` console script.

``tokrace [--model M]`` opens the TUI; subcommands run headless. Each subcommand lives in its own module
with ``register(subparsers)``; heavy imports (llama.cpp, textual, numpy, httpx, asyncio) happen inside
the handlers so ``tokrace --help`` stays near 0.2 s (``bench/cold_start.py``; ``tests/test_cold_start.py``
checks none of them is imported). Every ``TokraceError`` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import threading
import time
from collections.abc import Sequence

from tokrace import __version__
from tokrace.model_registry.errors import TokraceError

THREAD_GRACE_S = 2.0
"""How long a quitting TUI waits for worker threads to wind down before leaving them."""

COMMAND_MODULES: list[str] = [
    "tokrace.cli.chat_cmd",
    "tokrace.cli.models_cmd",
    "tokrace.cli.export_cmd",
    "tokrace.cli.bench_cmd",
    "tokrace.cli.plan_cmd",
    "tokrace.cli.race_cmd",
    "tokrace.cli.tune_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    from tokrace.cli import common

    parser = argparse.ArgumentParser(
        prog="tokrace",
        description="Chat with local GGUF models and measure exactly how fast they run.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common.add_model_args(parser)
    parser.add_argument("--resume", nargs="?", const="last", default=None, metavar="ID",
                        help="continue a saved conversation: its id (or the start of it), a .jsonl path,"
                             " or nothing for the latest (F3 in the app lists them)")
    common.add_generation_args(parser)
    common.add_gpu_args(parser)
    importlib.import_module("tokrace.cli.draft_args").add_draft_args(parser)
    parser.set_defaults(func=_run_tui)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def _run_tui(args: argparse.Namespace) -> int:
    import asyncio

    from tokrace.cli import common
    from tokrace.tui.app import TokraceApp

    resume = None
    if getattr(args, "resume", None) is not None:
        from tokrace.conversations import find_conversation

        resume = find_conversation(args.resume)  # none or several: one line, exit 2
    app = TokraceApp(settings=common.settings_for(args), resume=resume)
    # Our own loop, not asyncio.run(): asyncio.run() joins the worker threads on the way out, so quitting
    # during a load stuck on the network would wait for it (minutes).
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        app.run(loop=loop)
        # Non-zero when the app died of an unhandled error (Textual sets 1) or a signal (143, 129).
        code = app.return_code or 0
    except KeyboardInterrupt:
        code = 130
    finally:
        asyncio.set_event_loop(None)
        loop.close()  # tells idle worker threads to end; does not wait for busy ones
    # Finished replies reach the speed log before we go, even when the quit came mid-write.
    for error in app.flush_records():
        print(f"tokrace: warning: speed log not written: {error}", file=sys.stderr)
    _leave_busy_threads(code)
    return code


def _leave_busy_threads(code: int) -> None:
    """Exit now (``os._exit``) if a worker thread is still busy after a short grace: a load or pull
    waiting on the network or disk must not keep a quit app alive. Its partial download stays
    (appended, never replaced) and resumes next time; finished replies are already fsynced."""
    deadline = time.monotonic() + THREAD_GRACE_S
    me = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not me and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not me):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _stdout_gone() -> int:
    """The reader of our output went away (``tokrace models list | head``): that is not an error of
    ours. Point stdout at /dev/null so the interpreter's final flush does not raise again."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 141  # 128 + SIGPIPE, as a shell reports a program stopped by a closed pipe


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, where a closed pipe is handled, not at interpreter exit
        return code
    except TokraceError as err:
        from tokrace.cli.words import say

        print(f"tokrace: error: {say(err)}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("tokrace: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _stdout_gone()
    except OSError as err:
        # A last guard: a disk or folder fault that no layer turned into its own line yet.
        where = f" ({err.filename})" if err.filename else ""
        print(f"tokrace: error: {err.strerror or err}{where}; check that the disk has space and the"
              " folder is writable, or set TOKRACE_HOME", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
