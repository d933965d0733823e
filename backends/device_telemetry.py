"""Device telemetry: a background sampler the UI reads (never blocks on it).

``DeviceSampler.latest()`` returns the newest ``DeviceSnapshot``; the sampler thread refreshes it about
four times a second. With NVIDIA GPUs it reads them through NVML (the ``pynvml`` module of the
``nvidia-ml-py`` package): VRAM used/total and this process's share, utilisation, power, temperature,
memory clock × bus width (→ peak bandwidth), throttle reasons and the energy counter. It always reads the
process's CPU % and RSS and the machine's RAM. Without NVML it says "CPU only" once; if NVML fails
mid-run (driver reset) it says "GPU telemetry lost" and carries on with the CPU figures.

For per-reply figures, ``begin_window()`` / ``end_window()`` give peak VRAM and energy (J) between two
moments, at the sampler's resolution (one interval).
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import subprocess
import threading
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeAlias

import psutil

log = logging.getLogger("tokrace.telemetry")

# NVML clock-event (throttle) reason bits, stable across driver versions. "GPU idle" (0x1) is left out:
# it is the normal state between replies, not a slowdown.
_THROTTLE_BITS: dict[int, str] = {
    0x2: "application clocks", 0x4: "power cap", 0x8: "hardware slowdown", 0x10: "sync boost",
    0x20: "software thermal", 0x40: "hardware thermal", 0x80: "power brake", 0x100: "display clock",
}
_NVML_NOT_SUPPORTED = 3
_NVML_NO_PERMISSION = 4


VramSource: TypeAlias = Literal["nvml", "load delta"]


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
    energy_j: float | None = None
    """The board's energy counter (J since the driver loaded), when it has one."""
    vram_process_source: VramSource | None = None
    """Where ``vram_process_bytes`` came from: ``nvml`` (the driver's per-process accounting, by PID)
    or ``load delta`` (used VRAM now minus used VRAM when the load began: in a container NVML lists
    host PIDs, so our own PID is never among them). ``None`` when it is unknown."""
    pid_listed: bool | None = None
    """Whether NVML listed this process among the board's compute processes (``None``: not asked)."""

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


def load_nvml() -> Any | None:
    """The ``pynvml`` module, or None when it is not installed."""
    try:
        with warnings.catch_warnings():
            # The deprecated ``pynvml`` wrapper package warns on import; nvidia-ml-py's module doesn't.
            warnings.simplefilter("ignore", FutureWarning)
            import pynvml
    except ImportError:
        return None
    return pynvml


class NvmlReader:
    """Reads every GPU through a pynvml-like module. Static facts are read once at ``open``; a query a
    board doesn't support becomes None and is not asked again. Any other NVML error propagates."""

    def __init__(self, nvml: Any, pid: int | None = None) -> None:
        self.nvml = nvml
        self.pid = os.getpid() if pid is None else pid
        self._handles: list[Any] = []
        self._static: list[tuple[str, int | None, int | None]] = []
        self._unsupported: set[tuple[int, str]] = set()

    def open(self) -> int:
        """Initialise NVML; returns the GPU count. Raises when NVML (or its driver) is missing."""
        nv = self.nvml
        nv.nvmlInit()
        self._handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(nv.nvmlDeviceGetCount())]
        self._static = []
        for i, h in enumerate(self._handles):
            name = nv.nvmlDeviceGetName(h)
            name = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
            clock = self._optional(i, "clock", nv.nvmlDeviceGetMaxClockInfo, h, nv.NVML_CLOCK_MEM)
            bus = self._optional(i, "bus", nv.nvmlDeviceGetMemoryBusWidth, h)
            self._static.append((name, clock, bus))
        return len(self._handles)

    @property
    def names(self) -> tuple[str, ...]:
        """The GPUs' names, as ``open`` read them."""
        return tuple(name for name, _, _ in self._static)

    def _optional(self, i: int, what: str, fn: Any, *args: Any) -> Any:
        if (i, what) in self._unsupported:
            return None
        try:
            return fn(*args)
        except self.nvml.NVMLError as err:
            if getattr(err, "value", None) in (_NVML_NOT_SUPPORTED, _NVML_NO_PERMISSION):
                self._unsupported.add((i, what))
                return None
            raise

    def read(self) -> tuple[GpuSample, ...]:
        nv, out = self.nvml, []
        for i, h in enumerate(self._handles):
            name, clock, bus = self._static[i]
            mem = nv.nvmlDeviceGetMemoryInfo(h)  # the one query every board answers: failure = lost
            procs = self._optional(i, "procs", nv.nvmlDeviceGetComputeRunningProcesses, h)
            mine = None if procs is None else sum(
                p.usedGpuMemory or 0 for p in procs if p.pid == self.pid
            )
            # Not listed although we loaded onto this GPU: another PID namespace (a container sees
            # host PIDs). DeviceSampler then takes "ours" from the load delta instead.
            listed = None if procs is None else any(p.pid == self.pid for p in procs)
            util = self._optional(i, "util", nv.nvmlDeviceGetUtilizationRates, h)
            power = self._optional(i, "power", nv.nvmlDeviceGetPowerUsage, h)
            temp = self._optional(i, "temp", nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU)
            energy = self._optional(i, "energy", nv.nvmlDeviceGetTotalEnergyConsumption, h)
            reasons_fn = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
                nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
            bits = self._optional(i, "throttle", reasons_fn, h) if reasons_fn else None
            out.append(GpuSample(
                index=i, name=name, vram_used_bytes=int(mem.used), vram_total_bytes=int(mem.total),
                vram_process_bytes=mine, vram_process_source="nvml" if mine is not None else None,
                pid_listed=listed,
                util_percent=None if util is None else float(util.gpu),
                power_w=None if power is None else power / 1000,
                temperature_c=None if temp is None else float(temp),
                mem_clock_mhz=None if clock is None else float(clock), bus_width_bits=bus,
                throttle_reasons=tuple(v for b, v in _THROTTLE_BITS.items() if bits and bits & b),
                energy_j=None if energy is None else energy / 1000,
            ))
        return tuple(out)

    def close(self) -> None:
        # Shutting down after a driver reset may fail too; there is nothing left to do then.
        with contextlib.suppress(Exception):
            self.nvml.nvmlShutdown()


def detect_gpus(nvml: Any | None = None) -> list[GpuSample]:
    """One reading of every GPU, or [] when there is no NVML or no GPU (for ``tokrace plan``)."""
    nvml = nvml if nvml is not None else load_nvml()
    if nvml is None:
        return []
    reader = NvmlReader(nvml)
    try:
        return list(reader.read()) if reader.open() else []
    except Exception:  # pynvml raises NVMLError subclasses; no GPU is the answer either way
        return []
    finally:
        reader.close()


def gpu_inventory(nvml: Any | None = None) -> tuple[tuple[str, ...], str | None]:
    """GPU names and the NVIDIA driver version (for the speed log's hardware line), read as
    ``NvmlReader.open`` reads them; ``((), None)`` when there is no NVML, no driver or no GPU."""
    nvml = nvml if nvml is not None else load_nvml()
    if nvml is None:
        return (), None
    reader = NvmlReader(nvml)
    try:
        if not reader.open():
            return (), None
        driver = nvml.nvmlSystemGetDriverVersion()
        return reader.names, driver.decode() if isinstance(driver, bytes) else str(driver)
    except Exception:  # NVMLError_LibraryNotFound and friends: no driver, no GPU to report
        return (), None
    finally:
        reader.close()


def cpu_model() -> str:
    """``/proc/cpuinfo``'s model name on Linux, ``sysctl`` on macOS, else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "cpu model") and value.strip():
                return " ".join(value.split())
    except OSError:
        pass
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=2
            )
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown CPU"


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
