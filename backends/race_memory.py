"""The race's memory guard: whether both lanes' models fit in memory at the same time.

It compares what both models need at once (weights + KV cache + compute buffer, from the GGUF headers:
``model_registry.memory_plan``) against free memory: free VRAM on GPUs, else a share of the available
RAM. When they cannot both be resident the race runs fair, loading each lane in turn
(``backends.race.run_race``'s ``load_in_turn``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tokrace.model_registry.units import format_bytes

RAM_HEADROOM = 0.9
"""Share of the currently available RAM a race may plan to fill (the OS and the UI need the rest)."""

__all__ = ["RAM_HEADROOM", "MemoryGuard", "memory_guard"]


@dataclass(frozen=True, slots=True)
class MemoryGuard:
    """Whether both lanes' models fit in memory at the same time."""

    need_bytes: tuple[int, ...]
    free_bytes: int
    where: str
    """``RAM`` or ``VRAM``: on GPUs a model spilling into RAM would race at another speed entirely."""

    @property
    def fits_together(self) -> bool:
        return sum(self.need_bytes) <= self.free_bytes

    def line(self) -> str:
        need = " + ".join(format_bytes(n) for n in self.need_bytes)
        if self.fits_together:
            return f"both models resident: {need} of {format_bytes(self.free_bytes)} free {self.where}"
        return (f"both models cannot be resident at once ({need} > {format_bytes(self.free_bytes)} free"
                f" {self.where}): racing fair, one after the other, loading each lane in turn")


def memory_guard(need_bytes: Sequence[int], *, ram_available: int,
                 gpu_free: Sequence[int] = ()) -> MemoryGuard:
    """``need_bytes``: each model's weights + KV + compute (``model_registry.memory_plan``)."""
    if gpu_free:
        return MemoryGuard(tuple(need_bytes), int(sum(gpu_free)), "VRAM")
    return MemoryGuard(tuple(need_bytes), int(ram_available * RAM_HEADROOM), "RAM")
