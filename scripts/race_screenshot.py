"""Save screenshots/race.svg: the app itself, headless, racing two real models on the race screen.

    .venv/bin/python scripts/race_screenshot.py [--a M] [--b M] [--mode fair|simultaneous] [--out PATH]

Defaults: SmolLM2-135M-Instruct Q4_1 against Gemma 3 270M Q4_K_M (the small CPU analogue of 8B vs
70B), fair mode (one after the other, then replayed side by side at true timing). The race is not written
to the speed log. Prints each lane's figures and the verdict.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from tokrace.backends.base import GenerationParams  # noqa: E402
from tokrace.tui.app import TokraceApp  # noqa: E402
from tokrace.tui.race.setup import RaceSetup  # noqa: E402


async def shoot(a: str, b: str, mode: str, prompt: str, out: Path, max_tokens: int,
                threads: int | None) -> None:
    setup = RaceSetup(refs=[a, b], mode=mode, threads=threads, record=False)  # type: ignore[arg-type]
    app = TokraceApp(params=GenerationParams(max_tokens=max_tokens, temperature=0.2, seed=42), race=setup)
    async with app.run_test(size=(140, 40)) as pilot:
        race = app.race
        assert race is not None
        while not race._ready:
            await pilot.pause(0.1)
        await pilot.pause(0.5)
        race.send(prompt)
        await pilot.pause(0.5)
        while race.racing:
            await pilot.pause(0.1)
        await pilot.pause(1.0)  # a few telemetry ticks after the end
        out.parent.mkdir(parents=True, exist_ok=True)
        app.save_screenshot(filename=out.name, path=str(out.parent))
        for lane, result in zip(race.lanes, race.results, strict=True):
            print(f"{lane.label} {lane.title} [{lane.model.template if lane.model else '-'}]: "
                  f"{result.stats.summary_line()}")
        for line in race.verdict.lines if race.verdict else []:
            print(line)
    print(f"saved {out}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", default="smollm2-135m-instruct:q4_1")
    ap.add_argument("--b", default="gemma3-270m:q4_k_m")
    ap.add_argument("--mode", choices=["fair", "simultaneous"], default="fair")
    ap.add_argument("--prompt", default="Write a short story about a robot who learns to paint.")
    ap.add_argument("--out", type=Path, default=ROOT / "screenshots" / "race.svg")
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads (default: all cores; on a machine other jobs share, 1 avoids"
                         " llama.cpp's spinning thread pool collapsing under contention)")
    a = ap.parse_args()
    asyncio.run(shoot(a.a, a.b, a.mode, a.prompt, a.out, a.max_tokens, a.threads))


if __name__ == "__main__":
    main()
