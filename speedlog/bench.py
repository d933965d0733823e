"""Bench results in llama-bench's terms: mean ± sd of each test's repetitions, the JSON and Markdown
llama-bench prints, and the comparison with your earlier runs of the same file and settings.

The tests themselves run on the engine (``tokrace.backends.bench_engine``), driven by the application
layer (``tokrace.bench``); this module only reads and compares records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tokrace.speedlog.record import ReplyRecord
from tokrace.speedlog.stats import Comparison, compare_with_history, mean, stdev


@dataclass(slots=True)
class BenchResult:
    """One model × test, in llama-bench's terms, plus tokrace's record and history comparison."""

    record: ReplyRecord
    comparison: Comparison | None = None
    history_runs: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def samples_ts(self) -> list[float]:
        return list(self.record.samples_ts or [])

    @property
    def avg_ts(self) -> float:
        return mean(self.samples_ts)

    @property
    def stddev_ts(self) -> float:
        return stdev(self.samples_ts)

    def to_json(self) -> dict[str, Any]:
        r = self.record
        ns = list(r.samples_ns or [])
        out: dict[str, Any] = {
            "model": r.model,
            "model_filename": r.model_filename,
            "model_type": r.model_type,
            "model_size": r.model_size,
            "model_n_params": r.model_n_params,
            "test": r.test,
            "n_prompt": r.n_prompt,
            "n_gen": r.n_gen,
            "n_depth": r.n_depth,
            "n_threads": r.n_threads,
            "n_batch": r.n_batch,
            "n_ubatch": r.n_ubatch,
            "flash_attn": {"on": 1, "off": 0}.get(r.flash_attn or ""),  # llama-bench's coding; None: unknown
            "n_gpu_layers": r.n_gpu_layers,
            "split_mode": r.split_mode,
            "tensor_split": "/".join(f"{v:.2f}" for v in r.tensor_split) if r.tensor_split else "0.00",
            "build_commit": r.build_commit,
            "cpu_info": r.cpu_info,
            "gpu_info": ", ".join(r.gpu_info),
            "test_time": r.time,
            "avg_ns": round(mean(ns)),
            "stddev_ns": round(stdev(ns)),
            "avg_ts": self.avg_ts,
            "stddev_ts": self.stddev_ts,
            "samples_ns": ns,
            "samples_ts": self.samples_ts,
        }
        perf = r.llama_perf or {}
        n_perf, t_perf = (perf.get("n_eval"), perf.get("t_eval_ms")) if r.n_gen else (
            perf.get("n_p_eval"), perf.get("t_p_eval_ms"))
        if n_perf and t_perf and not r.n_depth:
            # Inside llama_decode only, over all repetitions: ours also counts the Python per call.
            # (Not at a depth: llama.cpp's counters also book the untimed depth prefill.)
            out["llama_perf_ts"] = n_perf * 1000.0 / t_perf
        if r.draft_model:
            out["draft_model"], out["draft_k"] = r.draft_model, r.draft_k
        out.update(self.extra)  # bench --draft: acceptance_rate, speedup
        if self.comparison is not None:
            out["history_avg_ts"] = self.comparison.history_mean
            out["history_runs"] = self.history_runs
            out["regression"] = self.comparison.regression
        return out


def settings_key(r: ReplyRecord) -> tuple[Any, ...]:
    """Runs are comparable when the same file ran the same test with the same settings."""
    model = r.model_sha256 or f"{r.model_filename}:{r.model_size}"
    split = tuple(r.tensor_split or ())
    return (model, r.test, r.n_threads, r.n_batch, r.n_ubatch, r.flash_attn, r.n_gpu_layers, r.split_mode,
            split, r.backend)


HISTORY_RUNS = 5
"""Compare with at most this many of the latest comparable runs (older ones may predate upgrades)."""


def history_for(record: ReplyRecord, past: Sequence[ReplyRecord]) -> list[ReplyRecord]:
    key = settings_key(record)
    same = [r for r in past if r.kind == "bench" and r.record_id != record.record_id
            and r.session_id != record.session_id and settings_key(r) == key and r.samples_ts]
    return same[-HISTORY_RUNS:]


def compare(record: ReplyRecord, past: Sequence[ReplyRecord]) -> BenchResult:
    runs = history_for(record, past)
    history = [x for r in runs for x in (r.samples_ts or [])]
    return BenchResult(record, compare_with_history(record.samples_ts or [], history), len(runs))


def regression_message(result: BenchResult) -> str | None:
    c = result.comparison
    if c is None or not c.regression:
        return None
    r = result.record
    return (
        f"{r.model} {r.test} is {c.drop:.0%} slower than your history ({c.history_mean:.1f} → "
        f"{c.current_mean:.1f} tok/s, {result.history_runs} earlier run(s), beyond noise); "
        "check for other load on the machine, thermal throttling or a changed build"
    )


def markdown_table(results: Sequence[BenchResult]) -> str:
    """llama-bench's default table: model | size | params | backend | threads | test | t/s."""
    from tokrace.model_registry.units import format_bytes, format_params

    lines = [
        "| model | size | params | backend | threads | test | t/s |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for res in results:
        r = res.record
        backend = "GPU" if r.gpu_offload and r.n_gpu_layers and r.gpu_info else "CPU"
        test = r.test or ""
        if res.extra.get("speedup"):
            from tokrace.speedup import Speedup

            acc = res.extra.get("acceptance_rate")
            test += (f" (speedup {Speedup.from_json(res.extra).show()}"
                     + (f", {acc:.0%} accepted ÷ drafted)" if acc else ")"))
        lines.append(
            f"| {r.model_type} | {format_bytes(r.model_size) if r.model_size is not None else '–'} |"
            f" {format_params(r.model_n_params)} | "
            f"{backend} | {r.n_threads if r.n_threads is not None else '–'} | {test} |"
            f" {res.avg_ts:.2f} ± {res.stddev_ts:.2f} |"
        )
    return "\n".join(lines) + "\n"
