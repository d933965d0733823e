"""Streams one reply into a Markdown widget: the one routine the chat and the race lanes share.

The backend generates on its own thread (``EventPump``); this coroutine receives the events in
batches, feeds the ``SpeedMeter`` and writes each batch's text to a ``MarkdownStream`` (which coalesces
writes further when rendering falls behind). Telemetry is not updated here: widgets poll the meter on
a timer, so the cost of the UI does not grow with the token rate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence

from textual.widgets import Markdown

from tokrace.backends.base import Backend, CancelToken, ChatMessage, GenerationParams
from tokrace.backends.events import GenerationFinished, StreamEvent, TokenGenerated
from tokrace.backends.meter import SpeedMeter
from tokrace.backends.pump import EventPump

# C0 controls (but tab and newline) and DEL become their visible "control pictures" (␛ for ESC):
# model output must never drive the terminal, and random-weight models emit every byte there is.
_CONTROL_PICTURES = {c: 0x2400 + c for c in range(0x20) if c not in (0x09, 0x0A)} | {0x7F: 0x2421}


# Render at most this often. Each render costs ~15 ms of UI CPU (Textual compositor) that llama.cpp's
# threads then lack; past ~10 Hz a reader sees no
# difference, and the pump keeps coalescing meanwhile, so the generator is never held up.
MIN_RENDER_INTERVAL_S = 1 / 10


def display_safe(text: str) -> str:
    return text.translate(_CONTROL_PICTURES)


async def stream_events_to_markdown(
    produce: Callable[[], Iterator[StreamEvent]],
    markdown: Markdown,
    meter: SpeedMeter,
    cancel: CancelToken,
) -> GenerationFinished:
    """Run ``produce`` on a thread; return its ``GenerationFinished`` once the widget shows it all."""
    pump: EventPump[StreamEvent] = EventPump(produce)
    stream = Markdown.get_stream(markdown)
    finished: GenerationFinished | None = None
    try:
        async for batch in pump.batches():
            pieces: list[str] = []
            for event in batch:
                meter.observe(event)
                if isinstance(event, TokenGenerated):
                    if event.text:
                        pieces.append(event.text)
                elif isinstance(event, GenerationFinished):
                    finished = event
            if pieces:
                await stream.write(display_safe("".join(pieces)))
                if finished is None:
                    await asyncio.sleep(MIN_RENDER_INTERVAL_S)
    except asyncio.CancelledError:
        # The worker was cancelled (new chat, app exit): stop generating, let the thread finish.
        cancel.cancel()
        raise
    finally:
        await stream.stop()
    if finished is None:  # the producer broke its contract; say so rather than hang
        raise RuntimeError("the backend ended without GenerationFinished")
    # One final update tidies blocks the stream left half-open and adds any held-back tail.
    await markdown.update(display_safe(finished.text))
    return finished


async def stream_chat_reply(
    backend: Backend,
    messages: Sequence[ChatMessage],
    params: GenerationParams,
    markdown: Markdown,
    meter: SpeedMeter,
    cancel: CancelToken,
) -> GenerationFinished:
    history = list(messages)
    return await stream_events_to_markdown(
        lambda: backend.stream_chat(history, params, cancel), markdown, meter, cancel
    )
