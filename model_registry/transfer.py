"""Download progress as users read it: bytes, speed and ETA, from ``progress(done, total, what)`` calls.

Speed is measured over a sliding window (the last ``window_s`` seconds) so a resumed download does not
report the bytes it already had as instantly fetched, and a stall shows as a falling speed.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from tokrace.model_registry.units import format_bytes

ProgressFn = Callable[[int, int, str], None]
"""``progress(done_bytes, total_bytes, what)``; ``what`` says which file and which step."""


@dataclass(frozen=True, slots=True)
class TransferStatus:
    done: int
    total: int
    what: str
    bytes_per_s: float | None
    eta_s: float | None

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    def line(self) -> str:
        """``1.2 GiB / 4.6 GiB · 48.3 MiB/s · ETA 1m12s · downloading x.gguf``"""
        parts = [f"{format_bytes(self.done)} / {format_bytes(self.total)}"]
        if self.bytes_per_s:
            parts.append(f"{format_bytes(self.bytes_per_s)}/s")
        if self.eta_s is not None:
            parts.append(f"ETA {format_duration(self.eta_s)}")
        parts.append(self.what)
        return " · ".join(parts)


def format_duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class TransferMeter:
    """Feed it ``update(done, total, what)``; read ``status()``. Thread-safe."""

    def __init__(self, window_s: float = 3.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.clock = clock
        self._samples: deque[tuple[float, int]] = deque()
        self._last = TransferStatus(0, 0, "", None, None)
        self._lock = threading.Lock()

    def update(self, done: int, total: int, what: str) -> TransferStatus:
        now = self.clock()
        with self._lock:
            if self._samples and done < self._samples[-1][1]:
                self._samples.clear()  # a new file or a restart: speed starts over
            self._samples.append((now, done))
            while len(self._samples) > 2 and now - self._samples[0][0] > self.window_s:
                self._samples.popleft()
            t0, d0 = self._samples[0]
            speed = (done - d0) / (now - t0) if now > t0 and done > d0 else None
            eta = (total - done) / speed if speed and total >= done else None
            self._last = TransferStatus(done, total, what, speed, eta)
            return self._last

    def status(self) -> TransferStatus:
        with self._lock:
            return self._last
