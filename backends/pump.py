"""Carries events from a generating thread to an asyncio consumer, in batches, without ever blocking
the generator.

Per event the producer only appends to a deque; it schedules a wake-up on the event loop at most once
per batch (while one is pending, further events ride along). So the consumer sees everything produced
since its last look as one list, and a UI that redraws per batch costs the generator nothing extra
however fast it runs. Contrast ``App.call_from_thread``, which blocks until the UI ran the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_DONE = object()


class EventPump(Generic[T]):
    def __init__(self, produce: Callable[[], Iterator[T]], *, name: str = "tokrace-generate") -> None:
        self._produce = produce
        self._name = name
        self._queue: deque[object] = deque()
        self._wake_pending = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def _run(self, loop: asyncio.AbstractEventLoop, wake: asyncio.Event) -> None:
        queue = self._queue

        def push(item: object) -> None:
            queue.append(item)
            if not self._wake_pending:
                self._wake_pending = True
                # RuntimeError: the loop closed under us (app exiting); nobody is listening.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(wake.set)

        try:
            for event in self._produce():
                push(event)
        except BaseException as err:  # forwarded to the consumer, raised there
            self._error = err
        finally:
            push(_DONE)

    async def batches(self) -> AsyncIterator[list[T]]:
        """Yield lists of events until the producer is exhausted; re-raises its exception."""
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        self._thread = threading.Thread(target=self._run, args=(loop, wake), name=self._name,
                                        daemon=True)
        self._thread.start()
        done = False
        while not done:
            await wake.wait()
            wake.clear()
            self._wake_pending = False  # cleared before draining: a later push wakes us again
            batch: list[T] = []
            while self._queue:
                item = self._queue.popleft()
                if item is _DONE:
                    done = True
                    break
                batch.append(item)  # type: ignore[arg-type]
            if batch:
                yield batch
        if self._error is not None:
            raise self._error

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
