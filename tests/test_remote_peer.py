"""The remote-engine backend against a real OpenAI-compatible peer: llama-cpp-python's own server
(``python -m llama_cpp.server``, the ``server`` extra of the test dependencies) on 127.0.0.1 with a tiny
generated GGUF. Compared with the same file run in-process; no timed assertions."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_tui_chat import RecordingApp, send, wait_for
from textual.widgets import Static
from tiny_gguf import CHATML_TEMPLATE, write_tiny_llama

from tokrace.backends.base import ChatMessage, GenerationParams, LoadConfig
from tokrace.backends.llama_cpp_backend import LlamaCppBackend
from tokrace.backends.meter import ReplyStats, SpeedMeter
from tokrace.cli.main import main
from tokrace.load import LoadSpec
from tokrace.session import open_session

try:
    import llama_cpp.server.app  # noqa: F401
    HAVE_SERVER = True
except ImportError:
    HAVE_SERVER = False

pytestmark = pytest.mark.skipif(not HAVE_SERVER, reason="llama-cpp-python's server extra is not installed"
                                " (pip install -e '.[test]' installs it)")
PROMPT = [ChatMessage("user", "Say something.")]
GREEDY = GenerationParams(max_tokens=24, temperature=0.0, repeat_penalty=1.0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(model: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
         "--port", str(port), "--n_threads", "1", "--n_ctx", "2048",
         # Queue concurrent requests (its default ends a running stream when another arrives).
         "--interrupt_requests", "False"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(600):  # up to 60 s on a busy machine
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/models", timeout=1.0).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("llama_cpp.server did not answer /v1/models within 60 s")


@pytest.fixture(scope="session")
def peer_model(models_dir: Path) -> Path:
    """Mostly whole-word tokens (▁tok0…), so the reply is text the server can decode token by token. The
    template writes the BOS token itself, as real ones do: llama-cpp-python's server then adds none (it
    never adds one to a GGUF template's prompt), tokrace drops the literal one and adds its own."""
    return write_tiny_llama(models_dir / "peer.gguf", extra_tokens=2000, name="tiny-peer",
                            chat_template="{{ bos_token }}" + CHATML_TEMPLATE)


@pytest.fixture(scope="session")
def peer(peer_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server's URL, ``http://127.0.0.1:PORT/v1``; killed at the end of the session."""
    proc, url = _start(peer_model, tmp_path_factory.mktemp("peer") / "server.log")
    yield url
    proc.kill()
    proc.wait(10)


@pytest.fixture(scope="session")
def second_peer(peer_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = _start(peer_model, tmp_path_factory.mktemp("peer2") / "server.log")
    yield url
    proc.kill()
    proc.wait(10)


def _reply(backend: object) -> tuple[str, ReplyStats]:
    meter = SpeedMeter()
    text = ""
    for event in backend.stream_chat(PROMPT, GREEDY):  # type: ignore[attr-defined]
        meter.observe(event)
        text = getattr(event, "text", text) if type(event).__name__ == "GenerationFinished" else text
    return text, meter.stats


def test_a_greedy_remote_reply_matches_the_local_one_token_for_token(peer: str, peer_model: Path) -> None:
    session = open_session(LoadSpec(model=peer), [], record=False)
    try:
        remote_text, remote = _reply(session.backend)
    finally:
        session.unload()
    local_backend = LlamaCppBackend(LoadConfig(path=str(peer_model), n_ctx=2048, n_threads=1))
    local_backend.load()
    try:
        local_text, local = _reply(local_backend)
    finally:
        local_backend.unload()
    assert remote.token_count_source == "logprobs" and remote.engine == "llama-cpp-python server"
    assert remote.completion_tokens == local.completion_tokens == 24
    # The peer decodes each token on its own and drops bytes that are not whole UTF-8 characters;
    # tokrace assembles the bytes. On ASCII the two texts are the same.
    assert remote_text == "".join(c for c in local_text if c.isascii() and c != "\ufffd")
    assert remote.stop_reason == local.stop_reason == "length"
    # The server's own count of the same request agrees (its non-streaming answer carries usage).
    body = {"model": session.backend.server_model, "max_tokens": 24, "temperature": 0.0,  # type: ignore[attr-defined]
            "repeat_penalty": 1.0, "messages": [{"role": "user", "content": "Say something."}]}
    usage = httpx.post(f"{peer}/chat/completions", json=body, timeout=60).json()["usage"]
    assert usage["completion_tokens"] == remote.completion_tokens


def test_unknown_remote_figures_are_unknown_and_the_prompt_is_counted_with_the_models_tokenizer(
        peer: str, peer_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # llama-cpp-python's server streams no usage: the prompt was logged as "prompt 0 tok". Its model id
    # is the GGUF's path, on this machine: the prompt is counted with that file's tokenizer and template,
    # exactly as the server counts it (its non-streamed answer carries usage: the oracle).
    assert main(["chat", "-m", peer, "--prompt", "hi", "-n", "4", "--temperature", "0", "--json"]) == 0
    reply = json.loads(capsys.readouterr().out)
    body = {"max_tokens": 1, "temperature": 0.0, "messages": [{"role": "user", "content": "hi"}]}
    usage = httpx.post(f"{peer}/chat/completions", json=body, timeout=60).json()["usage"]
    assert reply["prompt_tokens"] == usage["prompt_tokens"] > 0
    assert reply["prompt_count_source"] == "tokenizer"
    assert "prompt counted here with the model's tokenizer" in reply["notice"]
    # What the server does not report is unknown, not 0: no evaluated count, no size, no threads.
    assert reply["prompt_eval_tokens"] is None
    assert reply["model_file"]["size_bytes"] is None and reply["model_file"]["n_threads"] is None
    session = open_session(LoadSpec(model=peer), [], record=False)
    try:
        model = session.model
        assert model.facts_line().startswith("– (quantization, size and parameters: the server does not")
        assert model.threads_label() == "threads: the server's own"
        _, stats = _reply(session.backend)
    finally:
        session.unload()
    assert f"prompt {stats.prompt_tokens} tok in context" in stats.summary_line()
    from tokrace.speedlog.store import SpeedLog

    record = SpeedLog.open().read()[-1]
    assert record.prompt_tokens == usage["prompt_tokens"] and record.prompt_count_source == "tokenizer"
    assert record.model_size is None and record.n_threads is None and record.n_prompt is None


def test_chat_json_with_a_url_reports_the_engine_and_count_source(peer: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "-m", peer, "--prompt", "hi", "-n", "6", "--temperature", "0", "--json"]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert reply["completion_tokens"] == 6 and reply["token_count_source"] == "logprobs"
    assert reply["endpoint"] == peer.split("/")[2] and reply["engine"] == "llama-cpp-python server"


async def test_the_chat_screen_streams_from_a_server_and_records_it(peer: str) -> None:
    from tokrace.speedlog.store import SpeedLog

    app = RecordingApp(model_ref=peer, params=GenerationParams(max_tokens=10, temperature=0))
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.session is not None and app.session.records, timeout=60)
        await send(pilot, "hello")
        await wait_for(pilot, lambda: len(app.finished) == 1, timeout=60)
        await wait_for(pilot, lambda: len(SpeedLog.open().read()) == 1)
        await pilot.pause(0.3)  # a telemetry tick after the reply
        figures = str(app.screen.query_one("#figures", Static).render())
        # The panel says where the reply ran and which figures are the client's.
        assert "engine    " in figures and peer.split("/")[2] in figures
        assert "TTFT includes the network" in figures and "counted   tokens (logprobs)" in figures
    stats = app.finished[0].stats
    assert stats.completion_tokens == 10 and stats.stop_reason == "length"
    record = SpeedLog.open().read()[0]
    assert record.backend == "remote" and record.endpoint == peer.split("/")[2]
    assert record.token_count_source == "logprobs" and record.n_gen == 10


@pytest.mark.parametrize("pair", ["local-remote", "remote-remote"])
def test_races_with_servers(pair: str, peer: str, second_peer: str, peer_model: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    a = str(peer_model) if pair == "local-remote" else second_peer
    assert main(["race", a, peer, "--prompt", "hi", "-n", "8", "--temperature", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    text = json.dumps(out)
    assert peer.split("/")[2] in text
    from tokrace.speedlog.store import SpeedLog

    records = SpeedLog.open().read(kind="race")
    assert sorted(r.lane or "" for r in records) == ["A", "B"]
    assert all(r.n_gen == 8 for r in records)
    assert {r.backend for r in records} == ({"llama.cpp", "remote"} if pair == "local-remote" else {"remote"})
    # The server's prompt is counted with the model's tokenizer (it sends no usage), so TTFT is compared
    # on equal prompts, with the caveat that the server does not say what it had cached ("prompt 0 tok"
    # made every such race say "TTFT not compared").
    lines = out["verdict"]["lines"]
    ttft = next(line for line in lines if "TTFT" in line)
    assert "not compared" not in ttft and "had cached" in ttft, lines
    context = out["verdict"]["context"]
    assert context["A"]["in_context"] == context["B"]["in_context"] > 0 and context["B"]["new"] is None


def test_bench_concurrency_1_and_4_against_the_server(peer: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", peer, "--concurrency", "1,4", "-n", "8", "--requests", "4", "--json", "-q"]) == 0
    levels = json.loads(capsys.readouterr().out)
    assert [lv["concurrency"] for lv in levels] == [1, 4]
    for level in levels:
        assert level["requests"] == level["completed"] == 4 and level["failed"] == 0
        assert level["output_tokens"] == 32 and level["output_throughput"] > 0
        ttft = level["ttft"]["percentiles"]
        assert ttft["p50"] is not None and ttft["p99"] is None  # 4 samples: no p99 (needs 100)
        assert level["tpot"]["n"] == 4 and level["itl"]["n"] > 0 and level["e2el"]["mean"] > 0
    from tokrace.speedlog.store import SpeedLog

    records = SpeedLog.open().read(kind="bench")
    assert [r.test for r in records] == ["c1-tg8", "c4-tg8"]
    assert all(r.backend == "remote" and r.endpoint == peer.split("/")[2] for r in records)
    assert all(len(r.samples_ts or []) == 4 for r in records)


def test_bench_concurrency_needs_a_server(tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(tiny_model), "--concurrency", "4"]) == 2
    assert "--concurrency, --requests and --goodput measure a server" in capsys.readouterr().err
