"""``tokrace chat``: one turn, headless. The reply goes to stdout as it streams, the summary to stderr;
``--json`` prints one JSON object instead."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Iterator
from typing import Any

from backends.base import CancelToken, ChatMessage, LoadedModel
from backends.events import GenerationFinished, StreamEvent, TokenGenerated
from backends.meter import ReplyStats, SpeedMeter
from cli import common, draft_args


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "chat", help="one chat turn, headless",
        description="Send one prompt, stream the reply to stdout and the speed summary to stderr.",
    )
    common.add_model_args(p)
    p.add_argument("--prompt", "-p", required=True, help="the user message ('-' reads stdin)")
    p.add_argument("--system", default=None, help="an optional system message")
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


def _interruptible(events: Iterator[StreamEvent], cancel: CancelToken) -> Iterator[StreamEvent]:
    """Ctrl+C cancels the reply (partial text kept, stop reason 'cancelled') instead of killing us."""
    previous = signal.signal(signal.SIGINT, lambda *_: cancel.cancel())
    try:
        yield from events
    finally:
        signal.signal(signal.SIGINT, previous)


def run(args: argparse.Namespace) -> int:
    from backends.device_telemetry import DeviceSampler, detect_gpus
    from backends.draft_setup import draft_fields
    from backends.placement import place
    from backends.reply_extras import extras, extras_line
    from model_registry.resolve import resolve_model
    from speedlog import SessionRecorder

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    resolved = resolve_model(args.model, progress=common.StderrProgress())
    config = common.load_config(args, resolved)
    gpus = detect_gpus()
    place(config, gpus, common.placement_request(args))
    backend = draft_args.build_backend(args, config, progress=common.StderrProgress())
    model = backend.load()
    recorder = SessionRecorder(model, config, kind="chat", model_id=resolved.model_id,
                               **draft_fields(backend))
    # With a GPU, sample it over the reply for peak VRAM and energy (nothing to add on a CPU).
    sampler = DeviceSampler().start() if gpus else None
    window_id = sampler.begin_window() if sampler else None
    messages = [ChatMessage("system", args.system)] if args.system else []
    messages.append(ChatMessage("user", prompt))
    meter = SpeedMeter()
    cancel = CancelToken()
    finished: GenerationFinished | None = None
    shown = 0
    for event in _interruptible(backend.stream_chat(messages, common.generation_params(args), cancel),
                                cancel):
        meter.observe(event)
        if isinstance(event, TokenGenerated) and event.text and not args.json:
            sys.stdout.write(event.text)
            sys.stdout.flush()
            shown += len(event.text)
        elif isinstance(event, GenerationFinished):
            finished = event
    backend.unload()
    assert finished is not None  # stream_chat always ends with GenerationFinished
    stats = meter.stats
    window = sampler.end_window(window_id) if sampler and window_id is not None else None
    if sampler:
        sampler.stop()
    recorder.record(stats, peak_vram_bytes=window.peak_vram_bytes if window else None,
                    energy_j=window.energy_j if window else None)
    price = getattr(args, "price_per_hour", None)
    if args.json:
        data = reply_json(stats, model, finished.text)
        data.update(extras(stats, window, price))
        draft = draft_args.draft_json(backend, stats)
        if draft is not None:
            data["draft"] = draft
        print(json.dumps(data, ensure_ascii=False))
    else:
        # Text held back to the end (the start of a stop string that never completed) comes out now.
        sys.stdout.write(finished.text[shown:] + "\n")
        sys.stdout.flush()
        print(stats.summary_line() + extras_line(stats, window, price), file=sys.stderr)
        if finished.notice:
            print(f"note: {finished.notice}", file=sys.stderr)
    if finished.stop_reason == "error":
        print(f"tokrace: error: {finished.error}", file=sys.stderr)
        return 2
    return 130 if finished.stop_reason == "cancelled" else 0
