"""How long ``tokrace --help`` takes from a cold interpreter, and which imports it spends the time on.

    .venv/bin/python bench/cold_start.py [--runs 15] [--tree DIR ...] [--top 12]

Each run is a fresh ``python -m tokrace --help`` (the console script does the same import plus a few
lines of its own): wall time from ``subprocess`` start to exit, so interpreter start-up is in it.
Every source tree given with ``--tree`` (default: this checkout) goes first on ``PYTHONPATH``, so the
same interpreter and installed libraries time an older checkout (``git worktree add /tmp/old REV``)
against this one; the trees run interleaved, round by round, so machine noise hits them alike. One
untimed run per tree first compiles its ``.pyc`` files. Prints min / median / max per tree, then
``python -X importtime``'s heaviest packages (cumulative, µs) in the first tree's ``--help``.

Budget: median under 0.3 s (the issue's goal for a cold ``--help``). Figures depend on the machine and
its load: compare trees from one run, never with a figure taken another day.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = 0.3
HELP = [sys.executable, "-m", "tokrace", "--help"]


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": ""}


def time_help(tree: Path) -> float:
    """Seconds for one ``python -m tokrace --help`` importing tokrace from ``tree``."""
    start = time.perf_counter()
    proc = subprocess.run(HELP, cwd=tree, env=_env(tree), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"tokrace --help failed in {tree}:\n{proc.stderr}")
    return elapsed


def heaviest_imports(tree: Path, top: int) -> list[tuple[int, int, str]]:
    """(cumulative µs, self µs, name) of the ``top`` costliest packages and top-level modules that
    ``--help`` imports (``-X importtime`` lines naming a module without a dot, at any depth: ``numpy``,
    ``pydantic``, ``asyncio``; their cumulative time includes what they import in turn)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *HELP[1:]], cwd=tree, env=_env(tree),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rows: list[tuple[int, int, str]] = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|", 2)
        if "." not in name.strip():
            rows.append((int(cumulative_us), int(self_us), name.strip()))
    return sorted(rows, reverse=True)[:top]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="timed runs per tree (default: 15)")
    parser.add_argument("--tree", type=Path, action="append", help="a source tree (default: this one)")
    parser.add_argument("--top", type=int, default=12, help="imports to list (default: 12)")
    args = parser.parse_args()
    trees = [t.resolve() for t in args.tree or [ROOT]]
    times: dict[Path, list[float]] = {t: [] for t in trees}
    for tree in trees:
        time_help(tree)  # untimed: writes the .pyc files
    for _ in range(args.runs):
        for tree in trees:
            times[tree].append(time_help(tree))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"tokrace --help, {args.runs} runs per tree, interleaved; load average {load:.2f} on "
          f"{os.cpu_count()} CPUs; budget {BUDGET_S} s (median)")
    for tree, ts in times.items():
        median = statistics.median(ts)
        verdict = "ok" if median < BUDGET_S else "OVER BUDGET"
        print(f"  {tree}: min {min(ts):.3f} s  median {median:.3f} s  max {max(ts):.3f} s  {verdict}")
    print(f"\nheaviest packages imported by {trees[0]} (python -X importtime, one run):")
    print(f"  {'cumulative':>12}  {'self':>10}  module")
    for cumulative, own, name in heaviest_imports(trees[0], args.top):
        print(f"  {cumulative:>9} µs  {own:>7} µs  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
