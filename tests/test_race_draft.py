"""Racing a model against itself with a draft model: the draft's speedup, live, as a race."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_chat_cmd import tokrace
from tiny_gguf import write_tiny_llama


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("race_pair")
    return (write_tiny_llama(d / "inert.gguf", n_layer=8, inert_from=2, name="tiny-inert"),
            write_tiny_llama(d / "draft.gguf", n_layer=2, name="tiny-draft"))


def test_same_model_with_and_without_a_draft(pair: tuple[Path, Path], isolated_dirs: Path) -> None:
    target, draft = pair
    proc = tokrace("race", str(target), str(target), "--draft-b", str(draft), "--prompt", "hi",
                   "-n", "24", "--temp", "0", "--json", "--mode", "fair")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    a, b = data["lanes"]
    assert a["draft"] is None and b["draft"] == draft.name  # the draft's id, as chat and bench log it
    assert b["title"].endswith("+ draft draft.gguf") and "draft" not in a["title"]
    assert a["drafted"] == 0
    assert b["drafted"] > 0 and b["accepted"] == b["drafted"]  # inert layers: all accepted
    assert a["text"] == b["text"]  # greedy: the draft changes the speed, never the reply
    assert a["completion_tokens"] == b["completion_tokens"] == 24
    # The speed log says which lane decoded with which draft.
    log = next((isolated_dirs / "data").rglob("replies.jsonl")).read_text().splitlines()
    drafts = {r["lane"]: (r["draft_model"], r["draft_k"]) for r in map(json.loads, log)}
    assert drafts == {"A": (None, None), "B": (draft.name, 4)}


def test_mismatched_draft_stops_the_race_before_it_runs(pair: tuple[Path, Path], tmp_path: Path) -> None:
    target, _ = pair
    other = write_tiny_llama(tmp_path / "other.gguf", n_layer=1, extra_tokens=8, name="other")
    proc = tokrace("race", str(target), str(target), "--draft-b", str(other), "--prompt", "hi",
                   "-n", "8", "--temp", "0", "--json")
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tokrace: error: lane B: ") and "tokens" in lines[0]
    assert "Traceback" not in proc.stderr
