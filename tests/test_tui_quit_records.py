"""Quitting never loses a finished reply: records still being written, or never started, reach the speed
log after the app stopped (``TokraceApp.flush_records``, which ``tokrace`` calls on its way out)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from test_tui_chat import RecordingApp, send, wait_for

from tokrace.backends.base import GenerationParams
from tokrace.session import Session
from tokrace.speedlog.store import SpeedLog
from tokrace.tui.app import TokraceApp


async def test_a_record_still_being_written_at_quit_is_kept(tiny_model: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()  # the first record of a big model waits for its sha256
    real = Session.record

    def slow(self: Session, stats, **kw):  # type: ignore[no-untyped-def]
        gate.wait(30)
        return real(self, stats, **kw)

    monkeypatch.setattr(Session, "record", slow)
    app = RecordingApp(model_ref=str(tiny_model), params=GenerationParams(max_tokens=4, temperature=0))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.session is not None and app.session.records)
        await send(pilot, "hi")
        await wait_for(pilot, lambda: len(app.finished) == 1)
        await pilot.pause(0.1)
        assert SpeedLog.open().read() == []  # still hashing when the user quits
        threading.Timer(0.5, gate.set).start()
    assert app.flush_records(timeout_s=30) == []
    assert [r.n_gen for r in SpeedLog.open().read()] == [4]


async def test_a_record_that_never_started_is_written_on_the_way_out(tiny_model: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TokraceApp, "record_reply", lambda self, job: None)  # the worker never ran
    app = RecordingApp(model_ref=str(tiny_model), params=GenerationParams(max_tokens=3, temperature=0))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.session is not None and app.session.records)
        await send(pilot, "hi")
        await wait_for(pilot, lambda: len(app.finished) == 1)
    assert SpeedLog.open().read() == []
    assert app.flush_records(timeout_s=5) == []
    assert [r.n_gen for r in SpeedLog.open().read()] == [3]
    assert app.flush_records(timeout_s=1) == [] and len(SpeedLog.open().read()) == 1  # written once
