"""Device telemetry: a background sampler the UI reads (never blocks on it).

``DeviceSampler.latest()`` returns the newest ``DeviceSnapshot``; the sampler thread refreshes it about
four times a second. With NVIDIA GPUs it reads them through ``backends.device_telemetry``'s
``NvmlReader`` (VRAM, utilisation, power, temperature, bandwidth, throttle reasons, energy). It always
reads the process's CPU % and RSS and the machine's RAM. Without NVML it says "CPU only" once; if NVML
fails mid-run (driver reset) it says "GPU telemetry lost" and carries on with the CPU figures. Where
NVML cannot attribute VRAM to this process (a container), "ours" is the used VRAM gained since the load
began (``mark_load_start``); energy is the boards' counters, else mean power × time.

For per-reply figures, ``begin_window()`` / ``end_window()`` give peak VRAM and energy (J) between two
moments, at the sampler's resolution (one interval): a ``WindowStats``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import psutil

from tokrace.backends.device_telemetry import GpuSample, NvmlReader, load_nvml

log = logging.getLogger("tokrace.telemetry")


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
    energy_j: float | None = None
    """GPU energy used since the sampler started, all GPUs together (None without GPU telemetry)."""

    @property
    def cpu_only(self) -> bool:
        return not self.gpus


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Between ``begin_window`` and ``end_window``: what a reply's record gains."""

    seconds: float
    peak_vram_bytes: int | None
    """This process's VRAM over all GPUs at its highest (device totals where NVML can't attribute)."""
    peak_rss_bytes: int
    energy_j: float | None

    def joules_per_token(self, tokens: int) -> float | None:
        return self.energy_j / tokens if self.energy_j is not None and tokens > 0 else None


class DeviceSampler:
    """Samples in a daemon thread; ``latest()`` is cheap and thread-safe.

    ``nvml``: a pynvml-like module (tests inject a fake); default: import ``pynvml`` if installed.
    ``use_gpu=False`` skips NVML entirely. ``pid``: whose VRAM counts as "this process" (default: ours).
    """

    def __init__(self, interval_s: float = 0.25, *, nvml: Any | None = None, use_gpu: bool = True,
                 pid: int | None = None) -> None:
        self.interval_s = interval_s
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # prime: the first reading is always 0
        self._lock = threading.Lock()
        self._windows: dict[int, list[Any]] = {}
        self._next_window = 0
        self._energy_j: float | None = None
        self._last_gpu: tuple[GpuSample, ...] = ()
        self._last_t = time.perf_counter()
        self.busy_s = 0.0
        """CPU time the sampler has spent sampling (its own cost)."""
        self._started_at: float | None = None
        self._load_baseline: dict[int, int] = {}
        """Used VRAM per GPU index when the last load began (``mark_load_start``)."""
        self._reader: NvmlReader | None = None
        self._status: str | None = "CPU only"
        if use_gpu:
            self._open_nvml(nvml if nvml is not None else load_nvml(), pid)
        if self._status == "CPU only":
            log.info("CPU only: no NVIDIA GPU telemetry (NVML not available); showing CPU and RAM")
        self._latest = self._sample()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _open_nvml(self, nvml: Any | None, pid: int | None) -> None:
        if nvml is None:
            return
        reader = NvmlReader(nvml, pid)
        try:
            if reader.open() == 0:
                reader.close()
                return
        except Exception:  # no driver / no library: a CPU-only machine, not an error
            reader.close()
            return
        self._reader, self._status = reader, None

    def _read_gpus(self, now: float) -> tuple[GpuSample, ...]:
        if self._reader is None:
            return ()
        try:
            gpus = self._reader.read()
        except Exception as err:  # any NVML failure mid-run: stop asking, keep the chat going
            log.warning("GPU telemetry lost: %s", err)
            self._reader.close()
            self._reader, self._status, self._last_gpu = None, "GPU telemetry lost", ()
            return ()
        if self._load_baseline:
            gpus = tuple(_with_load_delta(g, self._load_baseline.get(g.index)) for g in gpus)
        used = _energy_between(self._last_gpu, gpus, now - self._last_t)
        if used is not None:
            self._energy_j = (self._energy_j or 0.0) + used
        self._last_gpu = gpus
        return gpus

    def _sample(self) -> DeviceSnapshot:
        t0 = time.thread_time()
        now = time.perf_counter()
        with self._process.oneshot():
            # psutil divides by the time since the last call; two calls microseconds apart can read
            # thousands of %, so clamp to what the machine can do.
            cpu = min(self._process.cpu_percent(None), 100.0 * (os.cpu_count() or 1))
            rss = self._process.memory_info().rss
        vm = psutil.virtual_memory()
        gpus = self._read_gpus(now)
        self._last_t = now
        snap = DeviceSnapshot(
            t=now, process_cpu_percent=cpu, process_rss_bytes=rss, ram_used_bytes=vm.total - vm.available,
            ram_total_bytes=vm.total, gpus=gpus, status=self._status,
            energy_j=self._energy_j if self._reader is not None else None,
        )
        with self._lock:
            for w in self._windows.values():
                w[1] = max(w[1], rss)
                if gpus:
                    vram = sum(g.vram_process_bytes if g.vram_process_bytes is not None
                               else g.vram_used_bytes for g in gpus)
                    w[2] = vram if w[2] is None else max(w[2], vram)
        self.busy_s += time.thread_time() - t0
        return snap

    def latest(self) -> DeviceSnapshot:
        return self._latest

    def mark_load_start(self) -> None:
        """Call right before a model loads: where NVML cannot attribute VRAM to this process (in a
        container), "ours" becomes the used VRAM gained since this moment (``load delta``; it also
        counts anything another process allocated meanwhile, so it is an upper bound)."""
        if self._reader is None:
            return
        try:
            gpus = self._reader.read()
        except Exception:  # the next sample reports the loss
            return
        self._load_baseline = {g.index: g.vram_used_bytes for g in gpus}

    def begin_window(self) -> int:
        """Start tracking peak VRAM/RSS and energy (e.g. when a reply starts); returns a window id."""
        snap = self._latest
        with self._lock:
            wid = self._next_window
            self._next_window += 1
            self._windows[wid] = [snap.t, snap.process_rss_bytes, None, snap.energy_j]
        return wid

    def end_window(self, wid: int) -> WindowStats:
        snap = self._latest
        with self._lock:
            t0, rss, vram, e0 = self._windows.pop(wid)
        energy = None if snap.energy_j is None or e0 is None else snap.energy_j - e0
        return WindowStats(max(0.0, snap.t - t0), vram, max(rss, snap.process_rss_bytes), energy)

    def cost_fraction(self) -> float:
        """Sampler CPU time ÷ wall time since ``start()`` (0.01 = 1% of one core)."""
        if self._started_at is None:
            return 0.0
        return self.busy_s / max(1e-9, time.perf_counter() - self._started_at)

    def start(self) -> DeviceSampler:
        if self._thread is None:
            self._stop.clear()
            self._started_at, self.busy_s = time.perf_counter(), 0.0
            self._thread = threading.Thread(target=self._run, name="tokrace-telemetry", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._latest = self._sample()
            except Exception:  # telemetry must never take the app down; next tick retries
                log.exception("telemetry sample failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def _with_load_delta(g: GpuSample, baseline: int | None) -> GpuSample:
    """``g`` with "ours" from the load delta when NVML did not list this process after a load."""
    if baseline is None or g.pid_listed is not False:
        return g
    return replace(g, vram_process_bytes=max(0, g.vram_used_bytes - baseline),
                   vram_process_source="load delta")


def _energy_between(prev: tuple[GpuSample, ...], cur: tuple[GpuSample, ...], dt: float) -> float | None:
    """Joules used by all GPUs between two readings: the boards' energy counters where both readings
    have one, else mean power × time. None when no board reports either (energy unknown, not 0)."""
    total, known = 0.0, False
    for a, b in zip(prev or cur, cur, strict=False):
        if a.energy_j is not None and b.energy_j is not None and b.energy_j >= a.energy_j:
            total, known = total + b.energy_j - a.energy_j, True
        elif a.power_w is not None and b.power_w is not None:
            total, known = total + (a.power_w + b.power_w) / 2 * dt * bool(prev), True
    return total if known else None
