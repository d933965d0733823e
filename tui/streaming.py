"""Streams one reply into a Markdown widget: the one routine the chat and the race lanes share.

The backend generates on its own thread (``EventPump``); this coroutine receives the events in
batches, feeds the ``SpeedMeter`` and writes each batch's text to a ``MarkdownStream`` (which coalesces
writes further when rendering falls behind). Telemetry is not updated here: widgets poll the meter on
a timer, so the cost of the UI does not grow with the token rate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence

from textual import events
from textual.errors import NoWidget
from textual.screen import Screen
from textual.widgets import Markdown

from tokrace.backends.base import Backend, CancelToken, ChatMessage, GenerationParams
from tokrace.backends.events import GenerationFinished, StreamEvent, TokenGenerated
from tokrace.backends.meter import SpeedMeter
from tokrace.backends.pump import EventPump
from tokrace.backends.textstream import visible_controls

# Render at most this often. Each render costs ~15 ms of UI CPU (Textual compositor) that llama.cpp's
# threads then lack; past ~10 Hz a reader sees no
# difference, and the pump keeps coalescing meanwhile, so the generator is never held up.
MIN_RENDER_INTERVAL_S = 1 / 10


def display_safe(text: str) -> str:
    """Model text as the app shows it: controls as visible symbols (``textstream.visible_controls``)."""
    return visible_controls(text)


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


class StreamSafeScreen(Screen[None]):
    """A screen that a mouse event during streaming cannot crash.

    Textual hit-tests the mouse against the compositor's map of the last frame. A streaming
    ``Markdown`` replaces its blocks between frames, so for a moment the map can name a block that is
    no longer in the DOM (``parent`` is ``None``); starting or extending a text selection on it fails
    inside ``Screen._forward_event`` (``'NoneType' object has no attribute 'region'``) and would end
    the app. Such an event (press or move) is dropped: the next one, after the next frame, lands
    normally. Releases always pass, so a selection in progress still ends."""

    def _forward_event(self, event: events.Event) -> None:
        if isinstance(event, (events.MouseDown, events.MouseMove)) and self._lands_on_removed(event):
            return
        super()._forward_event(event)

    def _lands_on_removed(self, event: events.MouseEvent) -> bool:
        try:
            widget, _ = self.get_widget_and_offset_at(event.x, event.y)
        except NoWidget:
            return False
        return widget is not None and widget is not self and (widget.parent is None or not widget.is_attached)
