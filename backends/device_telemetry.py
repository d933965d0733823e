"""Device telemetry: a background sampler the UI reads (never blocks on it).

``DeviceSampler.latest()`` returns the newest ``DeviceSnapshot``; the sampler thread refreshes it about
four times a second. Without a GPU it reports the process's CPU % and RSS and the machine's RAM.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import psutil


@dataclass(frozen=True, slots=True)
class GpuSample:
    index: int
    name: str
    vram_used_bytes: int
    vram_total_bytes: int
    vram_process_bytes: int | None
    util_percent: float | None
    power_w: float | None
    temperature_c: float | None
    mem_clock_mhz: float | None = None
    bus_width_bits: int | None = None
    throttle_reasons: tuple[str, ...] = ()

    @property
    def peak_bandwidth_gb_s(self) -> float | None:
        """Memory clock × bus width (DDR: × 2)."""
        if not (self.mem_clock_mhz and self.bus_width_bits):
            return None
        return self.mem_clock_mhz * 1e6 * 2 * self.bus_width_bits / 8 / 1e9


@dataclass(frozen=True, slots=True)
class DeviceSnapshot:
    t: float
    process_cpu_percent: float
    """Of one core (200% = two cores busy), as ``top`` shows it."""
    process_rss_bytes: int
    ram_used_bytes: int
    ram_total_bytes: int
    gpus: tuple[GpuSample, ...] = ()
    status: str | None = None
    """A state worth one line in the UI, e.g. "CPU only" or "GPU telemetry lost"."""
    cpu_count: int = field(default_factory=lambda: os.cpu_count() or 1)

    @property
    def cpu_only(self) -> bool:
        return not self.gpus


class DeviceSampler:
    """Samples in a daemon thread; ``latest()`` is cheap and thread-safe."""

    def __init__(self, interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # prime: the first reading is always 0
        self._latest = self._sample()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> DeviceSnapshot:
        with self._process.oneshot():
            cpu = self._process.cpu_percent(None)
            rss = self._process.memory_info().rss
        vm = psutil.virtual_memory()
        return DeviceSnapshot(
            t=time.perf_counter(),
            process_cpu_percent=cpu,
            process_rss_bytes=rss,
            ram_used_bytes=vm.total - vm.available,
            ram_total_bytes=vm.total,
            status="CPU only",
        )

    def latest(self) -> DeviceSnapshot:
        return self._latest

    def start(self) -> DeviceSampler:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tokrace-telemetry", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._latest = self._sample()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
