"""``tokrace tune`` end to end on generated models (what it measures and reports, never how fast: no
timed assertions), and ``--write`` through the settings file's atomic writer on synthetic results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_gguf import write_tiny_llama

from tokrace.load import DraftSpec, LoadSpec, ResolvedSpec, resolve
from tokrace.settings_file import config_path, load_settings
from tokrace.tune import TuneResult, thread_candidates, tune_model
from tokrace.tune_decide import decide
from tokrace.tune_stage import NO_DRAFT, StageResult, TuneOptions


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("tune")
    draft = write_tiny_llama(out / "draft.gguf", n_layer=2, name="tiny-draft")
    target = write_tiny_llama(out / "target.gguf", n_layer=6, inert_from=2, name="tiny-target")
    return target, draft


def test_thread_candidates_cover_one_half_all_cores_and_hyperthreads() -> None:
    assert thread_candidates(2, 2) == [1, 2]
    assert thread_candidates(8, 16) == [4, 8, 16]
    assert thread_candidates(1, 1) == [1]


def test_every_stage_measures_its_candidates_and_greedy_tokens_match(pair: tuple[Path, Path]) -> None:
    target, draft = pair
    found = resolve(LoadSpec(model=str(target), n_threads=1, draft=DraftSpec(ref=str(draft), k=2)))
    assert isinstance(found, ResolvedSpec)
    progress: list[str] = []
    options = TuneOptions(n_prompt=32, n_gen=4, n_depth=16, rounds=2, draft_gen=12, k_values=(1, 3),
                          p_min_values=(0.0, 0.5))
    result = tune_model(found, options, gpus=[], progress=progress.append)
    stages = {s.name: s for s in result.stages}
    assert list(stages) == ["n_threads", "flash_attn", "n_ubatch", "kv_cache", "draft_k", "draft_p_min"]
    assert {c.name for c in stages["n_threads"].decision.candidates} >= {"1"}
    assert stages["n_threads"].decision.baseline == "1" and stages["n_threads"].metric == "tg4"
    assert {c.name for c in stages["flash_attn"].decision.candidates} == {"auto", "off"}
    assert stages["flash_attn"].metric == "tg4 @ d16"
    assert stages["n_ubatch"].metric == "pp32" and stages["n_ubatch"].decision.baseline == "512"
    # Heads of 16 values do not hold q8_0's 32-value blocks: llama.cpp refuses, tune says so.
    assert [c.name for c in stages["kv_cache"].decision.candidates] == ["f16"]
    assert any("q8_0: not measured" in n and "block size" in n for n in stages["kv_cache"].notes)
    k_names = [c.name for c in stages["draft_k"].decision.candidates]
    assert k_names == [NO_DRAFT, "k=1", "k=2", "k=3"] and stages["draft_k"].decision.baseline == "k=2"
    assert stages["draft_k"].decision.winner != NO_DRAFT
    assert [c.name for c in stages["draft_p_min"].decision.candidates] == [NO_DRAFT, "0", "0.5"]
    for stage in result.stages:
        assert all(len(c.samples) == 2 and c.median > 0 for c in stage.decision.candidates)
        assert not any("tokens differ" in n for n in stage.notes)  # greedy output kept by every draft
    assert set(result.chosen) == {"n_threads", "flash_attn", "n_ubatch", "type_k", "type_v", "draft_k",
                                  "draft_p_min"}
    assert result.baseline["draft_k"] == 2 and result.baseline["n_threads"] == 1
    assert any(line.startswith("draft_k: round 2/2: k=3: ") for line in progress)


def _synthetic(model: str, draft: str | None) -> TuneResult:
    threads = StageResult("n_threads", "tg32",
                          decide({"1": [10.0, 10.1, 10.0], "2": [18.0, 18.2, 17.9]}, "2"),
                          {"1": {"n_threads": 1}, "2": {"n_threads": 2}})
    k = StageResult("draft_k", "gen64 with the draft",
                    decide({NO_DRAFT: [10.0, 10.1, 10.0], "k=4": [15.0, 15.1, 15.2],
                            "k=6": [19.0, 19.1, 19.3]}, "k=4", eligible=["k=4", "k=6"]),
                    {"k=4": {"draft_k": 4}, "k=6": {"draft_k": 6}})
    return TuneResult(model, draft, [threads, k], {"n_threads": 2, "draft_k": 4, "draft_p_min": 0.0},
                      {"n_threads": 2, "draft_k": 6, "draft_p_min": 0.0})


def test_write_saves_only_the_winners_with_their_model_and_draft(
        pair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from tokrace.cli.main import main

    target, draft = pair
    config_path().parent.mkdir(parents=True, exist_ok=True)
    config_path().write_text('theme = "nord"\n')
    monkeypatch.setattr("tokrace.tune.tune_model",
                        lambda found, options, **kw: _synthetic(str(target), str(draft)))
    assert main(["tune", str(target), "--draft", str(draft), "-q"]) == 0
    out = capsys.readouterr()
    assert "| k=6 ✓ | 19.10 |" in out.out and "tie" not in out.out.split("### draft_k")[0]
    assert "--write" in out.err and load_settings().draft_k is None  # not written without --write
    assert main(["tune", str(target), "--draft", str(draft), "-q", "--write"]) == 0
    assert "wrote draft_k = 6" in capsys.readouterr().err
    saved = load_settings()
    assert (saved.draft_k, saved.model, saved.draft, saved.theme) == (6, str(target), str(draft), "nord")
    assert saved.n_threads is None  # a tie / the baseline is never written
    assert main(["tune", str(target), "--draft", str(draft), "-q", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["changes"]["draft_k"] == 6
    k_stage = next(s for s in data["stages"] if s["stage"] == "draft_k")
    assert k_stage["winner"] == "k=6" and len(k_stage["candidates"][0]["samples_ts"]) == 3


def test_tune_refuses_a_server_and_unknown_stages(capsys: pytest.CaptureFixture[str]) -> None:
    from tokrace.cli.main import main

    assert main(["tune", "http://127.0.0.1:9/v1"]) == 2
    assert "tuned on its own side" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["tune", "m.gguf", "--only", "warp_drive"])
