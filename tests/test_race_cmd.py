"""``tokrace race A B --prompt …`` headless, as a user runs it: a real process, real llama.cpp."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_chat_cmd import tokrace

CHAT_FIELDS = ("text", "prompt_tokens", "completion_tokens", "ttft_s", "prompt_tok_s", "gen_tok_s", "model",
               "stop_reason", "model_file")


def test_json_has_a_lanes_list_with_chat_fields_and_a_verdict(tiny_model: Path, deep_model: Path,
                                                              isolated_dirs: Path) -> None:
    proc = tokrace("race", str(tiny_model), str(deep_model), "--prompt", "hi", "-n", "24", "--temp", "0",
                   "--threads", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["mode"] == "fair" and data["shared_device"] is False  # CPU only: fair by default
    assert data["memory"]["fits_together"] is True
    a, b = data["lanes"]
    for lane in (a, b):
        for key in CHAT_FIELDS:
            assert key in lane, key
        assert lane["completion_tokens"] == 24 and lane["stop_reason"] == "length"
    assert (a["lane"], a["model"], b["lane"], b["model"]) == ("A", "tiny.gguf", "B", "deep.gguf")
    assert b["model_file"]["path"] == str(deep_model)
    verdict = data["verdict"]
    # Which lane wins is the machine's to say (busy cores stall either); the rules: test_race_verdict.py.
    headline = verdict["lines"][0]
    assert verdict["faster"] in ("A", "B", None) and verdict["speed_ratio"] >= 1
    assert "× faster than" in headline or "tie on speed" in headline
    assert verdict["context"] == {"A": {"in_context": a["prompt_tokens"], "new": a["prompt_eval_tokens"]},
                                  "B": {"in_context": b["prompt_tokens"], "new": b["prompt_eval_tokens"]}}
    assert verdict["tokens"] == {"A": 24, "B": 24}
    # Both lanes are in the speed log, one race session, kind "race".
    log = next((isolated_dirs / "data").rglob("*.jsonl"))
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert [(r["kind"], r["lane"], r["n_gen"]) for r in records] == [("race", "A", 24), ("race", "B", 24)]
    assert records[0]["session_id"] == records[1]["session_id"]


def test_table_and_verdict_on_stdout(tiny_model: Path, deep_model: Path) -> None:
    proc = tokrace("race", str(tiny_model), str(deep_model), "-p", "hi", "-n", "16", "--temp", "0",
                   "--mode", "simultaneous", "--threads", "2")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "── A · tiny.gguf F32 ──" in out and "── B · deep.gguf F32 ──" in out
    header = next(line for line in out.splitlines() if line.startswith("lane "))
    assert header.split() == ["lane", "model", "tokens", "tok/s", "TTFT", "prompt", "tok/s", "finish", "stop"]
    assert "mode: simultaneous on one device: 1 thread per lane" in out
    assert ("× faster than" in out or "tie on speed" in out) and "shared it" in out
    assert "note: simultaneous on one device: 2 threads split, 1 per lane" in proc.stderr


def test_repeat_and_price_per_hour(tiny_model: Path, isolated_dirs: Path) -> None:
    proc = tokrace("race", str(tiny_model), str(tiny_model), "-p", "hi", "-n", "6", "--temp", "0",
                   "--threads", "1", "--repeat", "3", "--price-per-hour", "3.6", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    verdict = data["verdict"]
    assert data["runs"] == verdict["runs"] == 3 and data["price_per_hour"] == 3.6
    assert all(g["runs"] == 3 and g["sd"] is not None for g in verdict["gen_tok_s"].values())
    assert "noise: 3 runs each, mean ± sd over the runs" in verdict["lines"]
    assert any(line.startswith("cost at $3.6/h: A $") for line in verdict["lines"])
    for lane in data["lanes"]:
        assert lane["cost_per_1k_generated"] == pytest.approx(3.6 / 3600 / lane["gen_tok_s"] * 1000)
    # Every run is a real reply: 3 runs × 2 lanes in the speed log.
    log = next((isolated_dirs / "data").rglob("*.jsonl"))
    assert len([line for line in log.read_text().splitlines() if line.strip()]) == 6


def test_a_bad_lane_stops_the_race_before_anything_runs(tiny_model: Path, tmp_path: Path,
                                                        isolated_dirs: Path) -> None:
    bad = tmp_path / "notes.gguf"
    bad.write_text("hello")
    proc = tokrace("race", str(tiny_model), str(bad), "-p", "hi", "-n", "8", "--json")
    assert proc.returncode == 2 and proc.stdout == ""
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("tokrace: error: lane B: ") and "not a GGUF" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not list((isolated_dirs / "data").rglob("*.jsonl"))  # lane A never ran


def test_truncated_lane_b_stops_the_race_before_lane_a(tiny_model: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_model.read_bytes()[: tiny_model.stat().st_size // 2])
    proc = tokrace("race", str(tiny_model), str(cut), "-p", "hi", "-n", "8")
    assert proc.returncode == 2 and "── A" not in proc.stdout
    assert proc.stderr.strip().startswith("tokrace: error: lane B: ") and "truncated" in proc.stderr


def test_empty_prompt_is_refused(tiny_model: Path) -> None:
    proc = tokrace("race", str(tiny_model), str(tiny_model), "-p", "   ")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "tokrace: error: the prompt is empty: give --prompt some text"


def test_no_lane_can_race_is_one_line(tmp_path: Path) -> None:
    proc = tokrace("race", str(tmp_path / "x.gguf"), str(tmp_path / "y.gguf"), "-p", "hi")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tokrace: error: lane A: ") and "lane B: " in lines[0]


def test_json_without_prompt_is_a_usage_error(tiny_model: Path) -> None:
    proc = tokrace("race", str(tiny_model), str(tiny_model), "--json")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("tokrace: error: --json needs --prompt (without a prompt, tokrace race "
                                   "opens the TUI)")
