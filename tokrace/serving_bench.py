"""``tokrace bench URL --concurrency 1,4,16``: the serving trade-off measured (batching raises throughput
and latency together).

For each concurrency level c, ``requests`` chat requests of ``n_gen`` greedy tokens run with at most c in
flight (threads sharing one ``OpenAIBackend``). Per level, with vLLM's ``bench serve`` definitions
(``tokrace.serving_metrics``): completed and failed requests, request and output throughput, each
request's decode tok/s, TTFT, TPOT, ITL and E2E latency (mean, p50/p90/p99, each only from enough
samples), goodput against ``--goodput`` SLOs, and the first error. Bounded: no level starts a request
after ``time_limit_s``; requests still running then are cancelled (their connection closed) and count as
failed. Each level is one bench record (``test = "c{c}-tg{n}"``) in the speed log, exported like every
other bench row (``samples_ts``: each completed request's tok/s).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tokrace.backends.base import CancelToken, ChatMessage, GenerationParams
from tokrace.backends.meter import ReplyStats, SpeedMeter
from tokrace.backends.openai_backend import OpenAIBackend
from tokrace.serving_metrics import PERCENTILES, LevelMetrics, level_metrics, min_samples
from tokrace.speedlog.bench import BenchResult, compare
from tokrace.speedlog.record import ReplyRecord, utc_timestamp

SERVING_PROMPT = "Write a detailed, step-by-step explanation of how a refrigerator keeps food cold."


def run_level(backend: OpenAIBackend, concurrency: int, n_gen: int, requests: int, deadline: float,
              slo: Mapping[str, float] | None = None) -> tuple[LevelMetrics, list[ReplyStats]]:
    """``requests`` requests, at most ``concurrency`` at once, none started after ``deadline``
    (``time.perf_counter`` seconds): the level's figures and the completed replies."""
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
    level = level_metrics(concurrency, requests, stats, wall, slo)
    return level, [s for s in stats if s.stop_reason in ("stop", "length", "context")]


def level_record(backend: OpenAIBackend, level: LevelMetrics, replies: Sequence[ReplyStats], n_gen: int,
                 session_id: str) -> ReplyRecord:
    """The speed-log row of one level (kind ``bench``, backend ``remote``): ``gen_tok_s`` the output
    throughput, ``ttft_s`` the TTFT p50 (``None`` from too few requests)."""
    model = backend.model
    p50 = level.ttft.percentiles.get("p50")
    failed = level.failed + level.not_started
    return ReplyRecord(
        record_id=secrets.token_hex(8), time=utc_timestamp(), session_id=session_id, kind="bench",
        test=f"c{level.concurrency}-tg{n_gen}", model=model.name, model_filename=backend.server_model,
        model_path=model.path, model_type=backend.server_model, architecture="?", quantization="?",
        model_size=None, n_threads=None,
        template=model.template, backend="remote", n_gen=n_gen,
        ttft_s=p50 / 1000 if p50 is not None else None,
        gen_tok_s=level.output_throughput, total_s=level.duration_s, stop_reason="length",
        error=level.first_error, notice=f"{failed} of {level.requests} requests failed or were not sent"
        if failed else None,
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
    slo: Mapping[str, float] | None = None,
) -> list[tuple[LevelMetrics, BenchResult]]:
    """Run every level on the loaded ``backend``; ``requests`` per level defaults to 2 × c (at least 4);
    ``slo``: goodput's limits in ms (``ttft``, ``tpot``, ``e2el``). Each level's record is appended to
    ``log`` (a ``SpeedLog``) as soon as it finishes."""
    deadline = time.perf_counter() + time_limit_s
    out = []
    for c in levels:
        n = requests or max(4, 2 * c)
        level, replies = run_level(backend, c, n_gen, n, deadline, slo)
        record = level_record(backend, level, replies, n_gen, session_id)
        if log is not None:
            log.append(record)
        out.append((level, compare(record, history)))
        if progress is not None:
            agg = f"{level.output_throughput:.1f}" if level.output_throughput else "–"
            line = f"concurrency {c}: {level.completed} of {level.requests} completed, {agg} tok/s output"
            if level.first_error:
                line += f"; first error: {level.first_error}"
            progress(line)
    return out


def markdown(levels: Sequence[LevelMetrics], where: str) -> str:
    """A table of the levels (vLLM's figures), then the first error of each level that had failures."""

    def f(v: float | None, fmt: str) -> str:
        return format(v, fmt) if v is not None else "–"

    pct = "/".join(f"p{q:g}" for q in PERCENTILES)
    slo = next((lv.slo for lv in levels if lv.slo), {})
    lines = [f"serving bench of {where} (latencies measured on this client, network included; ms,"
             f" {pct}; – : too few samples)", "",
             f"| concurrency | completed | failed | req/s | output tok/s | tok/s per request p50 | TTFT {pct}"
             f" | TPOT {pct} | ITL {pct} | E2E {pct} |" + (" goodput req/s |" if slo else ""),
             "|" + " ---: |" * (11 if slo else 10)]
    for r in levels:
        failed = f"{r.failed}" + (f" (+{r.not_started} not sent)" if r.not_started else "")
        lines.append(f"| {r.concurrency} | {r.completed} of {r.requests} | {failed} |"
                     f" {f(r.request_throughput, '.2f')} | {f(r.output_throughput, '.1f')} |"
                     f" {f(r.request_tok_s.percentiles.get('p50'), '.1f')} | {r.ttft.cell()} |"
                     f" {r.tpot.cell()} | {r.itl.cell()} | {r.e2el.cell()} |"
                     + (f" {f(r.goodput, '.2f')} |" if slo else ""))
    lines.append("")
    needs = ", ".join(f"{min_samples(q)} samples for p{q:g}" for q in PERCENTILES)
    note = (f"TPOT = (E2E − TTFT) ÷ (tokens − 1) per request; ITL = gaps between token chunks; a percentile"
            f" needs {needs} (vLLM bench serve's definitions).")
    if slo:
        note += " Goodput: completed requests/s within " + ", ".join(f"{k} {v:g} ms" for k, v in slo.items())
    lines.append(note)
    for r in levels:
        if r.first_error:
            lines.append(f"concurrency {r.concurrency}: {r.failed + r.not_started} of {r.requests} failed;"
                         f" first error: {r.first_error}")
    return "\n".join(lines) + "\n"
