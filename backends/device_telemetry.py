"""Reading the hardware: NVIDIA GPUs through NVML, and the CPU's model name.

This is the one place that opens NVML or reads ``/proc/cpuinfo``: the sampler
(``backends.device_sampler``), the speed log's hardware line, the roofline's cache key, ``tokrace plan``
and ``models info`` all ask here, so they cannot disagree.

- ``GpuSample``: one GPU at one moment. ``NvmlReader`` reads every GPU through NVML (the ``pynvml``
  module of the ``nvidia-ml-py`` package, ``load_nvml``): VRAM used/total and this process's share,
  utilisation, power, temperature, memory clock × bus width (→ peak bandwidth), throttle reasons and
  the energy counter.
- ``detect_gpus`` (one reading, for planning) and ``gpu_inventory`` (names and driver version): ``[]``
  / ``((), None)`` on a machine without NVML or GPU, never an error.
- ``cpu_model``: the CPU's name as the OS gives it.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias

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
