"""The reply record: one line of the speed log, versioned.

A record is everything needed to put one measured reply (a chat turn, a race lane's reply, or one bench
test with its repetitions) in a table next to other people's figures: what ran (model file, its sha256,
quantization, parameters), how (backend settings, hardware, llama.cpp build) and how fast (the figures
of ``backends.meter.ReplyStats``, optionally every token's time).

``SCHEMA_VERSION`` goes up when a field changes meaning or is removed; adding an optional field does not
need a bump (readers ignore keys they do not know and default the ones that are missing).
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeAlias

from tokrace.backends.base import GenerationParams, LoadConfig, LoadedModel
from tokrace.backends.meter import ReplyStats
from tokrace.model_registry.errors import render
from tokrace.speedlog.hardware import Hardware, describe_hardware
from tokrace.speedlog.hashing import file_sha256

SCHEMA_VERSION = 1
Kind: TypeAlias = Literal["chat", "race", "bench"]
KINDS: tuple[str, ...] = ("chat", "race", "bench")


@dataclass(slots=True)
class ReplyRecord:
    """One finished reply (or one bench test). Field names follow llama-bench where they mean the same."""

    schema: int = SCHEMA_VERSION
    record_id: str = ""
    time: str = ""
    """When the reply finished, ISO 8601 in UTC (``2025-01-31T12:00:00.000000Z``)."""
    session_id: str = ""
    kind: str = "chat"
    lane: str | None = None
    """Race lane label (``A``, ``B``…) for ``kind == "race"``."""
    test: str | None = None
    """Bench test name (``pp512``, ``tg128``) for ``kind == "bench"``."""
    # What ran.
    model: str = ""
    """Display name (``general.name`` or file name)."""
    model_id: str | None = None
    """Catalog id when the model came from the catalog."""
    model_filename: str = ""
    model_path: str = ""
    model_sha256: str | None = None
    model_type: str = ""
    """llama-bench's description: ``llama 135M Q4_1``."""
    architecture: str = ""
    quantization: str = ""
    model_size: int | None = 0
    """The model file's bytes; ``None``: unknown (a remote server)."""
    model_n_params: int | None = None
    template: str = ""
    # How it ran.
    backend: str = "llama.cpp"
    n_ctx: int = 0
    n_batch: int = 0
    """llama.cpp's logical batch in tokens as loaded (0: unknown)."""
    n_ubatch: int = 0
    """llama.cpp's physical batch in tokens as loaded (0: unknown, older records)."""
    flash_attn: str | None = None
    """Flash attention as llama.cpp used it, ``"on"`` or ``"off"`` (``"auto"`` resolved); ``None``:
    unknown (a remote engine, older records)."""
    type_k: str | None = None
    """KV cache data type of K (llama-bench's ``type_k``: ``f16``, ``q8_0``…); ``None``: unknown."""
    type_v: str | None = None
    """KV cache data type of V (llama-bench's ``type_v``); ``None``: unknown."""
    n_threads: int | None = 0
    """``None``: a remote engine's own (not reported)."""
    n_gpu_layers: int = 0
    split_mode: str = "layer"
    tensor_split: list[float] | None = None
    main_gpu: int = 0
    gpu_offload: bool = False
    """Whether the llama.cpp build can offload at all; a CPU build ignores the GPU fields."""
    draft_model: str | None = None
    draft_k: int | None = None
    draft_p_min: float | None = None
    """The draft's confidence floor (llama.cpp's ``--draft-p-min``); ``None``: no draft or not recorded."""
    build_commit: str | None = None
    system_info: str = ""
    """llama.cpp's ``llama_print_system_info`` (which CPU features the build uses: AVX2, AVX512…)."""
    cpu_info: str = ""
    gpu_info: list[str] = field(default_factory=list)
    gpu_driver: str | None = None
    # How fast.
    prompt_tokens: int | None = 0
    """Tokens of the prompt in context; ``None``: unknown (a remote server that sent no usage)."""
    prompt_count_source: str | None = None
    """``engine``, ``usage`` or ``tokenizer`` (counted here: the server sent no usage); see
    ``backends.meter.ReplyStats.prompt_count_source``."""
    cached_prompt_tokens: int = 0
    n_prompt: int | None = 0
    """Prompt tokens evaluated (bench pp: the test size); ``None``: the engine did not say."""
    n_gen: int = 0
    """Tokens generated (bench tg: the test size)."""
    n_depth: int = 0
    """Bench: tokens in the cache before the timed test (llama-bench's ``n_depth``, ``-d``)."""
    ttft_s: float | None = None
    prompt_s: float | None = None
    prompt_tok_s: float | None = None
    gen_s: float | None = None
    gen_tok_s: float | None = None
    total_s: float | None = None
    stop_reason: str | None = None
    error: str | None = None
    notice: str | None = None
    drafted: int = 0
    accepted: int = 0
    draft_steps: int = 0
    acceptance_rate: float | None = None
    """Accepted ÷ drafted (llama.cpp's convention)."""
    peak_vram_bytes: int | None = None
    energy_j: float | None = None
    samples_ns: list[int] | None = None
    """Bench: each repetition's wall time."""
    samples_ts: list[float] | None = None
    """Bench: each repetition's tok/s (tokens ÷ time, llama-bench's ``samples_ts``)."""
    token_times_s: list[float] | None = None
    """Each generated token's time since submit (optional; plots)."""
    llama_perf: dict[str, Any] | None = None
    sampling: dict[str, Any] | None = None
    """The reply's sampling settings (``temperature``, ``top_k``, ``top_p``, ``min_p``,
    ``repeat_penalty``, ``seed``: ``None`` = random, ``max_tokens``); ``None``: not recorded (older
    records, bench)."""
    # Remote engines (``backend == "remote"``); ``None`` for in-process replies.
    engine: str | None = None
    """The serving engine as probed (``llama-server``, ``vLLM 0.6.3``…)."""
    endpoint: str | None = None
    """``host:port`` of the server (never a key)."""
    server_model: str | None = None
    """The model name the server reported."""
    token_count_source: str | None = None
    """``logprobs`` / ``usage`` (exact) or ``chunks`` (may undercount); ``None``: token ids."""
    server_prompt_tok_s: float | None = None
    server_gen_tok_s: float | None = None
    """The server's own prompt and decode speed (llama-server ``timings``), next to the client's."""

    @property
    def hardware_label(self) -> str:
        """What did the work, for tables: the GPUs when layers were offloaded, else the CPU."""
        if self.endpoint is not None:  # a remote engine: its hardware is not ours to see
            return f"{self.engine or 'server'} at {self.endpoint}"
        if self.gpu_info and self.gpu_offload and self.n_gpu_layers != 0:
            names = self.gpu_info
            if len(set(names)) == 1 and len(names) > 1:
                return f"{len(names)} × {names[0]}"
            return " + ".join(names)
        return f"{self.cpu_info or 'CPU'}, {self.n_threads} thread{'' if self.n_threads == 1 else 's'}"

    def rates(self) -> list[float]:
        """Generation tok/s samples: each bench tg repetition, or this reply's rate."""
        if self.kind == "bench":
            return list(self.samples_ts or []) if self.n_gen and not self.n_prompt else []
        return [self.gen_tok_s] if self.gen_tok_s is not None else []

    def prompt_rates(self) -> list[float]:
        if self.kind == "bench":
            return list(self.samples_ts or []) if self.n_prompt and not self.n_gen else []
        return [self.prompt_tok_s] if self.prompt_tok_s is not None else []

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReplyRecord:
        """Known keys only; unknown keys (a newer tokrace's optional fields) are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def new_session_id(now: datetime | None = None) -> str:
    """Sortable and unique enough across processes: ``20250131-120000-3f9a1c``."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def utc_timestamp(now: datetime | None = None) -> str:
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def model_type(architecture: str, n_params: int | None, quantization: str) -> str:
    """llama-bench's ``model_type`` shape: ``llama 135M Q4_1``."""
    from tokrace.model_registry.units import format_params

    return f"{architecture} {format_params(n_params)} {quantization}".strip()


def _model_fields(
    model: LoadedModel, config: LoadConfig, hardware: Hardware, sha256: str | None
) -> dict[str, Any]:
    path = Path(model.path)
    return {
        "model": model.name,
        "model_filename": path.name,
        "model_path": str(path),
        "model_sha256": sha256 if sha256 is not None else file_sha256(path),
        "model_type": model_type(model.architecture, model.n_params, model.quantization),
        "architecture": model.architecture,
        "quantization": model.quantization,
        "model_size": model.size_bytes,
        "model_n_params": model.n_params,
        "template": model.template,
        "n_ctx": model.n_ctx,
        "n_batch": model.n_batch or config.n_batch,
        "n_ubatch": model.n_ubatch or config.n_ubatch,
        "flash_attn": model.flash_attn,
        "type_k": model.type_k,
        "type_v": model.type_v,
        "n_threads": model.n_threads,
        "n_gpu_layers": config.n_gpu_layers,
        "split_mode": config.split_mode,
        "tensor_split": list(config.tensor_split) if config.tensor_split else None,
        "main_gpu": config.main_gpu,
        "gpu_offload": model.gpu_offload,
        "build_commit": hardware.build_commit,
        "system_info": hardware.system_info,
        "cpu_info": hardware.cpu_model,
        "gpu_info": list(hardware.gpu_names),
        "gpu_driver": hardware.gpu_driver,
    }


def sampling_fields(params: GenerationParams) -> dict[str, Any]:
    """The ``sampling`` object of a record: what decides which tokens a reply picks."""
    return {"temperature": params.temperature, "top_k": params.top_k, "top_p": params.top_p,
            "min_p": params.min_p, "repeat_penalty": params.repeat_penalty, "seed": params.seed,
            "max_tokens": params.max_tokens}


def make_record(
    stats: ReplyStats,
    model: LoadedModel,
    config: LoadConfig,
    session_id: str,
    kind: Kind,
    *,
    lane: str | None = None,
    model_id: str | None = None,
    peak_vram_bytes: int | None = None,
    energy_j: float | None = None,
    with_token_times: bool = True,
    hardware: Hardware | None = None,
    sha256: str | None = None,
    now: datetime | None = None,
    sampling: GenerationParams | None = None,
) -> ReplyRecord:
    """The record of one finished chat or race reply (``sampling``: the reply's sampling settings).

    What ran is taken from the reply itself where the reply knows it: its draft model and k come from
    ``stats`` (the request's ``RequestStarted.draft``), so an A/B rerun without the draft is recorded
    without one although the loaded backend has a draft.

    The model's sha256 comes from a cache keyed by path, size and mtime, so only the first reply with a
    given file pays for hashing it (call ``speedlog.hashing.prefetch(path)`` after loading to do that in
    the background).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown record kind {kind!r}")
    hardware = hardware or describe_hardware()
    record = ReplyRecord(
        record_id=secrets.token_hex(8),
        time=utc_timestamp(now),
        session_id=session_id,
        kind=kind,
        lane=lane,
        model_id=model_id,
        draft_model=stats.draft_model,
        draft_k=stats.draft_k,
        draft_p_min=stats.draft_p_min,
        **_model_fields(model, config, hardware, sha256),
        prompt_tokens=stats.prompt_tokens,
        prompt_count_source=stats.prompt_count_source,
        cached_prompt_tokens=stats.cached_prompt_tokens,
        n_prompt=stats.prompt_eval_tokens,
        n_gen=stats.completion_tokens,
        ttft_s=stats.ttft_s,
        prompt_s=stats.prompt_s,
        prompt_tok_s=stats.prompt_tok_s,
        gen_s=stats.gen_s,
        gen_tok_s=stats.gen_tok_s,
        total_s=stats.total_s,
        stop_reason=stats.stop_reason,
        error=render(stats.error) if stats.error else None,
        notice=render(stats.notice) if stats.notice else None,
        drafted=stats.drafted,
        accepted=stats.accepted,
        draft_steps=stats.draft_steps,
        acceptance_rate=stats.acceptance_rate,
        peak_vram_bytes=peak_vram_bytes,
        energy_j=energy_j,
        # Microseconds are far below timer noise here and keep a 512-token reply's line near 5 KB.
        token_times_s=[round(t, 6) for t in stats.token_times_s] if with_token_times else None,
        llama_perf=stats.llama_perf,
        sampling=sampling_fields(sampling) if sampling is not None else None,
    )
    if stats.endpoint is not None:
        _remote_fields(record, stats)
    return record


def _remote_fields(record: ReplyRecord, stats: ReplyStats) -> None:
    """Where a remote reply ran: no file, no local build; the engine, endpoint and its own figures."""
    record.backend = "remote"
    record.engine, record.endpoint, record.server_model = stats.engine, stats.endpoint, stats.server_model
    record.model_filename = stats.server_model or record.model_filename
    record.token_count_source = stats.token_count_source
    record.server_prompt_tok_s, record.server_gen_tok_s = stats.server_prompt_tok_s, stats.server_gen_tok_s
    record.build_commit, record.system_info, record.gpu_info, record.gpu_driver = None, "", [], None


def bench_test_name(n_prompt: int, n_gen: int, n_depth: int = 0) -> str:
    """A llama-bench test's name: ``pp512``, ``tg128``, ``pp512+tg128``, with `` @ d512`` at a depth."""
    test = f"pp{n_prompt}" if not n_gen else f"tg{n_gen}" if not n_prompt else f"pp{n_prompt}+tg{n_gen}"
    return test + (f" @ d{n_depth}" if n_depth else "")


def make_bench_record(
    model: LoadedModel,
    config: LoadConfig,
    session_id: str,
    *,
    n_prompt: int,
    n_gen: int,
    samples_ns: list[int],
    n_depth: int = 0,
    model_id: str | None = None,
    hardware: Hardware | None = None,
    sha256: str | None = None,
    now: datetime | None = None,
) -> ReplyRecord:
    """The record of one llama-bench-style test (``pp``: ``n_gen == 0``; ``tg``: ``n_prompt == 0``), after
    ``n_depth`` cached tokens; named as llama-bench names it (``tg128``, ``tg128 @ d512``)."""
    from tokrace.speedlog.stats import mean

    hardware = hardware or describe_hardware()
    n_tokens = n_prompt + n_gen
    samples_ts = [n_tokens * 1e9 / ns for ns in samples_ns]
    avg_s = mean([ns / 1e9 for ns in samples_ns]) if samples_ns else None
    avg_ts = mean(samples_ts) if samples_ts else None
    return ReplyRecord(
        record_id=secrets.token_hex(8),
        time=utc_timestamp(now),
        session_id=session_id,
        kind="bench",
        test=bench_test_name(n_prompt, n_gen, n_depth),
        model_id=model_id,
        **_model_fields(model, config, hardware, sha256),
        n_prompt=n_prompt,
        n_gen=n_gen,
        n_depth=n_depth,
        prompt_tokens=n_prompt,
        prompt_s=avg_s if n_prompt and not n_gen else None,
        prompt_tok_s=avg_ts if n_prompt and not n_gen else None,
        gen_s=avg_s if n_gen and not n_prompt else None,
        gen_tok_s=avg_ts if n_gen and not n_prompt else None,
        total_s=sum(samples_ns) / 1e9,
        stop_reason="length",
        samples_ns=list(samples_ns),
        samples_ts=samples_ts,
    )
