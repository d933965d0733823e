"""llama.cpp's log, kept off the terminal.

llama.cpp writes diagnostics from C (through llama-cpp-python's callback, to stderr) at load and
sometimes mid-run; under a full-screen TUI those bytes land on top of the display. We install our own
callback: lines go to the ``tokrace.llama_cpp`` logger (silent unless a handler is added) and to a
small ring buffer, so an error message can quote what llama.cpp said.
"""

from __future__ import annotations

import ctypes
import logging
from collections import deque

import llama_cpp

log = logging.getLogger("tokrace.llama_cpp")
log.addHandler(logging.NullHandler())
log.propagate = False  # never to the root logger's stderr fallback

# ggml_log_level: 0 none, 1 debug, 2 info, 3 warn, 4 error, 5 continuation of the previous line.
_LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
recent: deque[tuple[int, str]] = deque(maxlen=200)
_partial: list[str] = []
_last_level = logging.INFO
_count = 0  # lines logged since start: ``mark()`` / ``load_failure_reason(since)``


@llama_cpp.llama_log_callback
def _callback(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
    global _last_level, _count
    lvl = _last_level if level == 5 else _LEVELS.get(level, logging.INFO)
    _last_level = lvl
    _partial.append(text.decode("utf-8", errors="replace"))
    if _partial[-1].endswith("\n"):
        line = "".join(_partial).rstrip()
        _partial.clear()
        recent.append((lvl, line))
        _count += 1
        log.log(lvl, "%s", line)


def install() -> None:
    """Route llama.cpp's log here (idempotent; call after importing llama_cpp, which sets its own)."""
    llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))


def mark() -> int:
    """A position in the log: ``load_failure_reason(mark())`` reads only what came after it."""
    return _count


def load_failure_reason(since: int) -> str | None:
    """llama.cpp's own reason for a failed load, from the lines logged after ``since``.

    A failed load ends with generic lines ("failed to load model"); the reason is the line that says
    "error loading model: …" (a missing tensor, an unknown architecture, a wrong size), or else the
    first error logged, or else the last warning."""
    n = max(0, min(_count - since, len(recent)))
    lines = list(recent)[len(recent) - n:] if n else []
    for _lvl, line in lines:
        _, found, reason = line.partition("error loading model:")
        if found and reason.strip():
            return reason.strip()
    errors = [line.strip() for lvl, line in lines if lvl >= logging.ERROR]
    if errors:
        return errors[0]
    warnings = [line.strip() for lvl, line in lines if lvl == logging.WARNING]
    return warnings[-1] if warnings else None
