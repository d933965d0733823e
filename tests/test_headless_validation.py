"""Headless commands refuse bad input in one line and say what they drop: ``-t`` is threads everywhere
(as in llama.cpp's tools), thread counts above the machine's, empty prompts, repeated ``bench -p``,
``--system`` on a base model, help that shows defaults, failed requests kept out of the speed log; and
discovery of llama.cpp's cache without multimodal projectors."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
from test_chat_cmd import tokrace

from tokrace.cli import bench_cmd
from tokrace.model_registry.discovery import default_roots, discover, llama_cache_dir
from tokrace.settings import Settings
from tokrace.settings_args import add_settings_args


def parser_with_settings() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_settings_args(p, Settings.names(group="generation"))
    return p


def test_t_is_threads_and_temperature_is_temp() -> None:
    args = parser_with_settings().parse_args(["-t", "1", "--temp", "0.5"])
    assert args.threads == 1 and args.temperature == 0.5
    assert parser_with_settings().parse_args(["--temperature", "0"]).temperature == 0


def test_threads_above_the_cpu_count_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    cores = os.cpu_count() or 1
    with pytest.raises(SystemExit):
        parser_with_settings().parse_args(["--threads", str(cores + 1)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"expected a whole number from 1 to {cores} (this machine's CPU threads), got '{cores + 1}'" in err
    # The file and the F2 form keep any positive count: a settings.toml from a bigger machine loads.
    assert Settings().updated({"n_threads": cores + 1}).n_threads == cores + 1


def test_help_shows_every_default() -> None:
    p = argparse.ArgumentParser()
    add_settings_args(p, list(Settings.model_fields))
    for action in p._actions:
        if action.option_strings and action.dest != "help":
            assert action.help is not None and "default" in action.help, action.option_strings


def bench_parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser()
    bench_cmd.register(root.add_subparsers())
    return root


def test_bench_repeated_sizes_add_up_and_t_is_threads() -> None:
    args = bench_parser().parse_args(["bench", "m.gguf", "-p", "16", "-p", "32,64", "-t", "1"])
    assert args.n_prompt == [16, 32, 64] and args.n_gen == [128] and args.threads == 1
    args = bench_parser().parse_args(["bench", "m.gguf"])
    assert args.n_prompt == [512] and args.n_gen == [128]
    args = bench_parser().parse_args(["bench", "m.gguf", "-n", "0"])
    assert args.n_gen == [0]


def test_bench_help_names_repetitions() -> None:
    sub = next(a for a in bench_parser()._actions if isinstance(a, argparse._SubParsersAction))
    bench = sub.choices["bench"]
    helps = {tuple(a.option_strings): a.help for a in bench._actions}
    assert "default: 5" in (helps[("-r", "--repetitions")] or "")


@pytest.mark.parametrize("prompt", ["", "   \n\t"])
def test_empty_prompt_is_refused_before_loading(tiny_model: Path, prompt: str) -> None:
    proc = tokrace("chat", "-m", str(tiny_model), "--prompt", prompt)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == "tokrace: error: the prompt is empty: give --prompt some text"


def test_system_on_a_base_model_is_said_not_dropped_silently(tiny_model_no_template: Path) -> None:
    proc = tokrace("chat", "-m", str(tiny_model_no_template), "--prompt", "Once upon", "-n", "4",
                   "--temp", "0", "--system", "be brief")
    assert proc.returncode == 0, proc.stderr
    assert "note: the system prompt was not sent: " in proc.stderr and "plain completion" in proc.stderr
    assert proc.stderr.count("system prompt") == 1  # said once, with the reply


def test_system_on_a_chat_model_says_nothing(tiny_model: Path) -> None:
    proc = tokrace("chat", "-m", str(tiny_model), "--prompt", "hi", "-n", "4", "--temp", "0",
                   "--system", "be brief")
    assert proc.returncode == 0, proc.stderr
    assert "system prompt" not in proc.stderr


def test_failed_request_is_not_logged_as_a_zero_token_reply(tiny_model: Path, isolated_dirs: Path) -> None:
    proc = tokrace("chat", "-m", str(tiny_model), "--prompt", "word " * 200, "--ctx", "32", "-n", "4",
                   "--json")
    assert proc.returncode == 2
    data = json.loads(proc.stdout)
    assert data["stop_reason"] == "error" and data["completion_tokens"] == 0
    logs = list((isolated_dirs / "data").rglob("replies.jsonl"))
    assert all(not log.read_text().strip() for log in logs)


def test_llama_cache_follows_llama_cpps_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LLAMA_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert llama_cache_dir() == tmp_path / "xdg" / "llama.cpp"
    assert default_roots()["llama.cpp"] == [tmp_path / "xdg" / "llama.cpp"]
    monkeypatch.setenv("LLAMA_CACHE", str(tmp_path / "mine"))
    assert llama_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("LLAMA_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert llama_cache_dir() == Path.home() / ".cache" / "llama.cpp"


def test_projectors_are_not_listed_as_chat_models(tiny_model: Path, tmp_path: Path) -> None:
    root = tmp_path / "llama.cpp"
    root.mkdir()
    data = tiny_model.read_bytes()
    (root / "gemma-3-4b-it-Q4_K_M.gguf").write_bytes(data)
    (root / "mmproj-gemma-3-4b-it-f16.gguf").write_bytes(data)
    (root / "gemma-3-4b-it-mmproj-F16.gguf").write_bytes(data)
    names = [f.name for f in discover({"llama.cpp": [root]})]
    assert names == ["gemma-3-4b-it-Q4_K_M.gguf"]
