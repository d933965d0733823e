"""GPU test fixtures: NVML device tables behind a fake ``pynvml`` module, and GGUF shapes of real models.

The device tables follow what ``nvidia-smi -q`` / NVML report for these boards (totals in bytes as
NVML gives them, memory clock and bus width whose product is the spec-sheet bandwidth). They were
written from spec sheets and public nvidia-smi dumps, not captured on this machine (it has no GPU).

``FakeNvml`` implements the slice of the pynvml API tokrace calls, with pynvml's names, units (mW, mJ,
MHz) and error type, so the sampler runs unchanged against it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from tokrace.model_registry.gguf_meta import GGUFInfo

MIB = 1 << 20
GIB = 1 << 30
OWN_PID = 4242
OTHER_PID = 777


@dataclass
class FakeGpu:
    name: str
    total: int
    used: int
    mem_clock_mhz: int
    bus_width: int
    util: int = 0
    power_mw: int = 30_000
    temp_c: int = 40
    energy_mj: int = 1_000_000
    throttle: int = 0
    processes: dict[int, int] = field(default_factory=dict)
    """pid → VRAM bytes."""


# RTX 4090: 24564 MiB, GDDR6X at 10501 MHz (NVML's memory clock) × 384 bit → 1008 GB/s.
def rtx_4090(**kw: Any) -> FakeGpu:
    return FakeGpu("NVIDIA GeForce RTX 4090", 24564 * MIB, kw.pop("used", 412 * MIB), 10501, 384, **kw)


TWO_RTX_4090 = lambda: [  # noqa: E731 - a fresh table per test, the sampler test mutates it
    rtx_4090(util=97, power_mw=285_000, temp_c=63, used=20_100 * MIB, processes={OWN_PID: 19_650 * MIB}),
    rtx_4090(util=95, power_mw=271_000, temp_c=58, used=19_400 * MIB, processes={OWN_PID: 18_960 * MIB}),
]
# RTX 6000 Ada: 49140 MiB GDDR6 at 10001 MHz × 384 bit → 960 GB/s.
ONE_RTX_6000_ADA = lambda: [  # noqa: E731
    FakeGpu("NVIDIA RTX 6000 Ada Generation", 49140 * MIB, 6_300 * MIB, 10001, 384, util=99,
            power_mw=292_000, temp_c=71, throttle=0x4, processes={OWN_PID: 5_900 * MIB}),
]
# H200 SXM: 143771 MiB HBM3e at 3201 MHz × 6144 bit → 4.9 TB/s (spec sheet: 4.8 TB/s).
ONE_H200 = lambda: [  # noqa: E731
    FakeGpu("NVIDIA H200", 143_771 * MIB, 600 * MIB, 3201, 6144, util=0, power_mw=112_000, temp_c=33),
]
# A 4090 that another process (a training job) has mostly taken: 21 GiB used, none of it ours.
BUSY_RTX_4090 = lambda: [  # noqa: E731
    rtx_4090(util=100, power_mw=430_000, temp_c=79, used=21 * 1024 * MIB, throttle=0x20,
             processes={OTHER_PID: 21 * 1024 * MIB - 412 * MIB}),
]


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_LIBRARY_NOT_FOUND = 12


class FakeNvml:
    """A module-like object: ``FakeNvml(gpus).nvmlDeviceGetName(h)`` etc. ``lose_after`` makes every call
    fail with GPU_IS_LOST once that many device queries have run (a driver reset mid-run)."""

    NVMLError = NVMLError
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, gpus: list[FakeGpu], *, lose_after: int | None = None,
                 init_error: int | None = None) -> None:
        self.gpus = gpus
        self.lose_after = lose_after
        self.init_error = init_error
        self.calls = 0
        self.initialised = False
        self.shutdowns = 0
        self._lock = threading.Lock()

    def _dev(self, handle: int) -> FakeGpu:
        with self._lock:
            self.calls += 1
            if self.lose_after is not None and self.calls > self.lose_after:
                raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        if not self.initialised:
            raise NVMLError(1)  # NVML_ERROR_UNINITIALIZED
        return self.gpus[handle]

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1
        self.initialised = False

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlSystemGetDriverVersion(self) -> bytes:
        if not self.initialised:
            raise NVMLError(1)  # NVML_ERROR_UNINITIALIZED
        return b"550.54.15"  # old pynvml releases return bytes

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> str:
        return self._dev(h).name

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        g = self._dev(h)
        return SimpleNamespace(total=g.total, used=g.used, free=g.total - g.used)

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        return [SimpleNamespace(pid=p, usedGpuMemory=b) for p, b in self._dev(h).processes.items()]

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        return SimpleNamespace(gpu=self._dev(h).util, memory=0)

    def nvmlDeviceGetMaxClockInfo(self, h: int, clock: int) -> int:
        assert clock == self.NVML_CLOCK_MEM
        return self._dev(h).mem_clock_mhz

    def nvmlDeviceGetMemoryBusWidth(self, h: int) -> int:
        return self._dev(h).bus_width

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return self._dev(h).power_mw

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self._dev(h).temp_c

    def nvmlDeviceGetTotalEnergyConsumption(self, h: int) -> int:
        return self._dev(h).energy_mj

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: int) -> int:
        return self._dev(h).throttle


# --- model shapes -------------------------------------------------------------------------------------
# Q4_K stores 256 weights in 144 bytes (0.5625 B/weight), Q6_K in 210 (0.8203125 B/weight). llama.cpp's
# Q4_K_M keeps attn_v and ffn_down at Q6_K in "more bits" layers: i < n/8, i >= 7n/8, (i - n/8) % 3 == 2.
Q4K, Q6K = 144 / 256, 210 / 256


def more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def llama3_q4_k_m(*, n_layers: int, n_embd: int, n_ff: int, n_head: int, n_head_kv: int,
                  n_vocab: int = 128_256, n_ctx_train: int = 8192, name: str = "Llama 3") -> GGUFInfo:
    head_dim = n_embd // n_head
    kv = n_head_kv * head_dim
    q4 = n_embd * n_embd * 2 + kv * n_embd + n_ff * n_embd * 2  # q, output, k, gate, up
    mixed = kv * n_embd + n_ff * n_embd  # v, down
    norms = 2 * n_embd * 4
    layers = [int(q4 * Q4K) + int(mixed * (Q6K if more_bits(i, n_layers) else Q4K)) + norms
              for i in range(n_layers)]
    embd = int(n_vocab * n_embd * Q4K)
    out = int(n_vocab * n_embd * Q6K)
    total = sum(layers) + embd + out + n_embd * 4
    return GGUFInfo(
        architecture="llama", name=name, quantization="Q4_K_M", n_params=0, n_layers=n_layers,
        n_ctx_train=n_ctx_train, n_embd=n_embd, n_head=n_head, n_head_kv=n_head_kv, head_dim=head_dim,
        n_vocab=n_vocab, vocab_hash="", chat_template=None, bos_token_id=None, eos_token_id=None,
        file_size=total, data_offset=0, tensors_bytes=total, layer_bytes=layers,
    )


def llama3_8b() -> GGUFInfo:
    return llama3_q4_k_m(n_layers=32, n_embd=4096, n_ff=14336, n_head=32, n_head_kv=8, name="Llama 3 8B")


def llama3_70b() -> GGUFInfo:
    return llama3_q4_k_m(n_layers=80, n_embd=8192, n_ff=28672, n_head=64, n_head_kv=8,
                         name="Llama 3 70B")
