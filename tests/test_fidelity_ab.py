"""The chat's A/B rerun (Ctrl+B) compares like with like: it replays the drafted reply's own request
(the same messages, sampler settings and seed) without the draft, and states the ratio as a factor
of at least 1, "faster" or "slower"."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_tui_chat import RecordingApp, send, wait_for
from textual.widgets import Static
from tiny_gguf import write_tiny_llama

from tokrace.backends.base import GenerationParams
from tokrace.backends.meter import ReplyStats
from tokrace.session import DraftSpec
from tokrace.tui.chat.messages import AssistantMessage
from tokrace.tui.chat.screen import ab_line


def test_ab_line_says_slower_as_a_factor_above_one() -> None:
    drafted, plain = ReplyStats(), ReplyStats()
    drafted.gen_tok_s, plain.gen_tok_s = 40.0, 92.0
    assert ab_line(drafted, plain).startswith(" · draft 2.30× slower (40.0 vs 92.0 tok/s)")
    drafted.gen_tok_s = 184.0
    assert ab_line(drafted, plain).startswith(" · draft 2.00× faster (184.0 vs 92.0 tok/s)")
    plain.gen_tok_s = None
    assert ab_line(drafted, plain) == " · speedup unknown (too few tokens)"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("abpair")
    draft = write_tiny_llama(d / "draft.gguf", n_layer=2, name="tiny-draft")
    target = write_tiny_llama(d / "inert.gguf", n_layer=6, inert_from=2, name="tiny-inert")
    return target, draft


async def test_ab_rerun_replays_the_sampled_reply_with_its_seed(pair: tuple[Path, Path]) -> None:
    target, draft = pair
    # Sampling at a temperature with no seed set: the drafted reply gets a seed of its own, and the
    # rerun without the draft uses it, so both time the very same text.
    app = RecordingApp(model_ref=str(target), draft=DraftSpec(ref=str(draft), k=3),
                       params=GenerationParams(max_tokens=24, temperature=0.9))
    async with app.run_test(size=(130, 40)) as pilot:
        await wait_for(pilot, lambda: app.chat.backend is not None and app.chat._ready)
        await send(pilot, "hello")
        await wait_for(pilot, lambda: len(app.finished) == 1)
        request = app.chat.last_drafted_request
        assert request is not None
        sent, params = request
        assert params.seed is not None and params.temperature == 0.9 and app.chat.params.seed is None
        assert [m.content for m in sent if m.role == "user"] == ["hello"]
        await pilot.press("ctrl+b")
        await wait_for(pilot, lambda: len(app.finished) == 2)
        await pilot.pause(0.1)
        replies = list(app.query(AssistantMessage))
        assert replies[0].markdown.source == replies[1].markdown.source
        assert app.finished[0].stats.completion_tokens == app.finished[1].stats.completion_tokens
        summary = str(replies[1].query_one(".summary", Static).render())
        assert summary.startswith("A/B without the draft: ")
        assert "× faster (" in summary or "× slower (" in summary
        # A second send draws a new seed: replies stay as random as llama.cpp's own.
        await send(pilot, "again")
        await wait_for(pilot, lambda: len(app.finished) == 3)
        again = app.chat.last_drafted_request
        assert again is not None and again[0][-1].content == "again"
