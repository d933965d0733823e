"""The chat screen: type a prompt, watch the reply stream and its speed live."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Header, Input, Static

from tokrace.backends.base import Backend, CancelToken, ChatMessage, GenerationParams, LoadedModel
from tokrace.backends.device_telemetry import DeviceSampler, DeviceSnapshot, WindowStats
from tokrace.backends.events import GenerationFinished
from tokrace.backends.meter import ReplyStats, SpeedMeter
from tokrace.backends.placement import ceiling_tok_s, placement_label
from tokrace.backends.reply_extras import extras_line
from tokrace.backends.roofline import efficiency_line, gpu_bandwidths
from tokrace.model_registry.units import format_bytes, format_params
from tokrace.tui.chat.draft import draft_label
from tokrace.tui.chat.messages import AssistantMessage, UserMessage
from tokrace.tui.streaming import StreamSafeScreen, stream_chat_reply
from tokrace.tui.widgets.telemetry_panel import TelemetryPanel
from tokrace.tui.words import say

if TYPE_CHECKING:
    from tokrace.tui.app import TokraceApp

TELEMETRY_HZ = 4


class ReplyFinished(Message):
    """A reply ended (finished, stopped or failed); the app records it in the speed log."""

    def __init__(self, stats: ReplyStats, model: LoadedModel, finished: GenerationFinished,
                 window: WindowStats | None = None) -> None:
        super().__init__()
        self.stats = stats
        self.model = model
        self.finished = finished
        self.window = window
        """Peak memory and energy while the reply ran (device telemetry), when measured."""


def ab_line(with_draft: ReplyStats, without: ReplyStats) -> str:
    """`` · draft 4.27× faster (149.6 vs 35.0 tok/s), 100% accepted ÷ drafted``."""
    a, b = with_draft.gen_tok_s, without.gen_tok_s
    if not (a and b):
        return " · speedup unknown (too few tokens)"
    acc = with_draft.acceptance_rate
    accepted = f", {acc:.0%} accepted ÷ drafted" if acc is not None else ""
    return f" · draft {a / b:.2f}× faster ({a:.1f} vs {b:.1f} tok/s){accepted}"


class ChatScreen(StreamSafeScreen):
    BINDINGS = [
        Binding("escape", "stop_reply", "Stop", id="chat.stop"),
        Binding("ctrl+n", "new_chat", "New chat", id="chat.new"),
        Binding("ctrl+b", "ab_rerun", "A/B", id="chat.ab", show=False),
    ]
    DEFAULT_CSS = """
    ChatScreen #body { height: 1fr; }
    ChatScreen #conversation { width: 1fr; }
    ChatScreen #messages { height: 1fr; padding: 0 1; }
    ChatScreen #status { height: auto; padding: 0 1; color: $text-muted; }
    ChatScreen #prompt { margin: 0 1; }
    """

    def __init__(self, params: GenerationParams) -> None:
        super().__init__()
        self.params = params
        self.backend: Backend | None = None
        self.history: list[ChatMessage] = []
        self.meter: SpeedMeter | None = None
        self.last_drafted: ReplyStats | None = None
        """The last reply made with a draft: what an A/B rerun compares against."""
        self._cancel: CancelToken | None = None
        self._ready = False
        self._status = "loading model…"

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="body"):
            with Vertical(id="conversation"):
                yield VerticalScroll(id="messages")
                yield Static(self._status, id="status", markup=False)
                yield Input(placeholder="Loading model…", id="prompt", disabled=True)
            yield TelemetryPanel(id="telemetry")
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(1 / TELEMETRY_HZ, self.refresh_telemetry)
        # The model may have been handed over before this screen was composed.
        self._ready = True
        self.set_status(self._status)
        if self.backend is not None:
            self._show_backend(self.backend)

    @property
    def tokrace(self) -> TokraceApp:
        """The app, typed (this screen only runs inside ``TokraceApp``)."""
        return cast("TokraceApp", self.app)

    # -- model ------------------------------------------------------------------------------------
    def set_status(self, text: str) -> None:
        self._status = text
        if self._ready:
            self.query_one("#status", Static).update(text)

    def attach_backend(self, backend: Backend) -> None:
        """The model is loaded: enable the prompt (now, or once this screen is mounted)."""
        self.backend = backend
        if self._ready:
            self._show_backend(backend)

    def _show_backend(self, backend: Backend) -> None:
        m = backend.model
        self.call_after_refresh(self._set_titles, m)
        build = "" if m.gpu_offload else " · CPU-only llama.cpp build (GPU settings ignored)"
        draft = draft_label(backend)
        draft = f" · {draft} (Ctrl+B: A/B without it)" if draft else ""
        plan = self.tokrace.plan
        where = f" · {placement_label(plan)}" if plan is not None else ""
        self.set_status(f"{m.template} · {m.n_threads} threads · ctx {m.n_ctx}{where}{draft}{build}")
        prompt = self.query_one("#prompt", Input)
        prompt.disabled = False
        prompt.placeholder = "Message (Enter sends, Esc stops, Ctrl+N new chat)"
        prompt.focus()

    def _set_titles(self, m: LoadedModel) -> None:
        # After a refresh: the Header's own children must exist before its title watchers fire.
        self.app.title = m.name
        self.app.sub_title = (
            f"{m.quantization} · {format_bytes(m.size_bytes)} · {format_params(m.n_params)} params"
            f" · {m.architecture}"
        )

    @property
    def generating(self) -> bool:
        return self._cancel is not None

    # -- actions ----------------------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if not text or self.backend is None:
            return
        if self.generating:
            self.notify("A reply is still streaming: wait for it or press Esc.", severity="warning")
            return
        event.input.value = ""
        self.send(text)

    def send(self, text: str) -> None:
        messages = self.query_one("#messages", VerticalScroll)
        reply = AssistantMessage()
        messages.mount(UserMessage(text), reply)
        messages.anchor()
        self.history.append(ChatMessage("user", text))
        self.meter = SpeedMeter()
        self._cancel = CancelToken()
        self.generate(reply, self.meter, self._cancel)

    def action_ab_rerun(self) -> None:
        """Rerun the last prompt on the same loaded model without the draft, and show the speedup."""
        backend = self.backend
        if backend is None or backend.capabilities.draft is None:
            self.notify("A/B needs a draft: pick one with Ctrl+D.")
            return
        if self.generating or self.last_drafted is None:
            self.notify("Send a prompt first and let the reply finish.", severity="warning")
            return
        # The conversation up to the last prompt; the rerun is a measurement, not a new turn.
        upto = max(i for i, m in enumerate(self.history) if m.role == "user") + 1
        messages = self.query_one("#messages", VerticalScroll)
        reply = AssistantMessage()
        messages.mount(reply)
        messages.anchor()
        self.meter = SpeedMeter()
        self._cancel = CancelToken()
        self.generate(reply, self.meter, self._cancel, backend=backend.plain, messages=self.history[:upto],
                      against=self.last_drafted)

    @work(exclusive=True, group="generate")
    async def generate(self, reply: AssistantMessage, meter: SpeedMeter, cancel: CancelToken, *,
                       backend: Backend | None = None, messages: list[ChatMessage] | None = None,
                       against: ReplyStats | None = None) -> None:
        """Stream one reply. With ``messages`` it is an A/B rerun: nothing is added to the history
        and the summary compares its speed with ``against`` (the drafted reply)."""
        backend = backend or self.backend
        assert backend is not None
        is_rerun = messages is not None
        conversation = messages if messages is not None else self.history
        sampler = self.tokrace.sampler
        window_id = sampler.begin_window() if isinstance(sampler, DeviceSampler) else None
        try:
            finished = await stream_chat_reply(
                backend, conversation, self.params, reply.markdown, meter, cancel,
            )
        except Exception as err:  # a backend bug must fail this reply, not end the app
            finished = GenerationFinished(time.perf_counter(), "error", "", 0,
                                          error=f"the reply failed ({type(err).__name__}: {err})")
            meter.observe(finished)
        finally:
            if self._cancel is cancel:
                self._cancel = None
        if not is_rerun:
            self._settle_history(finished)

            self.last_drafted = meter.stats if meter.stats.draft_model is not None else None
        state = {"cancelled": "stopped", "error": "error"}.get(finished.stop_reason, "")
        summary = meter.stats.summary_line()
        if against is not None:
            summary = "A/B without the draft: " + summary + ab_line(against, meter.stats)
        window = None
        if isinstance(sampler, DeviceSampler) and window_id is not None:
            window = sampler.end_window(window_id)
        summary += extras_line(meter.stats, window, self.tokrace.price_per_hour)
        if finished.error:
            summary += f" · {say(finished.error)}"
        reply.set_summary(summary, state=state, notice=say(finished.notice) if finished.notice else None)
        self.refresh_telemetry()
        self.post_message(ReplyFinished(meter.stats, backend.model, finished, window))

    def _settle_history(self, finished: GenerationFinished) -> None:
        """Keep the history a valid conversation after a reply: user and assistant alternate.

        A reply the model ended (even with no text: it closed its turn at once) is an assistant turn.
        A send that produced nothing (an error such as a prompt too long for the context, or Esc
        before the first token) did not happen: its user turn leaves the history and its text goes
        back to the empty prompt box, so nothing typed is lost."""
        if finished.text or finished.stop_reason in ("stop", "length"):
            self.history.append(ChatMessage("assistant", finished.text))
            return
        if self.history and self.history[-1].role == "user":
            text = self.history.pop().content
            prompt = self.query_one("#prompt", Input)
            if not prompt.value:
                prompt.value = text

    def action_stop_reply(self) -> None:
        if self._cancel is not None:
            self._cancel.cancel()

    def action_new_chat(self) -> None:
        self.action_stop_reply()
        self.workers.cancel_group(self, "generate")
        self._cancel = None
        self.history.clear()
        self.meter = None
        self.last_drafted = None
        # No backend.reset(): the generating thread may still be winding down, and the next prompt's
        # prefix match drops whatever KV cache no longer applies anyway.
        self.query_one("#messages", VerticalScroll).remove_children()
        session = self.tokrace.session
        if session is not None:
            session.new_session()
        self.query_one("#prompt", Input).focus()

    # -- telemetry --------------------------------------------------------------------------------
    def refresh_telemetry(self) -> None:
        device = self.tokrace.sampler.latest()
        self.query_one(TelemetryPanel).show(self.meter, device, self._efficiency(device))

    def _efficiency(self, device: DeviceSnapshot | None) -> str | None:
        """Live tok/s against the bandwidth roofline of this model's placement."""
        plan = self.tokrace.plan
        if plan is None or device is None:
            return None
        n_past = self.meter.stats.prompt_tokens + self.meter.stats.completion_tokens if self.meter else 0
        ceiling = ceiling_tok_s(plan, gpu_bandwidths(device), self.tokrace.cpu_bandwidth, n_past)
        live = None
        if self.meter is not None:
            live = self.meter.live_tok_s() if not self.meter.finished else self.meter.stats.gen_tok_s
        return efficiency_line(live, ceiling)
