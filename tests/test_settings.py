"""Settings declared once: the model generates the flags, backs the F2 form and is kept in settings.toml."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tokrace.backends.base import MAX_DRAFT_K
from tokrace.cli import common
from tokrace.cli.main import build_parser
from tokrace.model_registry.errors import TokraceError
from tokrace.settings import Settings, changed_fields
from tokrace.settings_file import config_path, load_settings, save_settings, update_settings_file
from tokrace.tui.screens.settings_screen import FORM_FIELDS

ROOT = Path(__file__).resolve().parents[1]
FLAGGED = [name for name in Settings.names() if Settings.knob(name).flags]


def subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def option_strings(parser: argparse.ArgumentParser) -> list[str]:
    return [s for action in parser._actions for s in action.option_strings]


def test_config_path_is_in_the_isolated_config_dir(isolated_dirs: Path) -> None:
    assert config_path() == isolated_dirs / "config" / "settings.toml"


def test_missing_file_means_the_defaults() -> None:
    s = load_settings()
    assert s == Settings()
    assert s.generation_params().max_tokens == 512 and s.generation_params().temperature == 0.8
    assert s.placement_request().n_ctx is None and s.model is None and s.theme is None


def test_round_trip_writes_only_what_differs_from_the_defaults() -> None:
    s = Settings().updated({"n_ctx": 2048, "tensor_split": "3,1", "split_mode": "row", "temperature": 0.2,
                            "lookup": True, "theme": "nord", "max_tokens": 512, "price_per_hour": 1.5})
    path = save_settings(s)
    assert path == config_path()
    assert load_settings() == s
    written = tomllib.loads(path.read_text())
    assert written == {"n_ctx": 2048, "tensor_split": [3.0, 1.0], "split_mode": "row", "temperature": 0.2,
                       "lookup": True, "theme": "nord", "price_per_hour": 1.5}
    save_settings(Settings())
    assert tomllib.loads(path.read_text()) == {}
    assert [p.name for p in path.parent.iterdir()] == ["settings.toml"]  # no temporary file left


def test_a_failed_write_keeps_the_old_file(monkeypatch: pytest.MonkeyPatch) -> None:
    save_settings(Settings(n_ctx=1024))
    before = config_path().read_bytes()

    def refuse(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError):
        save_settings(Settings(n_ctx=2048))
    assert config_path().read_bytes() == before
    assert [p.name for p in config_path().parent.iterdir()] == ["settings.toml"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('n_ctx = "abc"\n', "n_ctx: expected a whole number above 0, got 'abc'; fix or delete the file"),
        ("n_ctx = 0\n", "n_ctx: expected a whole number above 0, got 0"),
        ("n_gpu_layers = -2\n", "n_gpu_layers: expected a whole number of -1 or more, got -2"),
        ("temperature = -1\n", "temperature: expected a number of 0 or more, got -1"),
        ("tensor_split = [0, 0]\n", "tensor_split: expected non-negative numbers with a positive sum"),
        ('split_mode = "diagonal"\n', "split_mode: expected one of none, layer, row, got 'diagonal'"),
        ('lookup = "maybe"\n', "lookup: expected true or false, got 'maybe'"),
        ("draft_k = 40\n", "draft_k: expected a whole number from 1 to 32, got 40; fix or delete the file"),
        ("n_cxt = 512\n", "n_cxt: unknown setting (did you mean n_ctx?); fix or delete the file"),
        ("[gpu]\nlayers = 3\n", "gpu: unknown setting"),
        ("n_ctx = = 3\n", "not valid TOML"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_file_and_the_key(body: str, expected: str) -> None:
    config_path().write_text(body)
    with pytest.raises(TokraceError) as err:
        load_settings()
    message = str(err.value)
    assert message.startswith(f"{config_path()}: ") and expected in message, message
    assert "\n" not in message and message.endswith("fix or delete the file")


def test_an_unreadable_file_is_one_line() -> None:
    config_path().mkdir()  # a folder where the file should be
    with pytest.raises(TokraceError, match="cannot read it") as err:
        load_settings()
    assert "\n" not in str(err.value)


def test_update_settings_file_changes_only_the_given_keys() -> None:
    save_settings(Settings(n_ctx=1024, theme="nord"))
    run = Settings(n_ctx=1024, theme="nord", model="other.gguf")  # --model for this run only
    applied = run.updated({"n_threads": "2", "theme": "dracula"})
    assert changed_fields(run, applied) == {"n_threads": 2, "theme": "dracula"}
    saved = update_settings_file(changed_fields(run, applied))
    assert saved == load_settings() == Settings(n_ctx=1024, theme="dracula", n_threads=2)
    assert load_settings().model is None  # the run's flag did not leak into the file


def test_flags_override_the_file_for_that_run_and_the_file_stays() -> None:
    save_settings(Settings(n_ctx=1024, temperature=0.2, lookup=True, n_threads=3, price_per_hour=2.0))
    before = config_path().read_bytes()
    args = build_parser().parse_args(["chat", "-p", "hi", "--ctx", "512", "--no-lookup", "-n", "7",
                                      "--tensor-split", "1,1"])
    s = common.settings_for(args)
    assert s.n_ctx == 512 and s.lookup is False and s.max_tokens == 7 and s.tensor_split == [1.0, 1.0]
    assert s.temperature == 0.2 and s.n_threads == 3 and s.price_per_hour == 2.0  # from the file
    assert common.placement_request(args).n_ctx == 512
    params = common.generation_params(args)
    assert params.max_tokens == 7 and params.temperature == 0.2
    assert config_path().read_bytes() == before
    plain = build_parser().parse_args(["chat", "-p", "hi"])
    assert common.settings_for(plain) == load_settings()


def test_flags_not_given_are_none_so_the_file_stands() -> None:
    args = build_parser().parse_args([])
    for name in FLAGGED:
        assert getattr(args, Settings.knob(name).dest or "") is None, name


def test_a_bad_flag_is_argparse_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["chat", "-p", "hi", "--ctx", "abc"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --ctx: expected a whole number above 0, got 'abc'" in err
    args = build_parser().parse_args(["chat", "-p", "hi", "--tensor-split", "0,0"])
    with pytest.raises(TokraceError, match=r"^--tensor-split '0,0': expected non-negative numbers"):
        common.settings_for(args)


def test_a_bad_file_stops_the_shared_helpers() -> None:
    config_path().write_text("max_tokens = 0\n")
    args = build_parser().parse_args(["chat", "-p", "hi"])
    with pytest.raises(TokraceError, match="max_tokens: expected a whole number above 0"):
        common.generation_params(args)
    with pytest.raises(TokraceError, match="fix or delete the file"):
        common.placement_request(args)


@pytest.mark.parametrize("command", [None, "chat"])
def test_every_flag_exists_once_and_comes_from_the_model(command: str | None) -> None:
    parser = build_parser()
    if command:
        parser = subparser(parser, command)
    options = option_strings(parser)
    actions = {a.dest: a for a in parser._actions}
    help_text = parser.format_help()
    for name in FLAGGED:
        knob = Settings.knob(name)
        for flag in knob.flags:
            assert options.count(flag) == 1, (command, flag)
            assert flag in help_text
        action = actions[knob.dest or ""]
        assert action.help == knob.help and action.default is None


def test_race_and_plan_get_the_shared_flags_from_the_model() -> None:
    parser = build_parser()
    race = option_strings(subparser(parser, "race"))
    for name in Settings.names(group="generation") + Settings.names(group="gpu"):
        assert race.count(Settings.cli_flag(name)) == 1, name
    plan = option_strings(subparser(parser, "plan"))
    for name in Settings.names(group="gpu"):
        assert plan.count(Settings.cli_flag(name)) == 1, name


def test_each_interface_names_a_setting_in_its_own_words() -> None:
    assert Settings.cli_flag("n_ctx") == "--ctx" and Settings.form_label("n_ctx") == "context (tokens)"
    assert Settings.cli_flag("max_tokens") == "--max-tokens" and Settings.cli_flag("theme") == "theme"
    for name in Settings.names():
        assert Settings.form_label(name), name
    with pytest.raises(TokraceError, match=r"^context \(tokens\): expected a whole number above 0, got 'x'$"):
        Settings().updated({"n_ctx": "x"}, name_of=Settings.form_label)
    with pytest.raises(TokraceError, match=r"^--threads: expected a whole number above 0, got '0'$"):
        Settings().updated({"n_threads": "0"}, name_of=Settings.cli_flag)


def test_the_form_shows_a_distinct_label_for_each_of_its_fields() -> None:
    assert set(FORM_FIELDS) == {"n_ctx", "n_threads", "price_per_hour", "n_gpu_layers", "tensor_split",
                                "split_mode", "main_gpu", "temperature", "top_k", "top_p", "min_p",
                                "repeat_penalty", "max_tokens", "seed", "context_policy", "system_prompt"}
    labels = [Settings.form_label(name) for name in FORM_FIELDS]
    assert len(set(labels)) == len(labels) and all(labels)


def test_text_round_trips_through_the_parsers() -> None:
    s = Settings(n_ctx=512, tensor_split=[1, 0.5], temperature=0.0, lookup=True, split_mode="row")
    again = Settings().updated({name: s.as_text(name) for name in Settings.names()})
    assert again == s
    assert s.as_text("tensor_split") == "1,0.5" and s.as_text("seed") == ""


def test_compat_helpers_still_work() -> None:
    assert common.parse_tensor_split("1,1") == [1.0, 1.0] and common.parse_tensor_split(None) is None
    with pytest.raises(TokraceError, match=r"^--tensor-split '1,a': "):
        common.parse_tensor_split("1,a")
    assert common.positive_int("3") == 3
    for bad in ("0", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            common.positive_int(bad)


def tokrace(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tokrace.cli.main", *args], cwd=ROOT, capture_output=True,
                          text=True, env=os.environ.copy(), timeout=120)


def test_chat_uses_the_file_and_a_flag_overrides_it(tiny_model: Path) -> None:
    save_settings(Settings(max_tokens=3, temperature=0.0))
    proc = tokrace("chat", "-m", str(tiny_model), "--prompt", "hi", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["completion_tokens"] == 3
    proc = tokrace("chat", "-m", str(tiny_model), "--prompt", "hi", "-n", "5", "--json")
    assert json.loads(proc.stdout)["completion_tokens"] == 5
    config_path().write_text("max_tokens = 'many'\n")
    proc = tokrace("chat", "-m", str(tiny_model), "--prompt", "hi")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "settings.toml: max_tokens: expected a whole number above 0, got 'many'" in proc.stderr


# --- draft_k = 40: refused by the one model, named in each interface's words -------------------------


def test_draft_k_is_bounded_in_every_interface(capsys: pytest.CaptureFixture[str]) -> None:
    """A k the speculative backend cannot run is refused where it is given, never later by the engine
    (which once said '--draft-k' in the TUI): the file names its key, a flag itself, F2 its label."""
    assert Settings(draft_k=MAX_DRAFT_K).draft_k == MAX_DRAFT_K
    with pytest.raises(TokraceError, match=r"^draft k: expected a whole number from 1 to 32, got '40'$"):
        Settings().updated({"draft_k": "40"}, name_of=Settings.form_label)
    with pytest.raises(TokraceError, match=r"^draft_k: expected a whole number from 1 to 32, got 0$"):
        Settings().updated({"draft_k": 0})
    for argv in (["chat", "-p", "hi"], ["race", "a", "b"], ["bench", "-m", "a", "--draft", "d"], []):
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args([*argv, "--draft-k", "40"])
        assert exit_.value.code == 2
        assert "argument --draft-k: expected a whole number from 1 to 32, got '40'" in capsys.readouterr().err


def test_the_engine_names_draft_k_in_the_words_of_the_interface() -> None:
    from tokrace.backends.speculative import SpeculativeBackend
    from tokrace.cli.words import say as cli_say
    from tokrace.tui.words import say as tui_say

    with pytest.raises(TokraceError) as err:
        SpeculativeBackend(target=None, drafter=None, k=40)  # type: ignore[arg-type]
    assert err.value.kind == "settings"
    assert cli_say(err.value) == "--draft-k must be from 1 to 32, got 40"
    assert tui_say(err.value) == "the draft setting (Ctrl+D) must be from 1 to 32, got 40"
    assert str(err.value) == "draft_k must be from 1 to 32, got 40"


def test_a_file_with_draft_k_40_stops_the_app_before_it_starts() -> None:
    config_path().write_text("draft_k = 40\n")
    for argv in ([], ["chat", "--prompt", "hi"]):
        proc = tokrace(*argv)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "settings.toml: draft_k: expected a whole number from 1 to 32, got 40" in proc.stderr
        assert "--draft-k" not in proc.stderr
