"""Telemetry at the NVML boundary (a fake pynvml over recorded device tables) and, for real, on the CPU."""

from __future__ import annotations

import logging
import time

import pytest
from nvml_tables import (
    BUSY_RTX_4090,
    ONE_H200,
    ONE_RTX_6000_ADA,
    OWN_PID,
    TWO_RTX_4090,
    FakeNvml,
    NVMLError,
    rtx_4090,
)

from tokrace.backends.device_sampler import DeviceSampler, _energy_between
from tokrace.backends.device_telemetry import GpuSample, cpu_model, detect_gpus, gpu_inventory, load_nvml

MIB = 1 << 20


def wait_for(pred, timeout: float = 3.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return False


def test_two_4090s() -> None:
    sampler = DeviceSampler(nvml=FakeNvml(TWO_RTX_4090()), pid=OWN_PID)
    snap = sampler.latest()
    assert snap.status is None and not snap.cpu_only
    g0, g1 = snap.gpus
    assert g0.name == "NVIDIA GeForce RTX 4090" and g1.index == 1
    assert g0.vram_total_bytes == 24564 * MIB and g0.vram_used_bytes == 20_100 * MIB
    assert g0.vram_process_bytes == 19_650 * MIB
    assert (g0.util_percent, g0.power_w, g0.temperature_c) == (97.0, 285.0, 63.0)
    assert g0.peak_bandwidth_gb_s == pytest.approx(1008.1, abs=0.1)  # 10501 MHz × 2 × 384 bit
    assert g0.throttle_reasons == ()
    assert snap.energy_j == 0.0  # counting starts with the sampler
    sampler.stop()


def test_rtx_6000_ada_and_h200() -> None:
    (ada,) = detect_gpus(FakeNvml(ONE_RTX_6000_ADA()))
    assert ada.peak_bandwidth_gb_s == pytest.approx(960.0, abs=0.1)  # the roofline's 960 GB/s
    assert ada.throttle_reasons == ("power cap",)
    assert ada.vram_process_bytes == 0  # detect_gpus reads as this test process, which holds nothing
    (h200,) = detect_gpus(FakeNvml(ONE_H200()))
    assert h200.vram_total_bytes == 143_771 * MIB
    assert h200.peak_bandwidth_gb_s == pytest.approx(4917, abs=1)


def test_gpu_mostly_used_by_another_process() -> None:
    (busy,) = DeviceSampler(nvml=FakeNvml(BUSY_RTX_4090()), pid=OWN_PID).latest().gpus
    assert busy.vram_used_bytes == 21 * 1024 * MIB and busy.vram_process_bytes == 0
    assert busy.vram_total_bytes - busy.vram_used_bytes == 3060 * MIB
    assert busy.throttle_reasons == ("software thermal",)


def test_nvml_lost_mid_run_keeps_sampling_cpu(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeNvml(TWO_RTX_4090())
    sampler = DeviceSampler(0.02, nvml=fake, pid=OWN_PID).start()
    try:
        assert wait_for(lambda: fake.calls > 40)
        fake.lose_after = fake.calls  # the driver resets now
        with caplog.at_level(logging.WARNING, "tokrace.telemetry"):
            assert wait_for(lambda: sampler.latest().status == "GPU telemetry lost")
        lost = sampler.latest()
        assert lost.gpus == () and lost.energy_j is None and lost.process_rss_bytes > 0
        assert wait_for(lambda: sampler.latest().t > lost.t)  # still sampling
        assert sampler._thread is not None and sampler._thread.is_alive()
        assert fake.shutdowns == 1
        assert sum("GPU telemetry lost" in r.getMessage() for r in caplog.records) == 1
    finally:
        sampler.stop()


def test_no_nvml_says_cpu_only_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "tokrace.telemetry"):
        sampler = DeviceSampler(0.01, nvml=FakeNvml([], init_error=12)).start()
        assert wait_for(lambda: sampler.latest().t > 0 and len(caplog.records) >= 1)
        time.sleep(0.05)
        sampler.stop()
    snap = sampler.latest()
    assert snap.status == "CPU only" and snap.cpu_only and snap.energy_j is None
    cpu_only = [r for r in caplog.records if "CPU only" in r.getMessage()]
    assert len(cpu_only) == 1 and cpu_only[0].levelno == logging.INFO  # said once, not as an error
    # NVML present but no GPU in it: CPU only too.
    assert DeviceSampler(nvml=FakeNvml([])).latest().status == "CPU only"


def test_real_cpu_path() -> None:
    sampler = DeviceSampler(0.05, use_gpu=False).start()
    try:
        end = time.perf_counter() + 0.4
        seen = 0.0
        while time.perf_counter() < end:  # keep a core busy so the process shows CPU use
            sum(range(10_000))
            seen = max(seen, sampler.latest().process_cpu_percent)
        snap = sampler.latest()
        assert snap.cpu_only and snap.status == "CPU only"
        assert seen > 0 and snap.process_cpu_percent <= 100 * snap.cpu_count
        assert 0 < snap.process_rss_bytes < snap.ram_total_bytes
        assert 0 < snap.ram_used_bytes <= snap.ram_total_bytes
        assert sampler.busy_s > 0 and 0 < sampler.cost_fraction() < 1
    finally:
        sampler.stop()


def test_real_pynvml_on_this_machine() -> None:
    nvml = load_nvml()
    if nvml is None:
        pytest.skip("pynvml (nvidia-ml-py) is not installed")
    gpus = detect_gpus(nvml)
    snap = DeviceSampler(nvml=nvml).latest()
    # On a machine without the NVIDIA driver NVML fails to initialise: that is "CPU only", no error.
    assert (snap.status == "CPU only") == (not gpus)


def test_reply_window_peak_vram_and_energy() -> None:
    fake = FakeNvml(TWO_RTX_4090())
    sampler = DeviceSampler(nvml=fake, pid=OWN_PID)
    wid = sampler.begin_window()
    fake.gpus[0].processes[OWN_PID] += 1024 * MIB  # the KV cache grows during the reply
    for g in fake.gpus:
        g.energy_mj += 50_000  # 50 J each
    sampler._latest = sampler._sample()
    fake.gpus[0].processes[OWN_PID] -= 1024 * MIB
    sampler._latest = sampler._sample()
    stats = sampler.end_window(wid)
    assert stats.peak_vram_bytes == (19_650 + 1024 + 18_960) * MIB
    assert stats.energy_j == pytest.approx(100.0)
    assert stats.joules_per_token(50) == pytest.approx(2.0)
    assert stats.joules_per_token(0) is None


def test_energy_from_power_when_the_board_has_no_counter() -> None:
    a = GpuSample(0, "x", 0, 1, None, None, power_w=200.0, temperature_c=None)
    b = GpuSample(0, "x", 0, 1, None, None, power_w=300.0, temperature_c=None)
    assert _energy_between((a,), (b,), 2.0) == pytest.approx(500.0)  # mean 250 W × 2 s
    assert _energy_between((), (b,), 2.0) == 0.0  # the first reading starts the count
    blind = GpuSample(0, "x", 0, 1, None, None, power_w=None, temperature_c=None)
    assert _energy_between((blind,), (blind,), 2.0) is None


class NoExtrasNvml(FakeNvml):
    """A board that answers memory queries only (older or virtualised GPUs)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.power_calls = 0

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        self.power_calls += 1
        raise NVMLError(3)  # NOT_SUPPORTED

    def nvmlDeviceGetTotalEnergyConsumption(self, h: int) -> int:
        raise NVMLError(3)

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list:
        raise NVMLError(4)  # NO_PERMISSION

    def nvmlDeviceGetName(self, h: int) -> bytes:  # older pynvml returns bytes
        return super().nvmlDeviceGetName(h).encode()


def test_unsupported_queries_are_none_and_asked_once() -> None:
    fake = NoExtrasNvml(ONE_RTX_6000_ADA())
    sampler = DeviceSampler(nvml=fake)
    for _ in range(3):
        sampler._latest = sampler._sample()
    (gpu,) = sampler.latest().gpus
    assert gpu.name == "NVIDIA RTX 6000 Ada Generation"
    assert gpu.power_w is None and gpu.energy_j is None and gpu.vram_process_bytes is None
    assert fake.power_calls == 1 and sampler.latest().status is None
    stats = sampler.end_window(sampler.begin_window())
    assert stats.energy_j is None and stats.joules_per_token(10) is None  # unknown, not 0 J


def test_own_vram_in_a_container_comes_from_the_load_delta() -> None:
    """In a container NVML lists host PIDs, never ours: "ours" must not read 0 after a load."""
    gpu = rtx_4090(used=1_000 * MIB, processes={987_654: 600 * MIB})  # someone else, by host PID
    fake = FakeNvml([gpu])
    sampler = DeviceSampler(0.02, nvml=fake, pid=OWN_PID)
    (before,) = sampler.latest().gpus
    # Nothing loaded yet: NVML's accounting stands (we hold nothing), and says where it came from.
    assert (before.vram_process_bytes, before.vram_process_source, before.pid_listed) == (0, "nvml", False)
    sampler.mark_load_start()
    gpu.used += 5_000 * MIB  # our model lands on the GPU; NVML lists it under our host PID
    gpu.processes[987_655] = 5_000 * MIB
    sampler.start()
    try:
        assert wait_for(lambda: sampler.latest().gpus[0].vram_process_source == "load delta")
        (after,) = sampler.latest().gpus
        assert after.vram_process_bytes == 5_000 * MIB and after.vram_used_bytes == 6_000 * MIB
    finally:
        sampler.stop()
    # Where NVML does list us (bare metal), its per-process figure wins over the delta.
    listed = DeviceSampler(0.02, nvml=FakeNvml(TWO_RTX_4090()), pid=OWN_PID)
    listed.mark_load_start()
    t0 = listed.latest().t
    listed.start()
    try:
        assert wait_for(lambda: listed.latest().t > t0)  # a sample taken after the mark
        g0 = listed.latest().gpus[0]
        assert (g0.vram_process_bytes, g0.vram_process_source) == (19_650 * MIB, "nvml")
    finally:
        listed.stop()


def test_one_nvml_reader_serves_the_speed_logs_hardware_line() -> None:
    """The speed log's GPU names and driver come through NvmlReader (the one NVML path), shut down after."""
    nvml = FakeNvml(TWO_RTX_4090())
    assert gpu_inventory(nvml) == (("NVIDIA GeForce RTX 4090",) * 2, "550.54.15")
    assert nvml.shutdowns == 1 and not nvml.initialised
    assert gpu_inventory(FakeNvml([])) == ((), None)
    assert gpu_inventory(FakeNvml(TWO_RTX_4090(), init_error=9)) == ((), None)  # no driver


def test_cpu_model_is_one_line() -> None:
    from tokrace.backends.roofline import machine_fingerprint
    from tokrace.speedlog.hardware import describe_hardware

    model = cpu_model()
    assert model and "\n" not in model and model == " ".join(model.split())
    assert describe_hardware().cpu_model == model  # the speed log and the roofline cache key agree
    assert machine_fingerprint().startswith(f"{model} | ")


def test_one_place_reads_nvml_and_the_cpu_model() -> None:
    """NVML is opened, and /proc/cpuinfo read, in backends/device_telemetry.py only: the speed log, the
    roofline's cache key, the TUI and ``models info`` all ask it (they once had three NVML paths and two
    cpuinfo parsers that could disagree)."""
    import os
    from pathlib import Path

    import tokrace

    root = Path(tokrace.__file__).parent
    found: dict[str, set[str]] = {"nvmlInit(": set(), "/proc/cpuinfo": set()}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            if name.endswith(".py"):
                text = Path(dirpath, name).read_text(encoding="utf-8")
                for needle, where in found.items():
                    if needle in text:
                        where.add(str(Path(dirpath, name).relative_to(root)))
    assert found == {"nvmlInit(": {"backends/device_telemetry.py"},
                     "/proc/cpuinfo": {"backends/device_telemetry.py"}}


def test_models_info_reads_gpus_through_the_same_paths() -> None:
    from tokrace.cli.models_cmd import _gpu_free
    from tokrace.model_registry.errors import TokraceError

    assert _gpu_free("24,0.5") == [24 << 30, 512 << 20]
    with pytest.raises(TokraceError, match=r"^--gpus '24,x': expected GPU sizes in GiB"):
        _gpu_free("24,x")  # tokrace plan's parser and words
    assert _gpu_free(None) == [g.vram_total_bytes - g.vram_used_bytes for g in detect_gpus()]
