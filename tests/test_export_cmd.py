from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from test_speedlog_fixtures import sample_records

from tokrace.cli.main import main
from tokrace.speedlog import SpeedLog

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture
def logged() -> SpeedLog:
    log = SpeedLog.open()
    for r in sample_records():
        log.append(r)
    log.close()
    return log


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "md"])
def test_export_all_to_stdout_matches_golden(logged: SpeedLog, fmt: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--all", "--format", fmt]) == 0
    out = capsys.readouterr().out
    assert out == (GOLDEN / f"speedlog_export.{fmt}").read_text(encoding="utf-8")


def test_export_one_session_to_a_file_with_plot(logged: SpeedLog, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out, svg = tmp_path / "s2.jsonl", tmp_path / "s2.svg"
    assert main(["export", "--session", "s2", "-f", "jsonl", "-o", str(out), "--plot", str(svg)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["test"], r["n_prompt"], r["n_gen"]) for r in rows] == [("pp512", 512, 0), ("tg128", 0, 128)]
    ET.fromstring(svg.read_text())
    err = capsys.readouterr().err
    assert f"wrote 2 record(s) to {out}" in err


def test_list_and_last(logged: SpeedLog, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert len(listing) == 2 and {line.split()[0] for line in listing} == {"s1", "s2"}
    assert main(["export", "--last", "--format", "md", "--kind", "chat"]) == 0
    assert "2 × RTX 4090" in capsys.readouterr().out


def test_chart_prints_terminal_plots(logged: SpeedLog, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--format", "md", "--chart"]) == 0
    err = capsys.readouterr().err
    assert "tok/s across 5 replies" in err and "tok/s over the reply" in err


def test_unknown_session_is_one_error_line(logged: SpeedLog, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--session", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tokrace: error: no session 'nope'")


def test_unwritable_output_is_one_error_line(logged: SpeedLog, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "missing" / "out.csv"
    assert main(["export", "-f", "csv", "-o", str(target)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"tokrace: error: cannot write {target}")
    assert not target.parent.exists()


def test_corrupt_log_exports_the_rest_with_a_warning(logged: SpeedLog,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    with logged.path.open("a", encoding="utf-8") as f:
        f.write("{torn\n")
        f.write(json.dumps(dict(sample_records()[0].to_dict(), schema=7)) + "\n")
    assert main(["export", "-f", "jsonl"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 5
    warnings = captured.err.splitlines()
    assert any(w.startswith("tokrace: warning:") and "line 6" in w for w in warnings)
    assert any("schema version 7" in w for w in warnings)


def test_empty_log_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "-f", "csv"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("build_commit,")
    assert "nothing recorded yet" in captured.err
