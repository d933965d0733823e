"""``tokrace race A B --prompt …`` headless, as a user runs it: a real process, real llama.cpp."""

from __future__ import annotations

import json
from pathlib import Path

from test_chat_cmd import tokrace

CHAT_FIELDS = ("text", "prompt_tokens", "completion_tokens", "ttft_s", "prompt_tok_s", "gen_tok_s", "model",
               "stop_reason", "model_file")


def test_json_has_a_lanes_list_with_chat_fields_and_a_verdict(tiny_model: Path, deep_model: Path,
                                                              isolated_dirs: Path) -> None:
    proc = tokrace("race", str(tiny_model), str(deep_model), "--prompt", "hi", "-n", "24", "-t", "0",
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
    assert verdict["faster"] == "A" and verdict["speed_ratio"] > 1
    headline = verdict["lines"][0]
    assert headline.startswith("tiny.gguf F32 ") and "faster than deep.gguf F32" in headline
    assert verdict["tokens"] == {"A": 24, "B": 24}
    # Both lanes are in the speed log, one race session, kind "race".
    log = next((isolated_dirs / "data").rglob("*.jsonl"))
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert [(r["kind"], r["lane"], r["n_gen"]) for r in records] == [("race", "A", 24), ("race", "B", 24)]
    assert records[0]["session_id"] == records[1]["session_id"]


def test_table_and_verdict_on_stdout(tiny_model: Path, deep_model: Path) -> None:
    proc = tokrace("race", str(tiny_model), str(deep_model), "-p", "hi", "-n", "16", "-t", "0",
                   "--mode", "simultaneous", "--threads", "2")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "── A · tiny.gguf F32 ──" in out and "── B · deep.gguf F32 ──" in out
    header = next(line for line in out.splitlines() if line.startswith("lane "))
    assert header.split() == ["lane", "model", "tokens", "tok/s", "TTFT", "prompt", "tok/s", "finish", "stop"]
    assert "mode: simultaneous on one device: 1 thread per lane" in out
    assert "× faster than" in out and "shared it" in out
    assert "note: simultaneous on one device: 2 threads split, 1 per lane" in proc.stderr


def test_a_lane_that_cannot_load_fails_alone(tiny_model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "notes.gguf"
    bad.write_text("hello")
    proc = tokrace("race", str(bad), str(tiny_model), "-p", "hi", "-n", "8", "--json")
    assert proc.returncode == 2
    data = json.loads(proc.stdout)
    a, b = data["lanes"]
    assert a["ran"] is False and "not a GGUF" in a["error"] and a["model_file"] is None
    assert b["completion_tokens"] == 8 and b["error"] is None
    errors = proc.stderr.strip().splitlines()
    assert errors == [f"tokrace: error: lane A: {a['error']}"]
    assert "Traceback" not in proc.stderr


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
