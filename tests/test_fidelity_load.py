"""Figures comparable with llama.cpp's own tools (issue 11): llama.cpp's load defaults (flash attention
``auto`` resolved as llama.cpp resolves it, batch 2048 / ubatch 512, one thread per physical core),
the flags that override them, the fields every record and export carries, and a generation path whose
shortcuts (one-token decode, greedy argmax) pick exactly what llama.cpp's own path picks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import llama_cpp
import pytest

from tokrace.backends.base import (
    DEFAULT_N_BATCH,
    DEFAULT_N_UBATCH,
    CancelToken,
    GenerationParams,
    LoadConfig,
    default_threads,
)
from tokrace.backends.draft_setup import build_drafted_backend, draft_load_config
from tokrace.backends.events import TokenGenerated
from tokrace.backends.llama_cpp_backend import LlamaCppBackend
from tokrace.backends.meter import SpeedMeter
from tokrace.cli.main import main
from tokrace.load import LoadSpec, place_resolved, resolve
from tokrace.settings import Settings
from tokrace.settings_args import add_settings_args, settings_from_args
from tokrace.speedlog.export import FIELDS, export_row
from tokrace.speedlog.record import make_record


def load(path: Path, **kw: object) -> LlamaCppBackend:
    backend = LlamaCppBackend(LoadConfig(path=str(path), n_threads=2, n_ctx=512, **kw))  # type: ignore[arg-type]
    backend.load()
    return backend


def test_defaults_are_llama_cpps() -> None:
    config = LoadConfig(path="m.gguf")
    assert (config.flash_attn, config.n_batch, config.n_ubatch, config.n_threads) == ("auto", 2048, 512, None)
    assert (DEFAULT_N_BATCH, DEFAULT_N_UBATCH) == (2048, 512)
    # One thread per physical core: never more than the CPUs this process may use, at least one.
    assert 1 <= default_threads() <= len(os.sched_getaffinity(0))


def test_flash_attention_auto_is_resolved_and_forced_values_are_kept(tiny_model: Path) -> None:
    auto = load(tiny_model)
    # llama.cpp's CPU backend supports flash attention for every layer, so "auto" turns it on.
    assert auto.model.flash_attn == "on" and auto.flash_attn
    assert auto.llama.context_params.flash_attn_type == llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO
    off = load(tiny_model, flash_attn="off")
    assert off.model.flash_attn == "off" and not off.flash_attn
    assert off.llama.context_params.flash_attn_type == llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    on = load(tiny_model, flash_attn="on")
    assert on.model.flash_attn == "on"
    # Batch sizes as loaded: the logical batch is capped by the context, the physical one by the batch.
    small = load(tiny_model, n_batch=64, n_ubatch=256)
    assert (small.model.n_batch, small.model.n_ubatch) == (64, 64)
    assert (auto.model.n_batch, auto.model.n_ubatch) == (512, 512)  # n_ctx 512 caps 2048


def test_flags_reach_the_load_and_the_record(tiny_model: Path) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_settings_args(parser, ["model", "flash_attn", "n_batch", "n_ubatch", "n_threads"])
    args = parser.parse_args(["-m", str(tiny_model), "--flash-attn", "off", "--batch", "256", "--ubatch",
                              "128", "--threads", "1"])
    settings = settings_from_args(args, Settings())
    assert (settings.flash_attn, settings.n_batch, settings.n_ubatch) == ("off", 256, 128)
    with pytest.raises(SystemExit):
        parser.parse_args(["--flash-attn", "maybe"])
    prepared = place_resolved(resolve(LoadSpec.from_settings(settings)), [])
    config = prepared.config
    assert (config.flash_attn, config.n_batch, config.n_ubatch, config.n_threads) == ("off", 256, 128, 1)
    backend = prepared.build()
    model = backend.load()
    meter = SpeedMeter()
    for event in backend.stream_chat([], GenerationParams(max_tokens=3, temperature=0.0)):
        meter.observe(event)
    record = make_record(meter.stats, model, config, "s1", "chat")
    assert (record.flash_attn, record.n_batch, record.n_ubatch, record.n_threads) == ("off", 256, 128, 1)
    row = export_row(record)
    assert (row["flash_attn"], row["n_batch"], row["n_ubatch"], row["n_threads"]) == (0, 256, 128, 1)
    assert FIELDS.index("n_ubatch") == FIELDS.index("n_batch") + 1  # llama-bench's column order
    # A record from before these fields existed still reads, as unknown.
    old = record.to_dict()
    for key in ("flash_attn", "n_ubatch"):
        old.pop(key)
    assert export_row(type(record).from_dict(old))["flash_attn"] == ""


def test_bench_takes_the_engine_flags_and_reports_them(tiny_model: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", str(tiny_model), "-p", "16", "-n", "4", "-r", "1", "--flash-attn", "off",
                 "--ubatch", "8", "--json", "--no-log", "-q"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    # As used: llama.cpp caps the logical batch at the context (the tests' 16 + 4 tokens here).
    assert [(r["test"], r["flash_attn"], r["n_ubatch"]) for r in rows] == [("pp16", 0, 8), ("tg4", 0, 8)]
    assert all(r["n_batch"] == min(2048, r["n_batch"]) >= 16 for r in rows)
    assert main(["bench", str(tiny_model), "-p", "16", "-n", "0", "-r", "1", "--json", "--no-log", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["flash_attn"] == 1  # auto → on, on a CPU


def test_a_draft_loads_with_the_targets_flash_attention(tiny_model: Path) -> None:
    for setting in ("off", "on", "auto"):
        config = LoadConfig(path=str(tiny_model), n_threads=2, n_ctx=512, flash_attn=setting,  # type: ignore[arg-type]
                            n_ubatch=256)
        draft = draft_load_config(config, str(tiny_model), "draft")
        assert (draft.flash_attn, draft.n_batch, draft.n_ubatch) == (setting, 2048, 256)
        backend = build_drafted_backend(config, draft, k=2)
        assert backend.plain is not backend
        backend.load()
        used = backend.plain.model.flash_attn
        assert used == ("off" if setting == "off" else "on")
        # The plain model of an A/B comparison is this very target: the same setting by construction.
        backend.unload()


def test_fast_greedy_path_picks_what_llama_cpps_sampler_picks(deep_model: Path) -> None:
    backend = load(deep_model)
    llama = backend.llama
    params = GenerationParams(temperature=0.0)
    assert backend.is_greedy(params) and not backend.is_greedy(GenerationParams(temperature=0.7))
    assert not backend.is_greedy(GenerationParams(temperature=0.0, repeat_penalty=1.1))
    prompt = llama.tokenize(b"hello there", add_bos=True)
    backend.start_sampler(params)
    backend.evaluate_prompt(prompt, CancelToken())
    sampler, ctx = llama._sampler.sampler, llama._ctx.ctx
    ours: list[int] = []
    for _ in range(24):
        token = backend.greedy_token()
        assert token == llama_cpp.llama_sampler_sample(sampler, ctx, -1)
        ours.append(token)
        backend.decode_one(token)
    assert llama.n_tokens == len(prompt) + 24 and list(llama.input_ids[len(prompt):llama.n_tokens]) == ours
    # llama-cpp-python's own path (eval + its sampler chain) produces the same tokens.
    llama.reset()
    reference = []
    for token in llama.generate(prompt, temp=0.0, reset=True):
        reference.append(int(token))
        if len(reference) == 24:
            break
    assert reference == ours


def test_stream_events_are_unchanged_by_the_fast_path(deep_model: Path) -> None:
    backend = load(deep_model)
    fast = GenerationParams(max_tokens=20, temperature=0.0)
    greedy = [e.token_id for e in backend.stream_prompt("abc", fast) if isinstance(e, TokenGenerated)]
    # top_k=1 at any temperature is greedy too, but through llama.cpp's sampler chain.
    chain = [e.token_id for e in backend.stream_prompt("abc", GenerationParams(max_tokens=20, temperature=0.5,
                                                                                top_k=1, seed=1))
             if isinstance(e, TokenGenerated)]
    assert greedy == chain and len(greedy) > 0
