"""The chat's A/B rerun (Ctrl+B) compares like with like: it replays the drafted reply's own request
(the same messages, sampler settings and seed) without the draft, and states the speedup with the one
definition ``bench --draft`` uses too (``tokrace.speedup``): one pair, so no spread, and it says so."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_tui_chat import RecordingApp, send, wait_for
from textual.widgets import Static
from tiny_gguf import write_tiny_llama

from tokrace.backends.base import GenerationParams
from tokrace.backends.meter import ReplyStats
from tokrace.load import DraftSpec
from tokrace.tui.chat.messages import AssistantMessage
from tokrace.tui.chat.screen import ab_line


def test_ab_line_gives_one_pairs_speedup_and_says_it_has_no_spread() -> None:
    # The A/B said "1.57× faster" from one 25-token run, with no spread, while bench --draft said
    # 0.98–1.18×: one definition, sample size and spread shown.
    drafted, plain = ReplyStats(), ReplyStats()
    drafted.gen_tok_s, plain.gen_tok_s = 40.0, 92.0
    assert ab_line(drafted, plain) == (" · draft speedup 0.43× (n=1, no spread) · 40.0 vs 92.0 tok/s"
                                       " with/without")
    drafted.gen_tok_s, drafted.drafted, drafted.accepted = 184.0, 10, 10
    assert ab_line(drafted, plain) == (" · draft speedup 2.00× (n=1, no spread) · 184.0 vs 92.0 tok/s"
                                       " with/without · 100% accepted ÷ drafted")
    plain.gen_tok_s = None
    assert ab_line(drafted, plain) == " · speedup unknown (too few tokens)"


def test_speedup_is_the_median_of_paired_ratios_with_its_spread() -> None:
    from tokrace.speedup import paired_speedup

    s = paired_speedup([100.0, 50.0, 100.0, 80.0, 100.0], [118.0, 55.0, 98.0, 88.0, 110.0])
    assert s is not None and (s.median, s.low, s.high, s.n) == (pytest.approx(1.1), 0.98, 1.18, 5)
    assert s.show() == "1.10× (0.98–1.18×, n=5)"
    # Pairs, not the ratio of means: the slow second pair (a busy machine) does not skew it.
    assert paired_speedup([100.0, None], [150.0, 90.0]).show() == "1.50× (n=1, no spread)"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="pair them"):
        paired_speedup([1.0], [1.0, 2.0])


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
        assert "draft speedup " in summary and "(n=1, no spread)" in summary
        # A second send draws a new seed: replies stay as random as llama.cpp's own.
        await send(pilot, "again")
        await wait_for(pilot, lambda: len(app.finished) == 3)
        again = app.chat.last_drafted_request
        assert again is not None and again[0][-1].content == "again"
