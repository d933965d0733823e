"""Human formatting of sizes and counts, shared by the CLI, the TUI and exports.

One unit system: memory in binary units named as such (KiB, MiB, GiB = 2**30 bytes), as llama.cpp
prints model and buffer sizes and nvidia-smi counts VRAM (MiB); a "24 GB" card is 24 GiB there."""

from __future__ import annotations


def format_bytes(n: float) -> str:
    """``98362432`` → ``93.8 MiB`` (binary units, as llama.cpp prints model sizes)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_figure(value: float | None, pattern: str, missing: str = "–") -> str:
    """A measured figure in ``pattern`` (``"{:.1f} tok/s"``), or ``missing`` when there is none."""
    return missing if value is None else pattern.format(value)
def format_gib(n: float) -> str:
    """``24.0 GiB``-style: bytes in GiB (2**30) with two decimals, for plans that compare sizes with
    each other (``0.18 GiB`` of ``23.50 GiB``); below a tenth of a GiB, ``format_bytes``'s MiB/KiB."""
    return f"{n / (1 << 30):.2f} GiB" if abs(n) >= (1 << 30) / 10 or n == 0 else format_bytes(n)


def format_params(n: int | None) -> str:
    """``134515008`` → ``135M``; ``70553706496`` → ``70.6B``."""
    if not n:
        return "?"
    if n >= 1e9:
        return f"{n / 1e9:.1f}B"
    if n >= 1e6:
        return f"{n / 1e6:.0f}M"
    return f"{n / 1e3:.0f}K"
