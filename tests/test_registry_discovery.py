"""Finding GGUFs other tools downloaded: fake HF cache, llama.cpp cache, LM Studio and Ollama trees."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tokrace.model_registry.discovery import OLLAMA_MODEL_LAYER, default_roots, discover
from tokrace.model_registry.resolve import resolve_model

GGUF = b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 24


def _tree(tmp: Path) -> dict[str, list[Path]]:
    hf = tmp / "hf"
    blob = hf / "models--bartowski--Foo-GGUF" / "blobs" / ("a" * 64)
    blob.parent.mkdir(parents=True)
    blob.write_bytes(GGUF)
    for commit in ("c1", "c2"):  # two snapshots of one blob: listed once
        snap = hf / "models--bartowski--Foo-GGUF" / "snapshots" / commit / "Foo-Q4_K_M.gguf"
        snap.parent.mkdir(parents=True)
        snap.symlink_to(os.path.relpath(blob, snap.parent))
    broken = hf / "models--x--Gone" / "snapshots" / "c" / "gone.gguf"
    broken.parent.mkdir(parents=True)
    broken.symlink_to("../../blobs/missing")

    llama = tmp / "llama.cpp"
    llama.mkdir()
    (llama / "ggml-org_gemma-3-1b-it-GGUF_gemma-3-1b-it-Q4_K_M.gguf").write_bytes(GGUF)
    (llama / "notes.txt").write_text("x")

    lms = tmp / "lmstudio"
    (lms / "lmstudio-community" / "Qwen-GGUF").mkdir(parents=True)
    (lms / "lmstudio-community" / "Qwen-GGUF" / "qwen-Q8_0.gguf").write_bytes(GGUF * 2)

    ollama = tmp / "ollama"
    digest = "b" * 64
    (ollama / "blobs").mkdir(parents=True)
    (ollama / "blobs" / f"sha256-{digest}").write_bytes(GGUF)
    (ollama / "blobs" / f"sha256-{'c' * 64}").write_text("{template}")  # a template layer, not GGUF
    for ns, model, tag in (("library", "llama3.2", "1b"), ("someone", "tiny", "latest")):
        m = ollama / "manifests" / "registry.ollama.ai" / ns / model / tag
        m.parent.mkdir(parents=True)
        m.write_text(json.dumps({"layers": [
            {"mediaType": OLLAMA_MODEL_LAYER, "digest": f"sha256:{digest}", "size": len(GGUF)},
            {"mediaType": "application/vnd.ollama.image.template", "digest": f"sha256:{'c' * 64}"},
        ]}))
    bad = ollama / "manifests" / "registry.ollama.ai" / "library" / "evil" / "x"
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps({"layers": [{"mediaType": OLLAMA_MODEL_LAYER, "digest": "sha256:../../x"}]}))
    (ollama / "manifests" / "registry.ollama.ai" / "library" / "junk").mkdir()
    (ollama / "manifests" / "registry.ollama.ai" / "library" / "junk" / "t").write_text("not json")
    return {"hf-cache": [hf], "llama.cpp": [llama], "lm-studio": [lms, tmp / "absent"], "ollama": [ollama]}


def test_discovers_every_tool_and_names_ollama_models(tmp_path: Path) -> None:
    found = discover(_tree(tmp_path))
    names = {(f.source, f.name) for f in found}
    assert names == {
        ("hf-cache", "bartowski/Foo-GGUF/Foo-Q4_K_M.gguf"),
        ("llama.cpp", "ggml-org_gemma-3-1b-it-GGUF_gemma-3-1b-it-Q4_K_M.gguf"),
        ("lm-studio", "lmstudio-community/Qwen-GGUF/qwen-Q8_0.gguf"),
        ("ollama", "llama3.2:1b"),
        ("ollama", "someone/tiny:latest"),
    }
    lms = next(f for f in found if f.source == "lm-studio")
    assert lms.size == 2 * len(GGUF)


def test_default_roots_follow_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLAMA_CACHE", str(tmp_path / "lc"))
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "om"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hc"))
    roots = default_roots()
    assert roots["llama.cpp"] == [tmp_path / "lc"] and roots["ollama"] == [tmp_path / "om"]
    assert roots["hf-cache"] == [tmp_path / "hc"]
    assert roots["lm-studio"][0].parts[-2:] == (".lmstudio", "models")


def test_an_ollama_name_resolves_to_its_blob(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    roots = _tree(tmp_path)
    monkeypatch.setattr("tokrace.model_registry.discovery.default_roots", lambda: roots)
    resolved = resolve_model("llama3.2:1b")
    assert resolved.path == roots["ollama"][0] / "blobs" / f"sha256-{'b' * 64}"
