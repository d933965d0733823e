"""The models screen in a tiny host app: list, plan, pull with progress, choose."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_hub import FakeHub, use_fake_hub
from textual.app import App
from textual.widgets import DataTable, Static

from tokrace.model_registry.catalog import user_catalog_path
from tokrace.tui.screens.models_screen import ModelsScreen

REPO = "acme/Tiny-GGUF"


class Host(App[None]):
    chosen: str | None = "unset"

    def on_mount(self) -> None:
        self.push_screen(ModelsScreen(), callback=self._chosen)

    def _chosen(self, value: str | None) -> None:
        self.chosen = value


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model: Path):
    with FakeHub() as hub:
        use_fake_hub(monkeypatch, tmp_path, hub)
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        monkeypatch.delenv("LLAMA_CACHE", raising=False)
        monkeypatch.delenv("OLLAMA_MODELS", raising=False)
        hub.add_repo(REPO, {"tiny-Q4_K_M.gguf": tiny_model.read_bytes()})
        user_catalog_path().write_text(
            '[models."aaa-tiny:q4_k_m"]\nfamily="x"\nparams="115K"\nquant="Q4_K_M"\ntokenizer="x"\n'
            f'source="hf"\nrepo="{REPO}"\nquant_pattern="Q4_K_M"\n'
        )
        yield hub


async def wait_for(pilot, cond, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if cond():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not met")


async def test_pull_then_choose(hub: FakeHub) -> None:
    app = Host()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ModelsScreen) and app.screen.rows)
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        index = next(i for i, r in enumerate(screen.rows) if r["id"] == "aaa-tiny:q4_k_m")
        screen.query_one(DataTable).move_cursor(row=index)
        plan = screen.query_one("#plan", Static)
        await wait_for(pilot, lambda: "fits" in str(plan.render()))  # remote header, before any download
        assert not screen.rows[index]["downloaded"]
        await pilot.press("enter")
        await wait_for(pilot, lambda: "is ready" in str(screen.query_one("#pull-status", Static).render()))
        row = next(r for r in screen.rows if r["id"] == "aaa-tiny:q4_k_m")
        assert row["downloaded"]
        index = screen.rows.index(row)
        screen.query_one(DataTable).move_cursor(row=index)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.chosen != "unset")
        assert app.chosen == "aaa-tiny:q4_k_m"


async def test_the_cursor_stays_on_the_pulled_model(hub: FakeHub) -> None:
    """Issue 24.1: the list is read again when a pull finishes; Enter must still pick the pulled model,
    not whatever is on row 1 now."""
    app = Host()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ModelsScreen) and app.screen.rows)
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        index = next(i for i, r in enumerate(screen.rows) if r["id"] == "aaa-tiny:q4_k_m")
        assert index > 0  # otherwise row 1 would be right by chance
        screen.query_one(DataTable).move_cursor(row=index)
        await pilot.press("enter")
        await wait_for(pilot, lambda: "is ready" in str(screen.query_one("#pull-status", Static).render()))
        table = screen.query_one(DataTable)
        assert screen.rows[table.cursor_row]["id"] == "aaa-tiny:q4_k_m"
        await pilot.press("enter")  # no cursor move: the pulled model is still the highlighted one
        await wait_for(pilot, lambda: app.chosen != "unset")
        assert app.chosen == "aaa-tiny:q4_k_m"
