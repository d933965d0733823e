"""tokrace's greedy generation path against raw single-token decode at the same KV depth.

    .venv/bin/python bench/gen_path.py [--width 64 --layers 24 --tokens 200 --rounds 5 --threads 2]
    .venv/bin/python bench/gen_path.py --model M.gguf

The generation path is ``LlamaCppBackend.stream_prompt`` (greedy: argmax, the prebuilt one-token batch,
events, the text assembler), timed as ``tokrace bench --draft`` times ``tgN-gen``: (tokens − 1) ÷ (last
token's time − first's), from the events' timestamps (``SpeedMeter``). Raw decode is ``llama_decode`` of
one token at a time through llama-cpp-python's binding on the same loaded context, after a prefix as long
as the prompt plus the first token, so both decode the same positions: attention costs more the deeper
the cache, and on a small model the difference between depth 0 and depth 200 alone is ~20%
(``tgN`` in ``tokrace bench`` starts at depth 0, as llama-bench's does). Rounds are interleaved; the
table shows medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent / "tests"))

from speculative import make_pair  # noqa: E402

from tokrace.backends.base import LoadConfig  # noqa: E402
from tokrace.backends.bench_engine import LlamaDecodeTarget  # noqa: E402
from tokrace.backends.llama_cpp_backend import LlamaCppBackend  # noqa: E402
from tokrace.bench import timed_generation  # noqa: E402
from tokrace.model_registry.errors import TokraceError  # noqa: E402
from tokrace.session import Session  # noqa: E402


def generation(backend: LlamaCppBackend, n: int) -> tuple[float, int]:
    """(tok/s of the generation path, KV depth of its first generated token), timed as ``tokrace bench
    --draft`` times ``tgN-gen``."""
    try:
        ns, _tokens, _acceptance, depth = timed_generation(Session(backend, record=False), n)
    except TokraceError as err:
        raise SystemExit(f"{err} (--model)") from None
    return n * 1e9 / ns, depth


def raw_decode(backend: LlamaCppBackend, depth: int, n: int) -> float:
    """tok/s of ``n`` single-token ``llama_decode`` calls (``tokrace bench``'s decode, one token
    repeated) after ``depth`` cached positions."""
    target = LlamaDecodeTarget.of(backend)
    target.clear()
    target.decode([65] * depth)
    t0 = time.perf_counter()
    for _ in range(n - 1):
        target.decode([65])
    return (n - 1) / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, help="a GGUF (default: the generated 24-layer target)")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("--tokens", type=int, default=200)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dir", default=str(Path.home() / ".cache" / "tokrace-bench"))
    args = p.parse_args()
    model = args.model or make_pair(Path(args.dir), args.width, args.layers)[0]
    backend = LlamaCppBackend(LoadConfig(path=str(model), n_threads=args.threads), flash_attn=True)
    backend.load()
    generation(backend, 16)  # warm-up
    gen, raw, depth = [], [], 0
    for r in range(args.rounds):
        rate, depth = generation(backend, args.tokens)
        gen.append(rate)
        raw.append(raw_decode(backend, depth, args.tokens))
        print(f"  round {r + 1}: generation path {gen[-1]:.0f} tok/s, raw decode {raw[-1]:.0f} tok/s"
              f" ({gen[-1] / raw[-1]:.3f})", file=sys.stderr)
    g, w = statistics.median(gen), statistics.median(raw)
    ratios = [a / b for a, b in zip(gen, raw, strict=True)]
    print(f"{model.name}, {args.threads} threads, {args.tokens} tokens from KV depth {depth},"
          f" median of {args.rounds} interleaved rounds")
    print(f"generation path {g:.0f} tok/s, raw decode {w:.0f} tok/s: {g / w:.3f} of raw"
          f" (rounds {min(ratios):.3f}–{max(ratios):.3f})")


if __name__ == "__main__":
    main()
