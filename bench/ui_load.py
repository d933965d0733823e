"""How much the chat UI slows a very fast token source.

A synthetic backend emits tokens paced at ``--rate`` tok/s (busy-waiting on perf_counter, so it
really runs at that rate when nothing else competes). Its achieved rate is measured twice,
interleaved: consumed by a bare loop, and streamed through the Textual chat screen (headless). The
slowdown is 1 − ui ÷ bare. Target: ≤ 2 % at 5,000 tok/s.

    .venv/bin/python bench/ui_load.py [--rate 5000] [--tokens 5000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic_chat import FixedSampler, PacedBackend, send_and_wait

from tokrace.backends.base import GenerationParams
from tokrace.backends.meter import SpeedMeter

WORDS = "the quick brown fox jumps over the lazy dog and **keeps** running through `code` and\n\n"


def paced(rate: float, n: int) -> PacedBackend:
    return PacedBackend(rate, n, [w + " " for w in WORDS.split(" ")], sleep=False)


def bare(rate: float, n: int) -> float:
    meter = SpeedMeter()
    for event in paced(rate, n).stream_chat([], GenerationParams(max_tokens=n)):
        meter.observe(event)
    return meter.stats.gen_tok_s or 0.0


def through_ui(rate: float, n: int) -> float:
    from tokrace.tui.app import TokraceApp

    async def go() -> float:
        app = TokraceApp(backend=paced(rate, n), sampler=FixedSampler(),  # type: ignore[arg-type]
                         params=GenerationParams(max_tokens=n))
        async with app.run_test(size=(120, 40)) as pilot:
            await send_and_wait(app, pilot)
            assert app.chat.meter is not None
            return app.chat.meter.stats.gen_tok_s or 0.0

    return asyncio.run(go())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=5000)
    ap.add_argument("--tokens", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    rows = []
    for r in range(a.rounds):
        b, u = bare(a.rate, a.tokens), through_ui(a.rate, a.tokens)
        rows.append((b, u))
        print(f"round {r + 1}: bare {b:8.1f} tok/s   ui {u:8.1f} tok/s   slowdown {1 - u / b:6.2%}",
              flush=True)
    slow = [1 - u / b for b, u in rows]
    print(f"\nsource {a.rate:.0f} tok/s × {a.tokens} tokens, {a.rounds} rounds: "
          f"median slowdown {statistics.median(slow):.2%} (min {min(slow):.2%}, max {max(slow):.2%})")


if __name__ == "__main__":
    main()
