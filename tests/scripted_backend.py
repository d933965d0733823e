"""A Backend test double that replays a fixed reply with fixed timestamps (for SVG snapshots, where
real timings would change every run) and a device sampler that always reports the same snapshot."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from tokrace.backends.base import (
    Backend,
    CancelToken,
    Capabilities,
    ChatMessage,
    GenerationParams,
    LoadedModel,
)
from tokrace.backends.device_sampler import DeviceSnapshot
from tokrace.backends.events import (
    GenerationFinished,
    PromptProcessed,
    RequestStarted,
    StreamEvent,
    TokenGenerated,
)

SCRIPTED_MODEL = LoadedModel(
    name="smollm2-135m-instruct:q4_1", path="/models/SmolLM2-135M-Instruct.Q4_1.gguf",
    architecture="llama", quantization="Q4_1", size_bytes=98_362_432, n_params=134_515_008,
    n_layers=30, n_ctx_train=8192, n_ctx=4096, n_threads=2, template="chat template from the GGUF",
    gpu_offload=False,
)


class ScriptedBackend(Backend):
    name = "scripted"

    def __init__(self, pieces: Sequence[str], *, token_interval_s: float = 0.008, ttft_s: float = 0.12,
                 prompt_tokens: int = 31, real_delay: float = 0.0, notice: str | None = None) -> None:
        self.pieces = list(pieces)
        self.token_interval_s = token_interval_s
        self.ttft_s = ttft_s
        self.prompt_tokens = prompt_tokens
        self.real_delay = real_delay
        self.notice = notice
        self.requests: list[list[ChatMessage]] = []

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities()

    def load(self) -> LoadedModel:
        return SCRIPTED_MODEL

    @property
    def model(self) -> LoadedModel:
        return SCRIPTED_MODEL

    def stream_chat(self, messages: Sequence[ChatMessage], params: GenerationParams,
                    cancel: CancelToken | None = None) -> Iterator[StreamEvent]:
        self.requests.append(list(messages))
        t0 = 1000.0
        yield RequestStarted(t0, SCRIPTED_MODEL.name, self.prompt_tokens, 0, SCRIPTED_MODEL.template)
        yield PromptProcessed(t0 + self.ttft_s * 0.9, self.prompt_tokens, self.ttft_s * 0.9)
        n = 0
        reason = "stop"
        for i, piece in enumerate(self.pieces[: params.max_tokens]):
            if cancel is not None and cancel.cancelled:
                reason = "cancelled"
                break
            if self.real_delay:
                time.sleep(self.real_delay)
            yield TokenGenerated(i, 1000 + i, piece, t0 + self.ttft_s + i * self.token_interval_s)
            n += 1
        t_end = t0 + self.ttft_s + max(n - 1, 0) * self.token_interval_s + 0.001
        yield GenerationFinished(t_end, reason, "".join(self.pieces[:n]), n, notice=self.notice)

    def unload(self) -> None:
        pass


class FixedSampler:
    """Stands in for DeviceSampler: no thread, always the same figures."""

    def __init__(self) -> None:
        self.snapshot = DeviceSnapshot(t=0.0, process_cpu_percent=187.0, process_rss_bytes=212 << 20,
                                       ram_used_bytes=3 << 30, ram_total_bytes=24 << 30,
                                       status="CPU only", cpu_count=2)

    def start(self) -> FixedSampler:
        return self

    def stop(self) -> None:
        pass

    def latest(self) -> DeviceSnapshot:
        return self.snapshot

    def mark_load_start(self) -> None:
        pass
