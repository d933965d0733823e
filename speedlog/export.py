"""Exports of the speed log: JSONL and CSV rows with llama-bench's field names, and a Markdown table
like the figures people quote (Model | Quant | tok/s | TTFT | hardware), grouped with mean ± sd.

How a reply maps onto llama-bench's fields. llama-bench's ``avg_ts`` is (n_prompt + n_gen) ÷ time of the
whole test, so a row with both set reads as a combined prompt+generation figure. A chat reply's
generation is, in llama-bench's terms, a ``tg`` test run after a context of ``n_depth`` tokens; so a
chat or race row has ``n_prompt = 0``, ``n_gen`` = tokens generated, ``n_depth`` = prompt tokens, and
``avg_ts`` = generation tok/s. The prompt figures are in tokrace's own columns (``prompt_tokens``,
``prompt_tok_s``, ``ttft_s``…). Bench rows are llama-bench's exactly (``pp512``: n_prompt 512, n_gen 0).

Every file is written to a temporary file in the same directory and renamed over the target, so a
reader never sees half an export.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeAlias

from tokrace.model_registry.errors import TokraceError
from tokrace.speedlog.record import ReplyRecord
from tokrace.speedlog.stats import mean, mean_sd, stdev

Format: TypeAlias = Literal["jsonl", "csv", "md"]

LLAMA_BENCH_FIELDS: tuple[str, ...] = (
    "build_commit", "cpu_info", "gpu_info", "backends", "model_filename", "model_type", "model_size",
    "model_n_params", "n_batch", "n_ubatch", "n_threads", "n_gpu_layers", "split_mode", "main_gpu",
    "flash_attn", "tensor_split",
    "n_prompt", "n_gen", "n_depth", "test_time", "avg_ns", "stddev_ns", "avg_ts", "stddev_ts",
    "samples_ns", "samples_ts",
)
TOKRACE_FIELDS: tuple[str, ...] = (
    "record_id", "session_id", "kind", "lane", "test", "model", "model_id", "architecture",
    "quantization", "model_sha256", "template", "n_ctx", "prompt_tokens", "prompt_count_source",
    "cached_prompt_tokens",
    "completion_tokens", "ttft_s", "prompt_s", "prompt_tok_s", "gen_s", "gen_tok_s", "total_s",
    "stop_reason", "drafted", "accepted", "acceptance_rate", "draft_model", "draft_k", "gpu_driver",
    "peak_vram_bytes", "energy_j", "schema",
)
FIELDS: tuple[str, ...] = LLAMA_BENCH_FIELDS + TOKRACE_FIELDS


def _tensor_split(values: Sequence[float] | None) -> str:
    """llama-bench's form: ``0.50/0.50``; ``0.00`` when unset."""
    return "/".join(f"{v:.2f}" for v in values) if values else "0.00"


def export_row(r: ReplyRecord) -> dict[str, Any]:
    """One record as a flat row, llama-bench's fields first."""
    n_prompt: int | None
    n_depth: int | None
    if r.kind == "bench":
        samples_ns = list(r.samples_ns or [])
        samples_ts = list(r.samples_ts or [])
        n_prompt, n_gen, n_depth = r.n_prompt, r.n_gen, r.n_depth
        test = r.test
    else:
        # One sample: this reply's decode. gen_tok_s = (n − 1) ÷ gen_s, so avg_ns is gen_s.
        samples_ns = [round(r.gen_s * 1e9)] if r.gen_s is not None and r.gen_tok_s is not None else []
        samples_ts = [r.gen_tok_s] if r.gen_tok_s is not None else []
        n_prompt, n_gen, n_depth = 0, r.n_gen, r.prompt_tokens  # None: a server that did not say
        test = f"tg{r.n_gen}@d{'–' if r.prompt_tokens is None else r.prompt_tokens}"
    offloaded = r.gpu_offload and r.n_gpu_layers != 0 and bool(r.gpu_info)
    row: dict[str, Any] = {
        "build_commit": r.build_commit or "",
        "cpu_info": r.cpu_info,
        "gpu_info": ", ".join(r.gpu_info),
        "backends": "GPU" if offloaded else "CPU",
        "model_filename": r.model_filename,
        "model_type": r.model_type,
        "model_size": r.model_size,
        "model_n_params": r.model_n_params,
        "n_batch": r.n_batch,
        "n_ubatch": r.n_ubatch,
        "n_threads": r.n_threads,
        "n_gpu_layers": r.n_gpu_layers,
        "split_mode": r.split_mode,
        "main_gpu": r.main_gpu,
        # llama-bench's coding: 1 on, 0 off (what was used: tokrace resolves "auto"); "" unknown.
        "flash_attn": {"on": 1, "off": 0}.get(r.flash_attn or "", ""),
        "tensor_split": _tensor_split(r.tensor_split),
        "n_prompt": n_prompt,
        "n_gen": n_gen,
        "n_depth": n_depth,
        "test_time": r.time,
        "avg_ns": round(mean(samples_ns)) if samples_ns else None,
        "stddev_ns": round(stdev(samples_ns)) if samples_ns else None,
        "avg_ts": mean(samples_ts) if samples_ts else None,
        "stddev_ts": stdev(samples_ts) if samples_ts else None,
        "samples_ns": samples_ns,
        "samples_ts": samples_ts,
        "record_id": r.record_id,
        "session_id": r.session_id,
        "kind": r.kind,
        "lane": r.lane,
        "test": test,
        "model": r.model,
        "model_id": r.model_id,
        "architecture": r.architecture,
        "quantization": r.quantization,
        "model_sha256": r.model_sha256,
        "template": r.template,
        "n_ctx": r.n_ctx,
        "prompt_tokens": r.prompt_tokens,
        "prompt_count_source": r.prompt_count_source,
        "cached_prompt_tokens": r.cached_prompt_tokens,
        "completion_tokens": r.n_gen,
        "ttft_s": r.ttft_s,
        "prompt_s": r.prompt_s,
        "prompt_tok_s": r.prompt_tok_s,
        "gen_s": r.gen_s,
        "gen_tok_s": r.gen_tok_s,
        "total_s": r.total_s,
        "stop_reason": r.stop_reason,
        "drafted": r.drafted,
        "accepted": r.accepted,
        "acceptance_rate": r.acceptance_rate,
        "draft_model": r.draft_model,
        "draft_k": r.draft_k,
        "gpu_driver": r.gpu_driver,
        "peak_vram_bytes": r.peak_vram_bytes,
        "energy_j": r.energy_j,
        "schema": r.schema,
    }
    assert tuple(row) == FIELDS  # the column order is part of the format
    return row


def to_jsonl(records: Iterable[ReplyRecord]) -> str:
    return "".join(json.dumps(export_row(r), ensure_ascii=False) + "\n" for r in records)


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(str(v) for v in value)  # samples, as llama-bench joins them
    if isinstance(value, float):
        return repr(value)
    return value


def to_csv(records: Iterable[ReplyRecord]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(FIELDS)
    for r in records:
        row = export_row(r)
        writer.writerow([_csv_cell(row[f]) for f in FIELDS])
    return buf.getvalue()


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _cell(value: object) -> str:
    return "–" if value is None or value == "" else str(value)


def measurement(r: ReplyRecord) -> dict[str, str]:
    """The fields of a record that change what it measures, as the cells of its Markdown row: rows are
    only averaged when all of them are equal, as llama-bench prints one row per model, backend, threads,
    batch sizes, flash attention, GPU layers, split and test. ``hardware`` names the machine (a remote
    record: its engine and endpoint), ``test`` the bench test with its depth (``tg128 @ d512``,
    ``c4-tg128`` for a serving level) or the kind of reply (``chat``, ``race``: their depth, the prompt,
    varies reply by reply and is shown as a range beside them). What a remote engine does not report is
    ``–``."""
    remote = r.endpoint is not None
    offloaded = r.gpu_offload and r.n_gpu_layers != 0 and bool(r.gpu_info)
    if remote:
        ngl = "–"
    elif offloaded:
        split = r.split_mode + (f" {_tensor_split(r.tensor_split)}" if r.tensor_split else "")
        ngl = f"{r.n_gpu_layers} ({split})" if len(r.gpu_info) > 1 else str(r.n_gpu_layers)
    else:
        ngl = "0"
    draft = f"{r.draft_model} k{r.draft_k}" if r.draft_model and r.draft_k else r.draft_model
    return {
        # The machine without its thread count (a column of its own): GPUs when layers were offloaded.
        "hardware": r.hardware_label if remote or offloaded else (r.cpu_info or "CPU"),
        "server model": r.server_model or "" if remote else "",
        "threads": "–" if remote else _cell(r.n_threads),
        "fa": {"on": "1", "off": "0"}.get(r.flash_attn or "", "–"),
        "batch": "–" if remote or not r.n_batch else f"{r.n_batch}/{r.n_ubatch or '–'}",
        "ngl": ngl,
        "draft": _cell(draft),
        "test": (r.test or "bench") if r.kind == "bench" else r.kind,
    }


def _depths(recs: Sequence[ReplyRecord]) -> str:
    """The prompt depths of chat/race replies: `` @ d31`` or `` @ d31–540``; empty for bench rows."""
    if any(r.kind == "bench" for r in recs):
        return ""
    depths = sorted({r.prompt_tokens for r in recs if r.prompt_tokens is not None})
    if not depths:
        return " @ d–"
    return f" @ d{depths[0]}" if len(depths) == 1 else f" @ d{depths[0]}–{depths[-1]}"


def to_markdown(records: Iterable[ReplyRecord]) -> str:
    """One row per model file (its sha256: one name however it was loaded), quantization and every field
    that changes the measurement (``measurement``): generation tok/s, TTFT and prompt tok/s, mean ± sd
    over the row's samples. Replies with and without a draft, at other depths or thread counts, or from
    one server under two model names are never averaged together."""
    from tokrace.speedlog.store import model_key, model_names

    records = list(records)
    names = model_names(records)
    groups: dict[tuple[str, ...], list[ReplyRecord]] = {}
    for r in records:
        m = measurement(r)
        key = (names.get(model_key(r), r.model), r.quantization, m["hardware"], m["test"], model_key(r),
               *m.values())
        groups.setdefault(key, []).append(r)
    lines = [
        "| Model | Quant | hardware | threads | fa | batch | ngl | draft | test | tok/s | TTFT |"
        " prompt tok/s | n |",
        "|---|---|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for key, recs in sorted(groups.items()):
        model, quant = key[0], key[1]
        m = measurement(recs[0])
        if m["server model"] and m["server model"] != model:
            model = f"{model} ({m['server model']})"
        rates = [x for r in recs for x in r.rates()]
        ttfts = [r.ttft_s for r in recs if r.ttft_s is not None]
        prompt = [x for r in recs for x in r.prompt_rates()]
        ttft = f"{mean_sd(ttfts, 3)} s" if ttfts else "–"
        n = len(rates) or len(prompt)
        cells = [model, _cell(quant if quant != "?" else None), m["hardware"], m["threads"], m["fa"],
                 m["batch"], m["ngl"], m["draft"], m["test"] + _depths(recs), mean_sd(rates), ttft,
                 mean_sd(prompt, 1), str(n)]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    lines.append("")
    lines.append(
        "tok/s: generation, (tokens − 1) ÷ (last − first token time), or llama-bench tg; "
        "TTFT: request → first token; prompt tok/s: prompt tokens evaluated ÷ their evaluation time, or "
        "llama-bench pp; n: samples (replies and bench repetitions). A row averages only records alike in "
        "every column; chat and race replies vary in depth (d: prompt tokens before generation)."
    )
    return "\n".join(lines) + "\n"


def render(records: Sequence[ReplyRecord], fmt: Format) -> str:
    if fmt == "jsonl":
        return to_jsonl(records)
    if fmt == "csv":
        return to_csv(records)
    if fmt == "md":
        return to_markdown(records)
    raise ValueError(f"unknown export format {fmt!r}")


def write_atomic(path: str | Path, text: str | bytes) -> Path:
    """Write ``text`` (UTF-8) or bytes (a PNG) via a temporary file and rename; an unwritable target is
    one ``TokraceError`` line."""
    path = Path(path).expanduser()
    directory = path.parent
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "is a directory")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as err:
        raise TokraceError(
            f"cannot write {path}: {err.strerror or err}; choose a writable path with -o", kind="storage"
        ) from err
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text if isinstance(text, bytes) else text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise TokraceError(
            f"cannot write {path}: {err.strerror or err}; choose a writable path with -o", kind="storage"
        ) from err
    return path
