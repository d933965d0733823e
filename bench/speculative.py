"""Speculative decoding, measured: tok/s without a draft, with llama-cpp-python's built-in
``draft_model`` path, and with tokrace's, at k = 2/4/8 (+ adaptive); plus prompt lookup on a
code-editing prompt with SmolLM2.

The pair is generated: a draft of 2 layers and a target with the same seed and width plus inert layers
(zero output projections), so the target computes the draft's function (100% acceptance) at a
measured multiple of its cost. Every configuration runs in each round, interleaved, so a busy shared
machine slows all of them alike; the table shows the median over rounds.

    .venv/bin/python bench/speculative.py [--width 512 --layers 32 --tokens 64 --rounds 3]

Columns: median over rounds (and its speedup over the target alone), best round (and its speedup
over the target's best round). Speed is (tokens − 1) ÷ (last token time − first token time), from
per-token timestamps, as the meter computes it (never llama.cpp's counters, which book verification
batches as prompt eval).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from llama_cpp import Llama  # noqa: E402
from llama_cpp.llama_speculative import LlamaDraftModel  # noqa: E402

from tokrace.backends.base import CancelToken, ChatMessage, GenerationParams, LoadConfig  # noqa: E402
from tokrace.backends.draft_compat import Drafter, ModelDrafter, PromptLookupDrafter  # noqa: E402
from tokrace.backends.events import StreamEvent, TokenGenerated  # noqa: E402
from tokrace.backends.llama_cpp_backend import LlamaCppBackend  # noqa: E402
from tokrace.backends.meter import SpeedMeter  # noqa: E402
from tokrace.backends.speculative import SpeculativeBackend  # noqa: E402

PROMPT = "The quick brown fox jumps over the lazy dog. " * 2
CODE = """def mean(values):
    total = 0
    for v in values:
        total += v
    return total / len(values)


def variance(values):
    m = mean(values)
    total = 0
    for v in values:
        total += (v - m) ** 2
    return total / len(values)


def report(values):
    print("mean", mean(values))
    print("variance", variance(values))
"""
CODE_EDIT = ("Rename the function `mean` to `average` everywhere in this code. Reply with the full code"
             " only.\n\n" + CODE)


class DraftAdapter(LlamaDraftModel):
    """llama-cpp-python's ``draft_model`` interface around a draft model: the same greedy drafter
    tokrace uses (KV kept in step, rolled back on rejection), so only the verification differs."""

    def __init__(self, drafter: ModelDrafter, k: int) -> None:
        self.drafter = drafter
        self.k = k

    def __call__(self, input_ids: npt.NDArray[np.intc], /, **kwargs: Any) -> npt.NDArray[np.intc]:
        return np.array(self.drafter.propose([int(t) for t in input_ids], self.k), dtype=np.intc)


def rate(times: list[float]) -> float:
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0


def run_events(events: Iterator[StreamEvent]) -> dict[str, Any]:
    meter = SpeedMeter()
    tokens: list[int] = []
    for event in events:
        meter.observe(event)
        if isinstance(event, TokenGenerated):
            tokens.append(event.token_id)
    s = meter.stats
    return {"tok_s": s.gen_tok_s or 0.0, "tokens": tokens, "drafted": s.drafted, "accepted": s.accepted}


def run_builtin(llama: Llama, adapter: DraftAdapter | None, prompt: list[int], n: int) -> dict[str, Any]:
    """Greedy generation through ``Llama.generate`` (the path ``create_completion`` uses)."""
    llama.reset()
    if adapter is not None:
        adapter.drafter.prefill(prompt, CancelToken())
    times: list[float] = []
    tokens: list[int] = []
    for token in llama.generate(prompt, temp=0.0, top_k=1, reset=True):
        times.append(time.perf_counter())
        tokens.append(int(token))
        if len(tokens) >= n:
            break
    return {"tok_s": rate(times), "tokens": tokens, "drafted": 0, "accepted": 0}


def make_pair(out: Path, width: int, layers: int) -> tuple[Path, Path]:
    from tiny_gguf import write_tiny_llama

    shape = {"n_embd": width, "n_ff": width * 3, "n_head": max(1, width // 64), "weight_scale": 0.5,
             "n_head_kv": max(1, width // 64), "n_ctx": 2048}
    draft = out / f"draft-{width}x2.gguf"
    target = out / f"target-{width}x{layers}-inert.gguf"
    if not draft.exists():
        write_tiny_llama(draft, n_layer=2, name="bench-draft", **shape)  # type: ignore[arg-type]
    if not target.exists():
        write_tiny_llama(target, n_layer=layers, inert_from=2, name="bench-target",  # type: ignore[arg-type]
                         **shape)
    return target, draft


def table(rows: list[tuple[str, list[dict[str, Any]]]], base: float, reference: list[int]) -> None:
    best_base = max(r["tok_s"] for r in rows[0][1])
    print(f"{'configuration':<34}{'tok/s':>9}{'speedup':>9}{'best tok/s':>12}{'speedup':>9}"
          f"{'accepted/drafted':>19}  same tokens")
    for name, runs in rows:
        tok_s = statistics.median(r["tok_s"] for r in runs)
        best = max(r["tok_s"] for r in runs)
        last = runs[-1]
        acc = f"{last['accepted']}/{last['drafted']}" if last["drafted"] else "–"
        same = "yes" if last["tokens"] == reference[: len(last["tokens"])] else "NO"
        print(f"{name:<34}{tok_s:>9.1f}{tok_s / base:>8.2f}×{best:>12.1f}{best / best_base:>8.2f}×"
              f"{acc:>19}  {same}")


def interleave(configs: list[tuple[str, Callable[[], dict[str, Any]]]], rounds: int
               ) -> list[tuple[str, list[dict[str, Any]]]]:
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in configs}
    for _, fn in configs:  # warm-up, not counted: first touch of the weights, caches
        fn()
    for i in range(rounds):
        for name, fn in configs:
            results[name].append(fn())
            print(f"  round {i + 1}: {name}: {results[name][-1]['tok_s']:.1f} tok/s", file=sys.stderr)
    return list(results.items())


def pair_bench(args: argparse.Namespace) -> None:
    target_path, draft_path = make_pair(Path(args.dir), args.width, args.layers)
    fa = args.flash_attn
    n = args.tokens
    params = GenerationParams(max_tokens=n, temperature=0.0)

    def cfg(path: Path) -> LoadConfig:
        return LoadConfig(path=str(path), n_threads=args.threads)

    plain_target = LlamaCppBackend(cfg(target_path), flash_attn=fa)
    plain_target.load()
    plain_draft = LlamaCppBackend(cfg(draft_path), flash_attn=fa)
    plain_draft.load()
    prompt_ids = plain_target.tokenize_prompt(PROMPT)

    # Built-in path: its own target instance (logits_all=True is forced by draft_model).
    builtin_llama = Llama(str(target_path), n_ctx=2048, n_threads=args.threads, n_threads_batch=args.threads,
                          flash_attn=fa, logits_all=True, verbose=False)
    builtin_drafter = ModelDrafter(cfg(draft_path))
    builtin_drafter.load()
    adapters = {k: DraftAdapter(builtin_drafter, k) for k in args.k}

    spec_target = LlamaCppBackend(cfg(target_path), flash_attn=fa)
    spec_target.load()
    drafter = ModelDrafter(cfg(draft_path))
    spec = {k: SpeculativeBackend(spec_target, drafter, k=k) for k in args.k}
    spec_adaptive = SpeculativeBackend(spec_target, drafter, k=max(args.k), adaptive=True)
    for backend in [*spec.values(), spec_adaptive]:
        backend.load()

    def builtin(k: int) -> Callable[[], dict[str, Any]]:
        def go() -> dict[str, Any]:
            builtin_llama.draft_model = adapters[k]
            return run_builtin(builtin_llama, adapters[k], prompt_ids, n)
        return go

    def tokrace(backend: SpeculativeBackend) -> Callable[[], dict[str, Any]]:
        return lambda: run_events(backend.stream_prompt(PROMPT, params))

    configs: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("target alone (no draft)", lambda: run_events(plain_target.stream_prompt(PROMPT, params))),
        ("draft alone", lambda: run_events(plain_draft.stream_prompt(PROMPT, params))),
    ]
    configs += [(f"built-in draft_model, k={k}", builtin(k)) for k in args.k]
    configs += [(f"tokrace draft, k={k}", tokrace(spec[k])) for k in args.k]
    configs.append((f"tokrace draft, adaptive k≤{max(args.k)}", tokrace(spec_adaptive)))
    rows = interleave(configs, args.rounds)

    base = statistics.median(r["tok_s"] for r in rows[0][1])
    draft_speed = statistics.median(r["tok_s"] for r in rows[1][1])
    mb = [p.stat().st_size / 2**20 for p in (target_path, draft_path)]
    print(f"\npair: target {target_path.name} ({mb[0]:.0f} MiB), draft {draft_path.name} ({mb[1]:.0f} MiB),"
          f" {n} tokens, greedy, {args.rounds} rounds interleaved (median), flash_attn={fa}")
    print(f"measured cost ratio (target time per token ÷ draft's): {draft_speed / base:.1f}×\n")
    table(rows, base, rows[0][1][-1]["tokens"])


def lookup_bench(args: argparse.Namespace) -> None:
    from tokrace.model_registry.resolve import resolve_model

    path = resolve_model("smollm2-135m-instruct:q4_1").path
    config = LoadConfig(path=str(path), n_threads=args.threads, n_ctx=2048)
    messages = [ChatMessage("user", CODE_EDIT)]
    params = GenerationParams(max_tokens=args.lookup_tokens, temperature=0.0)
    target = LlamaCppBackend(config, flash_attn=args.flash_attn)
    target.load()
    configs: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("SmolLM2 alone (no draft)", lambda: run_events(target.stream_chat(messages, params)))
    ]
    for min_ngram in (2, 1):
        for k in (4, 8):
            lookup: Drafter = PromptLookupDrafter(max_ngram=3, min_ngram=min_ngram)
            backend = SpeculativeBackend(target, lookup, k=k)
            backend.load()
            configs.append((f"prompt lookup, k={k}, n-gram {min_ngram}–3",
                            lambda b=backend: run_events(b.stream_chat(messages, params))))
    rows = interleave(configs, args.rounds)
    base = statistics.median(r["tok_s"] for r in rows[0][1])
    print(f"\nprompt lookup: SmolLM2-135M-Instruct Q4_1, code-editing prompt, {args.lookup_tokens} tokens"
          f" max, greedy, {args.rounds} rounds interleaved (median), flash_attn={args.flash_attn}\n")
    table(rows, base, rows[0][1][-1]["tokens"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--layers", type=int, default=32, help="target layers (the draft has 2)")
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--lookup-tokens", type=int, default=160)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("-k", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--no-flash-attn", dest="flash_attn", action="store_false")
    p.add_argument("--dir", default=str(Path.home() / ".cache" / "tokrace-bench"))
    p.add_argument("--skip-lookup", action="store_true")
    p.add_argument("--skip-pair", action="store_true")
    args = p.parse_args()
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    if not args.skip_pair:
        pair_bench(args)
    if not args.skip_lookup:
        lookup_bench(args)


if __name__ == "__main__":
    main()
