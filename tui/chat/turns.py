"""The chat's conversation keeping, apart from streaming: its file (saved per turn, resumed), and the
turn keys: copy the last reply, regenerate it, edit the last message, scroll, Ctrl+C.

``ConversationScreen`` is the chat screen's base; ``ChatScreen`` provides the streaming side (``_start``,
``action_new_chat``, ``action_stop_reply``, ``generating``).
"""

from __future__ import annotations

from textual.containers import VerticalScroll

from tokrace.backends.base import Backend, ChatMessage
from tokrace.conversations import ConversationLog, SavedConversation, SavedReply
from tokrace.tui.chat.messages import AssistantMessage, UserMessage
from tokrace.tui.chat.prompt import PromptArea
from tokrace.tui.chat.saving import ConversationSaver
from tokrace.tui.streaming import StreamSafeScreen
from tokrace.tui.words import keyed, say


def saved_summary(reply: SavedReply) -> tuple[str, str]:
    """A resumed reply's summary line and state (``stopped``, ``error`` or ""), from what was saved with
    it: its figures as when it was shown live, else (older files) how it ended."""
    stats = reply.stats()
    state = {"cancelled": "stopped", "error": "error"}.get(reply.stop_reason or "", "")
    if stats is not None:
        return stats.summary_line(), state
    ended = {"cancelled": " · stopped", "error": " · error", "length": " · max tokens",
             "context": " · context full"}.get(reply.stop_reason or "", "")
    return f"(saved without its figures){ended}", state


class ConversationScreen(StreamSafeScreen):
    """History, its file and the keys that edit the last turn (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.backend: Backend | None = None
        self.history: list[ChatMessage] = []
        """The whole conversation (shown and saved); a request may send a window of it."""
        self.saver = ConversationSaver(self._save_failed)
        self._resume: SavedConversation | None = None
        self._ready = False

    # -- what the chat screen provides ------------------------------------------------------------
    @property
    def generating(self) -> bool:
        raise NotImplementedError

    def _start(self, reply: AssistantMessage) -> None:
        """Stream a reply to the history into ``reply``."""
        raise NotImplementedError

    def action_new_chat(self) -> None:
        raise NotImplementedError

    def action_stop_reply(self) -> None:
        raise NotImplementedError

    # -- widgets ----------------------------------------------------------------------------------
    @property
    def prompt(self) -> PromptArea:
        return self.query_one("#prompt", PromptArea)

    @property
    def messages(self) -> VerticalScroll:
        return self.query_one("#messages", VerticalScroll)

    def on_unmount(self) -> None:
        self.saver.close()  # every pending turn is written (fsynced) before the app goes

    # -- conversation files -----------------------------------------------------------------------
    def _save_failed(self, line: str) -> None:
        if self.app.is_running:
            self.app.call_from_thread(self.notify, say(line), severity="error")

    def _model_ref(self) -> str | None:
        """What loads the chat's model again (saved with the conversation); ``None``: unknown."""
        return None

    def _ensure_log(self) -> None:
        if self.saver.log is None:
            model = self.backend.model.name if self.backend is not None else ""
            self.saver.start(ConversationLog(model, model_ref=self._model_ref()))
            for message in self.history:  # the system prompt, written with the first turn
                self.saver.append(message)

    def resume(self, saved: SavedConversation) -> None:
        """Show a saved conversation and continue it (its file keeps growing)."""
        self._resume = saved
        if self._ready:
            self._show_conversation(saved)

    def _show_conversation(self, saved: SavedConversation) -> None:
        self._resume = None
        self.action_new_chat()
        self.history = list(saved.messages)
        self.saver.start(ConversationLog.resume(saved))
        replies = saved.replies + [SavedReply()] * (len(saved.messages) - len(saved.replies))
        widgets: list[UserMessage | AssistantMessage] = []
        for i, m in enumerate(saved.messages):
            if m.role == "user":
                widgets.append(UserMessage(m.content, history_index=i))
            elif m.role == "assistant":
                summary, state = saved_summary(replies[i])
                widgets.append(AssistantMessage(m.content, summary, state=state, history_index=i))
        if widgets:
            self.messages.mount(*widgets)
        self.messages.anchor()
        on = f" · continues on {self.backend.model.name}" if self.backend is not None else ""
        self.notify(f"resumed: {saved.title} ({len(saved.messages)} messages){on}")

    # -- keys -------------------------------------------------------------------------------------
    def action_interrupt(self) -> None:
        """Ctrl+C: stop the streaming reply; when idle, copy the box's selection, else say how to quit."""
        if self.generating:
            self.action_stop_reply()
            return
        prompt = self.prompt
        if self.focused is prompt and prompt.selected_text:
            prompt.action_copy()
            return
        self.notify(keyed("Nothing to stop: {key:app.quit} quits."))

    def action_page(self, direction: int) -> None:
        """PageUp (-1) / PageDown (1): scroll the conversation, also while typing."""
        if direction < 0:
            self.messages.scroll_page_up()
        else:
            self.messages.scroll_page_down()

    def action_copy_reply(self) -> None:
        """Copy the last reply's text to the clipboard (OSC 52: works over ssh in most terminals)."""
        last = next((m.content for m in reversed(self.history) if m.role == "assistant"), None)
        if not last:
            self.notify("No reply to copy yet.", severity="warning")
            return
        self.app.copy_to_clipboard(last)
        self.notify(f"Copied the last reply ({len(last)} characters).")

    def _drop_last_reply(self) -> str | None:
        """Remove the last exchange's reply (widgets, history); return its user text."""
        if self.generating:
            self.notify(keyed("Stop the reply ({key:chat.stop}) first."), severity="warning")
            return None
        users = [i for i, m in enumerate(self.history) if m.role == "user"]
        if not users:
            self.notify("Nothing to redo yet: send a message first.", severity="warning")
            return None
        upto = users[-1]
        text = self.history[upto].content
        del self.history[upto + 1:]
        widgets = list(self.messages.children)
        shown = [i for i, w in enumerate(widgets) if isinstance(w, UserMessage)]
        for widget in widgets[shown[-1] + 1 if shown else 0:]:
            widget.remove()
        return text

    def action_regenerate(self) -> None:
        """Ctrl+G: a new reply to the last message (the old one is dropped)."""
        if self._drop_last_reply() is None:
            return
        self.saver.cut(len(self.history))
        reply = AssistantMessage()
        self.messages.mount(reply)
        self.messages.anchor()
        self._start(reply)

    def action_edit_last(self) -> None:
        """F4: take the last message back into the box (its reply is dropped) to edit and send again."""
        text = self._drop_last_reply()
        if text is None:
            return
        self.history.pop()
        self.saver.cut(len(self.history))
        shown = self.messages.query(UserMessage)
        if shown:
            shown.last().remove()
        self.prompt.value = text
        self.prompt.focus()
