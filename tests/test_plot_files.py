"""``export --plot`` writes the format its file name says (PNG or SVG), one row of panels per model file
(grouped by sha256, one name per file), and the speed log shows one name per file everywhere."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from test_speedlog_fixtures import sample_records

from tokrace.cli.main import main
from tokrace.speedlog import SpeedLog
from tokrace.speedlog.export import to_markdown
from tokrace.speedlog.plot import render_plots
from tokrace.speedlog.record import ReplyRecord
from tokrace.speedlog.store import model_names, summarize_sessions

SVG = "{http://www.w3.org/2000/svg}"


def one_file_three_names() -> list[ReplyRecord]:
    """The same file logged as GGUF general.name, by catalog id and by file name (what #15 saw)."""
    base = sample_records()[0]
    return [
        dataclasses.replace(base, record_id="r1", session_id="a", model="Llama 3 8B", model_id=None),
        dataclasses.replace(base, record_id="r2", session_id="b", model="Llama 3 8B",
                            model_id="llama3-8b:q4_k_m"),
        dataclasses.replace(base, record_id="r3", session_id="c", model="l3-8b.gguf", model_id=None),
    ]


def tiny_and_big() -> list[ReplyRecord]:
    big = sample_records()[0]
    tiny = dataclasses.replace(big, record_id="t", model="tiny", model_id=None, model_sha256="f" * 64,
                               gen_tok_s=13_000.0,
                               token_times_s=[0.001 + i / 13_000 for i in range(50)])
    return [big, tiny]


def titles(svg: bytes) -> list[str]:
    root = ET.fromstring(svg)
    return [t.text or "" for t in root.iter(f"{SVG}text") if "·" in (t.text or "")]


def test_one_file_is_one_model_under_one_name() -> None:
    records = one_file_three_names()
    assert set(model_names(records).values()) == {"llama3-8b:q4_k_m"}  # the catalog id wins
    assert {s.models for s in summarize_sessions(records)} == {("llama3-8b:q4_k_m",)}
    table = to_markdown(records)
    assert table.count("| llama3-8b:q4_k_m |") == 1 and "l3-8b.gguf" not in table


def test_without_a_catalog_id_the_most_used_name_is_kept() -> None:
    records = [r for r in one_file_three_names() if r.model_id is None]
    records.append(dataclasses.replace(records[0], record_id="r4"))
    assert set(model_names(records).values()) == {"Llama 3 8B"}


def test_each_model_file_gets_its_own_row_and_scale() -> None:
    svg = render_plots(tiny_and_big(), "svg")
    names = titles(svg)
    assert sum("tok/s over a reply" in t for t in names) == 2
    assert any(t.startswith("tiny · ") for t in names)
    one = titles(render_plots(one_file_three_names(), "svg"))
    assert sum("tok/s over a reply" in t for t in one) == 1


@pytest.fixture
def logged() -> SpeedLog:
    log = SpeedLog.open()
    for r in tiny_and_big():
        log.append(r)
    log.close()
    return log


@pytest.mark.parametrize(("name", "magic"), [("x.png", b"\x89PNG\r\n\x1a\n"), ("x.svg", b"<?xml")])
def test_export_plot_writes_the_format_its_name_says(logged: SpeedLog, tmp_path: Path, name: str,
                                                     magic: bytes) -> None:
    target = tmp_path / name
    assert main(["export", "--plot", str(target), "-o", str(tmp_path / "t.md")]) == 0
    assert target.read_bytes().startswith(magic)


def test_export_plot_with_another_name_is_refused_before_anything(
        logged: SpeedLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--plot", str(tmp_path / "x.jpg"), "-o", str(tmp_path / "t.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "name a .png or .svg file" in err[0]
    assert not (tmp_path / "t.md").exists() and not (tmp_path / "x.jpg").exists()
