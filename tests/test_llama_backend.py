"""The llama.cpp backend on tiny generated GGUFs, through the real llama.cpp."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tokrace.backends.base import CancelToken, ChatMessage, GenerationParams, LoadConfig
from tokrace.backends.events import (
    GenerationFinished,
    PromptProcessed,
    RequestStarted,
    StreamEvent,
    TokenGenerated,
)
from tokrace.backends.llama_cpp_backend import LlamaCppBackend
from tokrace.backends.meter import SpeedMeter
from tokrace.model_registry.errors import ModelFileError

GREEDY = GenerationParams(max_tokens=40, temperature=0.0, seed=7)
HELLO = [ChatMessage("user", "Hello there, tiny model.")]


def load(path: Path, **kw: object) -> LlamaCppBackend:
    backend = LlamaCppBackend(LoadConfig(path=str(path), n_threads=2, **kw))  # type: ignore[arg-type]
    backend.load()
    return backend


def run(backend: LlamaCppBackend, messages=HELLO, params=GREEDY, cancel=None) -> list[StreamEvent]:
    return list(backend.stream_chat(messages, params, cancel))


def tokens_of(events: list[StreamEvent]) -> list[int]:
    return [e.token_id for e in events if isinstance(e, TokenGenerated)]


def finished_of(events: list[StreamEvent]) -> GenerationFinished:
    last = events[-1]
    assert isinstance(last, GenerationFinished)
    return last


def test_event_order_and_exact_token_count(tiny_model: Path) -> None:
    backend = load(tiny_model)
    events = run(backend)
    assert isinstance(events[0], RequestStarted) and isinstance(events[1], PromptProcessed)
    token_events = [e for e in events if isinstance(e, TokenGenerated)]
    fin = finished_of(events)
    assert fin.stop_reason == "length"
    assert len(token_events) == fin.completion_tokens == 40
    assert [e.index for e in token_events] == list(range(40))
    times = [e.t for e in token_events]
    assert times == sorted(times)
    # Random weights emit bytes that are not whole characters: tokens are not text chunks.
    chunks = [e for e in token_events if e.text]
    assert len(chunks) < len(token_events)
    streamed = "".join(e.text for e in token_events)
    assert fin.text.startswith(streamed)


def test_counts_agree_with_llama_perf_counters(tiny_model: Path) -> None:
    backend = load(tiny_model)
    meter = SpeedMeter()
    for event in run(backend):
        meter.observe(event)
    s = meter.stats
    perf = s.llama_perf
    assert perf is not None
    # Every generated token but the last was decoded once; the prompt once, in batches.
    assert perf["n_eval"] == s.completion_tokens - 1
    assert perf["n_p_eval"] == s.prompt_eval_tokens == s.prompt_tokens
    assert s.ttft_s is not None and s.prompt_s is not None and s.ttft_s >= s.prompt_s
    assert s.gen_tok_s is not None and s.gen_tok_s > 0


def test_second_turn_reuses_kv_cache_and_output_is_unchanged(tiny_model: Path) -> None:
    backend = load(tiny_model)
    first = run(backend)
    reply = finished_of(first).text
    follow_up = [*HELLO, ChatMessage("assistant", reply), ChatMessage("user", "And again?")]
    second = run(backend, follow_up)
    started = second[0]
    assert isinstance(started, RequestStarted)
    assert started.cached_tokens > 0
    # A fresh backend (no cache) must produce exactly the same greedy reply.
    fresh = load(tiny_model)
    assert tokens_of(run(fresh, follow_up)) == tokens_of(second)


def test_seeded_sampling_is_reproducible(tiny_model: Path) -> None:
    params = GenerationParams(max_tokens=30, temperature=0.9, seed=1234)
    a = tokens_of(run(load(tiny_model), params=params))
    b = tokens_of(run(load(tiny_model), params=params))
    c = tokens_of(run(load(tiny_model), params=GenerationParams(max_tokens=30, temperature=0.9, seed=99)))
    assert a == b
    assert a != c


def test_cancel_mid_reply_keeps_partial_and_backend_stays_usable(tiny_model: Path) -> None:
    backend = load(tiny_model)
    cancel = CancelToken()
    events: list[StreamEvent] = []
    for event in backend.stream_chat(HELLO, GREEDY, cancel):
        events.append(event)
        if isinstance(event, TokenGenerated) and event.index == 4:
            cancel.cancel()
    fin = finished_of(events)
    assert fin.stop_reason == "cancelled"
    assert fin.completion_tokens == 5
    assert len(tokens_of(events)) == 5
    # The next request works and matches a fresh backend's output.
    assert tokens_of(run(backend)) == tokens_of(run(load(tiny_model)))


def test_abort_during_long_prompt_evaluation(slow_prompt_model: Path) -> None:
    backend = load(slow_prompt_model, n_ctx=4096)
    long_prompt = [ChatMessage("user", "lorem ipsum dolor sit amet " * 100)]  # ~2.7k tokens
    params = GenerationParams(max_tokens=4, temperature=0.0)

    full = run(backend, long_prompt, params)
    full_prompt_s = next(e for e in full if isinstance(e, PromptProcessed)).duration_s
    assert full_prompt_s > 0.2, "the prompt must be long enough for an abort to be meaningful"
    backend.reset()

    cancel = CancelToken()
    threading.Timer(0.05, cancel.cancel).start()
    t0 = time.perf_counter()
    events = run(backend, long_prompt, params, cancel)
    elapsed = time.perf_counter() - t0
    fin = finished_of(events)
    assert fin.stop_reason == "cancelled"
    assert fin.completion_tokens == 0
    assert not any(isinstance(e, PromptProcessed) for e in events)
    assert elapsed < full_prompt_s / 2
    # The instance stays usable: the same request now runs to the end with the same output.
    backend.reset()
    assert tokens_of(run(backend, long_prompt, params)) == tokens_of(full)


def test_no_template_falls_back_to_plain_completion_and_says_so(tiny_model_no_template: Path) -> None:
    backend = load(tiny_model_no_template)
    assert backend.model.template.startswith("plain completion")
    events = run(backend)
    started = events[0]
    assert isinstance(started, RequestStarted) and started.template.startswith("plain completion")
    assert finished_of(events).completion_tokens == 40


def test_template_from_file_is_used(tiny_model: Path) -> None:
    backend = load(tiny_model)
    assert backend.model.template == "chat template from the GGUF"


def test_context_overflow_is_a_clear_error_not_a_crash(tiny_model: Path) -> None:
    backend = load(tiny_model, n_ctx=64)
    fin = finished_of(run(backend, [ChatMessage("user", "x" * 400)]))
    assert fin.stop_reason == "error"
    assert fin.error is not None and "context" in fin.error and "\n" not in fin.error


def test_reply_stops_when_context_fills(tiny_model: Path) -> None:
    backend = load(tiny_model, n_ctx=64)
    fin = finished_of(run(backend, params=GenerationParams(max_tokens=500, temperature=0.0)))
    assert fin.stop_reason == "context"  # not "length": the context filled, max_tokens did not
    assert fin.notice is not None and "context" in fin.notice
    assert fin.completion_tokens < 64


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no model file"),
        (b"this is not a model", "not a GGUF"),
        ("truncated", "truncated"),
    ],
)
def test_bad_model_files_raise_one_line_errors(tmp_path: Path, tiny_model: Path, content, message) -> None:
    path = tmp_path / "bad.gguf"
    if content == "truncated":
        path.write_bytes(tiny_model.read_bytes()[: tiny_model.stat().st_size // 2])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message) as err:
        LlamaCppBackend(LoadConfig(path=str(path))).load()
    assert "\n" not in str(err.value)


def test_gguf_header_is_parsed_once_per_file_version(tmp_path: Path, tiny_model: Path) -> None:
    from tokrace.model_registry.gguf_meta import read_gguf_info

    path = tmp_path / "m.gguf"
    path.write_bytes(tiny_model.read_bytes())
    first = read_gguf_info(path)
    assert read_gguf_info(path) is first  # placement and the backend share one parse
    path.write_bytes(tiny_model.read_bytes()[:1000])  # the file changed: parsed again, and refused
    with pytest.raises(ModelFileError, match="truncated"):
        read_gguf_info(path)
