"""The load and draft settings ``tokrace tune`` measures: the KV cache type (llama.cpp's ``-ctk``/``-ctv``,
llama-bench's ``type_k``/``type_v``) and the draft's confidence floor p-min (``--draft-p-min``), from the
settings file and flags down to llama.cpp, and into the reply's record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tiny_gguf import write_tiny_llama

from tokrace.backends.base import GenerationParams, LoadConfig
from tokrace.backends.draft_compat import ModelDrafter, top_probability
from tokrace.backends.events import DraftStep, TokenGenerated
from tokrace.backends.llama_cpp_backend import LlamaCppBackend
from tokrace.backends.meter import SpeedMeter
from tokrace.backends.speculative import SpeculativeBackend
from tokrace.load import DraftSpec, LoadSpec
from tokrace.model_registry.errors import TokraceError
from tokrace.settings import Settings
from tokrace.settings_args import settings_from_args
from tokrace.settings_file import load_settings

GREEDY = GenerationParams(max_tokens=48, temperature=0.0)
PROMPT = "The tiny model says"


@pytest.fixture(scope="module")
def head64(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Heads of 64 values: a multiple of q8_0/q4_0's 32-value blocks, so a quantized KV cache loads."""
    return write_tiny_llama(tmp_path_factory.mktemp("kv") / "head64.gguf", n_embd=128, n_head=2, n_head_kv=2,
                            n_ff=256, name="tiny-head64")


@pytest.fixture(scope="module")
def noisy_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("pmin")
    draft = write_tiny_llama(out / "draft.gguf", n_layer=2, name="tiny-draft")
    target = write_tiny_llama(out / "noisy.gguf", n_layer=8, inert_from=2, inert_noise=0.05,
                              name="tiny-noisy")
    return target, draft


def test_cache_type_flags_and_file_keys_use_llama_cpp_names(tmp_path: Path) -> None:
    import argparse

    from tokrace.settings_args import add_settings_args

    parser = argparse.ArgumentParser()
    add_settings_args(parser, ["type_k", "type_v", "draft_p_min"])
    args = parser.parse_args(["-ctk", "q8_0", "--cache-type-v", "q4_0", "--draft-p-min", "0.75"])
    s = settings_from_args(args, Settings())
    assert (s.type_k, s.type_v, s.draft_p_min) == ("q8_0", "q4_0", 0.75)
    with pytest.raises(SystemExit):
        parser.parse_args(["-ctk", "q3_k"])
    path = tmp_path / "settings.toml"
    path.write_text('type_k = "q8_0"\ntype_v = "q8_0"\ndraft = "d.gguf"\ndraft_p_min = 0.5\n')
    spec = LoadSpec.from_settings(load_settings(path))
    assert (spec.type_k, spec.type_v, spec.draft.p_min) == ("q8_0", "q8_0", 0.5)
    path.write_text('type_k = "q9"\n')
    with pytest.raises(TokraceError, match="type_k: expected one of f32, f16"):
        load_settings(path)
    path.write_text("draft_p_min = 1.5\n")
    with pytest.raises(TokraceError, match="draft_p_min: expected a number from 0 to 1"):
        load_settings(path)


def test_p_min_without_a_draft_is_refused_in_one_line() -> None:
    with pytest.raises(TokraceError, match="need"):
        DraftSpec(p_min=0.5).check()


def test_a_quantized_kv_cache_reaches_llama_cpp_and_the_record(head64: Path) -> None:
    from tokrace.speedlog.record import make_record

    backend = LlamaCppBackend(LoadConfig(path=str(head64), n_threads=1, type_k="q8_0", type_v="q4_0"))
    model = backend.load()
    try:
        params = backend.llama.context_params
        assert (params.type_k, params.type_v) == (8, 2)  # GGML_TYPE_Q8_0, GGML_TYPE_Q4_0
        assert (model.type_k, model.type_v) == ("q8_0", "q4_0")
        meter = SpeedMeter()
        for event in backend.stream_prompt(PROMPT, GREEDY):
            meter.observe(event)
        assert meter.stats.completion_tokens > 0 and meter.stats.error is None
        record = make_record(meter.stats, model, backend.config, "s1", kind="chat")
        assert (record.type_k, record.type_v) == ("q8_0", "q4_0")
    finally:
        backend.unload()


def test_no_repack_reaches_llama_cpp_model_params(head64: Path) -> None:
    backend = LlamaCppBackend(LoadConfig(path=str(head64), n_threads=1, repack=False))
    backend.load()
    try:
        assert backend.llama.model_params.use_extra_bufts is False
    finally:
        backend.unload()
    assert settings_from_args(_parse(["--no-repack"]), Settings()).repack is False
    assert LoadSpec.from_settings(Settings(repack=False)).repack is False


def _parse(argv: list[str]) -> object:
    import argparse

    from tokrace.settings_args import add_settings_args

    parser = argparse.ArgumentParser()
    add_settings_args(parser, ["repack"])
    return parser.parse_args(argv)


def test_a_quantized_v_cache_without_flash_attention_is_one_line(head64: Path) -> None:
    backend = LlamaCppBackend(LoadConfig(path=str(head64), n_threads=1, type_v="q8_0", flash_attn="off"))
    with pytest.raises(TokraceError, match="needs flash attention") as caught:
        backend.load()
    assert caught.value.kind == "usage"


def test_top_probability_is_the_first_of_the_ten_likeliest_after_softmax() -> None:
    flat = np.zeros(1000, dtype=np.float32)
    assert top_probability(flat) == pytest.approx(0.1)
    sharp = flat.copy()
    sharp[7] = 20.0
    assert top_probability(sharp) > 0.999
    two = np.full(1000, -50.0, dtype=np.float32)
    two[[3, 9]] = 1.0
    assert top_probability(two) == pytest.approx(0.5, rel=1e-6)


def _tokens(backend: LlamaCppBackend | SpeculativeBackend) -> tuple[list[int], int, int]:
    backend.reset()
    tokens, drafted, steps = [], 0, 0
    for event in backend.stream_prompt(PROMPT, GREEDY):
        if isinstance(event, TokenGenerated):
            tokens.append(event.token_id)
        elif isinstance(event, DraftStep):
            drafted += event.drafted
            steps += 1
    return tokens, drafted, steps


def test_p_min_cuts_drafts_short_and_never_changes_greedy_output(noisy_pair: tuple[Path, Path]) -> None:
    target_path, draft_path = noisy_pair
    target = LlamaCppBackend(LoadConfig(path=str(target_path), n_threads=2))
    drafter = ModelDrafter(LoadConfig(path=str(draft_path), n_threads=2))
    always = SpeculativeBackend(target, drafter, k=6)
    always.load()
    try:
        plain, _, _ = _tokens(target)
        full, drafted_full, steps_full = _tokens(always)
        assert full == plain
        # Random weights are unsure of most tokens: a floor of 0.3 cuts many drafts short.
        floor = SpeculativeBackend(target, drafter, k=6, p_min=0.3)
        floor.load()
        cut, drafted_cut, steps_cut = _tokens(floor)
        assert cut == plain
        assert drafted_cut / steps_cut < drafted_full / steps_full
        # A floor no draft token reaches (softmax over ten finite logits is below 1): no drafting at all.
        never = SpeculativeBackend(target, drafter, k=6, p_min=1.0)
        never.load()
        assert _tokens(never) == (plain, 0, 0)
        assert never.capabilities.draft is not None and never.capabilities.draft.p_min == 1.0
    finally:
        always.unload()


def test_a_proposal_with_p_min_is_the_plain_proposal_cut_where_confidence_drops(
        noisy_pair: tuple[Path, Path]) -> None:
    _, draft_path = noisy_pair
    drafter = ModelDrafter(LoadConfig(path=str(draft_path), n_threads=1))
    drafter.load()
    try:
        context = drafter.backend.tokenize_prompt(PROMPT)
        from tokrace.backends.base import CancelToken

        drafter.prefill(context, CancelToken())
        full = drafter.propose(context, 8)
        confident = []
        for p_min in (0.05, 0.2, 0.4, 0.9):
            cut = drafter.propose(context, 8, p_min)
            assert cut == full[:len(cut)]
            confident.append(len(cut))
        assert confident == sorted(confident, reverse=True)  # a higher floor never drafts more
    finally:
        drafter.unload()


def test_chat_json_reports_p_min_in_its_draft_object(noisy_pair: tuple[Path, Path],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from tokrace.cli.main import main

    target, draft = noisy_pair
    code = main(["chat", "-m", str(target), "--draft", str(draft), "--draft-p-min", "0.3", "--prompt", "hi",
                 "-n", "16", "--temp", "0", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out)["draft"]["p_min"] == 0.3
