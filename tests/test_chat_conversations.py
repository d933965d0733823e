"""Saved conversations (issue 14): every turn on disk as it happens, resume after a kill -9, the F3 list,
Markdown export, regenerate, edit the last message, copy a reply, and a model switch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from scripted_backend import FixedSampler, ScriptedBackend
from test_chat_cmd import tokrace
from test_tui_chat import RecordingApp, wait_for
from textual.widgets import OptionList, Static

from tokrace.backends.base import ChatMessage
from tokrace.conversations import (
    ConversationLog,
    find_conversation,
    list_conversations,
    read_conversation,
    to_markdown,
)
from tokrace.settings import Settings
from tokrace.tui.chat.messages import AssistantMessage, UserMessage
from tokrace.tui.screens.conversations_screen import ConversationsScreen, export_markdown

U, A = "user", "assistant"


def test_the_log_replays_cuts_and_skips_a_torn_last_line(tmp_path: Path) -> None:
    log = ConversationLog("m", folder=tmp_path)
    assert not log.path.exists()  # nothing is written before the first turn
    for message in (ChatMessage("system", "sys"), ChatMessage(U, "q1"), ChatMessage(A, "a1"),
                    ChatMessage(U, "q2"), ChatMessage(A, "a2")):
        log.append(message)
    log.cut(4)  # regenerate: a2 is gone
    log.append(ChatMessage(A, "a2 again"), stop_reason="stop")
    log.close()
    with log.path.open("ab") as f:
        f.write(b'{"t": "msg", "role": "user", "cont')  # a kill in the middle of a write
    saved = read_conversation(log.path)
    assert [m.content for m in saved.messages] == ["sys", "q1", "a1", "q2", "a2 again"]
    assert saved.model == "m" and saved.title == "q1"
    assert find_conversation("last", tmp_path).id == log.id
    assert find_conversation(log.id[:12], tmp_path).id == log.id
    markdown = to_markdown(saved)
    assert markdown.startswith("# q1") and "## Assistant\n\na2 again" in markdown
    assert export_markdown(saved, tmp_path).read_text() == markdown


CHILD = textwrap.dedent("""
    import asyncio, sys, time
    from scripted_backend import FixedSampler, ScriptedBackend
    from tokrace.tui.app import TokraceApp

    async def main():
        app = TokraceApp(backend=ScriptedBackend(["reply ", "text"]), sampler=FixedSampler())
        async with app.run_test(size=(100, 30)) as pilot:
            while app.chat.backend is None or app.chat.prompt.disabled:
                await pilot.pause(0.05)
            for text in ("first question", "second question"):
                app.chat.prompt.value = text
                await pilot.press("enter")
                await pilot.pause(0.05)
                while app.chat.generating:
                    await pilot.pause(0.05)
            app.chat.prompt.value = "third, never answered"
            await pilot.press("enter")
            await pilot.pause(0.3)
            print("READY", flush=True)
            time.sleep(60)

    asyncio.run(main())
""")


async def test_a_killed_chat_resumes_with_every_turn(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    child = subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "READY"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    [saved] = list_conversations()
    contents = [m.content for m in saved.messages]
    assert contents[:4] == ["first question", "reply text", "second question", "reply text"]
    backend = ScriptedBackend(["more"])
    app = RecordingApp(backend=backend, sampler=FixedSampler(), resume=find_conversation("last"))  # type: ignore[arg-type]
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.chat.backend is not None and not app.chat.prompt.disabled)
        assert [m.content for m in app.chat.history] == contents
        assert len(app.query(UserMessage)) == sum(m.role == U for m in saved.messages) >= 2
        app.chat.prompt.value = "fourth"
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(app.finished))
        assert [m.content for m in backend.requests[0]][:4] == contents[:4]
    again = read_conversation(saved.path)
    assert again.messages[-2:] == [ChatMessage(U, "fourth"), ChatMessage(A, "more")]


async def test_regenerate_edit_and_copy_the_last_turn() -> None:
    backend = ScriptedBackend(["answer"])
    app = RecordingApp(backend=backend, sampler=FixedSampler())  # type: ignore[arg-type]
    copied: list[str] = []
    app.copy_to_clipboard = copied.append  # type: ignore[method-assign]
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.chat.backend is not None and not app.chat.prompt.disabled)
        app.chat.prompt.value = "question"
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(app.finished) == 1)
        await pilot.press("ctrl+t")
        assert copied == ["answer"]
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: len(app.finished) == 2)
        assert [m.content for m in app.chat.history] == ["question", "answer"]
        assert len(backend.requests) == 2 and backend.requests[1] == [ChatMessage(U, "question")]
        assert len(app.query(AssistantMessage)) == 1
        await pilot.press("f4")
        await pilot.pause(0.1)
        assert app.chat.history == [] and app.chat.prompt.value == "question"
        assert not app.query(UserMessage) and not app.query(AssistantMessage)
        await pilot.press("end", "!", "enter")
        await wait_for(pilot, lambda: len(app.finished) == 3)
        assert [m.content for m in app.chat.history] == ["question!", "answer"]
    saved = read_conversation(list_conversations()[0].path)
    assert [m.content for m in saved.messages] == ["question!", "answer"]


async def test_f3_lists_saved_conversations_and_resumes_one() -> None:
    old = ConversationLog("old-model")
    old.append(ChatMessage(U, "an old question"))
    old.append(ChatMessage(A, "an old answer"))
    old.close()
    app = RecordingApp(backend=ScriptedBackend(["x"]), sampler=FixedSampler())  # type: ignore[arg-type]
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.chat.backend is not None and not app.chat.prompt.disabled)
        await pilot.press("f3")
        await wait_for(pilot, lambda: isinstance(app.screen, ConversationsScreen)
                       and app.screen.query_one(OptionList).option_count == 1
                       and app.screen.saved != [])
        await pilot.press("enter")
        from tokrace.tui.chat.resume import ResumeModelScreen

        # Made with another model: the user says where it continues (issue 24.3), here on the loaded one.
        await wait_for(pilot, lambda: isinstance(app.screen, ResumeModelScreen)
                       and bool(app.screen.query("#continue")))
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is app.chat and bool(app.chat.history))
        assert [m.content for m in app.chat.history] == ["an old question", "an old answer"]
        await pilot.pause(0.1)
        assert "an old answer" in app.query_one(AssistantMessage).markdown.source


async def test_switching_model_starts_a_new_conversation_with_the_prompt_disabled_meanwhile(
        tiny_model: Path, deep_model: Path) -> None:
    app = RecordingApp(settings=Settings(model=str(tiny_model), max_tokens=4))
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.backend is not None and not app.chat.prompt.disabled)
        app.chat.prompt.value = "hi"
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(app.finished) == 1)
        await pilot.pause(0.3)
        from dataclasses import replace

        app.spec = replace(app.spec, model=str(deep_model))
        app.reload_model("loading another model…")  # what choosing one in Ctrl+O does
        assert app.chat.prompt.disabled and app.chat.backend is None
        await wait_for(pilot, lambda: app.backend is not None and app.backend.model.path == str(deep_model)
                       and not app.chat.prompt.disabled)
        await pilot.pause(0.3)
        assert app.chat.history == [] and not app.query(AssistantMessage)
        assert app.chat.meter is None and app.chat.context_used is None
        assert "TTFT" not in str(app.chat.query_one("#figures", Static).render())


def test_resume_flag_with_nothing_saved_is_one_line() -> None:
    proc = tokrace("--resume")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "tokrace: error: no saved conversations yet: chat first, then resume"


class NoticeApp(RecordingApp):
    """Keeps every notice's text."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)
        self.notices: list[str] = []

    def notify(self, message: str, **kw: object) -> None:  # type: ignore[override]
        self.notices.append(message)
        super().notify(message, **kw)  # type: ignore[arg-type]


def _saved_with(model: str, model_ref: str | None) -> None:
    log = ConversationLog(model, model_ref=model_ref)
    log.append(ChatMessage(U, "The capital of France is"))
    log.append(ChatMessage(A, " Paris."), stop_reason="stop")
    log.close()


async def _resume_from_f3(pilot, app: RecordingApp) -> None:
    from tokrace.tui.chat.resume import ResumeModelScreen

    await pilot.press("f3")
    await wait_for(pilot, lambda: isinstance(app.screen, ConversationsScreen) and app.screen.saved != [])
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, ResumeModelScreen)
                   and bool(app.screen.query("Button")))


async def test_f3_offers_to_load_the_model_a_chat_was_made_with(tiny_model: Path,
                                                                tiny_model_no_template: Path) -> None:
    """Issue 24.3: a plain-completion chat made with another model is not continued silently on the
    loaded one: F3 offers to load its own model, through the models screen's reload, then resumes it."""
    _saved_with("tiny-base.gguf", str(tiny_model_no_template))
    app = RecordingApp(settings=Settings(model=str(tiny_model), max_tokens=4))
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.backend is not None and not app.chat.prompt.disabled)
        await _resume_from_f3(pilot, app)
        why = str(app.screen.query_one("#resume-why", Static).render())
        assert "made with   tiny-base.gguf" in why and "loaded now  tiny.gguf" in why
        assert app.chat.history == []  # nothing resumed before the user chose
        await pilot.press("enter")  # the focused first button: load the chat's model
        await wait_for(pilot, lambda: app.backend is not None
                       and app.backend.model.path == str(tiny_model_no_template)
                       and bool(app.chat.history) and not app.chat.prompt.disabled)
        assert [m.content for m in app.chat.history] == ["The capital of France is", " Paris."]
        assert app.chat.backend.model.template.startswith("plain completion")  # type: ignore[union-attr]
        app.chat.prompt.value = "and of Italy"
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(app.finished))
        assert app.finished[0].model.path == str(tiny_model_no_template)
    [saved] = list_conversations()
    assert saved.model_ref == str(tiny_model_no_template)
    assert [m.content for m in saved.messages][:3] == ["The capital of France is", " Paris.", "and of Italy"]


async def test_f3_continue_on_the_loaded_model_says_which_model_continues(
        tiny_model: Path, tiny_model_no_template: Path) -> None:
    _saved_with("tiny-base.gguf", None)  # a file from before the model's reference was saved
    app = NoticeApp(settings=Settings(model=str(tiny_model), max_tokens=4))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.backend is not None and not app.chat.prompt.disabled)
        await _resume_from_f3(pilot, app)
        assert not app.screen.query("#load")  # nothing to load it from: only continue or cancel
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is app.chat and bool(app.chat.history))
        assert app.backend is not None and app.backend.model.path == str(tiny_model)
    assert any("continues on tiny.gguf" in n for n in app.notices), app.notices


async def test_a_resumed_chat_shows_each_replys_saved_figures_and_stopped_mark() -> None:
    """Issue 24.6: resumed replies showed "(saved)" instead of their figures, and a stopped reply lost
    its "stopped" mark; both come from what the conversation file saved with each reply."""
    pieces = [f"w{i} " for i in range(300)]
    app = RecordingApp(backend=ScriptedBackend(pieces, real_delay=0.004), sampler=FixedSampler())  # type: ignore[arg-type]
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.chat.backend is not None and not app.chat.prompt.disabled)
        app.chat.prompt.value = "first"
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(app.finished) == 1)
        app.chat.prompt.value = "second"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.chat.meter is not None
                       and app.chat.meter.stats.completion_tokens > 3)
        await pilot.press("escape")
        await wait_for(pilot, lambda: len(app.finished) == 2)
        assert app.finished[1].stats.stop_reason == "cancelled"
        live = [f.stats.summary_line() for f in app.finished]
    assert "stopped" in live[1] and "stopped" not in live[0]
    resumed = RecordingApp(backend=ScriptedBackend(["x"]), sampler=FixedSampler(),  # type: ignore[arg-type]
                           resume=find_conversation("last"))
    async with resumed.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: len(resumed.query(AssistantMessage)) == 2)
        await pilot.pause(0.1)
        summaries = [m.query_one(".summary", Static) for m in resumed.query(AssistantMessage)]
        assert [str(s.render()) for s in summaries] == live
        assert not summaries[0].has_class("stopped") and summaries[1].has_class("stopped")


def test_conversation_files_without_figures_still_read() -> None:
    """A file from before figures were saved: its replies read, with how they ended."""
    log = ConversationLog("m")
    log.append(ChatMessage(U, "q"))
    log.append(ChatMessage(A, "partial"), stop_reason="cancelled")
    log.close()
    saved = read_conversation(log.path)
    assert [r.stop_reason for r in saved.replies] == [None, "cancelled"]
    assert saved.replies[1].stats() is None
    from tokrace.tui.chat.turns import saved_summary

    assert saved_summary(saved.replies[1]) == ("(saved without its figures) · stopped", "stopped")
