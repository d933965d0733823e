"""The chat UI's own CPU while it streams, and whether it grows with the reply's length.

A synthetic backend emits ``--tokens`` tokens at ``--rate`` tok/s, sleeping between them (so the
source itself uses no CPU); the Textual app (headless) streams them into the chat screen. The
process's CPU time is sampled every ``--window`` tokens: CPU seconds per second of streaming, for the
first and the last window of the reply, and for the idle app afterwards (nothing streaming).

    .venv/bin/python bench/render_cost.py [--rate 200] [--tokens 4000] [--window 500] [--idle 3]
    .venv/bin/python bench/render_cost.py --shape list     # one long bulleted list (a single block)

Target: the last window costs no more than the first (render cost does not grow with the reply),
the idle app close to 0 % of a core.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic_chat import FixedSampler, PacedBackend, send_and_wait

from tokrace.backends.base import GenerationParams

SHAPES = {
    "paragraphs": "the quick brown fox jumps over the lazy dog and keeps running through the field\n\n",
    "list": "- the quick brown fox jumps over the lazy dog\n",
    "prose": "the quick brown fox jumps over the lazy dog and keeps running through the field ",
}


def measure(rate: float, n: int, shape: str, window: int, idle_s: float) -> tuple[list[float], float]:
    """(CPU fraction of one core per window while streaming, CPU fraction while idle afterwards)."""
    from tokrace.tui.app import TokraceApp

    # Tokens as a model emits them: a word with the whitespace that follows it (newlines too).
    backend = PacedBackend(rate, n, re.findall(r"\S+\s*", SHAPES[shape]), sleep=True, window=window)

    async def go() -> float:
        app = TokraceApp(backend=backend, sampler=FixedSampler(),  # type: ignore[arg-type]
                         params=GenerationParams(max_tokens=n))
        async with app.run_test(size=(120, 40)) as pilot:
            await send_and_wait(app, pilot)
            await pilot.pause(1.0)  # let the final render settle
            w0, c0 = time.perf_counter(), time.process_time()
            await asyncio.sleep(idle_s)
            return (time.process_time() - c0) / (time.perf_counter() - w0)

    idle = asyncio.run(go())
    m = backend.marks
    per_window = [(c1 - c0) / (w1 - w0) for (w0, c0), (w1, c1) in itertools.pairwise(m)]
    return per_window, idle


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--tokens", type=int, default=4000)
    ap.add_argument("--window", type=int, default=500)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="paragraphs")
    ap.add_argument("--idle", type=float, default=3.0)
    a = ap.parse_args()
    per_window, idle = measure(a.rate, a.tokens, a.shape, a.window, a.idle)
    print(f"{a.shape}, {a.rate:.0f} tok/s × {a.tokens} tokens: UI CPU per second of streaming, by window"
          f" of {a.window} tokens (fraction of one core)")
    print("  " + "  ".join(f"{x:.1%}" for x in per_window))
    first, last = per_window[0], per_window[-1]
    print(f"first {first:.1%} · last {last:.1%} · last/first {last / first:.2f} · idle {idle:.2%}")


if __name__ == "__main__":
    main()
