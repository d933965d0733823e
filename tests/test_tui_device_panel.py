"""The device panel in a tiny host app, fed from the NVML tables and from the real CPU sampler."""

from __future__ import annotations

from dataclasses import replace

from nvml_tables import BUSY_RTX_4090, OWN_PID, TWO_RTX_4090, FakeNvml
from textual.app import App, ComposeResult

from tokrace.backends.device_sampler import DeviceSampler, DeviceSnapshot
from tokrace.backends.roofline import efficiency_line
from tokrace.tui.widgets.device_panel import FREE, OTHER, OWN, DevicePanel, share_bar, short_gpu_name, spark


class Host(App[None]):
    def compose(self) -> ComposeResult:
        yield DevicePanel(id="devices")


def text_of(panel: DevicePanel) -> str:
    return panel.render().plain


async def test_two_gpus_with_own_share_sparkline_power_temperature() -> None:
    fake = FakeNvml(TWO_RTX_4090())
    sampler = DeviceSampler(nvml=fake, pid=OWN_PID)
    async with Host().run_test(size=(60, 30)) as pilot:  # wide enough that no line wraps
        panel = pilot.app.query_one(DevicePanel)
        for util in (10, 50, 97):
            fake.gpus[0].util = util
            sampler._latest = sampler._sample()
            panel.show(sampler.latest(), efficiency_line(130.99, 195.12))
        await pilot.pause()
        text = text_of(panel)
        assert "GPU0 RTX 4090 · 63°C · 285 W" in text and "GPU1 RTX 4090 · 58°C · 271 W" in text
        assert "19.6/24.0 GB" in text  # 20,100 MiB used of 24,564
        assert f"{OWN} ours 19.2  {OTHER} other 0.4 GB" in text
        gpu0_bar = next(line for line in text.splitlines() if line.startswith("VRAM"))
        assert gpu0_bar.count(OWN) > 3 * gpu0_bar.count(FREE) > 0  # mostly ours, a little free
        util_line = next(line for line in text.splitlines() if line.startswith("util"))
        assert util_line.endswith("97%") and "▁" in util_line and "█" in util_line  # 10% → 97%
        assert text.rstrip().endswith("efficiency: 67% of the 195 tok/s bandwidth limit")
        assert "CPU only" not in text
        assert panel.size.height == len(panel.render().plain.splitlines())  # height follows content


async def test_busy_gpu_shows_other_processes_and_throttling() -> None:
    snap = DeviceSampler(nvml=FakeNvml(BUSY_RTX_4090()), pid=OWN_PID).latest()
    async with Host().run_test(size=(40, 20)) as pilot:
        panel = pilot.app.query_one(DevicePanel)
        panel.show(snap)
        await pilot.pause()
        text = text_of(panel)
        bar = next(line for line in text.splitlines() if line.startswith("VRAM"))
        assert OWN not in bar and bar.count(OTHER) > bar.count(FREE)
        assert "throttled: software thermal" in text and "430 W" in text


async def test_real_cpu_only_machine() -> None:
    sampler = DeviceSampler(0.02, use_gpu=False).start()
    try:
        async with Host().run_test(size=(36, 12)) as pilot:
            panel = pilot.app.query_one(DevicePanel)
            assert "waiting" in text_of(panel)
            for _ in range(5):
                await pilot.pause(0.03)
                panel.show(sampler.latest(), efficiency_line(None, 213.0))
            text = text_of(panel)
            lines = text.splitlines()
            assert lines[0] == "CPU only"  # a state, once, at the top: not an error
            assert text.count("CPU only") == 1 and "⚠" not in text
            assert any(ln.startswith("CPU ") and "cores" in ln for ln in lines)
            assert any(ln.startswith("RSS ") for ln in lines) and any(ln.startswith("RAM ") for ln in lines)
            assert "GPU" not in text and lines[-1] == "bandwidth limit: 213 tok/s"
    finally:
        sampler.stop()


async def test_telemetry_lost_drops_gpu_rows() -> None:
    fake = FakeNvml(TWO_RTX_4090())
    sampler = DeviceSampler(nvml=fake, pid=OWN_PID)
    async with Host().run_test(size=(40, 30)) as pilot:
        panel = pilot.app.query_one(DevicePanel)
        panel.show(sampler.latest())
        await pilot.pause()
        tall = panel.size.height
        fake.lose_after = fake.calls
        sampler._latest = sampler._sample()
        panel.show(sampler.latest())
        await pilot.pause()
        text = text_of(panel)
        assert text.startswith("⚠ GPU telemetry lost") and "GPU0" not in text and "VRAM" not in text
        assert "RSS" in text and panel.size.height < tall


def test_helpers() -> None:
    assert short_gpu_name("NVIDIA GeForce RTX 4090") == "RTX 4090"
    assert short_gpu_name("NVIDIA RTX 6000 Ada Generation") == "RTX 6000 Ada"
    assert spark([0, 50, 100], 10) == "▁▅█" and spark([100] * 20, 4) == "████"
    assert share_bar(10, 20, 100, 10) == (1, 1, 8)
    assert share_bar(1, 2, 1000, 10) == (1, 1, 8)  # tiny but present shares stay visible
    assert share_bar(0, 0, 100, 10) == (0, 0, 10)
    assert share_bar(50, 100, 100, 10) == (5, 5, 0)
    assert share_bar(0, 1, 0, 10) == (0, 0, 10)


async def test_same_snapshot_twice_adds_one_point() -> None:
    snap = DeviceSnapshot(1.0, 50.0, 1, 2, 4)
    async with Host().run_test(size=(36, 12)) as pilot:
        panel = pilot.app.query_one(DevicePanel)
        panel.show(snap)
        panel.show(snap)  # the UI timer may run faster than the sampler
        panel.show(replace(snap, t=2.0, process_cpu_percent=100.0))
        assert list(panel._cpu) == [25.0, 50.0]  # % of the machine (2 cores)


async def test_unchanged_panel_is_not_redrawn() -> None:
    """An idle app polls the panel at 4 Hz: a poll that would show the same text writes nothing."""
    snap = DeviceSnapshot(1.0, 50.0, 1, 2, 4)
    async with Host().run_test(size=(36, 12)) as pilot:
        panel = pilot.app.query_one(DevicePanel)
        redraws: list[bool] = []
        original = panel.refresh

        def counting_refresh(*args: object, **kwargs: object) -> DevicePanel:
            redraws.append(True)
            return original(*args, **kwargs)  # type: ignore[arg-type]

        panel.refresh = counting_refresh  # type: ignore[method-assign]
        panel.show(snap)
        await pilot.pause()
        panel.show(snap)  # drawn at the width the panel got (a resize redraws)
        first = len(redraws)
        assert first >= 1
        panel.show(snap)  # synchronous: only show() itself can have asked for a repaint here
        panel.show(snap, None)
        assert len(redraws) == first  # the same text: no repaint
        panel.show(snap, "efficiency: 80% of 100 tok/s")
        assert len(redraws) > first  # new text: repainted
