"""The chat screen: type a prompt, watch the reply stream and its speed live.

Keys are checked against the message box's own (``PromptArea`` is a ``TextArea``: Ctrl+D deletes right,
Ctrl+C copies, PageUp/PageDown move the cursor): the chat's keys that collide are priority bindings, so
they work while typing. Every turn is saved as it happens (``tokrace.conversations``); a history longer
than the context is windowed under the user's policy (``tokrace.context``) where it becomes a request.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import replace
from typing import TYPE_CHECKING, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Header, Static

from tokrace.backends.base import Backend, CancelToken, ChatMessage, GenerationParams, LoadedModel
from tokrace.backends.device_telemetry import DeviceSampler, DeviceSnapshot, WindowStats
from tokrace.backends.events import GenerationFinished
from tokrace.backends.meter import ReplyStats, SpeedMeter
from tokrace.backends.placement import ceiling_tok_s, placement_label
from tokrace.backends.reply_extras import extras_line
from tokrace.backends.roofline import efficiency_line, gpu_bandwidths
from tokrace.context import (
    MAX_TRIES,
    TEMPLATE_CHARS,
    overflow_notice,
    refused_notice,
    reserve_tokens,
    skip_for,
    window,
)
from tokrace.conversations import reply_figures
from tokrace.model_registry.units import format_bytes, format_params
from tokrace.settings import ContextPolicy
from tokrace.tui.chat.context_view import context_full_notice, mark_left_out
from tokrace.tui.chat.draft import draft_label
from tokrace.tui.chat.messages import AssistantMessage, UserMessage
from tokrace.tui.chat.prompt import PromptArea
from tokrace.tui.chat.turns import ConversationScreen
from tokrace.tui.streaming import stream_chat_reply
from tokrace.tui.widgets.telemetry_panel import TelemetryPanel
from tokrace.tui.words import key, keyed, say

if TYPE_CHECKING:
    from tokrace.tui.app import TokraceApp

TELEMETRY_HZ = 4
PLACEHOLDER = "Message ({key:prompt.send} sends, {keys:prompt.newline} newline, {key:app.help} keys)"
"""The message box's placeholder; its keys are said with ``keyed`` (the user's keymap)."""


class ReplyFinished(Message):
    """A reply ended (finished, stopped or failed); the app records it in the speed log."""

    def __init__(self, stats: ReplyStats, model: LoadedModel, finished: GenerationFinished,
                 window: WindowStats | None = None, params: GenerationParams | None = None) -> None:
        super().__init__()
        self.params = params
        """The sampling settings the reply ran with (recorded with it)."""
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
    ratio = f"{a / b:.2f}× faster" if a >= b else f"{b / a:.2f}× slower"
    return f" · draft {ratio} ({a:.1f} vs {b:.1f} tok/s){accepted}"


def _refused(finished: GenerationFinished, stats: ReplyStats, n_ctx: int) -> bool:
    """The engine refused the request before any token because the prompt did not fit."""
    return finished.stop_reason == "error" and not finished.text and stats.prompt_tokens >= n_ctx


class ChatScreen(ConversationScreen):
    BINDINGS = [
        Binding("escape", "stop_reply", "Stop", id="chat.stop"),
        Binding("ctrl+c", "interrupt", "Stop", id="chat.interrupt", show=False, priority=True),
        Binding("ctrl+n", "new_chat", "New chat", id="chat.new"),
        Binding("ctrl+d", "app.choose_draft", "Draft", id="chat.draft", show=False, priority=True),
        Binding("pageup", "page(-1)", "Scroll up", id="chat.page_up", show=False, priority=True),
        Binding("pagedown", "page(1)", "Scroll down", id="chat.page_down", show=False, priority=True),
        Binding("ctrl+t", "copy_reply", "Copy reply", id="chat.copy", show=False),
        Binding("ctrl+g", "regenerate", "Regenerate", id="chat.regenerate", show=False),
        Binding("f4", "edit_last", "Edit last", id="chat.edit", show=False),
        Binding("ctrl+b", "ab_rerun", "A/B", id="chat.ab", show=False),
    ]
    DEFAULT_CSS = """
    ChatScreen #body { height: 1fr; }
    ChatScreen #conversation { width: 1fr; }
    ChatScreen #messages { height: 1fr; padding: 0 1; }
    ChatScreen #status { height: 1; padding: 0 1; color: $text-muted; text-wrap: nowrap;
                         text-overflow: ellipsis; }
    ChatScreen #prompt { margin: 0 1; }
    ChatScreen .left-out-divider { margin: 1 0 0 0; color: $warning; }
    ChatScreen.-narrow TelemetryPanel { width: 26; }
    ChatScreen.-tiny TelemetryPanel { display: none; }
    """
    HORIZONTAL_BREAKPOINTS = [(0, "-tiny"), (60, "-narrow"), (100, "-wide")]

    def __init__(self, params: GenerationParams, *, system_prompt: str | None = None,
                 context_policy: ContextPolicy = "rolling") -> None:
        super().__init__()
        self.params = params
        self.system_prompt = system_prompt
        self.context_policy: ContextPolicy = context_policy
        self.skip = 0
        """Messages after the head that requests leave out (``tokrace.context.window``)."""
        self.context_used: int | None = None
        """Tokens in the context after the last reply (its prompt + its tokens), exact."""
        self.meter: SpeedMeter | None = None
        self.last_drafted: ReplyStats | None = None
        """The last reply made with a draft: what an A/B rerun compares against."""
        self.last_drafted_request: tuple[list[ChatMessage], GenerationParams] | None = None
        """The messages sent for that reply and its sampler settings (a fixed seed): what an A/B
        rerun replays without the draft, so both time the same text."""
        self._last_sent: list[ChatMessage] = []
        self._cancel: CancelToken | None = None
        self._status = "loading model…"

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="body"):
            with Vertical(id="conversation"):
                yield VerticalScroll(id="messages")
                yield Static(self._status, id="status", markup=False)
                yield PromptArea(placeholder="Loading model…", id="prompt", disabled=True)
            yield TelemetryPanel(id="telemetry")
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(1 / TELEMETRY_HZ, self.refresh_telemetry)
        # The model may have been handed over before this screen was composed.
        self._ready = True
        self.set_status(self._status)
        if self._resume is not None:
            self._show_conversation(self._resume)
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

    def detach_backend(self, status: str) -> None:
        """A model (re)load started: nothing can be sent until ``attach_backend``."""
        self.backend = None
        self.set_status(status)
        if self._ready:
            self.prompt.disabled = True
            self.prompt.placeholder = "Loading model…"

    def _backend_status(self, backend: Backend) -> str:
        """The status line for a loaded model: how prompts are formatted, threads, context, placement."""
        m = backend.model
        build = "" if m.gpu_offload else " · CPU-only llama.cpp build (GPU settings ignored)"
        draft = draft_label(backend)
        draft = f" · {draft} ({key('chat.ab')}: A/B without it)" if draft else ""
        plan = self.tokrace.plan
        where = f" · {placement_label(plan)}" if plan is not None else ""
        return f"{m.template} · {m.n_threads} threads · ctx {m.n_ctx}{where}{draft}{build}"

    def _show_backend(self, backend: Backend) -> None:
        self.call_after_refresh(self._set_titles, backend.model)
        self.set_status(self._backend_status(backend))
        prompt = self.prompt
        prompt.disabled = False
        prompt.placeholder = keyed(PLACEHOLDER)
        prompt.focus()

    def refresh_key_texts(self) -> None:
        """The keymap changed: say the new keys in the placeholder and the status line."""
        if self._ready and self.backend is not None:
            self.prompt.placeholder = keyed(PLACEHOLDER)
            self.set_status(self._backend_status(self.backend))

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

    def _model_ref(self) -> str | None:
        from tokrace.tui.chat.resume import loaded_ref

        return loaded_ref(self.tokrace.session)

    # -- actions ----------------------------------------------------------------------------------
    def on_prompt_area_submitted(self, event: PromptArea.Submitted) -> None:
        event.stop()
        # Trailing blanks and leading blank lines go; a first line's indentation (pasted code) stays.
        text = re.sub(r"^(?:[ \t]*\n)+", "", event.value).rstrip()
        if not text.strip() or self.backend is None:
            return
        if self.generating:
            self.notify(keyed("A reply is still streaming: wait for it or press {key:chat.stop}."),
                        severity="warning")
            return
        event.prompt.value = ""
        self.send(text)

    def send(self, text: str) -> None:
        messages = self.query_one("#messages", VerticalScroll)
        reply = AssistantMessage()
        user = UserMessage(text)
        messages.mount(user, reply)
        messages.anchor()
        if not self.history and self.system_prompt:
            self.history.append(ChatMessage("system", self.system_prompt))
        self._ensure_log()
        self.history.append(ChatMessage("user", text))
        user.history_index = len(self.history) - 1
        self.saver.append(self.history[-1])
        self._start(reply)

    def _start(self, reply: AssistantMessage) -> None:
        self.meter = SpeedMeter()
        self._cancel = CancelToken()
        self.generate(reply, self.meter, self._cancel)

    def action_ab_rerun(self) -> None:
        """Rerun the last prompt on the same loaded model without the draft, and show the speedup."""
        backend = self.backend
        if backend is None or backend.capabilities.draft is None:
            self.notify(keyed("A/B needs a draft: pick one with {key:chat.draft}."))
            return
        if self.generating or self.last_drafted is None or self.last_drafted_request is None:
            self.notify("Send a prompt first and let the reply finish.", severity="warning")
            return
        # The very request of the drafted reply (same messages, sampler settings and seed), replayed
        # without the draft: a measurement of the same text, not a new turn.
        sent, params = self.last_drafted_request
        messages = self.query_one("#messages", VerticalScroll)
        reply = AssistantMessage()
        messages.mount(reply)
        messages.anchor()
        self.meter = SpeedMeter()
        self._cancel = CancelToken()
        self.generate(reply, self.meter, self._cancel, backend=backend.plain, messages=list(sent),
                      against=self.last_drafted, params=params)

    async def _fitted_reply(self, backend: Backend, reply: AssistantMessage, meter: SpeedMeter,
                            cancel: CancelToken, params: GenerationParams
                            ) -> tuple[GenerationFinished, SpeedMeter, str | None]:
        """Stream a reply to the history's window; when the engine refuses it as too long for the
        context, trim the window under the policy (from the exact count it reported) and try again."""
        n_ctx = backend.model.n_ctx
        budget = n_ctx - reserve_tokens(n_ctx, self.params.max_tokens)
        notice = None
        if self.context_used is not None and self.context_policy != "stop":
            # Room for this reply: trim before sending rather than fill the context after a few tokens.
            estimate = self.context_used + len(self.history[-1].content) // 3 + TEMPLATE_CHARS
            skip = skip_for(self.history, self.context_policy, self.skip, estimate, budget)
            if skip is not None:
                self.skip = skip
        for _ in range(MAX_TRIES):
            sent = window(self.history, self.context_policy, self.skip)
            self._last_sent = list(sent.messages)
            finished = await stream_chat_reply(backend, sent.messages, params, reply.markdown, meter,
                                               cancel, all_on_gpu=self._all_on_gpu())
            stats = meter.stats
            if not _refused(finished, stats, n_ctx):
                if sent.dropped:
                    notice = overflow_notice(sent.dropped, self.context_policy)
                return finished, meter, notice
            skip = skip_for(self.history, self.context_policy, self.skip, stats.prompt_tokens, budget)
            if skip is None or skip == self.skip:
                error = refused_notice(stats.prompt_tokens, n_ctx, self.context_policy)
                return GenerationFinished(finished.t, "error", "", 0, error=error), meter, None
            self.skip = skip
            meter = self.meter = SpeedMeter()
        return finished, meter, notice

    @work(exclusive=True, group="generate")
    async def generate(self, reply: AssistantMessage, meter: SpeedMeter, cancel: CancelToken, *,
                       backend: Backend | None = None, messages: list[ChatMessage] | None = None,
                       against: ReplyStats | None = None, params: GenerationParams | None = None) -> None:
        """Stream one reply. With ``messages`` it is an A/B rerun: nothing is added to the history
        and the summary compares its speed with ``against`` (the drafted reply); ``params``: its
        sampler settings (default: the chat's)."""
        backend = backend or self.backend
        assert backend is not None
        is_rerun = messages is not None
        params = params or self.params  # as sent: F2 may change self.params while the reply streams
        if not is_rerun and backend.capabilities.draft is not None and params.seed is None:
            # A drafted reply gets a seed of its own, so Ctrl+B can replay the same sampling without
            # the draft (the same text, timed like for like); it is as random as llama.cpp's own.
            params = replace(params, seed=random.randrange(2**31))
        sampler = self.tokrace.sampler
        window_id = sampler.begin_window() if isinstance(sampler, DeviceSampler) else None
        overflow = None
        try:
            if messages is not None:
                finished = await stream_chat_reply(backend, messages, params, reply.markdown, meter,
                                                   cancel, all_on_gpu=self._all_on_gpu())
            else:
                finished, meter, overflow = await self._fitted_reply(backend, reply, meter, cancel, params)
        except Exception as err:  # a backend bug must fail this reply, not end the app
            finished = GenerationFinished(time.perf_counter(), "error", "", 0,
                                          error=f"the reply failed ({type(err).__name__}: {err})")
            meter.observe(finished)
        finally:
            if self._cancel is cancel:
                self._cancel = None
        if not is_rerun:
            self._settle_history(finished, reply, meter.stats)
            self.last_drafted = meter.stats if meter.stats.draft_model is not None else None
            self.last_drafted_request = (self._last_sent, params) if self.last_drafted is not None else None
            if finished.text or finished.stop_reason != "error":
                self.context_used = meter.stats.prompt_tokens + meter.stats.completion_tokens
        state = {"cancelled": "stopped", "error": "error"}.get(finished.stop_reason, "")
        summary = meter.stats.summary_line()
        if against is not None:
            summary = "A/B without the draft: " + summary + ab_line(against, meter.stats)
        window_stats = None
        if isinstance(sampler, DeviceSampler) and window_id is not None:
            window_stats = sampler.end_window(window_id)
        summary += extras_line(meter.stats, window_stats, self.tokrace.price_per_hour)
        if finished.error:
            summary += f" · {say(finished.error)}"
        notices = [say(n) for n in (context_full_notice(finished.notice, self.context_policy), overflow) if n]
        reply.set_summary(summary, state=state, notice="; ".join(notices) or None)
        self.refresh_telemetry()
        self.post_message(ReplyFinished(meter.stats, backend.model, finished, window_stats, params))

    def _settle_history(self, finished: GenerationFinished, reply: AssistantMessage,
                        stats: ReplyStats) -> None:
        """Keep the history a valid conversation after a reply: user and assistant alternate.

        A reply the model ended (even with no text: it closed its turn at once) is an assistant turn.
        A send that produced nothing (an error such as a prompt too long for the context, or Esc
        before the first token) did not happen: its user turn leaves the history (and the saved file)
        and its text goes back to the empty prompt box, so nothing typed is lost. Then the turns the
        requests now leave out are marked. A reply is saved with how it ended and its figures, which a
        resumed chat shows again."""
        if finished.text or finished.stop_reason in ("stop", "length", "context"):
            self.history.append(ChatMessage("assistant", finished.text))
            reply.history_index = len(self.history) - 1
            self.saver.append(self.history[-1], finished.stop_reason, reply_figures(stats))
        elif self.history and self.history[-1].role == "user":
            text = self.history.pop().content
            for widget in self.messages.query(UserMessage):
                if widget.history_index == len(self.history):
                    widget.history_index = None  # shown with its error, no longer a turn
            self.saver.cut(len(self.history))
            if not self.prompt.value:
                self.prompt.value = text
        mark_left_out(self.messages, self.history, self.context_policy, self.skip)

    def action_stop_reply(self) -> None:
        if self._cancel is not None:
            self._cancel.cancel()

    def action_new_chat(self) -> None:
        """A new conversation: the history, its file, the context window and the panel's figures."""
        self.action_stop_reply()
        self.workers.cancel_group(self, "generate")
        self._cancel = None
        self.history.clear()
        self.skip = 0
        self.context_used = None
        self.meter = None
        self.last_drafted = None
        self.saver.stop()  # the next send starts a new file
        # No backend.reset(): the generating thread may still be winding down, and the next prompt's
        # prefix match drops whatever KV cache no longer applies anyway.
        self.query_one("#messages", VerticalScroll).remove_children()
        self.query_one(TelemetryPanel).reset()
        session = self.tokrace.session
        if session is not None:
            session.new_session()
        self.prompt.focus()

    # -- telemetry --------------------------------------------------------------------------------
    def refresh_telemetry(self) -> None:
        device = self.tokrace.sampler.latest()
        n_ctx = self.backend.model.n_ctx if self.backend is not None else None
        self.query_one(TelemetryPanel).show(self.meter, device, self._efficiency(device),
                                            context=(self.context_used, n_ctx))

    def _all_on_gpu(self) -> bool:
        """Every layer of the loaded model is on GPUs (its llama.cpp threads compute none)."""
        plan = self.tokrace.plan
        return plan is not None and plan.n_gpu_layers > 0 and plan.cpu_layers == 0

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
