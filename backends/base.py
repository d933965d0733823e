"""The Backend protocol every inference engine implements (llama.cpp in-process today; OpenAI-compatible
servers such as llama-server or vLLM later), with capability flags the UI reads instead of type checks.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal, TypeAlias

from backends.events import StreamEvent

Role: TypeAlias = Literal["system", "user", "assistant"]
SplitMode: TypeAlias = Literal["none", "layer", "row"]


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
    """How to load a model; GPU fields are ignored by CPU-only builds (the backend says so)."""

    path: str
    n_ctx: int = 4096
    n_threads: int | None = None
    n_batch: int = 512
    n_gpu_layers: int = -1
    split_mode: SplitMode = "layer"
    tensor_split: list[float] | None = None
    main_gpu: int = 0
    chat_template: str | None = None
    """A Jinja chat template to use instead of the file's (catalog override)."""
    name: str | None = None
    """Display name; defaults to the file's ``general.name`` or file name."""


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """What the UI shows about a loaded model (header, log)."""

    name: str
    path: str
    architecture: str
    quantization: str
    size_bytes: int
    n_params: int | None
    n_layers: int | None
    n_ctx_train: int | None
    n_ctx: int
    n_threads: int
    template: str
    """Which chat formatting is used, in words (shown in the UI)."""
    gpu_offload: bool
    """Whether this build can offload to a GPU at all (``llama_supports_gpu_offload``)."""

    @property
    def size_label(self) -> str:
        from model_registry.units import format_bytes

        return format_bytes(self.size_bytes)


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
    supports_draft: ClassVar[bool] = False
    """Can verify a draft model's proposals (speculative decoding)."""
    supports_gpu_split: ClassVar[bool] = False
    """Honours ``n_gpu_layers`` / ``tensor_split`` / ``split_mode`` (when the build has a GPU)."""
    supports_prompt_abort: ClassVar[bool] = False
    """Can stop in the middle of a prompt evaluation, not only between tokens."""
    reports_token_ids: ClassVar[bool] = False
    """Emits real token ids (a remote API may only give text chunks)."""

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

    def reset(self) -> None:  # noqa: B027 - optional hook
        """Forget cached conversation state (new chat)."""

    @abstractmethod
    def unload(self) -> None: ...
