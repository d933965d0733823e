from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from test_speedlog_fixtures import HW_CPU, HW_GPU, fake_stats, loaded_model, sample_records

from tokrace.backends.base import LoadConfig
from tokrace.speedlog import hashing
from tokrace.speedlog.record import (
    SCHEMA_VERSION,
    ReplyRecord,
    make_bench_record,
    make_record,
    new_session_id,
)


def test_make_record_carries_the_reply_model_settings_and_hardware(tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF" + bytes(1000))
    model = loaded_model(path=str(f))
    cfg = LoadConfig(path=str(f), n_gpu_layers=20, split_mode="row", tensor_split=[3.0, 1.0])
    stats = fake_stats(5, 0.125, prompt=40, cached=8)
    stats.draft_model, stats.draft_k = "d.gguf", 4  # the reply's own facts (its RequestStarted.draft)
    rec = make_record(stats, model, cfg, "sess", "race", lane="A", peak_vram_bytes=123, hardware=HW_GPU)
    assert rec.schema == SCHEMA_VERSION
    assert (rec.session_id, rec.kind, rec.lane) == ("sess", "race", "A")
    assert rec.model_sha256 == hashlib.sha256(f.read_bytes()).hexdigest()
    assert rec.model_filename == "m.gguf" and rec.model_type == "llama 8.0B Q4_K_M"
    assert (rec.n_gpu_layers, rec.split_mode, rec.tensor_split) == (20, "row", [3.0, 1.0])
    assert rec.n_threads == model.n_threads and rec.build_commit == "abc1234"
    assert rec.gpu_info == ["RTX 4090", "RTX 4090"] and rec.gpu_driver == "550.1"
    assert (rec.prompt_tokens, rec.cached_prompt_tokens, rec.n_prompt, rec.n_gen) == (48, 8, 40, 5)
    assert rec.gen_tok_s == pytest.approx(8.0) and rec.ttft_s == pytest.approx(0.25)
    assert rec.token_times_s == pytest.approx([0.25, 0.375, 0.5, 0.625, 0.75])
    assert (rec.draft_model, rec.draft_k, rec.peak_vram_bytes) == ("d.gguf", 4, 123)
    assert rec.hardware_label == "2 × RTX 4090"
    assert ReplyRecord.from_dict(rec.to_dict()) == rec


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError):
        make_record(fake_stats(2, 0.1), loaded_model(), LoadConfig(path="x"), "s", "karaoke",  # type: ignore[arg-type]
                    hardware=HW_CPU, sha256="x")


def test_cpu_label_when_no_layers_are_offloaded() -> None:
    rec = make_record(fake_stats(2, 0.1), loaded_model(), LoadConfig(path="x", n_gpu_layers=0), "s",
                      "chat", hardware=HW_GPU, sha256="x")
    assert rec.hardware_label == "Test CPU 9000, 2 threads"


def test_bench_record_uses_llama_bench_arithmetic() -> None:
    rec = make_bench_record(loaded_model(), LoadConfig(path="x"), "s", n_prompt=512, n_gen=0,
                            samples_ns=[1_000_000_000, 2_000_000_000], hardware=HW_CPU, sha256="x")
    assert rec.test == "pp512" and rec.kind == "bench"
    assert rec.samples_ts == pytest.approx([512.0, 256.0])  # n ÷ t per repetition
    assert rec.prompt_tok_s == pytest.approx(384.0) and rec.gen_tok_s is None
    assert rec.prompt_rates() == pytest.approx([512.0, 256.0]) and rec.rates() == []


def test_sha256_is_computed_once_per_file_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "big.gguf"
    f.write_bytes(b"a" * 4096)
    calls: list[Path] = []
    real = hashing._hash
    monkeypatch.setattr(hashing, "_hash", lambda p: calls.append(p) or real(p))
    monkeypatch.setattr(hashing, "_memo", {})
    first = hashing.file_sha256(f)
    assert first == hashlib.sha256(b"a" * 4096).hexdigest()
    for _ in range(3):
        assert hashing.file_sha256(f) == first
    assert len(calls) == 1
    # A fresh process (empty memo) reads the on-disk cache instead of hashing again.
    monkeypatch.setattr(hashing, "_memo", {})
    assert hashing.cached_sha256(f) == first
    assert len(calls) == 1
    # A changed file (size/mtime) is hashed again.
    f.write_bytes(b"b" * 4096)
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert hashing.file_sha256(f) == hashlib.sha256(b"b" * 4096).hexdigest()
    assert len(calls) == 2


def test_prefetch_hashes_in_the_background(tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    f.write_bytes(b"xyz")
    hashing.prefetch(f).join(timeout=10)
    assert hashing.cached_sha256(f) == hashlib.sha256(b"xyz").hexdigest()


def test_missing_file_has_no_hash(tmp_path: Path) -> None:
    assert hashing.file_sha256(tmp_path / "nope.gguf") is None


def test_session_ids_sort_by_time_and_differ() -> None:
    ids = {new_session_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(len(i.split("-")) == 3 for i in ids)


def test_sample_records_cover_every_kind() -> None:
    kinds = {r.kind for r in sample_records()}
    assert kinds == {"chat", "race", "bench"}


def test_session_recorder_appends_each_reply_under_one_session(tmp_path: Path) -> None:
    from tokrace.speedlog import SpeedLog
    from tokrace.speedlog.recorder import SessionRecorder

    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF")
    model = loaded_model(path=str(f))
    rec = SessionRecorder(model, LoadConfig(path=str(f)), kind="race", lane="B", model_id="cat:q4")
    first = rec.record(fake_stats(3, 0.125))
    rec.record(fake_stats(4, 0.125), peak_vram_bytes=7)
    old = rec.session_id
    assert rec.new_session() != old
    rec.record(fake_stats(2, 0.125))
    rows = SpeedLog.open().read()
    assert [r.session_id for r in rows] == [old, old, rec.session_id]
    assert rows[0] == first and rows[0].lane == "B" and rows[0].model_id == "cat:q4"
    assert rows[1].peak_vram_bytes == 7 and rows[1].n_gen == 4
    assert rows[0].model_sha256 == hashlib.sha256(b"GGUF").hexdigest()
