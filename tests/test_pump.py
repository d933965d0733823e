"""The thread → asyncio pump: order kept, batches formed, errors forwarded, producer never blocked."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from tokrace.backends.pump import EventPump


async def test_all_events_arrive_in_order_in_batches() -> None:
    def produce() -> Iterator[int]:
        yield from range(10_000)

    seen: list[int] = []
    batches = 0
    async for batch in EventPump(produce).batches():
        batches += 1
        seen.extend(batch)
    assert seen == list(range(10_000))
    assert batches < 10_000  # fast producers are coalesced into batches


async def test_producer_error_is_raised_in_consumer_after_earlier_events() -> None:
    def produce() -> Iterator[int]:
        yield 1
        raise ValueError("boom")

    seen: list[int] = []
    with pytest.raises(ValueError, match="boom"):
        async for batch in EventPump(produce).batches():
            seen.extend(batch)
    assert seen == [1]


async def test_producer_runs_on_its_own_thread_while_consumer_is_busy() -> None:
    main = threading.get_ident()
    threads: set[int] = set()
    done = threading.Event()

    def produce() -> Iterator[int]:
        for i in range(50):
            threads.add(threading.get_ident())
            yield i
        done.set()

    got: list[int] = []
    async for batch in EventPump(produce).batches():
        if not got:
            time.sleep(0.2)  # a slow consumer (blocking the loop) must not slow the producer
            assert done.is_set()
        got.extend(batch)
    assert got == list(range(50))
    assert main not in threads
