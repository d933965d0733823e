"""The UI that measures must not perturb what it measures (issue 11): renders paced to a CPU budget,
long replies streamed in chunks that are frozen once finished, unchanged figures not redrawn."""

from __future__ import annotations

from dataclasses import replace

from scripted_backend import SCRIPTED_MODEL, FixedSampler, ScriptedBackend
from test_tui_chat import RecordingApp, send, wait_for
from textual.widgets import Markdown

from tokrace.backends.base import default_threads
from tokrace.tui.chat.messages import AssistantMessage
from tokrace.tui.streaming import (
    MAX_RENDER_INTERVAL_S,
    MIN_RENDER_INTERVAL_S,
    UI_CPU_BUDGET,
    UI_CPU_BUDGET_CONTENDED,
    RenderPacer,
    block_split,
    ui_cpu_budget,
)


def test_block_split_finds_the_last_finished_top_level_block() -> None:
    assert block_split("one line still growing") == 0
    text = "First paragraph\nstill it.\n\nSecond one\n"
    assert text[block_split(text):] == "Second one\n"
    items = "- a\n- b\n- c is still"
    assert items[block_split(items):] == "- b\n- c is still"  # the growing item is never split off
    nested = "- a\n  - sub\n  continued\n"
    assert block_split(nested) == 0  # indented lines belong to the item above
    numbered = "1. one\n2) two\n"
    assert numbered[block_split(numbered):] == "2) two\n"
    fenced = "Intro\n\n```py\nx = 1\n\n- not a list\n\ny = 2\n```\n"
    assert fenced[block_split(fenced):].startswith("```py")  # nothing inside the fence
    open_fence = "Intro\n\n```\ncode\n\nmore\n"
    assert open_fence[block_split(open_fence):].startswith("```")


def test_render_pacer_holds_the_ui_to_its_cpu_budget() -> None:
    pacer = RenderPacer(budget=0.1)
    assert pacer.interval(0.0) == MIN_RENDER_INTERVAL_S
    assert pacer.interval(0.03) == 0.3  # 30 ms of CPU per render → 3.3 renders/s = 10% of a core
    assert pacer.interval(5.0) == MAX_RENDER_INTERVAL_S  # text still shows at least once a second


def test_render_budget_is_smaller_while_llama_cpp_computes_on_every_core() -> None:
    cores = default_threads()
    on_all_cores = replace(SCRIPTED_MODEL, n_threads=cores)
    assert ui_cpu_budget(on_all_cores) == UI_CPU_BUDGET_CONTENDED < UI_CPU_BUDGET
    assert ui_cpu_budget(replace(SCRIPTED_MODEL, n_threads=cores + 4)) == UI_CPU_BUDGET_CONTENDED
    # Every layer on GPUs: its threads compute nothing; a remote engine (0 threads here): a core is spare.
    assert ui_cpu_budget(on_all_cores, all_on_gpu=True) == UI_CPU_BUDGET
    assert ui_cpu_budget(replace(SCRIPTED_MODEL, n_threads=0)) == UI_CPU_BUDGET
    if cores > 1:
        assert ui_cpu_budget(replace(SCRIPTED_MODEL, n_threads=cores - 1)) == UI_CPU_BUDGET


async def test_a_long_reply_streams_in_chunks_and_ends_as_one_document() -> None:
    paragraphs = [f"Paragraph {i} says something long enough to fill a line or two of the screen.\n\n"
                  for i in range(40)]
    pieces = [word for p in paragraphs for word in p.replace(" ", " \0").split("\0")]
    counts: list[int] = []
    app = RecordingApp(backend=ScriptedBackend(pieces, real_delay=0.002), sampler=FixedSampler())
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.chat.backend is not None and app.chat._ready)
        await send(pilot, "go")

        def watch() -> bool:
            counts.append(len(app.query_one(AssistantMessage).query(Markdown)))
            return len(app.finished) == 1

        await wait_for(pilot, watch, timeout=180)  # a deadline for a busy machine, not a timing
        await pilot.pause(0.2)
        reply = app.query_one(AssistantMessage)
        assert len(reply.query(Markdown)) == 1  # the extra chunks are gone
        n = app.finished[0].stats.completion_tokens
        assert n > 300 and reply.markdown.source.strip() == "".join(pieces[:n]).strip()
    assert max(counts) > 1  # it was streamed in several frozen chunks
