"""The memory plan: KV bytes per token, weights + KV + compute, the fit line, absurd metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

from tokrace.model_registry.errors import ModelFileError
from tokrace.model_registry.gguf_meta import GGUFInfo, read_gguf_info
from tokrace.model_registry.memory_plan import check_shape, estimate_compute_bytes, fit_summary, plan_memory

GIB = 1 << 30


def llama2_70b(tensors_bytes: int = 140_000_000_000) -> GGUFInfo:
    """Llama-2-70B's shape: 80 layers, 64 heads, 8 KV heads, head dim 128, 8192 wide, 32000 vocab."""
    layer = tensors_bytes * 95 // 100 // 80
    return GGUFInfo(
        architecture="llama", name="Llama-2-70b", quantization="F16", n_params=tensors_bytes // 2,
        n_layers=80, n_ctx_train=4096, n_embd=8192, n_head=64, n_head_kv=8, head_dim=128, n_vocab=32000,
        vocab_hash="", chat_template=None, bos_token_id=1, eos_token_id=2, file_size=tensors_bytes,
        data_offset=0, tensors_bytes=tensors_bytes, layer_bytes=[layer] * 80,
    )


def test_llama2_70b_needs_327680_bytes_per_token() -> None:
    info = llama2_70b()
    assert info.kv_bytes_per_token() == 327_680  # 2 × 80 × 8 × 128 × 2: "320 KB per token"
    plan = plan_memory(info, 4096)
    assert plan.weights_bytes == 140_000_000_000  # "140 GB"
    assert plan.kv_bytes == 327_680 * 4096
    assert plan.compute_bytes == 4 * 512 * (64 * 4096 + 4 * 8192)
    assert plan.total_bytes == plan.weights_bytes + plan.kv_bytes + plan.compute_bytes
    assert plan_memory(info, 4096, "q8_0").kv_bytes_per_token == 327_680 * 34 // 64


def test_kv_per_token_from_a_real_header_written_with_gguf(tmp_path: Path) -> None:
    path = tmp_path / "shape.gguf"
    w = GGUFWriter(str(path), "llama")
    w.add_block_count(80)
    w.add_embedding_length(8192)
    w.add_head_count(64)
    w.add_head_count_kv(8)
    w.add_context_length(4096)
    w.add_tensor("blk.0.attn_k.weight", np.zeros((8, 8), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    info = read_gguf_info(path)
    assert info.head_dim == 128 and info.kv_bytes_per_token() == 327_680


def test_fit_lines_for_the_cpu() -> None:
    info = llama2_70b(42_500_000_000)
    plan = plan_memory(info, 8192)
    assert "fits in RAM" in fit_summary(plan, info, [], 64 * GIB)
    assert "does not fit in RAM" in fit_summary(plan, info, [], 16 * GIB)
    assert "at 8k context" in fit_summary(plan, info, [], 64 * GIB)
    # GPUs are the split planner's to answer (one answer: tests/test_registry_cli.py).
    with pytest.raises(ValueError):
        fit_summary(plan, info, [24 * GIB], 64 * GIB)


def test_absurd_metadata_counts_are_rejected(tmp_path: Path) -> None:
    info = llama2_70b()
    info.n_head_kv = 1 << 40
    with pytest.raises(ModelFileError, match="corrupt"):
        check_shape(info)
    path = tmp_path / "absurd.gguf"
    w = GGUFWriter(str(path), "llama")
    w.add_block_count(10**9)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ModelFileError, match="layers: the file is corrupt"):
        read_gguf_info(path)


def test_compute_estimate_is_logits_bound_for_short_contexts() -> None:
    info = llama2_70b()
    info.n_vocab = 128_256
    assert estimate_compute_bytes(info, 512) == 4 * 512 * (128_256 + 4 * 8192)
