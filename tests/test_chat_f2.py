"""F2 settings (issue 14): typing in the form never reads the model file (it froze the app for seconds
a key with a large vocabulary), the dialog fits 80×24, and sampling changes apply without a reload."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from scripted_backend import FixedSampler, ScriptedBackend
from test_tui_chat import RecordingApp, wait_for
from test_tui_settings import FormApp
from textual.widgets import Button, Input, Static
from tiny_gguf import write_tiny_llama

from tokrace.model_registry import gguf_meta
from tokrace.settings import Settings
from tokrace.tui.screens.settings_screen import FORM_FIELDS, SettingsScreen

BIG_VOCAB = 262_144 - 259  # Gemma 3's vocabulary size, with the tiny model's 259 byte/control tokens


def form_open(app: object) -> bool:
    screen = app.screen  # type: ignore[attr-defined]
    return isinstance(screen, SettingsScreen) and bool(screen.query("#plan"))


@pytest.fixture(scope="module")
def big_vocab_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("big") / "big-vocab.gguf", n_embd=32, n_ff=64,
                            extra_tokens=BIG_VOCAB, name="big-vocab")


async def test_keystrokes_in_f2_never_read_the_model_file(big_vocab_model: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    t0 = time.perf_counter()
    info = gguf_meta.read_gguf_info(big_vocab_model)
    parse_s = time.perf_counter() - t0
    assert info.n_vocab == BIG_VOCAB + 259
    reads: list[object] = []
    real = gguf_meta.read_gguf_info

    def counting(*args: object, **kw: object) -> object:
        reads.append(args)
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(gguf_meta, "read_gguf_info", counting)
    app = FormApp(big_vocab_model, Settings())
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: form_open(app))
        reads.clear()  # FormApp itself reads the header once, as the app does at load
        plan = app.screen.query_one("#plan", Static)
        app.screen.query_one("#n_ctx", Input).focus()
        latencies = []
        for key in "2048":
            t = time.perf_counter()
            await pilot.press(key)
            latencies.append(time.perf_counter() - t)
        assert app.screen.query_one("#n_ctx", Input).value == "2048"
        assert "context 2,048" in str(plan.render())  # each key replanned
        assert reads == []  # ...without reading the file
    print(f"\nheader parse {parse_s * 1000:.0f} ms (once, at load); F2 keystroke "
          f"{1000 * max(latencies):.0f} ms at most over {len(latencies)} keys")


async def test_the_dialog_fits_80x24_and_every_field_can_be_reached(tiny_model: Path) -> None:
    app = FormApp(tiny_model, Settings())
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: form_open(app))
        for name in (*FORM_FIELDS, "apply"):
            widget = app.screen.query_one(f"#{name}")
            widget.focus()  # scrolls the form to it (animated: wait until it is there)
            await wait_for(pilot, lambda w=widget: w.region.y >= 0 and w.region.bottom <= 24, timeout=3)
            region = widget.region
            assert region.width > 0 and region.x >= 0 and region.right <= 80, name
            assert region.y >= 0 and region.bottom <= 24, name
        assert isinstance(app.screen.query_one("#apply"), Button)


async def test_sampling_changes_apply_to_the_next_reply_without_a_reload(tiny_model: Path) -> None:
    app = RecordingApp(settings=Settings(model=str(tiny_model), max_tokens=3))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.backend is not None and not app.chat.prompt.disabled)
        backend = app.backend
        await pilot.press("f2")
        await wait_for(pilot, lambda: form_open(app))
        app.screen.query_one("#top_k", Input).value = "7"
        app.screen.query_one("#system_prompt", Input).value = "answer in French"
        await pilot.pause(0.1)
        app.screen.query_one("#apply", Button).press()
        await wait_for(pilot, lambda: app.screen is app.chat)
        assert app.backend is backend and not app.chat.prompt.disabled  # no reload
        assert app.chat.params.top_k == 7 and app.params.top_k == 7
        assert app.chat.system_prompt == "answer in French"


async def test_a_scripted_chat_is_not_reloaded_by_f2_without_a_model_info() -> None:
    app = RecordingApp(backend=ScriptedBackend(["x"]), sampler=FixedSampler())  # type: ignore[arg-type]
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.chat.backend is not None)
        await pilot.press("f2")
        await pilot.pause(0.1)
        assert app.screen is app.chat  # "Load a model first": nothing to plan with


@pytest.fixture(scope="module")
def long_context_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("ctx") / "ctx8k.gguf", n_ctx=8192, name="ctx8k")


async def test_f2_opens_with_the_first_field_focused_and_its_title_and_default_shown(
        long_context_model: Path) -> None:
    """Issue 24.5: digits typed right after F2 went nowhere (nothing had focus), the title was cut at
    160 columns, and the context field's placeholder said "model's, max 8192" while an empty field
    loads 4096 tokens."""
    from screen_text import screen_text

    app = RecordingApp(settings=Settings(model=str(long_context_model), max_tokens=3))
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: app.backend is not None and not app.chat.prompt.disabled)
        assert app.backend.model.n_ctx == 4096  # what an empty field gives
        await pilot.press("f2")
        await wait_for(pilot, lambda: form_open(app))
        await pilot.press("2", "0", "4", "8")
        field = app.screen.query_one("#n_ctx", Input)
        assert field.value == "2048"
        assert field.placeholder == "4096 (max 8192)"
        await pilot.pause(0.1)
        text = " ".join(line.strip(" █") for line in screen_text(app))
        assert "context, threads and GPU fields reload the model" in " ".join(text.split())
