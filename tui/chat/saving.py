"""Writes the chat's turns to its conversation file off the UI thread, in order (one writer thread)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from tokrace.backends.base import ChatMessage
from tokrace.conversations import ConversationLog
from tokrace.model_registry.errors import TokraceError


class ConversationSaver:
    """Appends and cuts go to ``log`` in the order they were asked for; the first error of a
    conversation goes to ``on_error`` (called on the writer thread with the message's one line), and
    that conversation is not written again (one notice, not one per turn)."""

    def __init__(self, on_error: Callable[[str], None]) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokrace-conversation")
        self._on_error = on_error
        self.log: ConversationLog | None = None
        self._failed: set[ConversationLog] = set()

    def start(self, log: ConversationLog) -> None:
        """Write to ``log`` from now on (a new or a resumed conversation)."""
        old, self.log = self.log, log
        if old is not None:
            self._pool.submit(old.close)

    def stop(self) -> None:
        """Write nowhere until the next ``start`` (a new chat before its first turn)."""
        old, self.log = self.log, None
        if old is not None:
            self._pool.submit(old.close)

    def _run(self, job: Callable[[ConversationLog], None]) -> Future[None] | None:
        log = self.log
        if log is None:
            return None

        def write() -> None:
            if log in self._failed:
                return  # said once for this conversation; its later turns are not saved either
            try:
                job(log)
            except TokraceError as err:
                self._failed.add(log)
                self._on_error(str(err))

        return self._pool.submit(write)

    def append(self, message: ChatMessage, stop_reason: str | None = None,
               figures: dict[str, Any] | None = None) -> Future[None] | None:
        return self._run(lambda log: log.append(message, stop_reason=stop_reason, figures=figures))

    def cut(self, keep: int) -> Future[None] | None:
        return self._run(lambda log: log.cut(keep))

    def close(self) -> None:
        """Finish every pending write (they are fsynced one by one) and close the file."""
        if self.log is not None:
            self._pool.submit(self.log.close)
        self._pool.shutdown(wait=True)
