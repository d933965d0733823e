"""``tokrace chat`` headless, as a user runs it: a real process, real llama.cpp, tiny models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tokrace(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tokrace.cli.main", *args], cwd=ROOT, capture_output=True, text=True,
        input=stdin, env=os.environ.copy(), timeout=120,
    )


def test_reply_on_stdout_summary_on_stderr(tiny_model: Path) -> None:
    proc = tokrace("chat", "-m", str(tiny_model), "--prompt", "hi", "-n", "24", "--temp", "0")
    assert proc.returncode == 0, proc.stderr
    summary = proc.stderr.strip().splitlines()[-1]
    assert summary.startswith("24 tok · ") and "TTFT" in summary and "prompt" in summary
    assert proc.stdout.strip()  # random bytes, but some text


def test_json_has_the_documented_fields(tiny_model: Path, isolated_dirs: Path) -> None:
    proc = tokrace("chat", "-m", str(tiny_model), "--prompt", "hi", "-n", "16", "--temp", "0", "--seed", "3",
                   "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    for key in ("text", "prompt_tokens", "completion_tokens", "ttft_s", "prompt_tok_s", "gen_tok_s",
                "model", "stop_reason"):
        assert key in data, key
    assert data["completion_tokens"] == 16
    assert data["stop_reason"] == "length"
    assert data["gen_tok_s"] > 0 and data["ttft_s"] > 0
    assert data["model"] == "tiny.gguf"
    assert data["model_file"]["quantization"] == "F32"
    # The reply was recorded in the speed log the moment it finished.
    log = list((isolated_dirs / "data").rglob("*.jsonl"))
    assert log, "no speed log written"
    records = [json.loads(line) for line in log[0].read_text().splitlines() if line.strip()]
    assert records[-1]["n_gen"] == 16
    assert records[-1]["kind"] == "chat"


def test_prompt_from_stdin(tiny_model: Path) -> None:
    proc = tokrace("chat", "-m", str(tiny_model), "--prompt", "-", "-n", "4", "--json", stdin="hello")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["completion_tokens"] == 4


def test_same_seed_same_reply(tiny_model: Path) -> None:
    args = ("chat", "-m", str(tiny_model), "--prompt", "x", "-n", "12", "--temp", "0.9", "--seed", "5",
            "--json")
    assert json.loads(tokrace(*args).stdout)["text"] == json.loads(tokrace(*args).stdout)["text"]


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d, t: d / "missing.gguf", "no model file"),
        (lambda d, t: (d / "notes.gguf", (d / "notes.gguf").write_text("hello"))[0], "not a GGUF"),
        (lambda d, t: (d / "cut.gguf", (d / "cut.gguf").write_bytes(t.read_bytes()[:200_000]))[0],
         "truncated"),
    ],
    ids=["missing", "not-gguf", "truncated"],
)
def test_bad_model_is_one_line_and_exit_2(tmp_path: Path, tiny_model: Path, make, expected: str) -> None:
    path = make(tmp_path, tiny_model)
    proc = tokrace("chat", "-m", str(path), "--prompt", "hi")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("tokrace: error: ") and expected in lines[0]
    assert "Traceback" not in proc.stderr


def test_context_larger_than_the_model_is_refused(tiny_model: Path) -> None:
    proc = tokrace("chat", "-m", str(tiny_model), "--prompt", "hi", "--ctx", "999999")
    assert proc.returncode == 2
    assert "context" in proc.stderr and "Traceback" not in proc.stderr
    # The remedy names the flag in the command line's words (the TUI names its F2 field instead).
    assert "set --ctx to 2048 or less" in proc.stderr


def test_bad_flag_values_are_usage_errors(tiny_model: Path) -> None:
    proc = tokrace("chat", "-m", str(tiny_model), "--prompt", "hi", "--max-tokens", "0")
    assert proc.returncode == 2 and "above 0" in proc.stderr


def test_price_per_hour_adds_cost_per_1k_tokens(tiny_model: Path) -> None:
    proc = tokrace("chat", "-m", str(tiny_model), "--prompt", "hi", "-n", "16", "--temp", "0", "--json",
                   "--price-per-hour", "3.6")
    data = json.loads(proc.stdout)
    # $3.60/h = $0.001/s: at r tok/s, 1K tokens cost 1000 ÷ r × $0.001.
    assert data["cost_per_1k_generated"] == pytest.approx(1.0 / data["gen_tok_s"])
    assert data["cost_per_1k_prompt"] == pytest.approx(1.0 / data["prompt_tok_s"])
    assert data["peak_vram_bytes"] is None  # no GPU: nothing measured, nothing invented
    text = tokrace("chat", "-m", str(tiny_model), "--prompt", "hi", "-n", "8", "--price-per-hour", "2")
    assert "cost: $" in text.stderr.splitlines()[-1]
