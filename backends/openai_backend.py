"""A remote engine behind an OpenAI-compatible ``/v1/chat/completions`` (vLLM, llama-server,
trtllm-serve, SGLang, Ollama, LM Studio, llama-cpp-python's server), measured like a local model.

Tokens, not chunks: the request asks for per-token ``logprobs`` (each stream chunk then lists the tokens
it carries), ``stream_options.include_usage`` (the final counts) and keeps llama-server's ``timings``.
Each listed token becomes one ``TokenGenerated`` stamped with its chunk's arrival time on this machine
(``token_id`` -1: the API names tokens by text). A server that lists no tokens is counted per chunk
(``token_count_source="chunks"``; it may undercount, and the reply's notice says so) unless its
``usage`` gives the exact count (``"usage"``). Client TTFT includes the network; the server's own
prompt and decode speeds (when it reports ``timings``) travel in ``GenerationFinished.server``.

What a server does not report stays unknown (``None``, shown as "–"), never 0: the file's size and
quantization, its threads, and the prompt's size when it sends no ``usage``. Then the prompt is counted
here with the model's own tokenizer when that GGUF is on this machine (``remote_prompt_count``), and the
reply says which it was.

HTTP goes through httpx and the stream through httpx-sse. Cancelling closes the connection at once (the
socket is shut down under the blocked read), so the server stops generating too.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import SSEError, connect_sse

from tokrace.backends.base import (
    Backend,
    CancelToken,
    Capabilities,
    ChatMessage,
    GenerationParams,
    LoadedModel,
)
from tokrace.backends.events import (
    GenerationFinished,
    RequestStarted,
    ServerReport,
    StopReason,
    StreamEvent,
    TokenCountSource,
    TokenGenerated,
)
from tokrace.backends.remote_endpoint import (
    Endpoint,
    ServerInfo,
    api_key,
    make_client,
    message_of,
    probe,
    scrub,
    status_error,
    transport_error,
)
from tokrace.backends.remote_prompt_count import GGUFPromptCounter, local_gguf_counter
from tokrace.model_registry.errors import TokraceError

CANCEL_POLL_S = 0.02
"""How often a request's watcher looks at its cancel token (Esc closes the stream within this)."""


@dataclass(slots=True)
class _Reply:
    """What one stream has delivered so far."""

    text: list[str] = field(default_factory=list)
    n_tokens: int = 0
    chunks_without_logprobs: int = 0
    finish: str | None = None
    done: bool = False
    usage: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None


class OpenAIBackend(Backend):
    """One model on an OpenAI-compatible server. ``load()`` probes the server (models, engine) and
    raises ``TokraceError`` (kind ``remote``) when it cannot be reached or lacks the model.

    Unlike an in-process engine, several ``stream_chat`` calls may run at once from different threads
    (the server batches them; ``bench --concurrency`` relies on it)."""

    name = "remote"

    def __init__(self, endpoint: Endpoint, *, key: str | None = None, timeout_s: float | None = None) -> None:
        """``key``: the configured key, used when neither ``TOKRACE_API_KEY`` nor ``OPENAI_API_KEY`` is
        set. ``timeout_s``: the longest silence tolerated while waiting for bytes (default 60 s)."""
        self.endpoint = endpoint
        self._key = api_key(key)
        self.timeout_s = timeout_s
        self._client: httpx.Client | None = None
        self._model: LoadedModel | None = None
        self.server: ServerInfo | None = None
        self.server_model = endpoint.model or ""
        self.prompt_counter: GGUFPromptCounter | None = None
        """Counts prompts here when the server sends no ``usage`` (its model's GGUF is on this machine)."""

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities()

    @property
    def engine(self) -> str:
        return self.server.engine if self.server is not None else "OpenAI-compatible server"

    # -- loading -----------------------------------------------------------------------------------
    def load(self) -> LoadedModel:
        self._client = self._client or make_client(self._key, self.timeout_s)
        info = probe(self._client, self.endpoint, self._key, self.timeout_s)
        self.server = info
        wanted = self.endpoint.model
        if wanted is not None and wanted not in info.models:
            listed = ", ".join(info.models[:8]) or "none"
            raise TokraceError(f"{self.endpoint.address} has no model {wanted!r}; it serves: {listed}"
                               " (pick one with URL#MODEL)", kind="remote")
        if not info.models and wanted is None:
            raise TokraceError(f"{self.endpoint.address} serves no model yet; load one on the server",
                               kind="remote")
        self.server_model = wanted or info.models[0]
        self.prompt_counter = local_gguf_counter(self.server_model)
        self._model = LoadedModel(
            name=self.server_model, path=self.endpoint.ref(self.server_model), architecture="?",
            quantization="?", size_bytes=None, n_params=None, n_layers=None, n_ctx_train=None,
            n_ctx=info.n_ctx, n_threads=None,
            template=f"{info.engine} at {self.endpoint.address} (the server's chat template; client-measured"
                     " TTFT includes the network)",
            gpu_offload=False, remote=True,
        )
        return self._model

    @property
    def model(self) -> LoadedModel:
        if self._model is None:
            raise RuntimeError("load() first")
        return self._model

    def unload(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- generation --------------------------------------------------------------------------------
    def request_body(self, messages: Sequence[ChatMessage], params: GenerationParams) -> dict[str, Any]:
        """The JSON of one streamed chat completion: OpenAI's fields, plus ``top_k``, ``min_p`` and
        ``repeat_penalty`` that llama.cpp-based servers and vLLM read (others ignore them)."""
        body: dict[str, Any] = {
            "model": self.server_model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            "logprobs": True,
            "top_logprobs": 0,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "top_k": params.top_k,
            "min_p": params.min_p,
            "repeat_penalty": params.repeat_penalty,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        return body

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams,
        cancel: CancelToken | None = None,
    ) -> Iterator[StreamEvent]:
        """The events of one reply. Every failure (refused, cut, stalled, malformed, HTTP error) ends in
        ``GenerationFinished(stop_reason="error", error=<one line>)`` with the text received so far."""
        model = self.model
        client = self._client
        if client is None:
            raise RuntimeError("load() first")
        cancel = cancel or CancelToken()
        reply = _Reply()
        error: str | None = None
        finished = threading.Event()
        t0 = time.perf_counter()
        yield RequestStarted(t0, model.name, None, 0, model.template)
        try:
            with connect_sse(client, "POST", f"{self.endpoint.base_url}/chat/completions",
                             json=self.request_body(messages, params)) as source:
                response = source.response
                if response.status_code != 200:
                    response.read()
                    error = status_error(response, self.endpoint, self.server.models if self.server else None,
                                         self.server_model)
                else:
                    _watch(cancel, response, finished)
                    yield from self._read(source.iter_sse(), reply, cancel)
        except httpx.TransportError as err:
            if not cancel.cancelled:
                error = transport_error(err, self.endpoint, self.timeout_s)
        except SSEError as err:
            error = f"{self.endpoint.address} did not send an event stream ({err})"
        except _StreamError as err:
            error = str(err)
        finally:
            finished.set()
        yield self._finish(reply, cancel, error, messages)

    def _read(self, events: Iterator[Any], reply: _Reply, cancel: CancelToken) -> Iterator[StreamEvent]:
        for sse in events:
            if cancel.cancelled:
                return
            data = sse.data.strip()
            if not data:
                continue
            if data == "[DONE]":
                reply.done = True
                return
            try:
                chunk = json.loads(data)
            except ValueError:
                raise _StreamError(f"{self.endpoint.address} sent a malformed event ({data[:60]!r})"
                                   ) from None
            t = time.perf_counter()
            if not isinstance(chunk, dict):
                raise _StreamError(f"{self.endpoint.address} sent a malformed event ({data[:60]!r})")
            if "error" in chunk:
                raise _StreamError(f"{self.endpoint.address} failed mid-reply: {message_of(chunk)}")
            yield from self._chunk(chunk, t, reply)

    def _chunk(self, chunk: dict[str, Any], t: float, reply: _Reply) -> Iterator[TokenGenerated]:
        if isinstance(chunk.get("usage"), dict):
            reply.usage = chunk["usage"]
        if isinstance(chunk.get("timings"), dict):
            reply.timings = chunk["timings"]
        choices = chunk.get("choices") or []
        if not choices or not isinstance(choices[0], dict):
            return
        choice = choices[0]
        delta = choice.get("delta") or {}
        content = delta.get("content") or "" if isinstance(delta, dict) else ""
        if choice.get("finish_reason"):
            reply.finish = str(choice["finish_reason"])
        logprobs = choice.get("logprobs")
        entries = logprobs.get("content") if isinstance(logprobs, dict) else None
        if isinstance(entries, list) and entries:
            pieces = [str(e.get("token", "")) if isinstance(e, dict) else "" for e in entries]
            if "".join(pieces) != content:  # the content is authoritative: give it to the first token
                pieces = [content] + [""] * (len(entries) - 1)
        elif content:
            reply.chunks_without_logprobs += 1
            pieces = [content]
        else:
            return
        reply.text.append(content)
        for piece in pieces:
            yield TokenGenerated(reply.n_tokens, -1, piece, t)
            reply.n_tokens += 1

    def _finish(self, reply: _Reply, cancel: CancelToken, error: str | None,
                messages: Sequence[ChatMessage]) -> GenerationFinished:
        t_end = time.perf_counter()  # the reply's end: counting a prompt below is not part of it
        reason: StopReason
        notice = None
        if cancel.cancelled:
            reason, error = "cancelled", None
        elif error is not None:
            reason = "error"
        elif reply.finish is None:  # cut, or ended early (llama-cpp-python's server interrupts a stream)
            reason, error = "error", f"{self.endpoint.address} ended the stream mid-reply (no finish reason)"
            if self.engine.startswith("llama-cpp-python"):  # its default ends a stream when another comes
                error += ("; llama-cpp-python's server interrupts a reply when another request arrives:"
                          " start it with --interrupt_requests False to queue them")
        else:
            reason = "length" if reply.finish == "length" else "stop"
        usage, timings = reply.usage or {}, reply.timings or {}
        usage_completion = _int(usage.get("completion_tokens"))
        source: TokenCountSource = "logprobs"
        count = reply.n_tokens
        if reply.chunks_without_logprobs:
            if usage_completion is not None:
                source, count = "usage", usage_completion
            else:
                source = "chunks"
                notice = (f"{self.endpoint.address} listed no tokens: counted {reply.n_tokens} stream"
                          " chunks, which may undercount tokens (tok/s too)")
        elif usage_completion is not None and usage_completion != reply.n_tokens and reason != "cancelled":
            notice = f"the server counted {usage_completion} tokens, its token list {reply.n_tokens}"
        counted, count_notice = self._count_prompt(messages, usage, reply)
        notice = "; ".join(n for n in (notice, count_notice) if n) or None
        report = ServerReport(
            engine=self.engine, endpoint=self.endpoint.address, server_model=self.server_model,
            token_count_source=source, usage_prompt_tokens=_int(usage.get("prompt_tokens")),
            usage_completion_tokens=usage_completion, prompt_n=_int(timings.get("prompt_n")),
            prompt_ms=_float(timings.get("prompt_ms")), predicted_n=_int(timings.get("predicted_n")),
            predicted_ms=_float(timings.get("predicted_ms")), draft_n=_int(timings.get("draft_n")),
            draft_n_accepted=_int(timings.get("draft_n_accepted")), counted_prompt_tokens=counted,
        )
        return GenerationFinished(t_end, reason, "".join(reply.text), count,
                                  error=scrub(error, self._key) if error else None, notice=notice,
                                  server=report)


    def _count_prompt(self, messages: Sequence[ChatMessage], usage: dict[str, Any], reply: _Reply
                      ) -> tuple[int | None, str | None]:
        """(prompt tokens counted here, the notice that says so) when the server answered without
        ``usage.prompt_tokens``; ``(None, why it is unknown)`` without a tokenizer for its model."""
        if _int(usage.get("prompt_tokens")) is not None or (reply.finish is None and not reply.n_tokens):
            return None, None
        if self.prompt_counter is None:
            return None, (f"prompt size unknown: {self.endpoint.address} sent no usage, and its model is not"
                          " a GGUF on this machine to count with")
        try:
            n = self.prompt_counter.count(messages)
        except (ValueError, RuntimeError, OSError, TokraceError) as err:
            return None, f"prompt size unknown: {self.endpoint.address} sent no usage ({err})"
        name = self.prompt_counter.path.rsplit("/", 1)[-1]
        return n, (f"prompt counted here with the model's tokenizer and chat template ({name}):"
                   f" {self.endpoint.address} sent no usage")


class _StreamError(Exception):
    """A stream that broke the protocol (malformed event, an error object mid-stream)."""


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _watch(cancel: CancelToken, response: httpx.Response, finished: threading.Event) -> None:
    """Close ``response``'s connection as soon as ``cancel`` is set (until ``finished``): shutting the
    socket down wakes the read blocked in the generating thread at once, and the server sees the client
    leave."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None

    def run() -> None:
        while not finished.wait(CANCEL_POLL_S):
            if cancel.cancelled:
                if isinstance(sock, socket.socket):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                return

    threading.Thread(target=run, name="tokrace-remote-cancel", daemon=True).start()
