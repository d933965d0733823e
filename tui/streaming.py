"""Streams one reply into a Markdown widget: the one routine the chat and the race lanes share.

The backend generates on its own thread (``EventPump``); this coroutine receives the events in
batches, feeds the ``SpeedMeter`` and writes each batch's text to a ``MarkdownStream`` (which coalesces
writes further when rendering falls behind). Telemetry is not updated here: widgets poll the meter on
a timer, so the cost of the UI does not grow with the token rate.

Render pacing: each render makes Textual lay the screen out again, and that costs more the longer the
conversation (every Markdown block is arranged; measured with ``bench/render_cost.py``: from ~30% of a
core at the start of a 3,000-token reply to ~70% at its end at 10 renders/s). llama.cpp's threads lose
whatever CPU the UI takes, so the UI's own CPU is held to a budget: after each render the stream waits
until the UI thread's CPU time since the previous render is at most ``UI_CPU_BUDGET`` of the wall time
(never less than ``MIN_RENDER_INTERVAL_S``, never more than ``MAX_RENDER_INTERVAL_S``). A long reply
then renders less often, in bigger pieces, instead of costing more per second.

Chunking: Textual's ``Markdown.append`` re-parses and re-renders the whole last block at every write,
so one long list or section would cost more per render as it grows. Once the text in the live widget
passes ``LIVE_CHARS``, its finished blocks (everything before the last block boundary outside fenced
code) are frozen in that widget and streaming goes on in a new ``Markdown`` mounted after it; frozen
widgets never change, so Textual's layout caches keep them cheap. When the reply ends, the extra
widgets go and the first one shows the whole reply as one document (one render).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from textual import events
from textual.errors import NoWidget
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Markdown
from textual.widgets.markdown import MarkdownStream

from tokrace.backends.base import CancelToken, LoadedModel, default_threads
from tokrace.backends.events import GenerationFinished, StreamEvent, TokenGenerated
from tokrace.backends.pump import EventPump
from tokrace.backends.textstream import visible_controls

if TYPE_CHECKING:
    from tokrace.turn import Turn

# Render at most this often: past ~10 Hz a reader sees no difference, and the pump keeps coalescing
# meanwhile, so the generator is never held up.
MIN_RENDER_INTERVAL_S = 1 / 10
MAX_RENDER_INTERVAL_S = 1.0
"""However costly a render, new text shows at least this often."""
UI_CPU_BUDGET = 0.10
"""The UI thread's CPU per second of streaming that render pacing aims at while a core is spare (a
remote engine, a model wholly on GPUs, fewer llama.cpp threads than cores): a tenth of one core."""
UI_CPU_BUDGET_CONTENDED = 0.03
"""The same while llama.cpp computes on every core: each millisecond the UI runs then is taken from a
decode thread, and the others wait for it at the next barrier. Measured with ``bench/peers.py`` (the TUI
in a pseudo-terminal vs ``chat --json``, SmolLM2-135M, 2 threads on 2 cores): 0.90–0.93 of the headless
speed at 0.10, 0.95–0.97 at 0.03."""


def ui_cpu_budget(model: LoadedModel, all_on_gpu: bool = False) -> float:
    """The render budget (a share of one core) for streaming from ``model``: ``UI_CPU_BUDGET_CONTENDED``
    when its llama.cpp runs layers on this machine's CPU with a thread per physical core
    (``default_threads()``, llama.cpp's own default) or more, else ``UI_CPU_BUDGET``. ``all_on_gpu``:
    the placement put every layer on GPUs (its CPU threads then have no layers to compute)."""
    contended = (model.n_threads or 0) >= default_threads() and not all_on_gpu  # None: a remote engine
    return UI_CPU_BUDGET_CONTENDED if contended else UI_CPU_BUDGET


class RenderPacer:
    """How long to wait after a render so the UI thread's CPU stays within ``budget`` of the wall
    time: ``interval(cpu_s)`` with ``cpu_s`` the UI thread's CPU seconds since the previous render
    (the render itself, the layout it caused, everything else the UI did) → seconds to wait,
    clamped to ``[min_s, max_s]``."""

    def __init__(self, budget: float = UI_CPU_BUDGET, min_s: float = MIN_RENDER_INTERVAL_S,
                 max_s: float = MAX_RENDER_INTERVAL_S) -> None:
        self.budget, self.min_s, self.max_s = budget, min_s, max_s

    def interval(self, cpu_s: float) -> float:
        return min(self.max_s, max(self.min_s, cpu_s / self.budget))


LIVE_CHARS = 1500
"""Characters of streamed text past which the live widget's finished blocks are frozen (see above)."""
_LIST_ITEM = re.compile(r"(?:[-*+]|\d{1,9}[.)])[ \t]")
_FENCE = re.compile(r" {0,3}(?:```|~~~)")


def block_split(text: str) -> int:
    """The offset in Markdown ``text`` (which starts a block) of the last line that starts a new
    top-level block with everything before it complete: a line after a blank line, or a new top-level
    list item, outside fenced code, not indented (no list continuation) and itself complete (ends with a
    newline). 0 when there is none."""
    best, pos, in_fence, after_blank = 0, 0, False, False
    for line in text.splitlines(keepends=True):
        start, pos = pos, pos + len(line)
        complete = line.endswith("\n")
        if _FENCE.match(line):
            if not in_fence and start and after_blank and complete:
                best = start  # a code block starts a new block
            in_fence, after_blank = not in_fence, False
            continue
        if in_fence:
            continue
        if not line.strip():
            after_blank = True
            continue
        if start and complete and not line[0].isspace() and (after_blank or _LIST_ITEM.match(line)):
            best = start
        after_blank = False
    return best


async def _stop(stream: MarkdownStream) -> None:
    """Stop a ``MarkdownStream``. Its own writer task may already have been cancelled (its widget was
    updated or removed meanwhile); that ``CancelledError`` is the stream's, not ours, and must not
    cancel the reply's worker. A cancellation of the task awaiting here is passed on."""
    try:
        await stream.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


class ChunkedStream:
    """Streams text into ``markdown``, then into further ``Markdown`` widgets mounted after it as the
    text grows (see "Chunking" above); ``finish(text)`` leaves ``markdown`` alone showing ``text``."""

    def __init__(self, markdown: Markdown, live_chars: int = LIVE_CHARS) -> None:
        self.first = self.live = markdown
        self.live_chars = live_chars
        self.live_text = ""
        self.extra: list[Markdown] = []
        self._stream = Markdown.get_stream(markdown)

    async def write(self, text: str) -> None:
        self.live_text += text
        await self._stream.write(text)
        if len(self.live_text) > self.live_chars and isinstance(self.live.parent, Widget):
            split = block_split(self.live_text)
            if split:
                await self._freeze(split)

    async def _freeze(self, split: int) -> None:
        done, rest = self.live_text[:split], self.live_text[split:]
        await _stop(self._stream)
        await self.live.update(done)  # exactly its finished blocks, tidied
        new = Markdown(rest, classes=" ".join(self.first.classes),
                       parser_factory=self.first._parser_factory)
        parent = self.live.parent
        assert isinstance(parent, Widget)  # attached: checked by write()
        await parent.mount(new, after=self.live)
        self.extra.append(new)
        self.live, self.live_text = new, rest
        self._stream = Markdown.get_stream(new)

    async def stop(self) -> None:
        await _stop(self._stream)

    async def finish(self, text: str) -> None:
        """Stop streaming; remove the extra widgets and show ``text`` in the first one."""
        await self.stop()
        for widget in self.extra:
            await widget.remove()
        self.extra.clear()
        self.live = self.first
        await self.first.update(text)


def display_safe(text: str) -> str:
    """Model text as the app shows it: controls as visible symbols (``textstream.visible_controls``)."""
    return visible_controls(text)


async def stream_events_to_markdown(
    produce: Callable[[], Iterator[StreamEvent]],
    markdown: Markdown,
    cancel: CancelToken,
    budget: float = UI_CPU_BUDGET,
) -> GenerationFinished:
    """Run ``produce`` on a thread; return its ``GenerationFinished`` once the widget shows it all.
    ``produce`` measures its own events (a ``Turn`` or a ``ReplyRun``: the meter is fed where the
    events are made); this only shows them. ``budget``: the UI's CPU per second of streaming, a share
    of one core (``ui_cpu_budget``)."""
    pump: EventPump[StreamEvent] = EventPump(produce)
    stream = ChunkedStream(markdown)
    finished: GenerationFinished | None = None
    pacer = RenderPacer(budget)
    # This (the UI's) thread only: llama.cpp's threads are not ours to count.
    cpu_mark, wall_mark = time.thread_time(), time.perf_counter()
    try:
        async for batch in pump.batches():
            pieces: list[str] = []
            for event in batch:
                if isinstance(event, TokenGenerated):
                    if event.text:
                        pieces.append(event.text)
                elif isinstance(event, GenerationFinished):
                    finished = event
            if pieces:
                await stream.write(display_safe("".join(pieces)))
                if finished is None:
                    # Let the render happen, then wait for as long as its cost asks (see RenderPacer):
                    # the UI's CPU over each render-to-render cycle, wait included, is what counts.
                    await asyncio.sleep(MIN_RENDER_INTERVAL_S)
                    cpu, wall = time.thread_time(), time.perf_counter()
                    rest = pacer.interval(cpu - cpu_mark) - (wall - wall_mark)
                    if rest > 0:
                        await asyncio.sleep(rest)
                    cpu_mark, wall_mark = cpu, wall
    except asyncio.CancelledError:
        # The worker was cancelled (new chat, app exit): stop generating, let the thread finish.
        cancel.cancel()
        raise
    finally:
        await stream.stop()
    if finished is None:  # the producer broke its contract; say so rather than hang
        raise RuntimeError("the backend ended without GenerationFinished")
    # One final update tidies blocks the stream left half-open and adds any held-back tail.
    await stream.finish(display_safe(finished.text))
    return finished


async def stream_turn(turn: Turn, markdown: Markdown, all_on_gpu: bool = False) -> GenerationFinished:
    """``stream_events_to_markdown`` for one chat ``turn``, paced to its model's ``ui_cpu_budget``
    (``all_on_gpu``: every layer of the model is on GPUs)."""
    return await stream_events_to_markdown(lambda: iter(turn), markdown, turn.cancel,
                                           budget=ui_cpu_budget(turn.backend.model, all_on_gpu))


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
