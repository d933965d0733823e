"""``tokrace chat``: one turn, headless. The reply goes to stdout as it streams, the summary to stderr;
``--json`` prints one JSON object instead."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Iterator
from typing import Any

from tokrace.backends.base import CancelToken, ChatMessage, LoadedModel
from tokrace.backends.events import StreamEvent, TokenGenerated
from tokrace.backends.meter import ReplyStats
from tokrace.cli import common, draft_args
from tokrace.cli.terminal_text import ReplyWriter, read_prompt, text_arg


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "chat", help="one chat turn, headless",
        description="Send one prompt, stream the reply to stdout and the speed summary to stderr.",
    )
    common.add_model_args(p)
    p.add_argument("--prompt", "-p", required=True, help="the user message ('-' reads stdin)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    common.add_generation_args(p)
    common.add_gpu_args(p)
    draft_args.add_draft_args(p)
    p.set_defaults(func=run)


def reply_json(stats: ReplyStats, model: LoadedModel, text: str) -> dict[str, Any]:
    """The ``--json`` object: the issue's fields first, then every other figure of the reply."""
    data: dict[str, Any] = {
        "text": text,
        "model": stats.model,
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "ttft_s": stats.ttft_s,
        "prompt_tok_s": stats.prompt_tok_s,
        "gen_tok_s": stats.gen_tok_s,
        "stop_reason": stats.stop_reason,
    }
    for key, value in stats.to_dict().items():
        data.setdefault(key, value)
    data["model_file"] = {
        "path": model.path, "architecture": model.architecture, "quantization": model.quantization,
        "size_bytes": model.size_bytes, "n_params": model.n_params, "n_ctx": model.n_ctx,
        "n_threads": model.n_threads, "template": model.template,
    }
    return data


def _interruptible(events: Iterator[StreamEvent], cancel: CancelToken,
                   stopped_by: list[int] | None = None) -> Iterator[StreamEvent]:
    """Ctrl+C, SIGTERM and SIGHUP cancel the reply (partial text kept and logged, stop reason
    'cancelled') instead of killing us; the signal's number is appended to ``stopped_by`` so the exit
    status can say which (130, 143, 129)."""
    def stop(signum: int, _frame: object) -> None:
        if stopped_by is not None:
            stopped_by.append(signum)
        cancel.cancel()

    watched = [signal.SIGINT, signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])]
    previous = {s: signal.signal(s, stop) for s in watched}
    try:
        yield from events
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run(args: argparse.Namespace) -> int:
    from tokrace.backends.device_sampler import DeviceSampler
    from tokrace.backends.device_telemetry import detect_gpus
    from tokrace.backends.reply_extras import extras, extras_line
    from tokrace.cli.words import say
    from tokrace.load import LoadSpec
    from tokrace.model_registry.errors import TokraceError
    from tokrace.session import open_session

    settings = common.settings_for(args)  # settings.toml, overridden by this command's flags
    # Not UTF-8 → one line and exit 2, before any model is loaded (cli/terminal_text.py).
    prompt = read_prompt(args.prompt)
    if not prompt.strip():
        raise TokraceError("the prompt is empty: give --prompt some text"
                           + (" (stdin had none)" if args.prompt == "-" else ""), kind="usage")
    # --system comes from Settings (system_prompt): the flag, or settings.toml.
    system = text_arg(settings.system_prompt, "--system") if settings.system_prompt else None
    out = ReplyWriter(sys.stdout)  # exact text to a pipe, controls made visible on a terminal
    gpus = detect_gpus()
    # With a GPU, sample it over the reply for peak VRAM and energy (nothing to add on a CPU).
    sampler = DeviceSampler() if gpus else None
    if sampler is not None:
        sampler.mark_load_start()  # "our" VRAM where NVML cannot tell (containers)
    session = open_session(LoadSpec.from_settings(settings), gpus, progress=common.StderrProgress())
    backend, model = session.backend, session.model
    if sampler is not None:
        sampler.start()
    messages = [ChatMessage("system", system)] if system else []
    messages.append(ChatMessage("user", prompt))
    params = settings.generation_params()
    turn = session.turn(params, messages=messages, device=sampler)
    shown = 0
    stopped_by: list[int] = []
    for event in _interruptible(iter(turn), turn.cancel, stopped_by):
        if isinstance(event, TokenGenerated) and event.text and not args.json:
            out.write(event.text)
            shown += len(event.text)
    finished, stats, window = turn.finished, turn.stats, turn.window
    assert finished is not None  # a turn always ends with GenerationFinished
    if sampler:
        sampler.stop()
    price = settings.price_per_hour
    # The reply comes first; a speed log that cannot be written is a warning after it.
    if args.json:
        data = reply_json(stats, model, finished.text)
        data.update(extras(stats, window, price))
        draft = backend.draft_summary(stats)
        if draft is not None:
            data["draft"] = draft
        print(json.dumps(data, ensure_ascii=False), flush=True)
    else:
        # Text held back to the end (the start of a stop string that never completed) comes out now.
        out.write(finished.text[shown:] + "\n")
        print(stats.summary_line() + extras_line(stats, window, price), file=sys.stderr)
        if finished.notice:
            print(f"note: {say(finished.notice)}", file=sys.stderr)
    try:
        turn.record()
    except TokraceError as err:
        print(f"tokrace: warning: speed log not written: {say(err)}", file=sys.stderr)
    finally:
        session.unload()
    if finished.stop_reason == "error":
        print(f"tokrace: error: {say(finished.error or 'the reply failed')}", file=sys.stderr)
        return 2
    if finished.stop_reason == "cancelled":
        return 128 + (stopped_by[0] if stopped_by else signal.SIGINT)  # 130 Ctrl+C, 143 TERM, 129 HUP
    return 0
