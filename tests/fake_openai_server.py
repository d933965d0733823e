"""A loopback OpenAI-compatible server that misbehaves on purpose, one way per model name.

``http://127.0.0.1:PORT/v1#cut`` asks for model ``cut``, and so on:

- ``good``: 5 tokens with per-token logprobs (one chunk carries two), ``usage``, llama-server ``timings``;
- ``nologprobs``: 3 chunks, no token lists, no usage (count by chunks); ``usage``: the same plus usage;
- ``err500``: HTTP 500 before the stream; ``midfail``: an error object after one token;
- ``cut``: two tokens, then the connection closes (no finish reason, no ``[DONE]``);
- ``stall``: one token, then silence for ``stall_s``; ``malformed``: an event that is not JSON;
- ``slow``: a token every 50 ms for a long time (cancel tests; ``disconnected`` is set when the client
  goes away); ``gone``: listed by ``/v1/models`` but answers 404 at completion time;
- ``busy``: one request at a time (6 tokens 100 ms apart, usage, no timings): another arriving meanwhile
  gets HTTP 503, as a one-slot server that refuses to queue.

``require_key`` makes every path answer 401 without ``Authorization: Bearer <key>``; ``redirect_to``
makes ``/v1/models`` answer 307 there. Every request's path and Authorization header is recorded.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODELS = ["good", "nologprobs", "usage", "err500", "midfail", "cut", "stall", "malformed", "slow", "gone",
          "busy"]


def _chunk(content: str | None, tokens: list[str] | None = None, finish: str | None = None,
           **extra: Any) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
    if tokens is not None:
        choice["logprobs"] = {"content": [{"token": t, "logprob": -0.1, "top_logprobs": []} for t in tokens]}
    return {"id": "x", "object": "chat.completion.chunk", "choices": [choice], **extra}


class FakeServer:
    def __init__(self) -> None:
        self.require_key: str | None = None
        self.redirect_to: str | None = None
        self.stall_s = 3.0
        self.requests: list[tuple[str, str | None]] = []
        self.bodies: list[dict[str, Any]] = []
        self.disconnected = threading.Event()
        self.busy = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # the body ends when the connection closes

            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, code: int, data: Any, headers: dict[str, str] | None = None) -> None:
                body = json.dumps(data).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _authorized(self) -> bool:
                server.requests.append((self.path, self.headers.get("Authorization")))
                if server.require_key and self.headers.get("Authorization") != f"Bearer {server.require_key}":
                    self._json(401, {"error": {"message": "invalid api key"}})
                    return False
                return True

            def do_GET(self) -> None:
                if not self._authorized():
                    return
                if self.path == "/v1/models":
                    if server.redirect_to:
                        self._json(307, {}, {"Location": server.redirect_to + "/v1/models"})
                        return
                    data = [{"id": m, "object": "model", "owned_by": "fake"} for m in MODELS]
                    self._json(200, {"object": "list", "data": data})
                else:
                    self._json(404, {"detail": "Not Found"})

            def do_POST(self) -> None:
                if not self._authorized():
                    return
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                server.bodies.append(body)
                model = body.get("model")
                if model == "err500":
                    self._json(500, {"error": {"message": "CUDA out of memory"}})
                    return
                if model not in MODELS or model == "gone":
                    self._json(404, {"error": {"message": f"model {model} not found"}})
                    return
                self.held = model == "busy" and server.busy.acquire(blocking=False)
                if model == "busy" and not self.held:
                    self._json(503, {"error": {"message": "the slot is busy with another request"}})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                try:
                    self._stream(model)
                except (BrokenPipeError, ConnectionResetError):
                    server.disconnected.set()
                finally:
                    self._release()

            def _release(self) -> None:
                if getattr(self, "held", False):
                    self.held = False
                    server.busy.release()

            def _send(self, data: Any) -> None:
                text = data if isinstance(data, str) else json.dumps(data)
                self.wfile.write(f"data: {text}\n\n".encode())
                self.wfile.flush()

            def _stream(self, model: str) -> None:
                send = self._send
                send(_chunk(None) | {"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
                if model == "good":
                    send(_chunk("Hello", ["Hello"]))
                    send(_chunk(" world", [" wor", "ld"]))
                    send(_chunk("", [""]))  # a token that releases no text
                    send(_chunk("!", ["!"], finish="length"))
                    timings = {"prompt_n": 12, "prompt_ms": 6.0, "predicted_n": 5, "predicted_ms": 25.0}
                    send({"id": "x", "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 5},
                          "timings": timings})
                    send("[DONE]")
                elif model in ("nologprobs", "usage"):
                    for piece in ("Hel", "lo wor", "ld"):
                        send(_chunk(piece))
                    send(_chunk(None, finish="stop"))
                    if model == "usage":
                        usage = {"prompt_tokens": 9, "completion_tokens": 4}
                        send({"id": "x", "choices": [], "usage": usage})
                    send("[DONE]")
                elif model == "midfail":
                    send(_chunk("Hi", ["Hi"]))
                    send({"error": {"message": "llama_decode failed"}})
                elif model == "cut":
                    send(_chunk("Par", ["Par"]))
                    send(_chunk("tial", ["tial"]))
                elif model == "stall":
                    send(_chunk("Wait", ["Wait"]))
                    time.sleep(server.stall_s)
                elif model == "malformed":
                    send(_chunk("A", ["A"]))
                    send("{not json")
                elif model == "busy":
                    for _ in range(6):
                        send(_chunk("x", ["x"]))
                        time.sleep(0.1)
                    send(_chunk(None, finish="length"))
                    send({"id": "x", "choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 6}})
                    self._release()  # free before the end: the client's next request may come at once
                    send("[DONE]")
                elif model == "slow":
                    for _ in range(400):
                        send(_chunk("x", ["x"]))
                        time.sleep(0.05)
                    send(_chunk(None, finish="length"))
                    send("[DONE]")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
