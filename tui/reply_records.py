"""Finished replies on their way to the speed log, for the TUI: each is written on a worker thread the
moment it ends (fsync, and for a model's first reply its sha256), and whatever is still queued or being
written when the app stops is written or waited for on the way out (``flush``), so a quit never loses a
finished reply. Thread-safe; no Textual here (the app's worker calls ``write``)."""

from __future__ import annotations

import threading
import time

from tokrace.model_registry.errors import TokraceError
from tokrace.tui.chat.screen import ReplyFinished
from tokrace.tui.words import say


class ReplyRecords:
    """The queue of finished replies not yet in the speed log (``Turn.record`` writes each)."""

    def __init__(self) -> None:
        self._done = threading.Condition()
        self._jobs = 0
        self._in_flight = 0
        self._unrecorded: dict[int, ReplyFinished] = {}
        """Finished replies whose record has not started yet (written by ``write`` or ``flush``)."""

    def add(self, message: ReplyFinished) -> int:
        """Queue a finished reply; the job number ``write`` takes."""
        with self._done:
            self._jobs += 1
            self._unrecorded[self._jobs] = message
            return self._jobs

    def write(self, job: int) -> str | None:
        """Write job ``job`` (on a worker thread); the error line when it could not be written, ``None``
        when it was written or ``flush`` had taken it already."""
        with self._done:
            claimed = self._unrecorded.pop(job, None)
            if claimed is None:
                return None  # already written by flush
            self._in_flight += 1
        try:
            return _write(claimed)
        finally:
            with self._done:
                self._in_flight -= 1
                self._done.notify_all()

    def flush(self, timeout_s: float) -> list[str]:
        """After the app stopped: write the replies whose record never started and wait (at most
        ``timeout_s``) for those being written. Returns the error lines of records not written."""
        with self._done:
            jobs = list(self._unrecorded.values())
            self._unrecorded.clear()
        errors = [e for e in (_write(job) for job in jobs) if e is not None]
        deadline = time.monotonic() + timeout_s
        with self._done:
            while self._in_flight and time.monotonic() < deadline:
                self._done.wait(max(0.0, deadline - time.monotonic()))
            if self._in_flight:
                errors.append(f"{self._in_flight} reply record(s) still being written after"
                              f" {timeout_s:.0f} s")
        return errors


def _write(message: ReplyFinished) -> str | None:
    """Append one reply to the speed log (``Turn.record``: the session the reply ran on, whatever was
    loaded since); the error line when it could not be written."""
    try:
        message.turn.record()
    except TokraceError as err:
        return say(err)
    return None
