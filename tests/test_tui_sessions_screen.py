from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_speedlog_fixtures import sample_records
from textual.app import App
from textual.widgets import DataTable, Static

from tokrace.speedlog import SpeedLog
from tokrace.tui.screens.sessions_screen import SessionsScreen


class Host(App[None]):
    """A tiny app that shows only the sessions screen."""

    def __init__(self, screen: SessionsScreen) -> None:
        super().__init__()
        self.sessions_screen = screen

    def on_mount(self) -> None:
        self.push_screen(self.sessions_screen)


def _log(records: list, extra_lines: list[str] | None = None) -> SpeedLog:
    log = SpeedLog.open()
    for r in records:
        log.append(r)
    log.close()
    if extra_lines:
        with log.path.open("a", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in extra_lines)
    return log


def _detail(screen: SessionsScreen) -> str:
    return str(screen.query_one("#detail", Static).render())


async def test_lists_sessions_and_follows_the_cursor_into_replies(tmp_path: Path) -> None:
    records = sample_records()
    records[3].time = records[4].time = "2025-02-01T00:00:00.000000Z"  # s2 is the newer session
    screen = SessionsScreen(_log(records), export_dir=tmp_path / "exports")
    app = Host(screen)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        sessions = screen.query_one("#sessions", DataTable)
        replies = screen.query_one("#replies", DataTable)
        assert sessions.row_count == 2
        assert screen.selected_session == "s2" and replies.row_count == 2  # newest first
        assert "pp512" in _detail(screen) and "repetitions:" in _detail(screen)
        await pilot.press("down")  # to session s1
        await pilot.pause()
        assert screen.selected_session == "s1" and replies.row_count == 3
        assert "128.00 tok/s" in _detail(screen)
        assert "tok/s over the reply" in _detail(screen)  # the first reply kept its token times
        await pilot.press("enter")  # into the replies table
        await pilot.press("down", "down")
        await pilot.pause()
        assert screen.selected_record is not None and screen.selected_record.lane == "B"
        assert "lane B" in _detail(screen) and "F16" in _detail(screen)


async def test_export_from_the_screen(tmp_path: Path) -> None:
    out = tmp_path / "exports"
    screen = SessionsScreen(_log(sample_records()), export_dir=out)
    async with Host(screen).run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        selected = screen.selected_session
        await pilot.press("j")
        await pilot.pause()
        exported = out / f"session-{selected}.jsonl"
        rows = [json.loads(line) for line in exported.read_text().splitlines()]
        assert {r["session_id"] for r in rows} == {selected}
        assert (out / f"session-{selected}.svg").exists()
        await pilot.press("a", "m")
        await pilot.pause()
        table = (out / "all-sessions.md").read_text()
        assert table.startswith("| Model | Quant | hardware | threads |") and "2 × RTX 4090" in table


async def test_export_failure_is_a_notice_not_a_crash(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    screen = SessionsScreen(_log(sample_records()), export_dir=blocker / "exports")
    async with Host(screen).run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        await pilot.press("c")
        await pilot.pause()
        notes = [n.message for n in screen.app._notifications]
        assert any("exports" in m for m in notes)
        assert screen.is_current


async def test_corrupt_log_shows_a_warning_and_the_rest(tmp_path: Path) -> None:
    screen = SessionsScreen(_log(sample_records()[:2], ["{torn"]), export_dir=tmp_path)
    async with Host(screen).run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        assert screen.query_one("#sessions", DataTable).row_count == 1
        notes = [n.message for n in screen.app._notifications]
        assert any("line 3" in m for m in notes)


async def test_empty_log_and_escape_closes(tmp_path: Path) -> None:
    screen = SessionsScreen(SpeedLog.open(tmp_path / "none.jsonl"))
    app = Host(screen)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert "Nothing recorded yet" in _detail(screen)
        await pilot.press("m")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is not screen


@pytest.fixture(autouse=True)
def _no_textual_in_speedlog() -> None:
    """The log package must stay importable without Textual (it is used headless)."""
    from tokrace import speedlog

    source = Path(speedlog.__file__).parent
    assert not any("textual" in p.read_text() for p in source.glob("*.py"))


def test_a_remote_replys_unknown_figures_are_dashes_not_zeros() -> None:
    import dataclasses

    from tokrace.tui.screens.sessions_screen import reply_detail

    remote = dataclasses.replace(sample_records()[0], backend="remote", endpoint="127.0.0.1:8080",
                                 engine="llama-cpp-python server", n_threads=None, n_prompt=None,
                                 prompt_tokens=None, model_size=None)
    detail = reply_detail(remote)
    assert "prompt – tok" in detail and "threads –" in detail
    assert "None" not in detail and "threads 0" not in detail
