"""Peak VRAM, energy per token and cost in a reply's summary."""

from __future__ import annotations

import pytest

from tokrace.backends.device_sampler import WindowStats
from tokrace.backends.meter import ReplyStats
from tokrace.backends.placement import placement_label
from tokrace.backends.reply_extras import extras, extras_line


def test_gpu_window_and_price_make_the_line() -> None:
    stats = ReplyStats(completion_tokens=100, prompt_tok_s=2000.0, gen_tok_s=50.0)
    window = WindowStats(seconds=2.0, peak_vram_bytes=5 << 30, peak_rss_bytes=1 << 30, energy_j=41.0)
    line = extras_line(stats, window, price_per_hour=1.8)
    assert line == (" · peak VRAM 5.0 GiB · 0.41 J/token"
                    " · cost: $0.00025 /1K prompt · $0.0100 /1K generated")
    data = extras(stats, window, 1.8)
    assert data["joules_per_token"] == pytest.approx(0.41)
    assert data["cost_per_1k_generated"] == pytest.approx(0.01)


def test_cpu_reply_without_price_adds_nothing() -> None:
    stats = ReplyStats(completion_tokens=10, gen_tok_s=80.0)
    window = WindowStats(seconds=1.0, peak_vram_bytes=None, peak_rss_bytes=1 << 28, energy_j=None)
    assert extras_line(stats, window, None) == ""
    assert extras(stats, None, None)["energy_j"] is None


def test_placement_label(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    cpu = SimpleNamespace(n_layers=30, per_device=[], n_gpu_layers=0, cpu_layers=31, split_mode="layer")
    assert placement_label(cpu) == "all layers on CPU"  # type: ignore[arg-type]
    two = SimpleNamespace(n_layers=80, per_device=[1, 2], n_gpu_layers=81, cpu_layers=0, split_mode="layer")
    assert placement_label(two) == "81/81 layers on 2 GPUs (layer split)"  # type: ignore[arg-type]
    part = SimpleNamespace(n_layers=80, per_device=[1], n_gpu_layers=44, cpu_layers=37, split_mode="layer")
    assert placement_label(part) == "44/81 layers on GPU, 37 on CPU"  # type: ignore[arg-type]
