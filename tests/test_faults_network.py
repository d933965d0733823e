"""Faults of the network: a Hub that accepts and never answers, a host name that does not resolve, a
Hub that fails once. Every call ends with one line (no hang, no retry noise); real transient errors are
still retried."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fake_hub import FakeHub, use_fake_hub

from tokrace.model_registry import hub as hub_mod
from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.hf_download import pull_hf
from tokrace.model_registry.hub import list_repo_files, parse_hf_ref
from tokrace.model_registry.remote_header import read_remote_gguf_info
from tokrace.model_registry.search import search_hub

HANG_GUARD_S = 120  # far above any timeout used here: only a real hang reaches it


class SilentServer:
    """Accepts connections on 127.0.0.1 and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for conn in self.accepted:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[SilentServer]:
    server = SilentServer()
    with FakeHub() as fake:  # use_fake_hub points everything at tmp dirs; then the silent server
        use_fake_hub(monkeypatch, tmp_path, fake)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv(hub_mod.TIMEOUT_ENV, "1")
    try:
        yield server
    finally:
        server.close()


def ends(fn: Callable[[], Any]) -> BaseException | None:
    """Run ``fn`` in a thread; fail the test if it has not ended after ``HANG_GUARD_S``."""
    box: list[BaseException | None] = [None]

    def target() -> None:
        try:
            fn()
        except BaseException as err:  # handed to the test
            box[0] = err

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(HANG_GUARD_S)
    assert not t.is_alive(), "the call hung"
    return box[0]


@pytest.mark.parametrize("call", [
    pytest.param(lambda: list_repo_files("acme/Tiny-GGUF"), id="repo listing"),
    pytest.param(lambda: pull_hf(parse_hf_ref("hf:acme/Tiny-GGUF:Q4_K_M")), id="pull"),
    pytest.param(lambda: read_remote_gguf_info("hf:acme/Tiny-GGUF/t-Q4_K_M.gguf"), id="remote header"),
    pytest.param(lambda: search_hub("tiny"), id="search"),
])
def test_a_hub_that_never_answers_is_one_line_not_a_hang(silent_hub: SilentServer,
                                                         call: Callable[[], Any]) -> None:
    err = ends(call)
    assert isinstance(err, TokraceError), repr(err)
    assert "did not answer" in str(err) and "\n" not in str(err)
    assert silent_hub.accepted, "the client never connected"


def test_a_name_that_does_not_resolve_fails_at_once_without_retries(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with FakeHub() as fake:
        use_fake_hub(monkeypatch, tmp_path, fake)
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.tokrace-test.invalid")
    lookups: list[str] = []

    def offline(host: Any, *args: Any, **kwargs: Any) -> Any:
        lookups.append(str(host))
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    with pytest.raises(TokraceError, match=r"cannot resolve hub\.tokrace-test\.invalid") as exc:
        list_repo_files("acme/Tiny-GGUF")
    assert "check your network" in str(exc.value)
    assert len(lookups) == 1  # huggingface_hub's 5 retries (~23 s of back-off) did not run
    captured = capfd.readouterr()
    assert "Retrying" not in captured.err and "thrown while requesting" not in captured.err


class FlakyHandler(BaseHTTPRequestHandler):
    calls: list[str] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        FlakyHandler.calls.append(self.path)
        if len(FlakyHandler.calls) == 1:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b'[{"type":"file","path":"t-Q4_K_M.gguf","oid":"x","size":3}]'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_a_real_transient_error_is_still_retried(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with FakeHub() as fake:
        use_fake_hub(monkeypatch, tmp_path, fake)
    FlakyHandler.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        assert list_repo_files("acme/Tiny-GGUF") == ["t-Q4_K_M.gguf"]
    finally:
        server.shutdown()
        server.server_close()
    assert len(FlakyHandler.calls) == 2  # one 503, one retry that worked
