"""A chat longer than the context (issue 14): the window each policy sends, the usage indicator, and a
reply that fills the context ending with stop reason ``context`` (real llama.cpp on a tiny model)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from scripted_backend import SCRIPTED_MODEL, FixedSampler, ScriptedBackend
from test_chat_cmd import tokrace
from test_tui_chat import RecordingApp, wait_for
from textual.widgets import Static

from tokrace.backends.base import CancelToken, ChatMessage, GenerationParams, LoadedModel
from tokrace.backends.events import GenerationFinished, RequestStarted, StreamEvent
from tokrace.context import head_size, skip_for, window
from tokrace.settings import Settings
from tokrace.tui.chat.messages import AssistantMessage

S, U, A = "system", "user", "assistant"


def conversation(n_exchanges: int, system: bool = True) -> list[ChatMessage]:
    out = [ChatMessage(S, "be brief")] if system else []
    for i in range(n_exchanges):
        out += [ChatMessage(U, f"question {i} " * 5), ChatMessage(A, f"answer {i} " * 5)]
    return [*out, ChatMessage(U, "last question")]


def test_head_keeps_the_system_prompt_and_with_middle_the_first_exchange() -> None:
    history = conversation(3)
    assert head_size(history, "rolling") == 1
    assert head_size(history, "stop") == 1
    assert head_size(history, "middle") == 3
    assert head_size(conversation(0), "middle") == 1  # the newest user turn is never the "first exchange"


def test_skip_drops_whole_exchanges_and_keeps_the_newest_turn() -> None:
    history = conversation(4)
    tokens = 400
    skip = skip_for(history, "rolling", 0, tokens, budget=250)
    assert skip is not None and skip % 2 == 0 and skip > 0
    sent = window(history, "rolling", skip).messages
    assert sent[0] == history[0] and sent[1].role == U and sent[-1] == history[-1]
    middle = window(history, "middle", skip_for(history, "middle", 0, tokens, budget=250) or 0).messages
    assert middle[:3] == history[:3] and middle[3].role == U and middle[-1] == history[-1]
    assert skip_for(history, "rolling", 0, 200, budget=250) == 0  # fits: nothing dropped
    assert skip_for(history, "stop", 0, 400, budget=250) is None
    assert skip_for([ChatMessage(U, "x" * 100)], "rolling", 0, 400, budget=250) is None  # cannot fit


class ContextBackend(ScriptedBackend):
    """A scripted engine with a 200-token context: a message counts 1 token per 2 characters + 4, and a
    prompt that does not fit is refused the way llama.cpp's backend refuses it."""

    N_CTX = 200

    @property
    def model(self) -> LoadedModel:
        return dataclasses.replace(SCRIPTED_MODEL, n_ctx=self.N_CTX)

    def stream_chat(self, messages: Sequence[ChatMessage], params: GenerationParams,
                    cancel: CancelToken | None = None) -> Iterator[StreamEvent]:
        tokens = sum(len(m.content) // 2 + 4 for m in messages)
        if tokens >= self.N_CTX:
            self.requests.append(list(messages))
            yield RequestStarted(1000.0, SCRIPTED_MODEL.name, tokens, 0, SCRIPTED_MODEL.template)
            yield GenerationFinished(1000.1, "error", "", 0, error=f"the prompt is {tokens} tokens but the"
                                     f" context holds {self.N_CTX}: {{action:new_chat}}")
            return
        self.prompt_tokens = tokens
        yield from super().stream_chat(messages, params, cancel)


def context_app(policy: str) -> RecordingApp:
    backend = ContextBackend(["ok ", "fine"])
    settings = Settings(context_policy=policy, system_prompt="be brief")  # type: ignore[arg-type]
    return RecordingApp(backend=backend, sampler=FixedSampler(), settings=settings,  # type: ignore[arg-type]
                        params=GenerationParams(max_tokens=8))


async def chat(pilot, app: RecordingApp, turns: int) -> None:  # type: ignore[no-untyped-def]
    await wait_for(pilot, lambda: app.chat.backend is not None and not app.chat.prompt.disabled)
    for i in range(turns):
        app.chat.prompt.value = f"message {i}: " + "x" * 60
        await pilot.press("enter")
        await wait_for(pilot, lambda i=i: len(app.finished) == i + 1)


@pytest.mark.parametrize("policy", ["rolling", "middle"])
async def test_a_long_chat_keeps_going_under_rolling_and_middle(policy: str) -> None:
    app = context_app(policy)
    async with app.run_test(size=(120, 36)) as pilot:
        await chat(pilot, app, 8)
        backend: ContextBackend = app.chat.backend  # type: ignore[assignment]
        assert all(f.finished.stop_reason == "stop" for f in app.finished)
        last = backend.requests[-1]
        assert last[0] == ChatMessage(S, "be brief")  # the system prompt is always sent
        assert last[-1].content.startswith("message 7")
        assert len(last) < len(app.chat.history)  # older turns were left out
        if policy == "middle":
            assert last[1].content.startswith("message 0") and last[2].role == A
            assert not last[3].content.startswith("message 1")
        else:
            assert not any(m.content.startswith("message 0") for m in last)
        assert [m.role for m in last[1:]] == [U, A] * ((len(last) - 2) // 2) + [U]
        assert len(app.chat.history) == 1 + 2 * 8  # the whole conversation is kept (shown, saved)
        await pilot.pause(0.1)
        notices = [str(w.render()) for w in app.query(".notice").results(Static)]
        assert any("left out" in n and "F2" in n for n in notices), notices
        assert "context   " in str(app.chat.query_one("#context", Static).render())


async def test_stop_policy_refuses_with_a_notice_and_keeps_the_text() -> None:
    app = context_app("stop")
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.chat.backend is not None and not app.chat.prompt.disabled)
        sent = 0
        while True:
            text = f"message {sent}: " + "x" * 60
            app.chat.prompt.value = text
            await pilot.press("enter")
            await wait_for(pilot, lambda n=sent: len(app.finished) == n + 1)
            if app.finished[-1].finished.stop_reason == "error":
                break
            sent += 1
            assert sent < 10
        error = app.finished[-1].finished.error or ""
        assert "{action:new_chat}" in error and "{setting:context_policy}" in error
        assert app.chat.prompt.value == text  # nothing typed is lost
        assert app.chat.history[-1].role == A  # the refused turn left the history
        await pilot.pause(0.1)
        summary = str(app.query(AssistantMessage).last().query_one(".summary", Static).render())
        assert "start a new chat (Ctrl+N)" in summary and "--" not in summary


async def test_a_reply_that_fills_the_context_ends_with_stop_reason_context(tiny_model: Path) -> None:
    app = RecordingApp(settings=Settings(model=str(tiny_model), n_ctx=64),
                       params=GenerationParams(max_tokens=500, temperature=0))
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.backend is not None and not app.chat.prompt.disabled)
        app.chat.prompt.value = "hi"
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(app.finished))
        stats = app.finished[0].stats
        assert stats.stop_reason == "context"
        assert stats.prompt_tokens + stats.completion_tokens >= 62
        await pilot.pause(0.3)
        summary = str(app.query_one(AssistantMessage).query_one(".summary", Static).render())
        assert "context full" in summary and "max tokens" not in summary
        assert app.chat.history[-1].role == A
        used = str(app.chat.query_one("#context", Static).render())
        assert "/64 (" in used


@pytest.mark.parametrize("extra", [(), ("--lookup",)])
def test_headless_replies_that_fill_the_context_say_context(tiny_model: Path, extra: tuple[str, ...]) -> None:
    proc = tokrace("chat", "-m", str(tiny_model), "--prompt", "hi", "--ctx", "64", "-n", "500", "--temp", "0",
                   "--json", *extra)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["stop_reason"] == "context", data["stop_reason"]
    assert data["prompt_tokens"] + data["completion_tokens"] >= 60


async def test_turns_left_out_of_the_requests_are_marked() -> None:
    """Issue 24.4: under rolling the turns the requests no longer send are dimmed, with one line where
    the kept turns start; the ones still sent are not."""
    from tokrace.tui.chat.context_view import LEFT_OUT, left_out
    from tokrace.tui.chat.messages import UserMessage

    app = context_app("rolling")
    async with app.run_test(size=(120, 36)) as pilot:
        await chat(pilot, app, 8)
        await pilot.pause(0.1)
        dropped = left_out(app.chat.history, "rolling", app.chat.skip)
        backend: ContextBackend = app.chat.backend  # type: ignore[assignment]
        sent = backend.requests[-1]
        assert len(dropped) > 0 and len(sent) == len(app.chat.history) - 1 - len(dropped)
        widgets = [w for w in app.chat.messages.children if getattr(w, "history_index", None) is not None]
        assert len(widgets) == len(app.chat.history) - 1  # every turn but the system prompt is shown
        marked = [w.history_index for w in widgets if w.has_class(LEFT_OUT)]  # type: ignore[attr-defined]
        assert marked == list(dropped)
        first = next(w for w in app.chat.messages.children if isinstance(w, UserMessage))
        assert first.has_class(LEFT_OUT) and first.text.startswith("message 0")
        assert not app.chat.messages.children[-1].has_class(LEFT_OUT)  # the newest reply was sent
        divider = app.chat.query_one("#left-out-divider", Static)
        assert "left out of the requests" in str(divider.render())
        children = list(app.chat.messages.children)
        after = children[children.index(divider) + 1]
        assert getattr(after, "history_index", None) == dropped.stop  # it sits where the kept turns start


@pytest.mark.parametrize("policy", ["rolling", "stop"])
async def test_a_full_context_under_rolling_does_not_send_the_user_to_a_new_chat(
        tiny_model: Path, policy: str) -> None:
    """Issue 24.4: a reply that filled the context said "start a new chat (Ctrl+N)" even under rolling,
    which leaves turns out by itself; it now says what the policy does next (and stop keeps Ctrl+N)."""
    app = RecordingApp(settings=Settings(model=str(tiny_model), n_ctx=64, context_policy=policy),  # type: ignore[arg-type]
                       params=GenerationParams(max_tokens=500, temperature=0))
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.backend is not None and not app.chat.prompt.disabled)
        app.chat.prompt.value = "hi"
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(app.finished))
        assert app.finished[0].stats.stop_reason == "context"
        await pilot.pause(0.2)
        notice = str(app.query_one(AssistantMessage).query_one(".notice", Static).render())
        if policy == "stop":
            assert "start a new chat (Ctrl+N)" in notice
            return
        assert "new chat" not in notice and "Ctrl+N" not in notice, notice
        assert "your next message leaves the oldest turns out" in notice and "context overflow" in notice
        app.chat.prompt.value = "more"
        await pilot.press("enter")  # and so it does: the next message is answered
        await wait_for(pilot, lambda: len(app.finished) == 2)
        assert app.finished[1].stats.completion_tokens > 0
        assert app.chat.query(".-left-out")  # the first exchange was left out of that request
