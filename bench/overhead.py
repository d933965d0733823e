"""What tokrace costs on top of llama.cpp: generation tok/s of

  raw   llama-cpp-python's own ``Llama.generate`` loop (token ids, timestamp per token)
  cli   the ``tokrace chat --json`` pipeline: backend events → speed meter → JSON
  ui    the Textual app, headless, streaming into the chat screen

on the same model, prompt and greedy settings: three loaded instances, each warmed once, then
interleaved round by round in one process so machine noise hits all three alike. Every figure is
(tokens − 1) ÷ (last − first token time).

    .venv/bin/python bench/overhead.py [--model M] [--rounds 5] [--tokens 128] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path

from llama_cpp import Llama
from textual.pilot import Pilot

from tokrace.backends.base import CancelToken, ChatMessage, GenerationParams, LoadConfig
from tokrace.backends.events import GenerationFinished
from tokrace.backends.llama_cpp_backend import LlamaCppBackend
from tokrace.backends.meter import SpeedMeter, rate
from tokrace.cli.chat_cmd import reply_json
from tokrace.model_registry.resolve import resolve_model
from tokrace.tui.app import TokraceApp

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def raw_tok_s(llm: Llama, n_tokens: int) -> float:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    # llama-cpp-python's own formatter with the file's template: the prompt tokrace sends too.
    fmt = Jinja2ChatFormatter(llm.metadata["tokenizer.chat_template"], eos_token="", bos_token="")
    text = fmt(messages=[{"role": "user", "content": PROMPT}]).prompt
    tokens = llm.tokenize(text.encode(), add_bos=True, special=True)
    llm.reset()
    times: list[float] = []
    for _ in llm.generate(tokens, temp=0.0, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.0):
        times.append(time.perf_counter())
        if len(times) >= n_tokens:
            break
    return rate(len(times), times[0], times[-1]) or 0.0


def cli_tok_s(backend: LlamaCppBackend, n_tokens: int) -> float:
    """What ``tokrace chat --json`` does per reply: stream events, meter them, build the JSON."""
    meter = SpeedMeter()
    params = GenerationParams(max_tokens=n_tokens, temperature=0.0)
    finished = None
    for event in backend.stream_chat([ChatMessage("user", PROMPT)], params, CancelToken()):
        meter.observe(event)
        if isinstance(event, GenerationFinished):
            finished = event
    assert finished is not None
    data = json.loads(json.dumps(reply_json(meter.stats, backend.model, finished.text)))
    return float(data["gen_tok_s"])


async def ui_tok_s(app: TokraceApp, pilot: Pilot, n_tokens: int) -> float:
    app.chat.action_new_chat()
    await pilot.pause(0.2)
    app.chat.send(PROMPT)
    await pilot.pause(0.2)
    while app.chat.generating:
        await pilot.pause(0.05)
    assert app.chat.meter is not None
    return app.chat.meter.stats.gen_tok_s or 0.0


def load(path: str, threads: int) -> LlamaCppBackend:
    backend = LlamaCppBackend(LoadConfig(path=path, n_threads=threads))
    backend.load()
    return backend


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    os.environ.setdefault("TOKRACE_HOME", "/tmp/tokrace-bench-home")  # keep the user's log clean
    resolved = resolve_model(a.model)
    path = str(resolved.path)
    llm = Llama(model_path=path, n_ctx=4096, n_threads=a.threads, n_threads_batch=a.threads, verbose=False)
    cli_backend, ui_backend = load(path, a.threads), load(path, a.threads)
    results: dict[str, list[float]] = {"raw": [], "cli": [], "ui": []}

    async def rounds() -> None:
        app = TokraceApp(backend=ui_backend, params=GenerationParams(max_tokens=a.tokens, temperature=0.0))
        async with app.run_test(size=(120, 40)) as pilot:
            while app.chat.backend is None or not app.chat._ready:
                await pilot.pause(0.05)
            # Warm every path once: the first decodes of a fresh context are slower.
            raw_tok_s(llm, 16)
            cli_tok_s(cli_backend, 16)
            await ui_tok_s(app, pilot, 16)
            for r in range(a.rounds):
                results["raw"].append(raw_tok_s(llm, a.tokens))
                results["cli"].append(cli_tok_s(cli_backend, a.tokens))
                results["ui"].append(await ui_tok_s(app, pilot, a.tokens))
                print(f"round {r + 1}: " + "  ".join(f"{k} {v[-1]:6.1f}" for k, v in results.items()),
                      flush=True)

    asyncio.run(rounds())
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\nmodel {Path(path).name}, {a.tokens} tokens, greedy, {a.threads} threads, {a.rounds} rounds")
    print("| path | median tg tok/s | ratio to raw |")
    print("|---|---|---|")
    for k in ("raw", "cli", "ui"):
        print(f"| {k} | {med[k]:.1f} | {med[k] / med['raw']:.3f} |")
    # Pairwise ratios per round are steadier than ratios of medians on a noisy machine.
    for k in ("cli", "ui"):
        ratios = [x / y for x, y in zip(results[k], results["raw"], strict=True)]
        print(f"{k}/raw per round: median {statistics.median(ratios):.3f} "
              f"(min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()
