"""The settings screen: the plan previewed, impossible overrides refused in one line, Apply reloads."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_tui_chat import RecordingApp, wait_for
from textual.widgets import Input, Static

from backends.base import GenerationParams
from model_registry.errors import TokraceError
from tui.screens.settings_screen import SettingsScreen, parse_settings


def test_parse_settings_turns_the_form_into_a_request() -> None:
    s = parse_settings("512", "1", "-1", "1,1", "row", "0", "2.5")
    assert s.request.n_ctx == 512 and s.request.n_gpu_layers == -1
    assert s.request.tensor_split == [1.0, 1.0] and s.request.split_mode == "row"
    assert s.threads == 1 and s.price_per_hour == 2.5
    empty = parse_settings("", "", "", "", "", "", "")
    assert empty.request.n_ctx is None and empty.threads is None and empty.price_per_hour is None
    bad_forms = [("x", "", "", "", "", "", ""), ("", "0", "", "", "", "", ""),
                 ("", "", "", "1,a", "", "", "")]
    for bad in bad_forms:
        with pytest.raises(TokraceError):
            parse_settings(*bad)


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
        await set_field(app, "ctx", "999999")
        await pilot.pause(0.1)
        assert plan.has_class("error") and "larger than the model's" in str(plan.render())
        await set_field(app, "tensor_split", "1,1")
        await set_field(app, "ctx", "512")
        await pilot.pause(0.1)
        assert plan.has_class("error") and "GPU" in str(plan.render())  # a split with no GPU to split to
        await set_field(app, "tensor_split", "")
        await set_field(app, "threads", "1")
        await pilot.pause(0.1)
        assert not plan.has_class("error")
        await pilot.click("#apply")
        await wait_for(pilot, lambda: app.backend is not first and app.backend is not None)
        assert app.backend.model.n_ctx == 512 and app.backend.model.n_threads == 1
