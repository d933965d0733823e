"""``tokrace models pull|list|rm|search|info`` end to end against the loopback hub."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_hub import FakeHub, use_fake_hub

from tokrace.cli.main import main
from tokrace.model_registry.discovery import OLLAMA_MODEL_LAYER

REPO = "acme/Tiny-GGUF"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model: Path):
    with FakeHub() as hub:
        use_fake_hub(monkeypatch, tmp_path, hub)
        monkeypatch.setenv("HOME", str(tmp_path / "home"))  # discovery roots: an empty fake home
        monkeypatch.delenv("LLAMA_CACHE", raising=False)
        monkeypatch.delenv("OLLAMA_MODELS", raising=False)
        hub.add_repo(REPO, {"tiny-Q4_K_M.gguf": tiny_model.read_bytes(), "README.md": b"x"}, downloads=7)
        yield hub


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_info_plans_from_the_remote_header_before_any_download(hub: FakeHub, capsys) -> None:
    code, out, _ = run(capsys, "models", "info", f"hf:{REPO}:Q4_K_M", "--json", "--ctx", "1024")
    data = json.loads(out)
    assert code == 0 and data["remote"] is True
    assert data["kv_bytes_per_token"] == 2 * 2 * 4 * 16 * 2
    assert data["plan"]["kv_bytes"] == data["kv_bytes_per_token"] * 1024
    assert data["plan"]["total_bytes"] == sum(data["plan"][k] for k in ("weights_bytes", "kv_bytes",
                                                                          "compute_bytes"))
    code, out, _ = run(capsys, "models", "info", f"hf:{REPO}:Q4_K_M", "--gpus", "24,24")
    assert code == 0 and "bytes/token" in out
    # One answer to one question: models info says what tokrace plan says.
    verdict = next(line for line in out.splitlines() if "free →" in line).split("free → ")[1]
    code, plan_out, _ = run(capsys, "plan", "-m", f"hf:{REPO}:Q4_K_M", "--gpus", "24,24")
    assert code == 0 and verdict.startswith("fits: all") and verdict in plan_out.splitlines()


def test_pull_list_rm_cycle(hub: FakeHub, capsys, tmp_path: Path) -> None:
    code, out, err = run(capsys, "models", "pull", f"hf:{REPO}:Q4_K_M")
    assert code == 0 and "needs" in err and "100.0%" in err
    path = Path(out.strip())
    assert path.is_file() and path.read_bytes()[:4] == b"GGUF"
    # Another tool's model shows up in the list but cannot be removed by tokrace.
    ollama = tmp_path / "home" / ".ollama" / "models"
    (ollama / "blobs").mkdir(parents=True)
    (ollama / "blobs" / ("sha256-" + "d" * 64)).write_bytes(b"GGUF....")
    manifest = ollama / "manifests" / "registry.ollama.ai" / "library" / "phi3" / "mini"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"layers": [{"mediaType": OLLAMA_MODEL_LAYER,
                                                "digest": "sha256:" + "d" * 64}]}))
    code, out, _ = run(capsys, "models", "list", "--json")
    rows = {r["id"]: r for r in json.loads(out)}
    assert rows[f"hf:{REPO}:Q4_K_M"]["downloaded"] and rows["phi3:mini"]["source"] == "ollama"
    assert not rows["llama3-70b-instruct:q4_k_m"]["downloaded"]
    assert sum(1 for r in rows.values() if r["path"] == str(path)) == 1  # not listed twice
    code, _, err = run(capsys, "models", "rm", "phi3:mini")
    assert code == 2 and "will not delete" in err
    assert (ollama / "blobs" / ("sha256-" + "d" * 64)).exists()
    code, out, _ = run(capsys, "models", "rm", f"hf:{REPO}:Q4_K_M")
    assert code == 0 and "deleted" in out and not path.exists()
    code, _, err = run(capsys, "models", "rm", f"hf:{REPO}:Q4_K_M")
    assert code == 2


def test_search_lists_quant_files_with_sizes(hub: FakeHub, capsys) -> None:
    hub.add_repo("acme/Other-GGUF", {"o-00001-of-00002.gguf": b"x" * 10, "o-00002-of-00002.gguf": b"y" * 5,
                                     "o-Q8_0.gguf": b"z" * 20}, downloads=3)
    hub.add_repo("acme/not-gguf", {"model.safetensors": b"x"})
    hub.repos["acme/not-gguf"].tags = ["safetensors"]
    code, out, _ = run(capsys, "models", "search", "acme", "--json")
    results = json.loads(out)
    assert code == 0 and [r["repo_id"] for r in results] == [REPO, "acme/Other-GGUF"]
    other = {q["quant"]: q for q in results[1]["quants"]}
    assert other["Q8_0"]["size"] == 20
    sharded = next(q for q in results[1]["quants"] if q["files"] == 2)
    assert sharded["size"] == 15


@pytest.mark.parametrize(("argv", "needle"), [
    (["models", "pull", "hf:acme/Tiny-GGUF/../../etc/passwd.gguf"], "not a file inside a repo"),
    (["models", "pull", "nope:q4_0"], "unknown model"),
    (["models", "info", "hf:acme/Tiny-GGUF:Q8_0"], "no Q8_0 GGUF"),
    (["models", "info", "hf:acme/Tiny-GGUF:Q4_K_M", "--gpus", "x"], "--gpus"),
    (["models", "info", "hf:acme/Tiny-GGUF:Q4_K_M", "--kv-type", "q3"], "unknown KV cache type"),
])
def test_bad_input_is_one_line_and_exit_2(hub: FakeHub, capsys, argv: list[str], needle: str) -> None:
    code, _out, err = run(capsys, *argv)
    assert code == 2 and needle in err and err.count("\n") == 1 and "Traceback" not in err
