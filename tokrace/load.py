"""What to load and where, before anything is loaded: the first half of the application layer.

    LoadSpec ──resolve()──▶ ResolvedSpec | RemoteSpec ──place()──▶ PreparedModel | RemotePrepared
    (what the user         (the registry found the files     (placement planned; ``build()`` gives
     asked for)             and read the header; a URL)        the backend, not loaded)

A local file and a server URL answer the same calls (``place``, ``machine``, ``server``,
``need_bytes``, ``load_line``, ``shareable``, ``build``), so no front end tells them apart by type.
``tokrace.session`` loads what this prepares and runs its replies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from tokrace.backends.base import (
    DEFAULT_N_BATCH,
    DEFAULT_N_UBATCH,
    Backend,
    CacheType,
    FlashAttn,
    LoadConfig,
)
from tokrace.backends.draft_setup import build_drafted_backend, draft_load_config
from tokrace.backends.placement import PlacementRequest, place
from tokrace.backends.remote_endpoint import Endpoint, is_remote_ref, parse_endpoint
from tokrace.backends.split_plan import SplitPlan
from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.gguf_meta import GGUFInfo, read_gguf_info
from tokrace.model_registry.resolve import ResolvedModel, resolve_model
from tokrace.model_registry.transfer import ProgressFn

if TYPE_CHECKING:
    from tokrace.backends.device_telemetry import GpuSample
    from tokrace.settings import Settings

@dataclass(frozen=True, slots=True)
class DraftSpec:
    """Speculative decoding as asked for: a draft model (``ref``: catalog id, path, ``hf:``), prompt
    lookup, or neither; ``k`` tokens per step (``None``: the measured default, 4)."""

    ref: str | None = None
    lookup: bool = False
    k: int | None = None
    adaptive: bool = False
    p_min: float | None = None
    """A draft model's confidence floor (llama.cpp's ``--draft-p-min``; ``None``: 0, always k)."""

    @property
    def active(self) -> bool:
        return self.ref is not None or self.lookup

    def check(self) -> None:
        """Raises ``TokraceError`` (kind ``usage``) for settings that contradict each other."""
        if self.ref is not None and self.lookup:
            raise TokraceError("{setting:draft} and {setting:lookup} exclude each other: pick a draft"
                               " model or prompt lookup", kind="usage")
        if not self.active and (self.k is not None or self.adaptive or self.p_min is not None):
            raise TokraceError("{setting:draft_k} and {setting:adaptive_k} need {setting:draft} or"
                               " {setting:lookup}", kind="usage")


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """What to load and how, as the user asked (``None`` everywhere = tokrace's defaults and plan)."""

    model: str | None = None
    """A catalog id, ``.gguf`` path, ``hf:`` ref or another tool's model name, or a server URL
    ``http(s)://HOST:PORT/v1[#MODEL]`` (a remote engine); ``None``: the default."""
    n_threads: int | None = None
    request: PlacementRequest = field(default_factory=PlacementRequest)
    draft: DraftSpec = field(default_factory=DraftSpec)
    flash_attn: FlashAttn = "auto"
    """llama.cpp's flash attention: ``auto`` (its default), ``on``, ``off``; a draft gets the same."""
    n_batch: int | None = None
    """Logical batch in tokens (``None``: llama.cpp's default, 2048)."""
    n_ubatch: int | None = None
    """Physical batch in tokens (``None``: llama.cpp's default, 512)."""
    api_key: str | None = field(default=None, repr=False)
    """A remote engine's API key (settings.toml's ``api_key``; ``TOKRACE_API_KEY`` / ``OPENAI_API_KEY``
    win when set, see ``OpenAIBackend``)."""
    request_timeout_s: float | None = None
    """A remote engine's longest silence tolerated mid-reply (``None``: the backend's default)."""
    type_k: CacheType = "f16"
    """KV cache data type of K (llama.cpp's ``-ctk``)."""
    type_v: CacheType = "f16"
    """KV cache data type of V (llama.cpp's ``-ctv``)."""
    repack: bool = True
    """llama.cpp's CPU weight repacking (``--no-repack`` clears it)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> LoadSpec:
        """The load part of the user's settings (file and flags merged)."""
        return cls(model=settings.model, n_threads=settings.n_threads,
                   flash_attn=settings.flash_attn, n_batch=settings.n_batch, n_ubatch=settings.n_ubatch,
                   api_key=settings.api_key, request_timeout_s=settings.request_timeout_s,
                   type_k=settings.type_k, type_v=settings.type_v, repack=settings.repack,
                   request=settings.placement_request(),
                   draft=DraftSpec(ref=settings.draft, lookup=settings.lookup, k=settings.draft_k,
                                   adaptive=settings.adaptive_k, p_min=settings.draft_p_min))


@dataclass(slots=True)
class PreparedModel:
    """A model resolved to files and placed on the devices, not loaded yet (no weights read)."""

    spec: LoadSpec
    resolved: ResolvedModel
    info: GGUFInfo
    config: LoadConfig
    """The settings llama.cpp will get (planned context and GPU placement)."""
    plan: SplitPlan
    draft_config: LoadConfig | None = None

    @property
    def model_id(self) -> str:
        return self.resolved.model_id

    @property
    def load_line(self) -> str:
        """What the status line says while it loads."""
        return f"loading {self.resolved.path.name}…"

    @property
    def ref(self) -> str:
        """A reference that loads this model again (a saved chat keeps it): its catalog id, ``hf:`` ref
        or other tool's model name, or its absolute path (a plain path's model id is only its name)."""
        r = self.resolved
        return r.model_id if r.model_id != r.path.name else str(r.path)

    @property
    def shareable(self) -> bool:
        """Whether a race lane may race on the chat's loaded backend when the load settings match: only
        without a draft (a drafted lane decodes differently)."""
        return self.draft_config is None

    def build(self) -> Backend:
        """The backend (with its draft, if any), not loaded: ``load()`` reads the weights."""
        d = self.spec.draft
        return build_drafted_backend(self.config, self.draft_config, lookup=d.lookup, k=d.k,
                                     adaptive=d.adaptive, p_min=d.p_min or 0.0)


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})


@dataclass(frozen=True, slots=True)
class RemoteSpec:
    """A ``LoadSpec`` whose model is a server URL: nothing on disk, nothing to place. ``key`` is the
    settings file's (``TOKRACE_API_KEY`` / ``OPENAI_API_KEY`` win when set); ``timeout_s`` the longest
    silence tolerated mid-reply."""

    spec: LoadSpec
    endpoint: Endpoint
    key: str | None = field(default=None, repr=False)
    timeout_s: float | None = None
    draft: ResolvedModel | None = None
    """Always ``None``: a server drafts on its own side (as ``ResolvedSpec.draft``, for callers of both)."""

    @property
    def model_id(self) -> str:
        return self.endpoint.ref()

    @property
    def machine(self) -> str:
        """Which machine does the work: ``local`` for a loopback server (it shares this machine's
        cores), else the server's host."""
        return "local" if self.endpoint.host in LOOPBACK_HOSTS else self.endpoint.host

    @property
    def server(self) -> str | None:
        """``host:port`` of the server that holds the model."""
        return self.endpoint.address

    def need_bytes(self, n_ctx: int | None = None) -> int | None:
        """``None``: the server holds the model, this machine needs no memory for it."""
        return None

    def place(self, gpus: Sequence[GpuSample], spec: LoadSpec, min_ctx: int | None = None) -> RemotePrepared:
        """Nothing to place (the server holds the model): the URL is the only load setting."""
        return RemotePrepared(spec, self, LoadConfig(path=self.endpoint.ref(), name=self.model_id,
                                                     n_threads=0, n_gpu_layers=0, n_batch=0, n_ubatch=0))


@dataclass(slots=True)
class RemotePrepared:
    """A remote engine ready to connect: ``build()`` gives its backend; no plan, no header, no draft
    (a server drafts on its own side). ``config.path`` is the URL, the only load setting that applies."""

    spec: LoadSpec
    remote: RemoteSpec
    config: LoadConfig
    plan: SplitPlan | None = None
    info: GGUFInfo | None = None
    draft_config: LoadConfig | None = None

    @property
    def model_id(self) -> str:
        return self.remote.model_id

    @property
    def load_line(self) -> str:
        """What the status line says while it loads."""
        return f"connecting to {self.remote.endpoint.address}…"

    @property
    def ref(self) -> str:
        """A reference that connects to this model again: the server URL (``…/v1#MODEL``)."""
        return self.model_id

    @property
    def shareable(self) -> bool:
        """Whether a race lane may reuse the chat's backend for it: never for a server (a client is
        cheap, and the server's own settings are not ours to compare)."""
        return False

    def build(self) -> Backend:
        """The remote backend, not connected: ``load()`` probes the server."""
        from tokrace.backends.openai_backend import OpenAIBackend

        r = self.remote
        return OpenAIBackend(r.endpoint, key=r.key, timeout_s=r.timeout_s)


def resolve_remote(spec: LoadSpec) -> RemoteSpec:
    """A server URL as a ``RemoteSpec``, with the key and timeout of the settings file. Raises
    ``TokraceError`` for a malformed URL or a draft asked for a server."""
    assert spec.model is not None
    if spec.draft.active:
        raise TokraceError("a remote engine drafts on the server (e.g. llama-server --model-draft);"
                           " {setting:draft} and {setting:lookup} apply to local models", kind="usage")
    return RemoteSpec(spec, parse_endpoint(spec.model), spec.api_key, spec.request_timeout_s)


@dataclass(frozen=True, slots=True)
class ResolvedSpec:
    """A ``LoadSpec``'s model (and draft model) found on disk and its header read; nothing placed."""

    spec: LoadSpec
    resolved: ResolvedModel
    info: GGUFInfo
    draft: ResolvedModel | None = None

    @property
    def model_id(self) -> str:
        return self.resolved.model_id

    @property
    def machine(self) -> str:
        """Which machine does the work: this one."""
        return "local"

    @property
    def server(self) -> str | None:
        """No server: the model runs in this process."""
        return None

    def need_bytes(self, n_ctx: int | None = None) -> int:
        """Bytes of weights + KV cache + compute buffer at ``n_ctx`` tokens (default: tokrace's default
        context, 4096, or the trained context when smaller), from the header."""
        from tokrace.model_registry.memory_plan import plan_memory

        n_ctx = n_ctx or min(4096, self.info.n_ctx_train or 4096)
        return plan_memory(self.info, n_ctx).total_bytes

    def place(self, gpus: Sequence[GpuSample], spec: LoadSpec, min_ctx: int | None = None) -> PreparedModel:
        """Plan the load on ``gpus`` (see ``place_resolved``)."""
        request = spec.request
        if min_ctx is not None and request.n_ctx is None:
            request = replace(request, n_ctx=min_ctx)
        resolved = self.resolved
        config = LoadConfig(path=str(resolved.path), name=resolved.model_id,
                            chat_template=resolved.chat_template, n_threads=spec.n_threads,
                            flash_attn=spec.flash_attn, n_batch=spec.n_batch or DEFAULT_N_BATCH,
                            n_ubatch=spec.n_ubatch or DEFAULT_N_UBATCH, type_k=spec.type_k,
                            type_v=spec.type_v, repack=spec.repack)
        config, plan = place(config, gpus, request)
        draft_config = None
        if self.draft is not None:
            draft_config = draft_load_config(config, str(self.draft.path), self.draft.model_id)
        return PreparedModel(spec, resolved, self.info, config, plan, draft_config)




def resolve(spec: LoadSpec, *, progress: ProgressFn | None = None) -> ResolvedSpec | RemoteSpec:
    """Find (fetching when needed, with ``progress(done, total, what)``) the model and the draft
    model, read the model's header and check the draft's vocabulary against it (headers only). A server
    URL becomes a ``RemoteSpec`` (nothing fetched; the server is contacted when the backend loads).

    Raises ``TokraceError``: a model that cannot be found or read, a draft with another vocabulary,
    contradicting draft settings.
    """
    from tokrace.backends.draft_compat import check_draft_path

    spec.draft.check()
    if is_remote_ref(spec.model):
        return resolve_remote(spec)
    resolved = resolve_model(spec.model, progress=progress)
    info = read_gguf_info(resolved.path)
    draft = None
    if spec.draft.ref is not None:
        draft = resolve_model(spec.draft.ref, progress=progress)
        check_draft_path(resolved.path, draft.path)
    return ResolvedSpec(spec, resolved, info, draft)


def place_resolved(found: ResolvedSpec | RemoteSpec, gpus: Sequence[GpuSample], *,
                   spec: LoadSpec | None = None,
                   min_ctx: int | None = None) -> PreparedModel | RemotePrepared:
    """Plan where ``found`` goes on ``gpus`` with ``spec``'s threads and placement request (default:
    the spec it was resolved with). ``min_ctx`` raises the planned context to at least that many
    tokens when no context was asked for (bench: its longest test). Raises ``TokraceError`` (kind
    ``placement``) for an impossible request; ``found`` is not changed. A ``RemoteSpec`` is not
    placed (the server holds the model): it becomes a ``RemotePrepared``."""
    return found.place(gpus, spec or found.spec, min_ctx)


def prepare(
    spec: LoadSpec,
    gpus: Sequence[GpuSample],
    *,
    progress: ProgressFn | None = None,
    min_ctx: int | None = None,
) -> PreparedModel | RemotePrepared:
    """``resolve`` then ``place_resolved``: everything before loading. Nothing is loaded when it
    raises ``TokraceError``."""
    return place_resolved(resolve(spec, progress=progress), gpus, min_ctx=min_ctx)
