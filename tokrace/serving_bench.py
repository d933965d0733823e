"""``tokrace bench URL --concurrency 1,4,16``: the serving trade-off measured (batching raises throughput
and latency together).

For each concurrency level c, ``requests`` chat requests of ``n_gen`` greedy tokens run with at most c in
flight (threads sharing one ``OpenAIBackend``). Per level: aggregate generated tok/s (all tokens of the
level ÷ its wall time), per-request decode tok/s (median of each reply's generation tok/s), client TTFT
p50 and p99 (nearest rank; includes the network), and the number of failed requests. Bounded: no level
starts a request after ``time_limit_s``; requests still running then are cancelled (their connection
closed) and count as errors. Each level is one bench record (``test = "c{c}-tg{n}"``) in the speed log,
exported like every other bench row (``samples_ts``: each request's tok/s).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tokrace.backends.base import CancelToken, ChatMessage, GenerationParams
from tokrace.backends.meter import ReplyStats, SpeedMeter
from tokrace.backends.openai_backend import OpenAIBackend
from tokrace.speedlog.bench import BenchResult, compare
from tokrace.speedlog.record import ReplyRecord, utc_timestamp

SERVING_PROMPT = "Write a detailed, step-by-step explanation of how a refrigerator keeps food cold."


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * q // 100)))
    return ordered[int(rank) - 1]


@dataclass(slots=True)
class LevelResult:
    """One concurrency level: tok/s, s; ``errors`` counts failed or cut-off requests."""

    concurrency: int
    requests: int
    errors: int
    tokens: int
    wall_s: float
    aggregate_tok_s: float | None
    request_tok_s_p50: float | None
    ttft_p50_s: float | None
    ttft_p99_s: float | None
    first_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def run_level(backend: OpenAIBackend, concurrency: int, n_gen: int, requests: int,
              deadline: float) -> tuple[LevelResult, list[ReplyStats]]:
    """``requests`` requests, at most ``concurrency`` at once, none started after ``deadline``
    (``time.perf_counter`` seconds)."""
    cancel = CancelToken()
    params = GenerationParams(max_tokens=n_gen, temperature=0.0, repeat_penalty=1.0)
    messages = [ChatMessage("user", SERVING_PROMPT)]
    lock = threading.Lock()
    stats: list[ReplyStats] = []

    def one(_: int) -> None:
        if time.perf_counter() > deadline:
            return
        meter = SpeedMeter()
        for event in backend.stream_chat(messages, params, cancel):
            meter.observe(event)
            if time.perf_counter() > deadline:
                cancel.cancel()
        with lock:
            stats.append(meter.stats)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="tokrace-serving") as pool:
        list(pool.map(one, range(requests)))
    wall = time.perf_counter() - t0
    ok = [s for s in stats if s.stop_reason in ("stop", "length", "context")]
    failed = [s for s in stats if s not in ok]
    tokens = sum(s.completion_tokens for s in ok)
    ttfts = [s.ttft_s for s in ok if s.ttft_s is not None]
    rates = [s.gen_tok_s for s in ok if s.gen_tok_s is not None]
    first_error = next((s.error or "cancelled at the time limit" for s in failed), None)
    return LevelResult(concurrency, len(stats), len(failed) + (requests - len(stats)), tokens, wall,
                       tokens / wall if wall > 0 and tokens else None, percentile(rates, 50),
                       percentile(ttfts, 50), percentile(ttfts, 99), first_error), ok


def level_record(backend: OpenAIBackend, level: LevelResult, replies: Sequence[ReplyStats], n_gen: int,
                 session_id: str) -> ReplyRecord:
    """The speed-log row of one level (kind ``bench``, backend ``remote``)."""
    model = backend.model
    return ReplyRecord(
        record_id=secrets.token_hex(8), time=utc_timestamp(), session_id=session_id, kind="bench",
        test=f"c{level.concurrency}-tg{n_gen}", model=model.name, model_filename=backend.server_model,
        model_path=model.path, model_type=backend.server_model, architecture="?", quantization="?",
        template=model.template, backend="remote", n_gen=n_gen, ttft_s=level.ttft_p50_s,
        gen_tok_s=level.aggregate_tok_s, total_s=level.wall_s, stop_reason="length",
        error=level.first_error, notice=f"{level.errors} of {level.requests} requests failed"
        if level.errors else None,
        samples_ts=[s.gen_tok_s for s in replies if s.gen_tok_s is not None],
        engine=backend.engine, endpoint=backend.endpoint.address, server_model=backend.server_model,
        token_count_source=replies[0].token_count_source if replies else None,
    )


def bench_serving(
    backend: OpenAIBackend,
    levels: Sequence[int],
    n_gen: int,
    *,
    requests: int | None = None,
    time_limit_s: float = 300.0,
    session_id: str,
    log: Any = None,
    history: Sequence[ReplyRecord] = (),
    progress: Callable[[str], None] | None = None,
) -> list[tuple[LevelResult, BenchResult]]:
    """Run every level on the loaded ``backend``; ``requests`` per level defaults to 2 × c (at least 4).
    Each level's record is appended to ``log`` (a ``SpeedLog``) as soon as it finishes."""
    deadline = time.perf_counter() + time_limit_s
    out = []
    for c in levels:
        n = requests or max(4, 2 * c)
        level, replies = run_level(backend, c, n_gen, n, deadline)
        record = level_record(backend, level, replies, n_gen, session_id)
        if log is not None:
            log.append(record)
        out.append((level, compare(record, history)))
        if progress is not None:
            agg = f"{level.aggregate_tok_s:.1f}" if level.aggregate_tok_s else "–"
            progress(f"concurrency {c}: {agg} tok/s aggregate, {level.errors} errors")
    return out


def markdown(levels: Sequence[LevelResult], where: str) -> str:
    """A table of the levels: concurrency | requests | errors | aggregate tok/s | per-request | TTFT."""

    def f(v: float | None, fmt: str) -> str:
        return format(v, fmt) if v is not None else "–"

    lines = [f"serving bench of {where} (TTFT measured on this client, network included)", "",
             "| concurrency | requests | errors | aggregate tok/s | per-request tok/s p50 | TTFT p50"
             " | TTFT p99 |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in levels:
        lines.append(f"| {r.concurrency} | {r.requests} | {r.errors} | {f(r.aggregate_tok_s, '.1f')} |"
                     f" {f(r.request_tok_s_p50, '.1f')} | {f(r.ttft_p50_s, '.3f')} s"
                     f" | {f(r.ttft_p99_s, '.3f')} s |")
    return "\n".join(lines) + "\n"
