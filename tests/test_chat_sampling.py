"""Sampling settings on every generating command and in each reply's record (issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_chat_cmd import tokrace
from test_tui_chat import RecordingApp, wait_for

from tokrace.settings import Settings
from tokrace.settings_file import load_settings, update_settings_file
from tokrace.speedlog.store import SpeedLog
from tokrace.tui.app import TokraceApp

FLAGS = ("--top-k", "--top-p", "--min-p", "--repeat-penalty", "--seed", "--temperature", "--max-tokens",
         "--system", "--context-policy")


@pytest.mark.parametrize("command", [(), ("chat",), ("race",)])
def test_every_generating_command_has_the_sampling_flags_with_defaults(command: tuple[str, ...]) -> None:
    proc = tokrace(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    for flag in FLAGS:
        assert flag in text, (command, flag)
    for default in ("(default: 40)", "(default: 0.95)", "(default: 0.05)", "(default: 1)",
                    "(default: rolling)"):
        assert default in text, (command, default)


def test_a_bad_sampling_value_is_one_line(tiny_model: Path) -> None:
    proc = tokrace("chat", "-m", str(tiny_model), "--prompt", "hi", "--top-p", "2")
    assert proc.returncode == 2
    assert "--top-p: expected a number from 0 to 1, got '2'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_headless_chat_records_its_sampling(tiny_model: Path) -> None:
    proc = tokrace("chat", "-m", str(tiny_model), "--prompt", "hi", "-n", "4", "--temp", "0.5",
                   "--top-k", "5", "--top-p", "0.5", "--min-p", "0.1", "--repeat-penalty", "1.1",
                   "--seed", "3", "--system", "be brief")
    assert proc.returncode == 0, proc.stderr
    [record] = SpeedLog.open().read()
    assert record.sampling == {"temperature": 0.5, "top_k": 5, "top_p": 0.5, "min_p": 0.1,
                               "repeat_penalty": 1.1, "seed": 3, "max_tokens": 4}


def test_the_settings_file_takes_them_too() -> None:
    update_settings_file({"top_k": 7, "min_p": 0.2, "system_prompt": "be kind", "context_policy": "middle"})
    settings = load_settings()
    params = settings.generation_params()
    assert (params.top_k, params.min_p) == (7, 0.2)
    app = TokraceApp(settings=settings)
    assert app.chat.system_prompt == "be kind" and app.chat.context_policy == "middle"


async def test_the_app_records_each_reply_with_its_sampling(tiny_model: Path) -> None:
    settings = Settings(model=str(tiny_model), max_tokens=3, top_k=9, temperature=0.0)
    app = RecordingApp(settings=settings)
    app.on_reply_finished = lambda message: (app.finished.append(message),  # type: ignore[method-assign]
                                             TokraceApp.on_reply_finished(app, message))
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.session is not None and not app.chat.prompt.disabled)
        app.chat.prompt.value = "hi"
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(SpeedLog.open().read()) == 1)
    [record] = SpeedLog.open().read()
    assert record.sampling is not None
    assert record.sampling["top_k"] == 9 and record.sampling["max_tokens"] == 3
