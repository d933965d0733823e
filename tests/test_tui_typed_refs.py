"""Issue 24.2: a model or a draft that no listing knows of is typed into the models screen (Ctrl+O) or the
draft picker (Ctrl+D): a path anywhere on disk, or a server URL as ``-m`` takes it; each is checked
(exists, is GGUF, for a draft the vocabulary) and a bad one is one line in the screen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_openai_server import FakeServer
from test_tui_chat import RecordingApp, send, wait_for
from test_tui_draft import pair  # noqa: F401  (fixture)
from textual.app import App
from textual.widgets import Input, Static

from tokrace.backends.base import GenerationParams
from tokrace.load import DraftSpec
from tokrace.model_registry.gguf_meta import read_gguf_info
from tokrace.tui.chat.draft import DraftPicker
from tokrace.tui.chat.messages import AssistantMessage
from tokrace.tui.screens.models_screen import ModelsScreen


class Host(App[None]):
    chosen: str | None = "unset"

    def on_mount(self) -> None:
        self.push_screen(ModelsScreen(rows_fn=lambda: []), callback=self._chosen)

    def _chosen(self, value: str | None) -> None:
        self.chosen = value


@pytest.fixture
def server() -> Iterator[FakeServer]:
    s = FakeServer().start()
    yield s
    s.stop()


def line_of(screen: object, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())  # type: ignore[attr-defined]


async def type_into(pilot, app: App, selector: str, text: str) -> None:
    box = app.screen.query_one(selector, Input)
    box.value = ""
    box.focus()
    await pilot.pause()
    await pilot.press(*text)
    await pilot.press("enter")


async def test_models_screen_takes_a_typed_path_or_url_and_refuses_bad_ones(
        tmp_path: Path, tiny_model: Path) -> None:
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("hello, not a model")
    app = Host()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ModelsScreen)
                       and bool(app.screen.query("#model-ref")))
        screen = app.screen
        await pilot.press("p")  # from the list to the box
        assert screen.focused is screen.query_one("#model-ref", Input)
        for typed, expected in ((str(tmp_path / "missing.gguf"), "no file at"),
                                (str(tmp_path), "is a folder"),
                                (str(not_gguf), "is not a GGUF model file"),
                                ("http:///v1", "is not a server URL"),
                                ("no-such-model", "unknown model 'no-such-model'")):
            await type_into(pilot, app, "#model-ref", typed)
            await wait_for(pilot, lambda e=expected: e in line_of(screen, "#ref-line"))
            assert app.screen is screen and app.chosen == "unset"
            assert "tokrace models" not in line_of(screen, "#ref-line")  # TUI words, not the CLI's
        await type_into(pilot, app, "#model-ref", "http://127.0.0.1:8080/v1#good")
        await wait_for(pilot, lambda: app.chosen != "unset")
        assert app.chosen == "http://127.0.0.1:8080/v1#good"
    app = Host()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ModelsScreen))
        await type_into(pilot, app, "#model-ref", str(tiny_model))
        await wait_for(pilot, lambda: app.chosen != "unset")
        assert app.chosen == str(tiny_model)


async def test_a_url_typed_in_ctrl_o_loads_the_remote_engine(tiny_model: Path, server: FakeServer) -> None:
    app = RecordingApp(model_ref=str(tiny_model), params=GenerationParams(max_tokens=8, temperature=0))
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.backend is not None and not app.chat.prompt.disabled)
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, ModelsScreen))
        await type_into(pilot, app, "#model-ref", f"{server.url}#good")
        await wait_for(pilot, lambda: app.backend is not None and app.backend.model.path.startswith("http")
                       and not app.chat.prompt.disabled)
        assert app.session is not None and app.session.model.path == f"{server.url}#good"
        await send(pilot, "hi")
        await wait_for(pilot, lambda: bool(app.finished))
        assert app.finished[0].stats.endpoint == f"127.0.0.1:{server.port}"
        await pilot.pause(0.2)
        assert app.query_one(AssistantMessage).markdown.source == "Hello world!"


async def test_draft_picker_takes_a_typed_path_checked_for_its_vocabulary(pair, tmp_path: Path) -> None:  # noqa: F811
    target, draft, other = pair
    app = RecordingApp(model_ref=str(target), params=GenerationParams(max_tokens=4))
    chosen: list[DraftSpec | None] = []
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.chat.backend is not None)
        app.push_screen(DraftPicker(read_gguf_info(target), str(target), DraftSpec(k=3)), chosen.append)
        await wait_for(pilot, lambda: isinstance(app.screen, DraftPicker)
                       and bool(app.screen.query("#draft-path")))
        picker = app.screen
        for typed, expected in ((str(tmp_path / "nothing.gguf"), "no file at"),
                                (str(other), "other.gguf cannot draft for inert.gguf: the draft has"),
                                (str(target), "is the loaded model itself"),
                                ("http://127.0.0.1:8080/v1", "a draft must be a local .gguf file")):
            await type_into(pilot, app, "#draft-path", typed)
            await wait_for(pilot, lambda e=expected: e in line_of(picker, "#draft-line"))
            assert app.screen is picker and not chosen
        await type_into(pilot, app, "#draft-path", str(draft))
        await wait_for(pilot, lambda: bool(chosen))
    assert chosen == [DraftSpec(ref=str(draft), k=3)]


async def test_a_path_typed_in_one_burst_is_read_whole(tiny_model: Path) -> None:
    """Enter on the models screen is a priority binding: the box must be read after every key typed
    before it (a terminal delivers a pasted path and its Enter in one read)."""
    from textual import events

    app = Host()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ModelsScreen)
                       and bool(app.screen.query("#model-ref")))
        app.screen.query_one("#model-ref", Input).focus()
        await pilot.pause()
        for char in str(tiny_model):
            app.post_message(events.Key(char, char))
        app.post_message(events.Key("enter", "\r"))
        await wait_for(pilot, lambda: app.chosen != "unset")
        assert app.chosen == str(tiny_model)
