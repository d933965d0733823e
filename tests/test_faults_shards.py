"""Sharded models: space is checked for the whole set, a set is listed once and only when complete, and a
set in the Hugging Face cache loads by its snapshot path (beside its sibling shards). Also the models
screen with a broken user catalog and a data folder that is a file: a line, not a crash."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fake_hub import FakeHub, use_fake_hub
from textual.app import App
from textual.widgets import Static

from tokrace.model_registry.catalog import user_catalog_path
from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.hf_download import pull_hf, repo_cache_dir
from tokrace.model_registry.hub import parse_hf_ref
from tokrace.model_registry.listing import list_models
from tokrace.model_registry.resolve import resolve_model
from tokrace.tui.screens.models_screen import ModelsScreen

REPO = "acme/Tiny-GGUF"
SHARDS = {
    "big/tiny-F16-00001-of-00003.gguf": b"a" * 300_000,
    "big/tiny-F16-00002-of-00003.gguf": b"b" * 300_000,
    "big/tiny-F16-00003-of-00003.gguf": b"c" * 1000,
}


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    with FakeHub() as hub:
        use_fake_hub(monkeypatch, tmp_path, hub)
        monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no other tool's models
        monkeypatch.delenv("LLAMA_CACHE", raising=False)
        monkeypatch.delenv("OLLAMA_MODELS", raising=False)
        hub.add_repo(REPO, SHARDS)
        yield hub


def test_a_set_that_cannot_fit_is_refused_before_its_first_shard(hub: FakeHub,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Room for any one shard (300 kB), not for the set (601 kB): the old per-shard check let shard 1 in.
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 400_000))
    with pytest.raises(TokraceError, match="3 shards") as exc:
        pull_hf(parse_hf_ref(f"hf:{REPO}:F16"))
    assert exc.value.facts["needed"] == 601_000
    assert all(hub.stats[name] == 0 for name in SHARDS)  # not one byte downloaded


def hf_rows() -> list[dict[str, object]]:
    return [r for r in list_models() if r["source"] == "hf-cache"]


def test_a_set_is_listed_once_and_only_when_complete(hub: FakeHub) -> None:
    pull = pull_hf(parse_hf_ref(f"hf:{REPO}:F16"))
    from tokrace.model_registry.store import forget_pull

    forget_pull(pull.ref)  # as if another tool had put the set in the cache
    rows = hf_rows()
    assert [r["id"] for r in rows] == [f"{REPO}/big/tiny-F16-00001-of-00003.gguf"]
    assert rows[0]["size"] == 601_000  # the whole set, one row
    # Shard 2 gone (an interrupted pull): the set cannot load, so it is not listed at all.
    Path(pull.files[1].path).unlink()
    assert hf_rows() == []


def test_a_set_in_the_hub_cache_loads_by_its_snapshot_path(hub: FakeHub) -> None:
    pull = pull_hf(parse_hf_ref(f"hf:{REPO}:F16"))
    snapshot = pull.path
    assert snapshot.is_symlink()
    resolved = resolve_model(str(snapshot)).path
    assert resolved == snapshot  # not the blob: llama.cpp finds shard 2 beside it
    assert (resolved.parent / "tiny-F16-00002-of-00003.gguf").is_file()
    assert str(resolved).startswith(str(repo_cache_dir(REPO)))


class Host(App[None]):
    def on_mount(self) -> None:
        self.push_screen(ModelsScreen())


async def wait_for(pilot, cond, tries: int = 200) -> None:
    for _ in range(tries):
        if cond():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not met")


async def test_the_models_screen_shows_a_broken_catalog_and_still_lists(isolated_dirs: Path) -> None:
    user_catalog_path().write_text('[models."mine:f32"\nfamily = ')
    shutil.rmtree(isolated_dirs / "data", ignore_errors=True)
    (isolated_dirs / "data").write_text("")  # and the data folder is a file
    app = Host()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ModelsScreen) and app.screen.rows)
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        assert any(r["id"] == "smollm2-135m-instruct:q4_1" for r in screen.rows)
        status = str(screen.query_one("#pull-status", Static).render())
        assert "skipped:" in status and "not valid TOML" in status


async def test_a_metadata_read_that_ends_after_the_models_screen_closed_is_dropped(
        isolated_dirs: Path) -> None:
    """The plan line is filled by a thread worker; if the screen is gone by then (the user moved on, the
    app is quitting), the result is dropped instead of failing the worker (which would end the app)."""
    app = Host()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ModelsScreen) and app.screen.rows)
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        await screen.query_one("#plan", Static).remove()
        screen._put_plan("late result")  # what the worker's call_from_thread runs
        await pilot.pause()
        assert app.is_running and app.return_code is None
