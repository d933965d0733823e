"""The remote-engine backend against a loopback server that misbehaves on purpose: every fault is one
line, the partial reply is kept, and the key never leaks. No timed assertions."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from fake_openai_server import FakeServer

from tokrace.backends.base import CancelToken, ChatMessage, GenerationParams
from tokrace.backends.events import GenerationFinished, RequestStarted, StreamEvent, TokenGenerated
from tokrace.backends.meter import ReplyStats, SpeedMeter
from tokrace.backends.openai_backend import OpenAIBackend
from tokrace.backends.remote_endpoint import is_remote_ref, parse_endpoint
from tokrace.load import DraftSpec, LoadSpec, RemotePrepared, prepare
from tokrace.model_registry.errors import TokraceError
from tokrace.session import open_session
from tokrace.settings_file import load_settings

HI = [ChatMessage("user", "hi")]


@pytest.fixture
def server() -> Iterator[FakeServer]:
    s = FakeServer().start()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOKRACE_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def run(backend: OpenAIBackend, cancel: CancelToken | None = None,
        max_tokens: int = 64) -> tuple[list[StreamEvent], ReplyStats]:
    meter = SpeedMeter()
    events = []
    for event in backend.stream_chat(HI, GenerationParams(max_tokens=max_tokens, temperature=0), cancel):
        meter.observe(event)
        events.append(event)
    assert isinstance(events[0], RequestStarted) and isinstance(events[-1], GenerationFinished)
    return events, meter.stats


def backend_for(server: FakeServer, model: str, **kw: object) -> OpenAIBackend:
    backend = OpenAIBackend(parse_endpoint(f"{server.url}#{model}"), **kw)  # type: ignore[arg-type]
    backend.load()
    return backend


def test_urls_parse_and_credentials_in_urls_are_refused() -> None:
    e = parse_endpoint("http://gpu-box:8000/v1#meta-llama/Llama-3.3-70B")
    assert (e.base_url, e.address) == ("http://gpu-box:8000/v1", "gpu-box:8000")
    assert e.model == "meta-llama/Llama-3.3-70B"
    assert parse_endpoint("https://example.org").base_url == "https://example.org:443/v1"
    assert is_remote_ref("HTTP://x:1/v1") and not is_remote_ref("model.gguf") and not is_remote_ref(None)
    with pytest.raises(TokraceError, match="credentials"):
        parse_endpoint("http://user:sk-secret@host:8000/v1")
    with pytest.raises(TokraceError, match="not a server URL"):
        parse_endpoint("http://:8000/v1")


def test_a_good_stream_counts_tokens_from_logprobs_and_keeps_the_server_figures(server: FakeServer) -> None:
    backend = backend_for(server, "good")
    events, stats = run(backend)
    tokens = [e for e in events if isinstance(e, TokenGenerated)]
    assert len(tokens) == 5 and all(t.token_id == -1 for t in tokens)  # 4 chunks with text, 5 tokens
    assert "".join(t.text for t in tokens) == "Hello world!" == events[-1].text  # type: ignore[union-attr]
    assert stats.completion_tokens == 5 and stats.token_count_source == "logprobs"
    assert stats.prompt_tokens == 12 and stats.server_completion_tokens == 5
    assert stats.server_prompt_tok_s == pytest.approx(2000.0)
    assert stats.server_gen_tok_s == pytest.approx(200.0)
    assert stats.prompt_tok_s == stats.server_prompt_tok_s  # the client cannot see prompt time itself
    assert stats.stop_reason == "length" and stats.error is None and stats.notice is None
    body = server.bodies[-1]
    assert body["logprobs"] is True and body["stream_options"] == {"include_usage": True}
    assert body["model"] == "good" and body["temperature"] == 0


def test_chunks_are_counted_as_chunks_with_a_notice_unless_usage_gives_tokens(server: FakeServer) -> None:
    _, stats = run(backend_for(server, "nologprobs"))
    assert stats.completion_tokens == 3 and stats.token_count_source == "chunks"
    assert stats.notice is not None and "undercount" in stats.notice
    _, stats = run(backend_for(server, "usage"))
    assert stats.completion_tokens == 4 and stats.token_count_source == "usage" and stats.notice is None


def test_a_prompt_the_server_did_not_count_is_unknown_never_zero(server: FakeServer) -> None:
    # "nologprobs" sends no usage, and its model is no GGUF on this machine: nothing to count with.
    _, stats = run(backend_for(server, "nologprobs"))
    assert stats.prompt_tokens is None and stats.prompt_eval_tokens is None
    assert stats.prompt_count_source is None and "prompt – tok" in stats.summary_line()
    assert stats.notice is not None and "prompt size unknown: " in stats.notice
    # A server that counts it says so, and wins: "usage" sends usage.prompt_tokens 9.
    _, stats = run(backend_for(server, "usage"))
    assert stats.prompt_tokens == 9 and stats.prompt_count_source == "usage"
    assert "prompt 9 tok in context" in stats.summary_line()
    # llama-server's timings give the evaluated count and speed: "good" (prompt_n 12 in 6 ms).
    _, stats = run(backend_for(server, "good"))
    assert stats.prompt_eval_tokens == 12 and "prompt 12 tok @ 2000 tok/s" in stats.summary_line()


def test_connection_refused_and_dns_failure_are_one_line() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TokraceError, match=r"cannot connect to 127\.0\.0\.1:\d+ \(connection refused\)"):
        OpenAIBackend(parse_endpoint(f"http://127.0.0.1:{port}/v1")).load()
    with pytest.raises(TokraceError, match=r"cannot resolve host 'no-such-host\.invalid'"):
        OpenAIBackend(parse_endpoint("http://no-such-host.invalid:8000/v1")).load()


def test_401_names_the_variable_and_never_shows_the_key(server: FakeServer,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    server.require_key = "sk-right-key"
    monkeypatch.setenv("TOKRACE_API_KEY", "sk-wrong-key")
    with pytest.raises(TokraceError) as err:
        OpenAIBackend(parse_endpoint(server.url)).load()
    line = str(err.value)
    assert "HTTP 401" in line and "TOKRACE_API_KEY" in line and "sk-wrong-key" not in line
    monkeypatch.setenv("TOKRACE_API_KEY", "sk-right-key")
    _, stats = run(backend_for(server, "good"))
    assert stats.completion_tokens == 5
    assert server.requests[-1][1] == "Bearer sk-right-key"


def test_unknown_model_lists_the_servers_models(server: FakeServer) -> None:
    with pytest.raises(TokraceError, match="has no model 'llama-70b'; it serves: good, nologprobs"):
        OpenAIBackend(parse_endpoint(f"{server.url}#llama-70b")).load()
    _, stats = run(backend_for(server, "gone"))  # unloaded on the server after we connected
    assert stats.stop_reason == "error"
    assert "has no model 'gone' (HTTP 404); it serves: good" in (stats.error or "")


@pytest.mark.parametrize(("model", "partial", "said"), [
    ("err500", "", "failed (HTTP 500: CUDA out of memory)"),
    ("midfail", "Hi", "failed mid-reply: llama_decode failed"),
    ("cut", "Partial", "ended the stream mid-reply"),
    ("malformed", "A", "sent a malformed event"),
])
def test_server_faults_end_the_reply_with_one_line_and_keep_the_partial(
        server: FakeServer, model: str, partial: str, said: str) -> None:
    events, stats = run(backend_for(server, model))
    finished = events[-1]
    assert isinstance(finished, GenerationFinished)
    assert finished.stop_reason == "error" and finished.text == partial
    assert said in (finished.error or "") and "\n" not in (finished.error or "")
    assert stats.completion_tokens == len(partial and [e for e in events if isinstance(e, TokenGenerated)])


def test_a_stalled_stream_times_out_with_the_setting_named(server: FakeServer) -> None:
    server.stall_s = 5.0
    _, stats = run(backend_for(server, "stall", timeout_s=0.3))
    assert stats.stop_reason == "error" and "sent nothing for 0.3 s" in (stats.error or "")
    assert "{setting:request_timeout_s}" in (stats.error or "")
    assert stats.completion_tokens == 1


def test_cancel_closes_the_stream_and_the_server_sees_the_client_leave(server: FakeServer) -> None:
    backend = backend_for(server, "slow")
    cancel = CancelToken()
    seen = 0
    events = []
    for event in backend.stream_chat(HI, GenerationParams(max_tokens=1000), cancel):
        events.append(event)
        if isinstance(event, TokenGenerated):
            seen += 1
            if seen == 3:
                threading.Timer(0.0, cancel.cancel).start()
    finished = events[-1]
    assert isinstance(finished, GenerationFinished) and finished.stop_reason == "cancelled"
    assert finished.error is None and finished.text.startswith("xxx")
    assert finished.completion_tokens < 400  # the server would have sent 400
    assert server.disconnected.wait(10)


def test_redirects_are_not_followed_so_the_key_stays_home(server: FakeServer,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    other = FakeServer().start()
    try:
        server.redirect_to = f"http://localhost:{other.port}"
        monkeypatch.setenv("OPENAI_API_KEY", "sk-keep-me")
        with pytest.raises(TokraceError, match=r"redirects to .*does not follow redirects"):
            OpenAIBackend(parse_endpoint(server.url)).load()
        assert other.requests == []
    finally:
        other.stop()


def test_a_url_loads_through_the_application_layer_and_is_recorded(server: FakeServer,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     isolated_dirs: Path) -> None:
    server.require_key = "sk-from-the-file"
    config = isolated_dirs / "config"
    config.mkdir(exist_ok=True)
    (config / "settings.toml").write_text('api_key = "sk-from-the-file"\nrequest_timeout_s = 20\n')
    # The key reaches the backend through the settings the front end read once (LoadSpec), never
    # through a second read of settings.toml inside the application layer.
    base = LoadSpec.from_settings(load_settings())
    assert "sk-from-the-file" not in repr(base)
    spec = replace(base, model=f"{server.url}#good")
    prepared = prepare(spec, [])
    assert isinstance(prepared, RemotePrepared) and prepared.plan is None and prepared.info is None
    assert "sk-from-the-file" not in repr(prepared)
    with pytest.raises(TokraceError, match="HTTP 401"):  # without the settings: no key
        open_session(LoadSpec(model=f"{server.url}#good"), [])
    session = open_session(spec, [])
    try:
        assert session.model.name == "good" and session.plan is None
        _, stats = run(session.backend)  # type: ignore[arg-type]
        record = session.record(stats)
    finally:
        session.unload()
    assert record is not None
    assert (record.backend, record.engine, record.endpoint) == ("remote", "OpenAI-compatible server",
                                                                 f"127.0.0.1:{server.port}")
    assert record.server_model == "good" and record.token_count_source == "logprobs"
    assert record.n_gen == 5 and record.server_gen_tok_s == pytest.approx(200.0)
    assert record.hardware_label == f"OpenAI-compatible server at 127.0.0.1:{server.port}"
    logged = "".join(p.read_text() for p in isolated_dirs.rglob("*.jsonl"))
    assert '"endpoint"' in logged and "sk-from-the-file" not in logged
    assert json.loads(logged.splitlines()[-1])["engine"] == "OpenAI-compatible server"
    with pytest.raises(TokraceError, match="drafts on the server"):
        prepare(LoadSpec(model=server.url, draft=DraftSpec(lookup=True)), [])
