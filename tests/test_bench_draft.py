"""``tokrace bench MODEL --draft D``: generation with and without the draft, same tokens, recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_chat_cmd import tokrace
from tiny_gguf import write_tiny_llama


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("bench_pair")
    return (write_tiny_llama(d / "inert.gguf", n_layer=8, inert_from=2, name="tiny-inert"),
            write_tiny_llama(d / "draft.gguf", n_layer=2, name="tiny-draft"))


def test_bench_with_draft_reports_gen_and_draft_rows(pair, isolated_dirs: Path) -> None:
    target, draft = pair
    proc = tokrace("bench", str(target), "-p", "0", "-n", "24", "-r", "2", "--draft", str(draft),
                   "--draft-k", "3", "--json", "-q")
    assert proc.returncode == 0, proc.stderr
    rows = {r["test"].split(" @ ")[0]: r for r in json.loads(proc.stdout)}
    assert set(rows) == {"tg24", "tg24-gen", "tg24-draft"}
    # llama-bench's tg starts at depth 0; generation starts after the bench prompt, and says so.
    assert rows["tg24"]["n_depth"] == 0 and rows["tg24"]["test"] == "tg24"
    depth = rows["tg24-gen"]["n_depth"]
    assert depth > 0 and rows["tg24-draft"]["n_depth"] == depth
    assert rows["tg24-gen"]["test"] == f"tg24-gen @ d{depth}"
    drafted = rows["tg24-draft"]
    assert drafted["draft_model"] == draft.name and drafted["draft_k"] == 3  # the id chat and race log too
    assert drafted["acceptance_rate"] == 1.0  # inert extra layers: the draft is always right
    assert drafted["same_tokens"] is True
    # The speedup is the median of the two interleaved pairs' ratios, with its spread and n.
    ratios = sorted(d / g for d, g in zip(drafted["samples_ts"], rows["tg24-gen"]["samples_ts"], strict=True))
    assert drafted["speedup"] == pytest.approx(sum(ratios) / 2) and drafted["speedup_n"] == 2
    assert drafted["speedup_min"] == pytest.approx(ratios[0])
    assert drafted["speedup_max"] == pytest.approx(ratios[1])
    assert len(drafted["samples_ts"]) == 2
    table = tokrace("bench", str(target), "-p", "0", "-n", "8", "-r", "2", "--draft", str(draft), "-q",
                    "--no-log").stdout
    assert "tg8-draft" in table and "(speedup " in table and "–" in table and ", n=2" in table
    log = next((isolated_dirs / "data").rglob("replies.jsonl")).read_text().splitlines()
    tests = {json.loads(line)["test"] for line in log}
    assert tests == {"tg24", f"tg24-gen @ d{depth}", f"tg24-draft @ d{depth}"}


def test_draft_k_without_draft_is_refused(pair) -> None:
    target, _ = pair
    proc = tokrace("bench", str(target), "-n", "8", "--draft-k", "3")
    assert proc.returncode == 2 and "--draft-k needs --draft" in proc.stderr
