from __future__ import annotations

import json
from pathlib import Path

import pytest

from tokrace.cli.main import main
from tokrace.speedlog import SpeedLog

pytest.importorskip("llama_cpp")


def test_bench_json_one_object_per_model_and_test(tiny_model: Path, deep_model: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", str(tiny_model), str(deep_model), "-p", "16", "-n", "4", "-r", "2",
                 "--threads", "1", "--json"])
    assert code == 0
    captured = capsys.readouterr()
    objects = json.loads(captured.out)
    assert [(o["model"], o["test"]) for o in objects] == [
        ("tiny.gguf", "pp16"), ("tiny.gguf", "tg4"), ("deep.gguf", "pp16"), ("deep.gguf", "tg4"),
    ]  # the model's id (here its file name), as chat and race name it: one load pipeline for all
    for o in objects:
        assert {"model", "test", "n_prompt", "n_gen", "avg_ts", "stddev_ts", "samples_ts"} <= set(o)
        assert len(o["samples_ts"]) == 2 and o["avg_ts"] == pytest.approx(sum(o["samples_ts"]) / 2)
        assert (o["n_prompt"], o["n_gen"]) == ((16, 0) if o["test"] == "pp16" else (0, 4))
        assert o["n_threads"] == 1
    assert "bench: tiny.gguf pp16: repetition 1/2" in captured.err
    recorded = SpeedLog.open().read(kind="bench")
    assert [r.test for r in recorded] == ["pp16", "tg4", "pp16", "tg4"]
    assert len({r.session_id for r in recorded}) == 1


def test_bench_markdown_and_regression_warning(tiny_model: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", str(tiny_model), "-p", "0", "-n", "4", "-r", "2", "--threads", "1", "-q"]
    assert main(args) == 0
    first = capsys.readouterr()
    assert first.out.splitlines()[0] == "| model | size | params | backend | threads | test | t/s |"
    assert "| tg4 |" in first.out and "warning" not in first.err
    # Rewrite that run as an earlier one a thousand times faster than this machine can be, and steady:
    # scaling its own samples scaled their spread too, so a noisy first run (a busy machine: the two
    # tg4 samples 2x apart) hid the drop inside the noise and the warning did not come (flaky).
    log = SpeedLog.open()
    lines = log.path.read_text().splitlines()
    old = json.loads(lines[-1])
    fast = 1000 * sum(old["samples_ts"]) / len(old["samples_ts"])
    old.update(session_id="earlier", record_id="earlier", samples_ts=[fast] * len(old["samples_ts"]))
    log.path.write_text("\n".join([*lines[:-1], json.dumps(old)]) + "\n")
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "tokrace: warning: tiny.gguf tg4 is" in err and "slower than your history" in err


def test_bench_without_tests_or_model_is_an_error(tiny_model: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(tiny_model), "-p", "0", "-n", "0"]) == 2
    assert "no test to run" in capsys.readouterr().err
    assert main(["bench", str(tmp_path / "missing.gguf"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no model file" in err


def test_bench_no_log(tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(tiny_model), "-p", "8", "-n", "0", "-r", "1", "--no-log", "-q"]) == 0
    assert SpeedLog.open().read() == []


def test_bench_depth_as_llama_bench(tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``-d``: each test again after N cached tokens, named and recorded as llama-bench does."""
    from tokrace.speedlog.export import export_row

    code = main(["bench", str(tiny_model), "-p", "8", "-n", "4", "-d", "0,16", "-r", "1", "--threads", "1",
                 "--json", "-q"])
    assert code == 0
    objects = json.loads(capsys.readouterr().out)
    assert [(o["test"], o["n_prompt"], o["n_gen"], o["n_depth"]) for o in objects] == [
        ("pp8", 8, 0, 0), ("pp8 @ d16", 8, 0, 16), ("tg4", 0, 4, 0), ("tg4 @ d16", 0, 4, 16),
    ]
    assert "llama_perf_ts" not in objects[1]  # llama.cpp's counters also hold the depth prefill
    recorded = SpeedLog.open().read(kind="bench")
    assert [export_row(r)["n_depth"] for r in recorded] == [0, 16, 0, 16]
    with pytest.raises(SystemExit):  # argparse's usage error, as for -p and -n
        main(["bench", str(tiny_model), "-d", "-1"])
    assert "expected numbers of 0 or more" in capsys.readouterr().err
