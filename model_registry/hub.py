"""Talking to the Hugging Face Hub through huggingface_hub: where it is, how files are named, and what its
errors mean to a user.

The endpoint and cache dir are read from the environment at call time (huggingface_hub reads them once,
at import), so ``HF_ENDPOINT``/``HF_HUB_CACHE`` set later (tests, the TUI's settings) still apply.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from tokrace.model_registry.errors import TokraceError

_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_SHARD_RE = re.compile(r"^(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")
_QUANT_RE = re.compile(r"^[A-Za-z0-9_]+$")
DEFAULT_REVISION = "main"

T = TypeVar("T")


CONNECT_TIMEOUT_S = 10.0
"""Seconds to open a connection to the Hub (or its CDN)."""
READ_TIMEOUT_S = 20.0
"""Seconds a Hub request may wait for the next bytes. huggingface_hub passes ``timeout=None`` (wait
forever) on its listing calls; the transport below puts this in every request that has none."""

TIMEOUT_ENV = "TOKRACE_HUB_TIMEOUT_S"


def read_timeout_s() -> float:
    """``READ_TIMEOUT_S``, or the seconds in ``$TOKRACE_HUB_TIMEOUT_S`` (a slow link, tests)."""
    try:
        value = float(os.environ.get(TIMEOUT_ENV, ""))
    except ValueError:
        return READ_TIMEOUT_S
    return value if value > 0 else READ_TIMEOUT_S


_configured = False
_configure_lock = threading.Lock()


class HubUnreachable(Exception):
    """The Hub's host name did not resolve, or a request got no answer in time.

    Not an ``httpx2.NetworkError``/``TimeoutException``, so huggingface_hub's retry loop (five tries,
    ~23 s of back-off, a warning per try) does not retry it: offline, a command fails at once.
    Real transient errors (a reset connection, HTTP 429/5xx) are still retried."""


def _is_name_resolution_failure(err: BaseException) -> bool:
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, socket.gaierror):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _hub_transport() -> Any:
    import httpx2

    class HubTransport(httpx2.HTTPTransport):
        """Every request gets a timeout; no name resolution or no answer fails fast (no retry)."""

        def handle_request(self, request: httpx2.Request) -> httpx2.Response:
            timeout = dict(request.extensions.get("timeout") or {})
            read = read_timeout_s()
            defaults = {"connect": min(CONNECT_TIMEOUT_S, read), "read": read, "write": read,
                        "pool": min(CONNECT_TIMEOUT_S, read)}
            for key, value in defaults.items():
                if timeout.get(key) is None:
                    timeout[key] = value
            request.extensions["timeout"] = timeout
            try:
                return super().handle_request(request)
            except httpx2.ConnectError as err:
                if _is_name_resolution_failure(err):
                    raise HubUnreachable(f"cannot resolve {request.url.host}") from err
                raise
            except httpx2.TimeoutException as err:
                raise HubUnreachable(f"{request.url.host} did not answer within "
                                     f"{timeout['read']:.0f} s") from err

    return HubTransport()


def configure_hub_client() -> None:
    """Make huggingface_hub's shared HTTP client time out and fail fast offline (see ``HubTransport``),
    and keep its retry warnings off the user's terminal (our errors say what happened). Idempotent;
    every function here that reaches the Hub calls it first."""
    global _configured
    if _configured:
        return
    with _configure_lock:
        if _configured:
            return
        import httpx2
        from huggingface_hub.utils import _http, set_client_factory

        def factory() -> httpx2.Client:
            return httpx2.Client(event_hooks={"request": [_http.hf_request_event_hook]},
                                 follow_redirects=True, transport=_hub_transport())

        set_client_factory(factory)
        logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
        _configured = True


def hub_endpoint() -> str:
    from huggingface_hub import constants

    configure_hub_client()
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hub_cache_dir() -> Path:
    """Where huggingface_hub keeps downloads (``HF_HUB_CACHE``, else ``HF_HOME/hub``)."""
    if cache := os.environ.get("HF_HUB_CACHE"):
        return Path(cache).expanduser()
    if home := os.environ.get("HF_HOME"):
        return Path(home).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def check_repo_id(repo_id: str) -> str:
    if not _REPO_RE.match(repo_id) or ".." in repo_id:
        raise TokraceError(f"{repo_id!r} is not a Hugging Face repo id; write it as OWNER/NAME", kind="usage")
    return repo_id


def check_filename(filename: str) -> str:
    """A file path inside a repo: relative, no ``..``, no backslashes (it becomes a local path)."""
    p = PurePosixPath(filename)
    if not filename or "\\" in filename or p.is_absolute() or ".." in p.parts or filename.startswith("~"):
        raise TokraceError(
            f"{filename!r} is not a file inside a repo; give a relative path like 'model-Q4_K_M.gguf'",
            kind="usage",
        )
    return filename


@dataclass(frozen=True, slots=True)
class HfRef:
    """A GGUF on the Hub: one file (``filename``) or a quant to pick among the repo's files."""

    repo_id: str
    filename: str | None = None
    quant: str | None = None
    revision: str = DEFAULT_REVISION

    def __str__(self) -> str:
        rev = "" if self.revision == DEFAULT_REVISION else f"@{self.revision}"
        return f"hf:{self.repo_id}{rev}" + (f"/{self.filename}" if self.filename else f":{self.quant}")


def parse_hf_ref(ref: str) -> HfRef:
    """``hf:OWNER/NAME/FILE.gguf``, ``hf:OWNER/NAME:QUANT`` (``@REV`` may follow NAME)."""
    body = ref.removeprefix("hf:").strip()
    parts = body.split("/", 2)
    if len(parts) < 2:
        raise TokraceError(
            f"{ref!r} is not a Hub model: write hf:OWNER/NAME/FILE.gguf or hf:OWNER/NAME:QUANT", kind="usage"
        )
    owner, rest = parts[0], "/".join(parts[1:])
    if len(parts) == 3:
        name, filename = parts[1], parts[2]
        quant = None
    else:
        name, _, quant_text = rest.partition(":")
        filename, quant = None, quant_text or None
    name, _, revision = name.partition("@")
    repo_id = check_repo_id(f"{owner}/{name}")
    if filename is not None:
        check_filename(filename)
        if not filename.lower().endswith(".gguf"):
            raise TokraceError(f"{filename!r} is not a .gguf file; tokrace runs GGUF models only",
                               kind="usage")
    elif quant is None:
        raise TokraceError(f"{ref!r} names no file: add /FILE.gguf or :QUANT (e.g. :Q4_K_M)", kind="usage")
    elif not _QUANT_RE.match(quant):
        raise TokraceError(f"{quant!r} is not a quantization name; use one like Q4_K_M, Q8_0 or F16",
                           kind="usage")
    return HfRef(repo_id, filename, quant.upper() if quant else None, revision or DEFAULT_REVISION)


def shard_info(filename: str) -> tuple[str, int, int] | None:
    """``x-00002-of-00003.gguf`` → ``("x", 2, 3)``; None for an unsharded file."""
    m = _SHARD_RE.match(PurePosixPath(filename).name)
    return (m["stem"], int(m["no"]), int(m["count"])) if m else None


def shard_names(filename: str) -> list[str]:
    """All shard paths of a sharded file (from any one of them), or just ``[filename]``."""
    info = shard_info(filename)
    if info is None:
        return [filename]
    stem, _, count = info
    parent = str(PurePosixPath(filename).parent)
    prefix = "" if parent == "." else parent + "/"
    return [f"{prefix}{stem}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]


def _quant_matches(path: str, quant: str) -> bool:
    # Quant names appear as a dotted/dashed token (model.Q4_K_M.gguf, model-q4_k_m-00001-of-2.gguf) or as a
    # folder (Q4_K_M/…); matching on token boundaries keeps Q4_K from matching Q4_K_M.
    tokens = re.split(r"[./\-]", path.upper())
    return quant.upper() in tokens


def pick_quant_files(files: list[str], quant: str, repo_id: str) -> list[str]:
    """The repo's GGUF files for ``quant``: one file, or every shard of one sharded file."""
    ggufs = [f for f in files if f.lower().endswith(".gguf") and "mmproj" not in f.lower()]
    matches = sorted(f for f in ggufs if _quant_matches(f, quant))
    if not matches:
        tokens = {t for f in ggufs for t in re.split(r"[./\-]", f.upper())}
        have = sorted(t for t in tokens if re.match(r"^(I?Q\d|F16|BF16|F32)", t))
        hint = f"it has {', '.join(have)}" if have else "it has no GGUF files"
        raise TokraceError(f"{repo_id} has no {quant} GGUF ({hint}); pick one of those", kind="usage")
    groups: dict[str, list[str]] = {}
    for f in matches:
        groups.setdefault(shard_names(f)[0], []).append(f)
    if len(groups) > 1:
        raise TokraceError(
            f"{repo_id} has several {quant} files ({', '.join(sorted(groups))});"
            f" name one with hf:{repo_id}/FILE.gguf", kind="usage"
        )
    first = next(iter(groups))
    wanted = shard_names(first)
    missing = [s for s in wanted if s not in files]
    if missing:
        raise TokraceError(f"{repo_id} lacks shard {missing[0]} of {first}; the repo is incomplete",
                           kind="model_file")
    return wanted


def hub_error_message(err: BaseException, what: str) -> str | None:
    """One line for a huggingface_hub / network failure, or None when ``err`` is not one."""
    import httpx2
    from huggingface_hub import errors as hf_errors

    endpoint = hub_endpoint()
    login = "set HF_TOKEN or run 'hf auth login'"
    if isinstance(err, hf_errors.GatedRepoError):
        return f"{what} is gated: accept its license on the Hub page, then {login} (HTTP 401/403)"
    if isinstance(err, hf_errors.RepositoryNotFoundError):
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status == 401:
            return f"{what}: the Hub answered 401 (gated, private or no such repo); {login}, then retry"
        return f"{what}: no such repo on the Hub; check the name with 'tokrace models search'"
    if isinstance(err, hf_errors.RevisionNotFoundError):
        return f"{what}: no such revision; use a branch, tag or commit the repo has"
    if isinstance(err, hf_errors.RemoteEntryNotFoundError):
        return f"{what}: no such file in the repo; list its files with 'tokrace models search'"
    if isinstance(err, hf_errors.HfHubHTTPError):
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status == 401:
            return f"{what}: the Hub answered 401 Unauthorized; {login}"
        if status == 403:
            return f"{what}: the Hub answered 403 Forbidden; your token lacks access to this repo"
        return f"{what}: the Hub answered HTTP {status}; try again later"
    if isinstance(err, hf_errors.OfflineModeIsEnabled):
        return f"{what}: HF_HUB_OFFLINE is set; unset it to reach the Hub"
    if isinstance(err, HubUnreachable):
        return f"cannot reach the Hugging Face Hub at {endpoint} ({err}); check your network"
    if isinstance(err, httpx2.HTTPError | ConnectionError | TimeoutError):
        return f"cannot reach the Hugging Face Hub at {endpoint} ({type(err).__name__}); check your network"
    return None


@contextmanager
def hub_errors(what: str) -> Iterator[None]:
    """Turn huggingface_hub/network exceptions raised inside into one-line ``TokraceError``s."""
    configure_hub_client()
    try:
        yield
    except TokraceError:
        raise
    except Exception as err:
        message = hub_error_message(err, what)
        if message is None:
            raise
        raise TokraceError(message, kind="network") from None


def call_hub(what: str, fn: Callable[[], T]) -> T:
    with hub_errors(what):
        return fn()


def list_repo_files(repo_id: str, revision: str = DEFAULT_REVISION) -> list[str]:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub_endpoint())
    return call_hub(repo_id, lambda: api.list_repo_files(repo_id, revision=revision))


def resolve_files(ref: HfRef) -> list[str]:
    """The file(s) ``ref`` stands for: its filename (with all shards) or the files of its quant."""
    if ref.filename is not None:
        return shard_names(ref.filename)
    assert ref.quant is not None
    return pick_quant_files(list_repo_files(ref.repo_id, ref.revision), ref.quant, ref.repo_id)
