"""Header-only reads of Hub GGUFs through HTTP range requests (the plan before a download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fake_hub import FakeHub, use_fake_hub
from gguf import GGUFWriter
from tiny_gguf import write_tiny_llama

from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.gguf_meta import read_gguf_info
from tokrace.model_registry.model_info import read_local_info
from tokrace.model_registry.remote_header import FIRST_READ, read_remote_gguf_info, read_remote_header

REPO = "acme/Wide-GGUF"


def _shard(path: Path, layer: int, *, first: bool) -> bytes:
    w = GGUFWriter(str(path), "llama")
    if first:
        w.add_block_count(2)
        w.add_embedding_length(64)
        w.add_head_count(4)
        w.add_head_count_kv(2)
        w.add_tensor("token_embd.weight", np.ones((100, 64), dtype=np.float32))
    w.add_uint16("split.no", 0 if first else 1)
    w.add_uint16("split.count", 2)
    w.add_tensor(f"blk.{layer}.attn_q.weight", np.ones((64, 64), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("wide") / "wide.gguf"
    return write_tiny_llama(path, n_layer=4, n_embd=256, n_ff=1024, n_head=8, n_head_kv=2).read_bytes()


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, wide_model: bytes):
    with FakeHub() as hub:
        use_fake_hub(monkeypatch, tmp_path, hub)
        hub.add_repo(REPO, {
            "wide-F32.gguf": wide_model,
            "s/m-F16-00001-of-00002.gguf": _shard(tmp_path / "s1.gguf", 0, first=True),
            "s/m-F16-00002-of-00002.gguf": _shard(tmp_path / "s2.gguf", 1, first=False),
        })
        yield hub


def test_header_is_read_with_ranges_not_the_whole_file(hub: FakeHub, wide_model: bytes,
                                                       tmp_path: Path) -> None:
    info, reader = read_remote_header(REPO, "wide-F32.gguf")
    assert len(wide_model) > 10 * FIRST_READ
    assert reader.bytes_fetched <= FIRST_READ and reader.requests == 1
    assert hub.stats["wide-F32.gguf"] == reader.bytes_fetched
    assert all(r and r.startswith("bytes=0-") for p, r in hub.range_requests if r)
    local = tmp_path / "wide.gguf"
    local.write_bytes(wide_model)
    expected = read_gguf_info(local)
    assert (info.n_params, info.tensors_bytes, info.layer_bytes) == (
        expected.n_params, expected.tensors_bytes, expected.layer_bytes)
    assert info.kv_bytes_per_token() == expected.kv_bytes_per_token() == 2 * 4 * 2 * 32 * 2


def test_quant_ref_and_shards_are_merged(hub: FakeHub, tmp_path: Path) -> None:
    info = read_remote_gguf_info(f"hf:{REPO}:F16")
    assert info.layer_bytes == [64 * 64 * 4, 64 * 64 * 4]  # layer 1 lives in the second shard
    assert info.n_params == 100 * 64 + 2 * 64 * 64
    for name in ("m-F16-00001-of-00002.gguf", "m-F16-00002-of-00002.gguf"):
        (tmp_path / name).write_bytes(hub.repos[REPO].files[f"s/{name}"])
    local = read_local_info(tmp_path / "m-F16-00002-of-00002.gguf")
    assert (local.n_params, local.layer_bytes) == (info.n_params, info.layer_bytes)


def test_remote_errors_are_one_line(hub: FakeHub) -> None:
    hub.add_repo("meta/Gated", {"g-Q4_0.gguf": b"GGUF"}, gated=True)
    cases = {"hf:meta/Gated:Q4_0": "hf auth login", f"hf:{REPO}/nope.gguf": "no such file",
             "hf:acme/missing:Q4_0": "401", f"hf:{REPO}:Q2_K": "no Q2_K GGUF"}
    for ref, needle in cases.items():
        with pytest.raises(TokraceError) as exc:
            read_remote_gguf_info(ref)
        assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_a_non_gguf_remote_file_is_refused(hub: FakeHub) -> None:
    hub.add_repo("acme/Junk", {"junk-Q4_0.gguf": b"<html>not a model</html>" * 10})
    with pytest.raises(TokraceError, match="not a GGUF"):
        read_remote_gguf_info("hf:acme/Junk:Q4_0")


def test_catalog_id_reads_its_hf_source(hub: FakeHub, wide_model: bytes) -> None:
    from tokrace.model_registry.catalog import user_catalog_path

    user_catalog_path().write_text(
        '[models."wide:f32"]\nfamily="x"\nparams="3M"\nquant="F32"\ntokenizer="x"\nsource="hf"\n'
        f'repo="{REPO}"\nfile="wide-F32.gguf"\n'
    )
    assert read_remote_gguf_info("wide:f32").n_layers == 4
    with pytest.raises(TokraceError, match="not on Hugging Face"):
        read_remote_gguf_info("smollm2-135m-instruct:q4_1")
