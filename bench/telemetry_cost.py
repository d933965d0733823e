"""How much CPU the telemetry sampler costs (budget: under 1% of one core).

    python bench/telemetry_cost.py [--seconds 10] [--interval 0.25]

Runs the sampler while the main thread sleeps and reports two figures per configuration:
- ``thread``: the sampler's own CPU time (``time.thread_time`` around each sample) ÷ wall time;
- ``process``: the whole process's CPU time ÷ wall time (includes the sleeping main thread, ~0).
Configurations: the CPU-only path (psutil), the NVML path against the fake 2 × RTX 4090 tables (the
Python side of a GPU machine: the real NVML calls add a few µs each in the driver), and real NVML if
this machine has a GPU. Exits 1 if any configuration is over budget.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from tokrace.backends.device_sampler import DeviceSampler  # noqa: E402
from tokrace.backends.device_telemetry import detect_gpus, load_nvml  # noqa: E402

BUDGET = 0.01


def measure(label: str, seconds: float, interval: float, **kwargs: object) -> tuple[str, float, float]:
    sampler = DeviceSampler(interval, **kwargs)  # type: ignore[arg-type]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    sampler.start()
    time.sleep(seconds)
    thread_share = sampler.cost_fraction()
    process_share = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    snap = sampler.latest()
    sampler.stop()
    samples = round(seconds / interval)
    per_sample_ms = thread_share * interval * 1000
    print(f"{label:<34} thread {thread_share:7.3%}  process {process_share:7.3%}  "
          f"~{per_sample_ms:.2f} ms/sample × {samples}  status={snap.status!r} gpus={len(snap.gpus)}")
    return label, thread_share, process_share


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--interval", type=float, default=0.25)
    args = ap.parse_args()
    from nvml_tables import OWN_PID, TWO_RTX_4090, FakeNvml

    results = [
        measure("CPU only (psutil)", args.seconds, args.interval, use_gpu=False),
        measure("NVML path, fake 2 × RTX 4090", args.seconds, args.interval,
                nvml=FakeNvml(TWO_RTX_4090()), pid=OWN_PID),
    ]
    nvml = load_nvml()
    if nvml is not None and detect_gpus(nvml):
        results.append(measure("real NVML", args.seconds, args.interval, nvml=nvml))
    worst = max(max(t, p) for _, t, p in results)
    print(f"worst: {worst:.3%} of one core (budget {BUDGET:.0%}) → {'OK' if worst < BUDGET else 'OVER'}")
    return 0 if worst < BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
