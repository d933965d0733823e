"""Where a remote engine is and how to talk to it: model references that are URLs, the API key, one
HTTP client (httpx) per backend, what the server says about itself, and HTTP failures as one line.

A reference ``http(s)://HOST[:PORT]/v1[#MODEL]`` names an OpenAI-compatible server (vLLM, llama-server,
trtllm-serve, SGLang, Ollama, LM Studio…) and optionally one of its models. The key comes from
``TOKRACE_API_KEY``, ``OPENAI_API_KEY`` or the settings file, never from the command line or the URL.

Safety: TLS certificates are verified (httpx's default); redirects are not followed, so the key is never
sent to another host (the user is told where the server points instead); a key never appears in an
error line (``scrub``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from tokrace.model_registry.errors import TokraceError

KEY_VARIABLES = ("TOKRACE_API_KEY", "OPENAI_API_KEY")
"""Environment variables read for the API key, in order."""
DEFAULT_TIMEOUT_S = 60.0
"""The longest wait for the next bytes of a reply (a stalled stream), unless configured."""
CONNECT_TIMEOUT_S = 10.0
KEY_HINT = "set TOKRACE_API_KEY (or OPENAI_API_KEY, or api_key in settings.toml)"


def is_remote_ref(ref: str | None) -> bool:
    """Whether a model reference names a server (``http://`` or ``https://``) rather than a model file."""
    return ref is not None and ref.strip().lower().startswith(("http://", "https://"))


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A parsed remote reference: ``base_url`` ends at the API root (``…/v1``); ``model`` is the
    ``#MODEL`` fragment (``None``: the server's model, or the first of several)."""

    base_url: str
    host: str
    port: int
    model: str | None = None

    @property
    def address(self) -> str:
        """``host:port``, the form logs and verdicts show."""
        return f"{self.host}:{self.port}"

    @property
    def root_url(self) -> str:
        """The server root (``base_url`` without a trailing ``/v1``), where llama-server's ``/props`` is."""
        return self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url

    def ref(self, model: str | None = None) -> str:
        """The reference back, as a user would type it (``…/v1#MODEL``)."""
        model = model if model is not None else self.model
        return f"{self.base_url}#{model}" if model else self.base_url


def parse_endpoint(ref: str) -> Endpoint:
    """``http(s)://HOST[:PORT][/PATH][#MODEL]`` → ``Endpoint`` (the path defaults to ``/v1``).

    Raises ``TokraceError`` (kind ``usage``) for a URL without a host, with credentials in it (they would
    end up in logs and process lists), or with a query string."""
    text = ref.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as err:
        raise TokraceError(f"{text!r} is not a server URL ({err}); expected http://HOST:PORT/v1[#MODEL]",
                           kind="usage") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TokraceError(f"{text!r} is not a server URL; expected http://HOST:PORT/v1[#MODEL]",
                           kind="usage")
    if parts.username or parts.password:
        raise TokraceError(f"a server URL must not carry credentials; {KEY_HINT} instead", kind="usage")
    if parts.query:
        raise TokraceError(f"{parts.hostname}: a server URL takes no query string; expected"
                           " http://HOST:PORT/v1[#MODEL]", kind="usage")
    port = port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    path = parts.path.rstrip("/") or "/v1"
    return Endpoint(f"{parts.scheme}://{netloc}{path}", host, port, parts.fragment or None)


def api_key(configured: str | None = None) -> str | None:
    """The key to send: ``TOKRACE_API_KEY``, else ``OPENAI_API_KEY``, else ``configured`` (the file's)."""
    for name in KEY_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return configured or None


def make_client(key: str | None, timeout_s: float | None) -> httpx.Client:
    """One pooled client: TLS verified, no redirects followed, no retries, ``timeout_s`` per read.

    The pool allows 128 connections, enough for ``bench --concurrency``; one client may be used from
    several threads at once."""
    read = timeout_s or DEFAULT_TIMEOUT_S
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(
        headers=headers,
        timeout=httpx.Timeout(read, connect=min(CONNECT_TIMEOUT_S, read)),
        follow_redirects=False,
        limits=httpx.Limits(max_connections=128, max_keepalive_connections=32),
        trust_env=False,  # no proxy or netrc credentials picked up behind the user's back
    )


def scrub(text: str, key: str | None) -> str:
    """``text`` with the key (if any) replaced: error lines and logs never show it."""
    return text.replace(key, "***") if key and len(key) >= 4 else text


def _dns_failure(err: BaseException) -> bool:
    words = str(err).lower()
    return any(w in words for w in ("name or service not known", "nodename nor servname",
                                    "temporary failure in name resolution", "no address associated",
                                    "getaddrinfo failed"))


def transport_error(err: httpx.TransportError, endpoint: Endpoint, timeout_s: float | None) -> str:
    """One line for a failure below HTTP (connect, DNS, TLS, stall, a cut connection)."""
    where = endpoint.address
    if isinstance(err, httpx.ConnectTimeout):
        return f"{where} did not answer within {CONNECT_TIMEOUT_S:g} s: check the host and port"
    if isinstance(err, httpx.ReadTimeout):
        return (f"{where} sent nothing for {timeout_s or DEFAULT_TIMEOUT_S:g} s (a stalled stream); raise"
                " {setting:request_timeout_s} if the engine is just slow")
    if isinstance(err, httpx.ConnectError):
        if _dns_failure(err):
            return f"cannot resolve host {endpoint.host!r}: check the URL"
        if "certificate" in str(err).lower() or "ssl" in str(err).lower():
            return f"{where}: TLS failed ({err}); the server's certificate must be trusted by this machine"
        return f"cannot connect to {where} (connection refused): is the server running on that port?"
    if isinstance(err, httpx.RemoteProtocolError | httpx.ReadError):
        return f"{where} closed the connection mid-reply"
    return f"{where}: {type(err).__name__} ({err})"


def status_error(response: httpx.Response, endpoint: Endpoint, models: list[str] | None = None,
                 model: str | None = None) -> str:
    """One line for an HTTP error status (the body has been read)."""
    code = response.status_code
    where = endpoint.address
    said = _server_message(response)
    if code in (401, 403):
        return f"{where} refused the request (HTTP {code}: {said or 'unauthorized'}): {KEY_HINT}"
    if code == 404 and models is not None and model is not None:
        listed = ", ".join(models[:8]) + (" …" if len(models) > 8 else "") if models else "none"
        return f"{where} has no model {model!r} (HTTP 404); it serves: {listed}"
    if code == 404:
        return (f"{where}: {response.request.url.path} not found (HTTP 404): is the URL's path the API"
                " root (/v1)?")
    if 300 <= code < 400:
        target = response.headers.get("location", "?").split("?")[0]
        return (f"{where} redirects to {target} (HTTP {code}); tokrace does not follow redirects (the key"
                " must not go to another host): use that URL")
    return f"{where} failed (HTTP {code}{': ' + said if said else ''})"


def _server_message(response: httpx.Response) -> str:
    """The error text a server put in its body (OpenAI's ``{"error": {"message"}}``, FastAPI's
    ``detail``), cut to one short line."""
    try:
        data: Any = response.json()
    except ValueError:
        text = response.text.strip()
        return " ".join(text.split())[:160]
    return message_of(data)


def message_of(data: Any) -> str:
    """The message inside an OpenAI-style error object (or ``""``)."""
    if isinstance(data, dict):
        inner = data.get("error", data.get("detail", data.get("message")))
        if isinstance(inner, dict):
            inner = inner.get("message", inner)
        if inner is not None:
            return " ".join(str(inner).split())[:160]
    return ""


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What a server says about itself: its models, which engine it is, and its context size."""

    models: list[str]
    engine: str
    n_ctx: int = 0
    owned_by: str = ""


_OWNERS = {"vllm": "vLLM", "llamacpp": "llama-server", "sglang": "SGLang", "me": "llama-cpp-python server",
           "library": "Ollama", "ollama": "Ollama", "organization_owner": "LM Studio",
           "tensorrt_llm": "trtllm-serve"}


def probe(client: httpx.Client, endpoint: Endpoint, key: str | None, timeout_s: float | None) -> ServerInfo:
    """``GET /v1/models`` (must answer), then llama-server's ``/props`` and vLLM's ``/version`` (may
    not): which engine it is. Raises ``TokraceError`` (kind ``remote``) with one line when the server
    cannot be reached or refuses."""
    url = f"{endpoint.base_url}/models"
    try:
        response = client.get(url)
    except httpx.TransportError as err:
        raise TokraceError(scrub(transport_error(err, endpoint, timeout_s), key), kind="remote") from None
    if response.status_code != 200:
        raise TokraceError(scrub(status_error(response, endpoint), key), kind="remote")
    try:
        data = response.json()["data"]
        models = [str(m["id"]) for m in data]
        owned_by = str(data[0].get("owned_by", "")) if data else ""
    except (ValueError, KeyError, TypeError, IndexError):
        raise TokraceError(f"{endpoint.address}/v1/models did not answer like an OpenAI-compatible server",
                           kind="remote") from None
    engine, n_ctx = _OWNERS.get(owned_by.lower(), "OpenAI-compatible server"), 0
    props = _get_json(client, f"{endpoint.root_url}/props")
    if isinstance(props, dict) and ("default_generation_settings" in props or "total_slots" in props):
        build = props.get("build_info")
        engine = f"llama-server {build}" if build else "llama-server"
        settings = props.get("default_generation_settings")
        if isinstance(settings, dict) and isinstance(settings.get("n_ctx"), int):
            n_ctx = settings["n_ctx"]
    else:
        version = _get_json(client, f"{endpoint.root_url}/version")
        if isinstance(version, dict) and isinstance(version.get("version"), str):
            name = engine if engine != "OpenAI-compatible server" else "vLLM"
            engine = f"{name} {version['version']}"
    return ServerInfo(models, engine, n_ctx, owned_by)


def _get_json(client: httpx.Client, url: str) -> Any:
    """The JSON at ``url``, or ``None`` for anything else (the probe is best effort)."""
    try:
        response = client.get(url, timeout=5.0)
        return response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
