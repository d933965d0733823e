"""The Backend protocol every inference engine implements (llama.cpp in-process today; OpenAI-compatible
servers such as llama-server or vLLM later), with its capabilities as a value callers read
(``backend.capabilities``) instead of type checks or ``getattr``.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeAlias

from tokrace.backends.events import DraftInfo, StreamEvent

if TYPE_CHECKING:
    from tokrace.backends.meter import ReplyStats

Role: TypeAlias = Literal["system", "user", "assistant"]
SplitMode: TypeAlias = Literal["none", "layer", "row"]
FlashAttn: TypeAlias = Literal["auto", "on", "off"]
FLASH_ATTN_CHOICES: tuple[FlashAttn, ...] = ("auto", "on", "off")
CacheType: TypeAlias = Literal["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"]
CACHE_TYPES: tuple[CacheType, ...] = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
"""KV cache data types llama.cpp accepts for ``type_k``/``type_v`` (its ``-ctk``/``-ctv``, llama-bench's
``type_k``/``type_v``; ``common/arg.cpp``'s ``kv_cache_types``). Default ``f16``. A quantized V cache
needs flash attention."""
DEFAULT_N_BATCH = 2048
"""llama.cpp's default logical batch (tokens per ``llama_decode`` call; llama-bench, llama-server)."""
DEFAULT_N_UBATCH = 512
"""llama.cpp's default physical batch (tokens per graph evaluation)."""
MAX_DRAFT_K = 32
"""Most tokens tokrace drafts per verification step (``draft_k``; its verification batch holds k + 1).
llama.cpp sets no upper bound on ``--draft-max`` (default 16; llama-server only clamps it at 0), so
this is tokrace's own: twice llama.cpp's default, and well past where wasted drafts stop paying
(``bench/speculative.py``)."""


def default_threads() -> int:
    """llama.cpp's default thread count (``cpu_get_num_math``): one thread per physical core.

    Linux: the distinct ``thread_siblings`` sets of the CPUs this process may run on (hyper-threads of
    one core count once); elsewhere, or when sysfs says nothing: the logical CPUs, halved from 4 up
    (llama.cpp's own fallback). Always ≥ 1.
    """
    import os
    from pathlib import Path

    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = list(range(os.cpu_count() or 1))
    cores: set[str] = set()
    for cpu in cpus:
        try:
            cores.add(Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings").read_text().strip())
        except OSError:
            cores.clear()
            break
    if cores:
        return len(cores)
    n = len(cpus) or 1
    return n // 2 if n >= 4 else n


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(slots=True)
class GenerationParams:
    """Sampling settings; defaults follow llama.cpp's."""

    max_tokens: int = 512
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)


@dataclass(slots=True)
class LoadConfig:
    """How to load a model; GPU fields are ignored by CPU-only builds (the backend says so).

    The defaults are llama.cpp's own (llama-bench, llama-server): ``n_threads`` ``None`` = one per
    physical core (``default_threads``), ``n_batch`` 2048 and ``n_ubatch`` 512 tokens, flash attention
    ``auto`` (llama.cpp turns it on where every layer's device supports it; the loaded model's
    ``LoadedModel.flash_attn`` says what was used).
    """

    path: str
    n_ctx: int = 4096
    n_threads: int | None = None
    n_batch: int = DEFAULT_N_BATCH
    n_ubatch: int = DEFAULT_N_UBATCH
    flash_attn: FlashAttn = "auto"
    n_gpu_layers: int = -1
    split_mode: SplitMode = "layer"
    tensor_split: list[float] | None = None
    main_gpu: int = 0
    type_k: CacheType = "f16"
    """KV cache data type of K (llama.cpp's ``-ctk``; default f16)."""
    type_v: CacheType = "f16"
    """KV cache data type of V (llama.cpp's ``-ctv``; a quantized V needs flash attention)."""
    repack: bool = True
    """llama.cpp's CPU weight repacking (its default; ``--no-repack`` turns it off). Repacked Q4_0/Q4_K
    weights on AVX2 compute a token alone and in a batch with different kernels, so a near-tie in a
    draft's verification batch can fall the other way than in plain decoding; without repacking the
    two agree bit for bit (greedy output then never depends on the draft), at a speed cost."""
    chat_template: str | None = None
    """A Jinja chat template to use instead of the file's (catalog override)."""
    name: str | None = None
    """Display name; defaults to the file's ``general.name`` or file name."""


UNKNOWN = "–"
"""How every interface shows a figure that is not known (never as 0)."""


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """What the UI shows about a loaded model (header, log)."""

    name: str
    path: str
    architecture: str
    quantization: str
    size_bytes: int | None
    """The model file's size; ``None`` when unknown (a remote server does not say)."""
    n_params: int | None
    n_layers: int | None
    n_ctx_train: int | None
    n_ctx: int
    n_threads: int | None
    """CPU threads llama.cpp uses; ``None`` for a remote engine (its own, not reported)."""
    template: str
    """Which chat formatting is used, in words (shown in the UI)."""
    gpu_offload: bool
    """Whether this build can offload to a GPU at all (``llama_supports_gpu_offload``)."""
    flash_attn: str | None = None
    """Flash attention as llama.cpp used it: ``"on"`` or ``"off"`` (``"auto"`` resolved), ``None`` when
    the engine does not say (a remote server)."""
    n_batch: int = 0
    """Logical batch in tokens as loaded (0: unknown, a remote server)."""
    n_ubatch: int = 0
    """Physical batch in tokens as loaded (0: unknown)."""
    remote: bool = False
    """Served by a remote engine: what it does not report (file, size, threads) is unknown here."""
    type_k: str | None = None
    """KV cache data type of K as loaded (llama-bench's ``type_k``; ``None``: unknown, a remote server)."""
    type_v: str | None = None
    """KV cache data type of V as loaded (``None``: unknown)."""

    @property
    def size_label(self) -> str:
        from tokrace.model_registry.units import format_bytes

        return format_bytes(self.size_bytes) if self.size_bytes is not None else UNKNOWN

    def facts_line(self) -> str:
        """The header's ``Q4_1 · 93.8 MiB · 135M params · llama``; a remote model's unreported facts
        are one "–" with the reason, never a 0: ``– (quantization, size and parameters: the server does
        not report them)``."""
        from tokrace.model_registry.units import format_params

        known = [x for x in (self.quantization, self.architecture) if x and x != "?"]
        if self.remote and self.size_bytes is None and not self.n_params and not known:
            return f"{UNKNOWN} (quantization, size and parameters: the server does not report them)"
        quant = self.quantization if self.quantization and self.quantization != "?" else UNKNOWN
        params = format_params(self.n_params) if self.n_params else UNKNOWN
        arch = self.architecture if self.architecture and self.architecture != "?" else UNKNOWN
        return f"{quant} · {self.size_label} · {params} params · {arch}"

    def threads_label(self) -> str:
        """``2 threads``, or for a remote engine the fact that its threads are its own."""
        if self.n_threads is None:
            return "threads: the server's own" if self.remote else f"threads {UNKNOWN}"
        return "1 thread" if self.n_threads == 1 else f"{self.n_threads} threads"


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do and report; every field is read by a caller (the UI, the log, race, bench;
    ``tests/test_capabilities.py`` checks). How a reply's tokens were counted and the server's own
    timings are facts of each reply (``ReplyStats.token_count_source``, ``GenerationFinished.server``);
    whether the build can offload is ``LoadedModel.gpu_offload``; an engine without raw prompts raises
    from ``stream_prompt``."""

    draft: DraftInfo | None = None
    """Speculative decoding in use (``None``: plain decoding)."""


class CancelToken:
    """Set from any thread; the generating thread checks it between tokens and in llama.cpp's abort
    callback (so a long prompt evaluation stops too)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


class Backend(ABC):
    """One loaded model. ``stream_chat`` runs on a worker thread; ``cancel`` may come from any thread.

    One instance serves one generation at a time; two instances may generate concurrently.
    """

    name: ClassVar[str]

    @property
    @abstractmethod
    def capabilities(self) -> Capabilities:
        """What this backend does (draft, exact token ids, engine timings...)."""

    @property
    def plain(self) -> Backend:
        """The same loaded model without speculative decoding (itself when there is no draft): an
        A/B rerun or ``bench --draft`` times it against the drafted backend."""
        return self

    @abstractmethod
    def load(self) -> LoadedModel: ...

    @property
    @abstractmethod
    def model(self) -> LoadedModel: ...

    @abstractmethod
    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams,
        cancel: CancelToken | None = None,
    ) -> Iterator[StreamEvent]:
        """Yield the events of one reply; always ends with ``GenerationFinished`` (even on error)."""

    def stream_prompt(
        self,
        prompt: str,
        params: GenerationParams,
        cancel: CancelToken | None = None,
        *,
        stops: Sequence[str] = (),
    ) -> Iterator[StreamEvent]:
        """Generate from raw prompt text, no chat template (bench, base models); an engine that takes chat
        messages only (a remote server) raises ``TokraceError`` (kind ``usage``)."""
        from tokrace.model_registry.errors import TokraceError

        raise TokraceError(f"{self.name} takes chat messages only, not a raw prompt", kind="usage")

    def draft_summary(self, stats: ReplyStats) -> dict[str, Any] | None:
        """The ``draft`` object of ``--json`` for one reply (``None`` without a draft)."""
        return None

    def reset(self) -> None:  # noqa: B027 - optional hook
        """Forget cached conversation state (new chat)."""

    @abstractmethod
    def unload(self) -> None: ...
