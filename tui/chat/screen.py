"""The chat screen: type a prompt, watch the reply stream and its speed live.

Keys are checked against the message box's own (``PromptArea`` is a ``TextArea``: Ctrl+D deletes right,
Ctrl+C copies, PageUp/PageDown move the cursor): the chat's keys that collide are priority bindings, so
they work while typing. Every turn is saved as it happens (``tokrace.conversations``); a history longer
than the context is windowed under the user's policy (``tokrace.context``) where it becomes a request.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace
from typing import TYPE_CHECKING, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Header, Static

from tokrace.backends.base import Backend, CancelToken, ChatMessage, GenerationParams, LoadedModel
from tokrace.backends.device_sampler import DeviceSampler, DeviceSnapshot
from tokrace.backends.events import GenerationFinished
from tokrace.backends.meter import ReplyStats, SpeedMeter
from tokrace.backends.placement import ceiling_tok_s, placement_label
from tokrace.backends.reply_extras import extras_line
from tokrace.backends.roofline import efficiency_line, gpu_bandwidths
from tokrace.conversations import reply_figures
from tokrace.settings import ContextPolicy
from tokrace.speedup import ab_summary
from tokrace.tui.chat.context_view import context_full_notice, mark_left_out
from tokrace.tui.chat.draft import draft_label
from tokrace.tui.chat.messages import AssistantMessage, UserMessage
from tokrace.tui.chat.prompt import PromptArea
from tokrace.tui.chat.turns import ConversationScreen
from tokrace.tui.streaming import stream_turn
from tokrace.tui.widgets.telemetry_panel import TelemetryPanel
from tokrace.tui.words import key, keyed, say
from tokrace.turn import ContextFit, Turn

if TYPE_CHECKING:
    from tokrace.tui.app import TokraceApp

TELEMETRY_HZ = 4
PLACEHOLDER = "Message ({key:prompt.send} sends, {keys:prompt.newline} newline, {key:app.help} keys)"
"""The message box's placeholder; its keys are said with ``keyed`` (the user's keymap)."""


class ReplyFinished(Message):
    """A reply ended (finished, stopped or failed); the app records it in the speed log
    (``turn.record()``, on a thread)."""

    def __init__(self, turn: Turn) -> None:
        super().__init__()
        self.turn = turn

    @property
    def stats(self) -> ReplyStats:
        return self.turn.stats

    @property
    def finished(self) -> GenerationFinished:
        assert self.turn.finished is not None  # posted after the reply ended
        return self.turn.finished

    @property
    def model(self) -> LoadedModel:
        """The model the reply ran on (a later reload does not change it)."""
        return self.turn.backend.model


def ab_line(with_draft: ReplyStats, without: ReplyStats) -> str:
    """`` · draft speedup 4.27× (n=1, no spread) · 149.6 vs 35.0 tok/s with/without · 100% accepted ÷
    drafted``: one pair, with ``tokrace.speedup``'s definition (the one ``bench --draft`` uses)."""
    return " · " + ab_summary(with_draft.gen_tok_s, without.gen_tok_s, with_draft.acceptance_rate)


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
        self.turn: Turn | None = None
        """The reply streaming now, or the last one."""
        self.last_drafted: ReplyStats | None = None
        """The last reply made with a draft: what an A/B rerun compares against."""
        self.last_drafted_request: tuple[list[ChatMessage], GenerationParams] | None = None
        """The messages sent for that reply and its sampler settings (a fixed seed): what an A/B
        rerun replays without the draft, so both time the same text."""
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
        return f"{m.template} · {m.threads_label()} · ctx {m.n_ctx}{where}{draft}{build}"

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
        self.app.sub_title = m.facts_line()

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
        session = self.tokrace.session
        assert session is not None  # a backend is attached only with its session
        params = self.params  # as sent: F2 may change self.params while the reply streams
        if session.backend.capabilities.draft is not None and params.seed is None:
            # A drafted reply gets a seed of its own, so Ctrl+B can replay the same sampling without
            # the draft (the same text, timed like for like); it is as random as llama.cpp's own.
            params = replace(params, seed=random.randrange(2**31))
        fit = ContextFit(self.history, self.context_policy, self.skip, self.context_used)
        self.generate(reply, session.turn(params, fit=fit, cancel=CancelToken(), device=self._device()))

    def _device(self) -> DeviceSampler | None:
        sampler = self.tokrace.sampler
        return sampler if isinstance(sampler, DeviceSampler) else None

    @property
    def meter(self) -> SpeedMeter | None:
        """The current reply's meter (the last reply's once it ended): what the panel shows."""
        return self.turn.meter if self.turn is not None else None

    def action_ab_rerun(self) -> None:
        """Rerun the last prompt on the same loaded model without the draft, and show the speedup."""
        backend, session = self.backend, self.tokrace.session
        if backend is None or session is None or backend.capabilities.draft is None:
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
        turn = session.turn(params, messages=sent, plain=True, cancel=CancelToken(), device=self._device())
        self.generate(reply, turn, against=self.last_drafted)

    @work(exclusive=True, group="generate")
    async def generate(self, reply: AssistantMessage, turn: Turn, *,
                       against: ReplyStats | None = None) -> None:
        """Stream one reply (``turn``) into ``reply``. An A/B rerun (``turn.rerun``) adds nothing to the
        history and its summary compares its speed with ``against`` (the drafted reply)."""
        self.turn, self._cancel = turn, turn.cancel
        try:
            finished = await stream_turn(turn, reply.markdown, all_on_gpu=self._all_on_gpu())
        finally:
            if self._cancel is turn.cancel:
                self._cancel = None
        stats = turn.stats
        if not turn.rerun:
            assert turn.fit is not None
            self.skip = turn.fit.skip
            self._settle_history(finished, reply, stats)
            self.last_drafted = stats if stats.draft_model is not None else None
            self.last_drafted_request = (turn.sent, turn.params) if self.last_drafted is not None else None
            if finished.text or finished.stop_reason != "error":
                self.context_used = stats.context_tokens
        state = {"cancelled": "stopped", "error": "error"}.get(finished.stop_reason, "")
        summary = stats.summary_line()
        if against is not None:
            summary = "A/B without the draft: " + summary + ab_line(against, stats)
        summary += extras_line(stats, turn.window, self.tokrace.price_per_hour)
        if finished.error:
            summary += f" · {say(finished.error)}"
        notices = [say(n) for n in (context_full_notice(finished.notice, self.context_policy), turn.overflow)
                   if n]
        reply.set_summary(summary, state=state, notice="; ".join(notices) or None)
        self.refresh_telemetry()
        self.post_message(ReplyFinished(turn))

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
        self.turn = None
        self.last_drafted = None
        self.saver.stop()  # the next send starts a new file
        # No backend.reset(): the generating thread may still be winding down, and the next prompt's
        # prefix match drops whatever KV cache no longer applies anyway.
        self.query_one("#messages", VerticalScroll).remove_children()
        self.query_one(TelemetryPanel).reset()
        session = self.tokrace.session
        if session is not None:
            session.new_log_session()
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
        n_past = self.meter.stats.context_tokens if self.meter else 0
        ceiling = ceiling_tok_s(plan, gpu_bandwidths(device), self.tokrace.cpu_bandwidth, n_past)
        live = None
        if self.meter is not None:
            live = self.meter.live_tok_s() if not self.meter.finished else self.meter.stats.gen_tok_s
        return efficiency_line(live, ceiling)
