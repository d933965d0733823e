"""The settings screen: the plan previewed, impossible overrides refused in one line, Apply reloads."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_tui_chat import RecordingApp, wait_for
from textual.app import App
from textual.widgets import Input, Label, Static

from tokrace.backends.base import GenerationParams
from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.gguf_meta import read_gguf_info
from tokrace.settings import Settings, changed_fields
from tokrace.settings_file import load_settings
from tokrace.tui.app import TokraceApp
from tokrace.tui.screens.settings_screen import FORM_FIELDS, SettingsScreen, parse_settings


def form(**values: str) -> dict[str, str]:
    """The form's text, every field blank unless given."""
    return {name: values.get(name, "") for name in FORM_FIELDS}


def test_parse_settings_turns_the_form_into_settings() -> None:
    s = parse_settings(form(n_ctx="512", n_threads="1", n_gpu_layers="-1", tensor_split="1,1",
                            split_mode="row", main_gpu="0", price_per_hour="2.5"))
    r = s.placement_request()
    assert r.n_ctx == 512 and r.n_gpu_layers == -1 and r.tensor_split == [1.0, 1.0] and r.split_mode == "row"
    assert s.n_threads == 1 and s.price_per_hour == 2.5
    empty = parse_settings(form())
    assert empty == Settings()
    # The form changes only its fields: the rest of the settings (theme, draft) come through.
    base = Settings(theme="nord", draft_k=3, n_ctx=1024)
    assert parse_settings(form(n_threads="2", temperature="0.1"), base) == Settings(
        theme="nord", draft_k=3, temperature=0.1, n_threads=2)
    bad_forms = [(form(n_ctx="x"), "context (tokens): expected a whole number above 0, got 'x'"),
                 (form(n_threads="0"), "CPU threads: expected a whole number above 0, got '0'"),
                 (form(tensor_split="1,a"), "tensor split: expected non-negative numbers"),
                 (form(price_per_hour="-1"), "price per hour ($): expected a number of 0 or more")]
    for bad, message in bad_forms:
        with pytest.raises(TokraceError) as err:
            parse_settings(bad)
        assert str(err.value).startswith(message), str(err.value)


class FormApp(App[None]):
    """Just the settings screen over a tiny model, recording what it is dismissed with."""

    def __init__(self, model: Path, current: Settings) -> None:
        super().__init__()
        self.model = model
        self.current = current
        self.result: list[Settings | None] = []

    def on_mount(self) -> None:
        screen = SettingsScreen(read_gguf_info(self.model), str(self.model), [], self.current)
        self.push_screen(screen, callback=self.result.append)


async def test_the_form_is_generated_from_the_settings_model(tiny_model: Path) -> None:
    current = Settings(n_ctx=256, tensor_split=None, split_mode=None, theme="nord", temperature=0.3)
    app = FormApp(tiny_model, current)
    async with app.run_test(size=(130, 45)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen)
                       and bool(app.screen.query("#plan")))
        labels = [str(label.render()) for label in app.screen.query(Label)]
        for name in FORM_FIELDS:
            assert Settings.form_label(name) in labels, name
            assert app.screen.query_one(f"#{name}")  # one widget per field, its id the field name
        assert app.screen.query_one("#n_ctx", Input).value == "256"
        placeholder = app.screen.query_one("#n_threads", Input).placeholder
        assert placeholder == Settings.knob("n_threads").placeholder == "physical cores"
        await set_field(app, "n_threads", "1")
        await pilot.pause(0.1)
        await pilot.click("#apply")
        await wait_for(pilot, lambda: bool(app.result))
    new = app.result[0]
    assert isinstance(new, Settings)
    assert new == Settings(n_ctx=256, n_threads=1, theme="nord", temperature=0.3)
    assert changed_fields(current, new) == {"n_threads": 1}
    assert new.placement_request().n_ctx == 256


async def set_field(app, field_id: str, value: str) -> None:
    app.screen.query_one(f"#{field_id}", Input).value = value


async def test_settings_preview_refuse_then_apply_reloads(tiny_model: Path) -> None:
    app = RecordingApp(model_ref=str(tiny_model), params=GenerationParams(max_tokens=4))
    async with app.run_test(size=(130, 45)) as pilot:
        await wait_for(pilot, lambda: app.chat.backend is not None and app.plan is not None)
        first = app.backend
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen)
                       and bool(app.screen.query("#plan")))
        plan = app.screen.query_one("#plan", Static)
        await pilot.pause(0.1)
        assert "no GPU: everything runs on the CPU, fits in RAM" in str(plan.render())
        await set_field(app, "n_ctx", "999999")
        await pilot.pause(0.1)
        assert plan.has_class("error") and "larger than the model's" in str(plan.render())
        await set_field(app, "tensor_split", "1,1")
        await set_field(app, "n_ctx", "512")
        await pilot.pause(0.1)
        assert plan.has_class("error") and "GPU" in str(plan.render())  # a split with no GPU to split to
        await set_field(app, "tensor_split", "")
        await set_field(app, "n_threads", "1")
        await pilot.pause(0.1)
        assert not plan.has_class("error")
        await pilot.click("#apply")
        await wait_for(pilot, lambda: app.backend is not first and app.backend is not None)
        assert app.backend.model.n_ctx == 512 and app.backend.model.n_threads == 1
        # Apply wrote what changed into settings.toml: the next start uses it.
        await wait_for(pilot, lambda: load_settings().n_ctx == 512)
        saved = load_settings()
        assert (saved.n_ctx, saved.n_threads, saved.model) == (512, 1, None)  # only what F2 changed
    restarted = TokraceApp(settings=load_settings())
    assert restarted.spec.request.n_ctx == 512 and restarted.spec.n_threads == 1


async def test_refused_settings_name_the_form_field_not_a_flag(tiny_model: Path) -> None:
    """An error from the planner names the F2 field in the TUI, the flag on the command line."""
    app = RecordingApp(model_ref=str(tiny_model), params=GenerationParams(max_tokens=4))
    async with app.run_test(size=(130, 45)) as pilot:
        await wait_for(pilot, lambda: app.chat.backend is not None and app.plan is not None)
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen)
                       and bool(app.screen.query("#plan")))
        await set_field(app, "n_ctx", "999999")
        await pilot.pause(0.2)
        text = str(app.screen.query_one("#plan", Static).render())
        assert f"set the {Settings.form_label('n_ctx')} field (F2) to" in text and "--ctx" not in text


async def test_theme_survives_a_restart(tiny_model: Path) -> None:
    app = TokraceApp(model_ref=str(tiny_model))
    async with app.run_test(size=(100, 30)) as pilot:
        app.theme = "nord"
        await wait_for(pilot, lambda: load_settings().theme == "nord")
    again = TokraceApp(settings=load_settings(), model_ref=str(tiny_model))
    async with again.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.1)
        assert again.theme == "nord"
