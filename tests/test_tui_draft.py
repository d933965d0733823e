"""Speculative decoding in the chat: --draft from the app, live acceptance, the A/B rerun, the picker."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_tui_chat import RecordingApp, send, wait_for
from textual.widgets import OptionList, Static
from tiny_gguf import write_tiny_llama

from tokrace.backends.base import GenerationParams
from tokrace.load import DraftSpec
from tokrace.model_registry.gguf_meta import read_gguf_info
from tokrace.tui.chat import draft as draft_module
from tokrace.tui.chat.draft import DraftPicker, compatible_drafts
from tokrace.tui.chat.messages import AssistantMessage


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    d = tmp_path_factory.mktemp("pair")
    draft = write_tiny_llama(d / "draft.gguf", n_layer=2, name="tiny-draft")
    target = write_tiny_llama(d / "inert.gguf", n_layer=8, inert_from=2, name="tiny-inert")
    other = write_tiny_llama(d / "other.gguf", n_layer=1, extra_tokens=8, name="tiny-other")
    return target, draft, other


async def test_drafted_chat_shows_acceptance_and_ab_rerun_measures_speedup(pair) -> None:
    target, draft, _ = pair
    app = RecordingApp(model_ref=str(target), draft=DraftSpec(ref=str(draft), k=4),
                       params=GenerationParams(max_tokens=32, temperature=0))
    async with app.run_test(size=(130, 40)) as pilot:
        await wait_for(pilot, lambda: app.chat.backend is not None and app.chat._ready)
        await pilot.pause(0.1)
        status = str(app.chat.query_one("#status", Static).render())
        assert "draft draft.gguf (k=4)" in status
        await send(pilot, "hello")
        await wait_for(pilot, lambda: len(app.finished) == 1)
        drafted = app.finished[0].stats
        assert drafted.completion_tokens == 32
        assert drafted.drafted > 0 and drafted.accepted == drafted.drafted  # inert layers: 100%
        await pilot.pause(0.3)
        figures = str(app.chat.query_one("#figures", Static).render())
        assert "accepted ÷ drafted (100%)" in figures
        from tokrace.speedlog.store import SpeedLog

        await wait_for(pilot, lambda: len(SpeedLog.open().read()) == 1)
        record = SpeedLog.open().read()[0]
        assert (record.draft_model, record.draft_k) == ("draft.gguf", 4)
        history_before = list(app.chat.history)

        await pilot.press("ctrl+b")
        await wait_for(pilot, lambda: len(app.finished) == 2)
        plain = app.finished[1].stats
        assert plain.drafted == 0 and plain.completion_tokens == 32
        assert app.chat.history == history_before  # a measurement, not a new turn
        await pilot.pause(0.1)
        summaries = [str(m.query_one(".summary", Static).render()) for m in app.query(AssistantMessage)]
        assert summaries[1].startswith("A/B without the draft: 32 tok")
        # Faster or slower depends on the machine; the speedup is one pair's, and says so.
        assert "draft speedup " in summaries[1] and "× (n=1, no spread)" in summaries[1]
        assert "100% accepted ÷ drafted" in summaries[1]
        # Greedy: the same reply with and without the draft.
        texts = [m.markdown.source for m in app.query(AssistantMessage)]
        assert texts[0] == texts[1]
        # The rerun ran on the plain target: its record says so (it was logged with the draft's name
        # and k when the recorder took them from the load instead of from the reply).
        await wait_for(pilot, lambda: len(SpeedLog.open().read()) == 2)
        rerun = SpeedLog.open().read()[1]
        assert (rerun.draft_model, rerun.draft_k, rerun.drafted) == (None, None, 0)
        assert rerun.session_id == record.session_id and rerun.n_gen == 32


async def test_ab_without_a_draft_explains_itself(tiny_model: Path) -> None:
    app = RecordingApp(model_ref=str(tiny_model), params=GenerationParams(max_tokens=4, temperature=0))
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.chat.backend is not None)
        await pilot.press("ctrl+b")
        await pilot.pause(0.2)
        assert not app.query(AssistantMessage)


def test_picker_offers_only_matching_vocabularies(pair, monkeypatch: pytest.MonkeyPatch) -> None:
    target, draft, other = pair
    rows = [{"id": p.name, "source": "file", "path": str(p)} for p in (target, draft, other)]
    monkeypatch.setattr("tokrace.model_registry.listing.list_models", lambda: rows)
    found = compatible_drafts(read_gguf_info(target), str(target))
    assert [ref for _, ref in found] == ["draft.gguf"]  # not itself, not the other vocabulary


async def test_picker_returns_the_chosen_draft(pair, monkeypatch: pytest.MonkeyPatch) -> None:
    target, draft, _ = pair
    monkeypatch.setattr(draft_module, "compatible_drafts", lambda info, path: [("draft", str(draft))])
    app = RecordingApp(model_ref=str(target), params=GenerationParams(max_tokens=4))
    chosen: list[DraftSpec | None] = []
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.chat.backend is not None)
        app.push_screen(DraftPicker(read_gguf_info(target), str(target), DraftSpec()), chosen.append)
        await wait_for(pilot, lambda: isinstance(app.screen, DraftPicker)
                       and any(o.option_count == 3 for o in app.screen.query(OptionList)))
        options = app.screen.query_one(OptionList)
        options.highlighted = 2
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(chosen))
    assert chosen == [DraftSpec(ref=str(draft))]
