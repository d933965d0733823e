"""Fair mode vs solo: does racing one after the other give each lane its solo speed?

    .venv/bin/python bench/race_fair.py [A] [B] [--tokens 128] [--reps 3] [--threads N]

For each repetition, in alternating order: A alone, B alone (each ``run_lane`` on its own), then a fair
race of A and B (``run_race(mode="fair")``). Prints each lane's generation tok/s, mean ± sd, and the
fair/solo ratio, which should be within a few % of 1.00; and the simultaneous race for contrast (both
lanes on one device with the threads split). A benchmark that prints figures, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from tokrace.backends.base import CancelToken, GenerationParams  # noqa: E402
from tokrace.backends.placement import PlacementRequest  # noqa: E402
from tokrace.backends.race import run_race  # noqa: E402
from tokrace.backends.race_lane import run_lane  # noqa: E402
from tokrace.race_setup import plan_race  # noqa: E402


def fmt(xs: list[float]) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):7.1f} ± {sd:5.1f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("a", nargs="?", default="smollm2-135m-instruct:q4_1")
    ap.add_argument("b", nargs="?", default="gemma3-270m:q4_k_m")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--prompt", default="Write a short story about a robot who learns to paint.")
    a = ap.parse_args()
    params = GenerationParams(max_tokens=a.tokens, temperature=0.0)
    plan = plan_race([a.a, a.b], mode="fair", threads=a.threads, request=PlacementRequest(), gpus=[])
    lanes = plan.lanes
    for lane in lanes:
        if not lane.load():
            sys.exit(f"lane {lane.label}: {lane.load_error}")
        lane.warm_up()
    solo: dict[str, list[float]] = {lane.label: [] for lane in lanes}
    fair: dict[str, list[float]] = {lane.label: [] for lane in lanes}
    for rep in range(a.reps):
        for lane in (lanes if rep % 2 == 0 else lanes[::-1]):
            lane.history.clear()
            r = run_lane(lane, a.prompt, params, CancelToken())
            solo[lane.label].append(r.stats.gen_tok_s or 0.0)
        for lane in lanes:
            lane.history.clear()
        race = run_race(lanes, a.prompt, params, mode="fair", cancel=CancelToken())
        for r in race.lanes:
            fair[r.label].append(r.stats.gen_tok_s or 0.0)
    for lane in lanes:
        lane.history.clear()
    simul = plan_race([a.a, a.b], mode="simultaneous", threads=a.threads, request=PlacementRequest(),
                      gpus=[])
    shared = run_race(simul.lanes, a.prompt, params, mode="simultaneous", cancel=CancelToken())
    print(f"{a.tokens} tokens, {a.reps} reps, {plan.describe()}")
    print(f"{'lane':<4} {'model':<28} {'solo tok/s':>16} {'fair tok/s':>16} {'fair/solo':>9} "
          f"{'simultaneous':>12}")
    for lane, r in zip(lanes, shared.lanes, strict=True):
        ratio = statistics.mean(fair[lane.label]) / statistics.mean(solo[lane.label])
        print(f"{lane.label:<4} {lane.title:<28} {fmt(solo[lane.label]):>16} {fmt(fair[lane.label]):>16} "
              f"{ratio:9.3f} {r.stats.gen_tok_s or 0:12.1f}")
    print("verdict (last fair race): " + race.verdict.headline)
    print("verdict (simultaneous):   " + shared.verdict.headline)


if __name__ == "__main__":
    main()
