"""Model files at the edges of what the metadata reader knows: a split model is one model (kind 9),
the reader is never stricter than llama.cpp (kind 10), a header without its weights still plans
(kind 11), and a failed load quotes llama.cpp's own reason. Scripted GGUFs, real llama.cpp."""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from scripted_gguf import NEWLINE, write_scripted_llama

from tokrace.backends.base import LoadConfig
from tokrace.backends.llama_cpp_backend import LlamaCppBackend
from tokrace.backends.placement import PlacementRequest, place
from tokrace.model_registry.errors import ModelFileError
from tokrace.model_registry.gguf_meta import read_gguf_info
from tokrace.speedlog.hashing import file_sha256

ROOT = Path(__file__).resolve().parents[1]
CHAIN = [NEWLINE, "▁one", "▁two"]
WORDS = ["▁one", "▁two"]
TEMPLATE = "{{ messages[-1]['content'] }}{{ '\\n' }}"


def tokrace(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tokrace.cli.main", *args], cwd=ROOT, capture_output=True,
                          text=True, env=os.environ.copy(), timeout=120)


def model(path: Path, **kw) -> Path:
    return write_scripted_llama(path, CHAIN, words=WORDS, chat_template=TEMPLATE, n_layer=3, **kw)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same model as one file and split in 4 shards (8 tensors each)."""
    where = tmp_path_factory.mktemp("split")
    return model(where / "whole" / "m.gguf"), model(where / "split" / "m.gguf", split_max_tensors=8)


# -- kind 9: a split model is one model -------------------------------------------------------------
def test_split_model_metadata_counts_every_shard(pair: tuple[Path, Path]) -> None:
    whole, first = pair
    shards = sorted(first.parent.glob("m-*-of-*.gguf"))
    assert len(shards) == 4 and first == shards[0]
    a, b = read_gguf_info(whole), read_gguf_info(first)
    assert (b.n_params, b.tensors_bytes, b.layer_bytes) == (a.n_params, a.tensors_bytes, a.layer_bytes)
    assert (b.embd_bytes, b.output_bytes) == (a.embd_bytes, a.output_bytes)
    assert b.file_size == sum(s.stat().st_size for s in shards) and b.n_shards == 4


def test_split_model_plan_places_all_weights(pair: tuple[Path, Path]) -> None:
    whole, first = pair

    def weights(path: Path) -> int:
        _, plan = place(LoadConfig(str(path)), [], PlacementRequest())
        return plan.host.weights_bytes + sum(d.weights_bytes for d in plan.per_device)

    assert weights(first) == weights(whole) > read_gguf_info(whole).tensors_bytes // 2


def test_split_model_chats_and_reports_the_whole_model(pair: tuple[Path, Path]) -> None:
    whole, first = pair
    out = [tokrace("chat", "-m", str(p), "--prompt", "hi", "--temperature", "0", "-n", "4", "--json")
           for p in (whole, first)]
    assert all(o.returncode == 0 for o in out), out[1].stderr
    a, b = (json.loads(o.stdout) for o in out)
    assert a["text"] == b["text"] == " one two"
    assert b["model_file"]["n_params"] == a["model_file"]["n_params"]
    assert b["model_file"]["size_bytes"] == sum(s.stat().st_size for s in first.parent.glob("m-*.gguf"))


def test_a_later_shard_says_to_use_the_first(pair: tuple[Path, Path]) -> None:
    _, first = pair
    second = first.with_name("m-00002-of-00004.gguf")
    proc = tokrace("chat", "-m", str(second), "--prompt", "hi", "-n", "2")
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert len(line.splitlines()) == 1 and "shard 2 of 4" in line and first.name in line
    with pytest.raises(ModelFileError, match=re.escape("m-00001-of-00004.gguf")):
        read_gguf_info(second)


def test_split_model_sha256_covers_every_shard(pair: tuple[Path, Path]) -> None:
    _, first = pair
    shards = sorted(first.parent.glob("m-*-of-*.gguf"))
    expected = hashlib.sha256(b"".join(s.read_bytes() for s in shards)).hexdigest()
    assert file_sha256(first) == expected == file_sha256(shards[2])


def test_missing_shard_is_one_line(tmp_path: Path) -> None:
    first = model(tmp_path / "m.gguf", split_max_tensors=8)
    first.with_name("m-00003-of-00004.gguf").unlink()
    with pytest.raises(ModelFileError, match=re.escape("m-00003-of-00004.gguf is missing")):
        read_gguf_info(first)


def test_failed_load_quotes_llama_cpp_reason(tmp_path: Path) -> None:
    path = model(tmp_path / "m.gguf", drop_tensors=["blk.1.ffn_up.weight"])
    with pytest.raises(ModelFileError) as err:
        LlamaCppBackend(LoadConfig(str(path), n_ctx=64)).load()
    assert "blk.1.ffn_up.weight" in str(err.value), str(err.value)


# -- kind 10: never stricter than the engine --------------------------------------------------------
def with_tensor_type(src: Path, dst: Path, tensor: str, ggml_type: int) -> Path:
    """A copy of ``src`` whose ``tensor`` claims ``ggml_type`` in the tensor table."""
    data = bytearray(src.read_bytes())
    name = tensor.encode()
    at = data.index(struct.pack("<Q", len(name)) + name) + 8 + len(name)
    n_dims = struct.unpack_from("<I", data, at)[0]
    struct.pack_into("<I", data, at + 4 + 8 * n_dims, ggml_type)
    dst.write_bytes(bytes(data))
    return dst


def test_tensor_type_newer_than_gguf_is_estimated_with_a_warning(pair: tuple[Path, Path],
                                                                 tmp_path: Path) -> None:
    whole, _ = pair
    newer = with_tensor_type(whole, tmp_path / "newer.gguf", "blk.2.ffn_up.weight", 250)
    info, known = read_gguf_info(newer), read_gguf_info(whole)
    assert info.tensors_bytes == known.tensors_bytes  # sized from the offsets: exact here
    assert len(info.warnings) == 1 and "250" in info.warnings[0]
    proc = tokrace("plan", "--model", str(newer))
    assert proc.returncode == 0, proc.stderr
    assert "250" in proc.stderr and "estimated" in proc.stderr
    proc = tokrace("models", "info", str(newer), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tensors_bytes"] == known.tensors_bytes


# -- kind 11: a header without its weights ----------------------------------------------------------
def test_header_only_file_is_reported_with_one_warning(pair: tuple[Path, Path], tmp_path: Path) -> None:
    whole, _ = pair
    known = read_gguf_info(whole)
    header = tmp_path / "header-only.gguf"
    header.write_bytes(whole.read_bytes()[: known.data_offset])
    proc = tokrace("models", "info", str(header))
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and "incomplete" in warnings[0]
    data = json.loads(tokrace("models", "info", str(header), "--json").stdout)
    assert data["n_params"] == known.n_params and data["incomplete_bytes"] > 0
    plan = tokrace("plan", "--model", str(header))
    assert plan.returncode == 0, plan.stderr
    assert len([line for line in plan.stderr.splitlines() if line.strip()]) == 1
    chat = tokrace("chat", "-m", str(header), "--prompt", "hi")
    assert chat.returncode == 2 and "truncated" in chat.stderr
