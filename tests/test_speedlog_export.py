from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_speedlog_fixtures import HW_CPU, SHA, fake_stats, loaded_model, sample_records

from tokrace.backends.base import LoadConfig, LoadedModel
from tokrace.backends.meter import ReplyStats
from tokrace.model_registry.errors import TokraceError
from tokrace.speedlog.export import FIELDS, LLAMA_BENCH_FIELDS, export_row, render, write_atomic
from tokrace.speedlog.plot import bar_chart, replies_chart, reply_chart, reply_series, svg_plots
from tokrace.speedlog.record import ReplyRecord, make_bench_record, make_record

GOLDEN = Path(__file__).parent / "golden"


def check_golden(name: str, text: str) -> None:
    """Compare with ``tests/golden/NAME``; ``TOKRACE_UPDATE_GOLDEN=1`` rewrites it (review the diff)."""
    path = GOLDEN / name
    if os.environ.get("TOKRACE_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "md"])
def test_exports_match_their_golden_files(fmt: str) -> None:
    check_golden(f"speedlog_export.{fmt}", render(sample_records(), fmt))  # type: ignore[arg-type]


def test_csv_and_jsonl_use_llama_bench_field_names() -> None:
    required = {"model_type", "model_size", "model_n_params", "n_prompt", "n_gen", "avg_ts",
                "stddev_ts", "n_gpu_layers", "split_mode", "tensor_split", "build_commit"}
    assert required <= set(LLAMA_BENCH_FIELDS)
    header = next(csv.reader(io.StringIO(render(sample_records(), "csv"))))
    assert header == list(FIELDS)
    rows = [json.loads(line) for line in render(sample_records(), "jsonl").splitlines()]
    assert all(list(row) == list(FIELDS) for row in rows)


def test_bench_rows_are_llama_bench_rows() -> None:
    pp, tg = (export_row(r) for r in sample_records()[3:])
    assert (pp["n_prompt"], pp["n_gen"], pp["test"]) == (512, 0, "pp512")
    assert pp["samples_ts"] == pytest.approx([512.0, 500.0, 524.288])
    assert pp["avg_ts"] == pytest.approx(sum(pp["samples_ts"]) / 3)
    assert pp["stddev_ts"] == pytest.approx(12.144, abs=1e-3)  # sample sd, Bessel-corrected
    assert (tg["n_prompt"], tg["n_gen"], tg["avg_ts"]) == (0, 128, pytest.approx((64 + 62.5) / 2))
    assert pp["tensor_split"] == "0.00" and pp["backends"] == "CPU"


def test_chat_rows_are_tg_at_depth() -> None:
    """avg_ts of a row with n_prompt > 0 would read as (pp + tg) ÷ time in llama-bench tooling."""
    row = export_row(sample_records()[0])
    assert (row["n_prompt"], row["n_gen"], row["n_depth"]) == (0, 9, 32)
    assert row["avg_ts"] == pytest.approx(128.0) and row["stddev_ts"] == 0
    assert row["prompt_tok_s"] == pytest.approx(256.0) and row["ttft_s"] == pytest.approx(0.25)
    assert row["tensor_split"] == "0.50/0.50" and row["backends"] == "GPU"
    assert row["gpu_info"] == "RTX 4090, RTX 4090"


def md_rows(records: list[ReplyRecord]) -> list[dict[str, str]]:
    lines = render(records, "md").splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, [c.strip() for c in line.strip("|").split("|")], strict=True))
            for line in lines[2:] if line.startswith("| ")]


def test_markdown_groups_by_model_quant_and_hardware_with_mean_sd() -> None:
    lines = render(sample_records(), "md").splitlines()
    assert lines[0] == ("| Model | Quant | hardware | threads | fa | batch | ngl | draft | test | tok/s"
                        " | TTFT | prompt tok/s | n |")
    rows = {(r["Model"], r["Quant"], r["tok/s"], r["hardware"], r["test"])
            for r in md_rows(sample_records())}
    assert ("Llama 3 8B", "Q4_K_M", "115.20 ± 18.10", "2 × RTX 4090", "chat @ d32") in rows
    assert ("Llama 3 8B", "Q4_K_M", "63.25 ± 1.06", "Test CPU 9000", "tg128") in rows
    assert ("Llama 3 8B", "F16", "16.00", "Test CPU 9000", "race @ d32") in rows


def test_markdown_never_averages_unlike_measurements() -> None:
    # One model file measured five unlike ways, each of which was averaged into one row
    # ("955.65 ± 400.96"): with and without a draft, bench depth 0 and 512, 2 and 1 threads, and one
    # server under two model names. Each is its own row, named by what differs.
    when = datetime(2025, 1, 31, 12, 0, 0, tzinfo=UTC)
    model = loaded_model()
    cfg = LoadConfig(path=model.path, n_gpu_layers=0)
    one_thread = dataclasses.replace(model, n_threads=1)

    def chat(stats: ReplyStats, m: LoadedModel = model) -> ReplyRecord:
        return make_record(stats, m, cfg, "s", "chat", hardware=HW_CPU, sha256=SHA, now=when)

    def bench(depth: int) -> ReplyRecord:
        return make_bench_record(model, cfg, "s", n_prompt=0, n_gen=128, n_depth=depth, hardware=HW_CPU,
                                 samples_ns=[1_000_000_000, 1_000_000_000], sha256=SHA, now=when)

    drafted = dataclasses.replace(fake_stats(9, 0.001), draft_model="smollm2-135m", draft_k=4)
    remote = [dataclasses.replace(chat(fake_stats(9, 0.01)), backend="remote", endpoint="127.0.0.1:8080",
                                  engine="llama-server", server_model=name, model=name, model_sha256=None,
                                  model_path=f"http:/127.0.0.1:8080/v1#{name}")
              for name in ("smollm2", "gemma")]
    records = [chat(fake_stats(9, 0.01)), chat(drafted), bench(0), bench(512),
               chat(fake_stats(9, 0.02), one_thread), *remote]
    rows = md_rows(records)
    assert len(rows) == 7 and all(r["n"] in ("1", "2") for r in rows)
    local = [r for r in rows if r["Model"] == "Llama 3 8B"]
    assert {(r["draft"], r["threads"], r["test"], r["tok/s"]) for r in local} == {
        ("–", "2", "chat @ d32", "100.00"), ("smollm2-135m k4", "2", "chat @ d32", "1000.00"),
        ("–", "2", "tg128", "128.00 ± 0.00"), ("–", "2", "tg128 @ d512", "128.00 ± 0.00"),
        ("–", "1", "chat @ d32", "50.00")}
    servers = [r for r in rows if r["hardware"] == "llama-server at 127.0.0.1:8080"]
    assert sorted(r["Model"] for r in servers) == ["gemma", "smollm2"]
    assert all(r["threads"] == r["batch"] == r["ngl"] == "–" for r in servers)


def test_atomic_write_replaces_whole_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.md"
    target.write_text("old")
    write_atomic(target, "new table\n")
    assert target.read_text() == "new table\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.md"]


@pytest.mark.parametrize("where", ["missing_dir", "is_dir", "under_file"])
def test_unwritable_export_path_is_one_error_line(tmp_path: Path, where: str) -> None:
    (tmp_path / "f").write_text("")
    target = {"missing_dir": tmp_path / "no" / "x.md", "is_dir": tmp_path,
              "under_file": tmp_path / "f" / "x.md"}[where]
    with pytest.raises(TokraceError) as err:
        write_atomic(target, "x")
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"cannot write {target}")
    assert "-o" in message


def test_reply_series_is_a_windowed_rate_without_a_comb() -> None:
    # Tokens every 10 ms: every point is exactly 100 tok/s, however the points fall between tokens
    # (counting tokens per time bin would alternate 0 / 1 / 2 tokens per bin: a comb).
    times = [0.05 + 0.01 * i for i in range(101)]
    assert reply_series(times, points=37) == pytest.approx([100.0] * 37)
    # A slow stretch shows as a dip, never as a peak above the real speed.
    uneven = [0.0, 0.01, 0.02, 0.03, 0.04, 0.5, 0.51, 0.52, 0.53, 0.54]
    series = reply_series(uneven, points=10)
    assert max(series) <= 100.0 + 1e-9 and min(series) < 20
    assert reply_series([1.0]) == []


def test_reply_series_of_a_drafted_reply_has_no_spikes() -> None:
    # Speculative decoding: a verification step every 10 ms releases its accepted tokens 2 µs apart
    # (1 to 8 of them). Windows of a few tokens fell inside one batch: ~90,000 tok/s spikes that
    # flattened the chart. Windows of whole steps give at most the fastest step's real rate.
    accepted = [8, 3, 8, 1, 5, 8, 8, 2, 7, 8] * 6
    times, t = [0.2], 0.2
    for n in accepted:
        t += 0.010
        times += [t + 2e-6 * i for i in range(n)]
    series = reply_series(times, points=80)
    assert len(series) == 80 and min(series) > 0
    assert max(series) <= max(accepted) / 0.010 * 1.001  # 800 tok/s, not ~4 tokens / 6 µs
    overall = (len(times) - 1) / (times[-1] - times[0])
    assert abs(sorted(series)[40] - overall) / overall < 0.2  # the median point is the reply's speed
    # A remote stream's chunk (several tokens with one arrival time) is one step too.
    chunks = [0.1 + 0.05 * (i // 3) for i in range(30)]
    assert max(reply_series(chunks, points=20)) <= 3 / 0.05 * 1.001


def test_text_charts() -> None:
    chart = bar_chart([1.0, 2.0, 4.0], height=2, title="t")
    assert chart.splitlines() == ["t", "4 ┤  █", "0 ┤▄██", "  └───"]
    rec = sample_records()[0]
    assert "tok/s over the reply" in reply_chart(rec, width=8)
    assert "across 5 replies" in replies_chart(sample_records())  # 3 replies + 2 tg repetitions
    assert "(no data)" in bar_chart([])


def test_the_live_sparkline_and_the_text_chart_draw_the_same_columns() -> None:
    from tokrace.tui.widgets.telemetry_panel import spark_text

    values = [0.0, 117.0, 146.0, 131.5, 3.0, 146.0]
    chart = bar_chart(values, height=3).splitlines()[1:4]
    assert [row.split("┤", 1)[1] for row in chart] == spark_text(values, rows=3).splitlines()
    assert spark_text([0.0, 0.0], rows=2) == "  \n  "  # nothing measured yet: blanks, no division by 0


def test_svg_is_well_formed_with_a_row_of_panels_per_model() -> None:
    svg = svg_plots(sample_records())
    root = ET.fromstring(svg)
    texts = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    assert "tok/s over a reply" in texts and "tok/s per reply" in texts
    assert "seconds since the request" in texts
    ET.fromstring(svg_plots([]))  # nothing recorded still gives a valid (empty) plot
