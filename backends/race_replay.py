"""Replay of a race lane's recorded reply at its true pace (a fair race shown side by side).

In a fair race the lanes run one after the other, each with the whole machine; every event keeps its
true ``perf_counter`` timestamp, so ``replay_events`` can show the two replies side by side as if they
had run at once, every figure (TTFT, tok/s) exactly the recorded one.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence

from tokrace.backends.base import CancelToken
from tokrace.backends.events import StreamEvent

__all__ = ["replay_events"]


def replay_events(
    events: Sequence[StreamEvent],
    cancel: CancelToken | None = None,
    *,
    start: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[StreamEvent]:
    """Yield recorded events again at their true pace, as if the request had been submitted at
    ``start`` (default: now). Timestamps are shifted by one constant, so every interval and therefore
    every figure (TTFT, tok/s) is exactly the recorded one, while live readouts that compare event
    times with the clock keep working. A cancel stops the waiting, not the reply: the rest comes at
    once (the generation already happened; only the show is skipped).
    """
    if not events:
        return
    origin = events[0].t
    shift = (clock() if start is None else start) - origin
    for event in events:
        due = event.t + shift
        while cancel is None or not cancel.cancelled:
            wait = due - clock()
            if wait <= 0:
                break
            sleep(min(wait, 0.05))  # short naps: a cancel is noticed within 50 ms
        yield dataclasses.replace(event, t=due)
