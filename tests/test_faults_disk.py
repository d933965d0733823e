"""Faults of the machine's disks and folders: a full disk mid-append, a torn last line, a regular file
where the data folder should be, a read-only Hugging Face cache, a broken user catalog, a closed pipe.
Nothing generated is lost, nothing prints a traceback."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_speedlog_fixtures import sample_records

from tokrace.model_registry.catalog import load_catalog, user_catalog_path
from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.paths import data_dir, ensure_dir
from tokrace.model_registry.resolve import resolve_model
from tokrace.speedlog import SpeedLog
from tokrace.speedlog.store import TolerantLog

ROOT = Path(__file__).resolve().parents[1]


def tokrace(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tokrace.cli.main", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=300)


def failing_write(log_path: Path, plan: list[int | None]) -> Callable[[int, Any], int]:
    """An ``os.write`` that, for the log file only, writes ``n`` bytes per planned ``n`` and raises
    ENOSPC for ``None`` (a disk that fills up mid-line); other files are written normally."""
    real = os.write

    def write(fd: int, data: Any) -> int:
        try:
            is_log = os.fstat(fd).st_ino == log_path.stat().st_ino
        except OSError:
            is_log = False
        if not is_log or not plan:
            return real(fd, data)
        step = plan.pop(0)
        if step is None:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, bytes(data)[:step])

    return write


# -- kind 1: the speed log ----------------------------------------------------------------------------

def test_a_disk_that_fills_mid_line_leaves_no_torn_line(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    records = sample_records()
    log = SpeedLog.open(tmp_path / "log.jsonl")
    log.append(records[0])
    before = log.path.read_bytes()
    monkeypatch.setattr(os, "write", failing_write(log.path, [40, None]))
    with pytest.raises(TokraceError) as exc:
        log.append(records[1])
    assert exc.value.kind == "log" and "free some disk space" in str(exc.value)
    assert log.path.read_bytes() == before  # the 40 bytes that landed were cut off again
    monkeypatch.undo()
    log.append(records[2])
    contents = SpeedLog.open(log.path).read_all()
    assert contents.problems == []
    assert [r.session_id for r in contents.records] == [records[0].session_id, records[2].session_id]


def test_a_torn_last_line_is_ended_by_the_next_record(tmp_path: Path) -> None:
    records = sample_records()
    path = tmp_path / "log.jsonl"
    SpeedLog.open(path).append(records[0])
    with path.open("ab") as f:
        f.write(b'{"schema":1,"torn')  # a writer killed mid-line
    SpeedLog.open(path).append(records[1])
    contents = SpeedLog.open(path).read_all()
    assert len(contents.records) == 2 and len(contents.problems) == 1


def test_a_failing_repair_of_a_torn_line_is_a_log_error_not_a_crash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"schema":1,"torn')
    monkeypatch.setattr(os, "write", failing_write(path, [None]))
    with pytest.raises(TokraceError) as exc:
        SpeedLog.open(path).append(sample_records()[0])
    assert exc.value.kind == "log"
    assert path.read_bytes() == b'{"schema":1,"torn'


def test_bench_results_survive_a_log_that_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    log = TolerantLog.open(blocker / "log.jsonl")
    for record in sample_records():
        log.append(record)  # never raises
    assert log.failure is not None and "cannot write the speed log" in str(log.failure)
    assert "is a file, not a folder" in str(log.failure)


# -- kind 2: folders that are not what tokrace expects --------------------------------------------------

@pytest.fixture
def data_dir_is_a_file(isolated_dirs: Path) -> Path:
    """A regular file where tokrace's data folder should be (``$XDG_DATA_HOME/tokrace``)."""
    blocker = isolated_dirs / "data"
    blocker.write_text("")
    return blocker


def test_folder_functions_never_fail_and_ensure_dir_names_the_blocker(data_dir_is_a_file: Path) -> None:
    path = data_dir()  # reading commands go on; nothing to read there
    with pytest.raises(TokraceError) as exc:
        ensure_dir(path)
    message = str(exc.value)
    assert str(data_dir_is_a_file) in message and "is a file" in message and "TOKRACE_HOME" in message


def test_reading_commands_work_when_the_data_folder_is_a_file(data_dir_is_a_file: Path) -> None:
    proc = tokrace("models", "list")
    assert proc.returncode == 0, proc.stderr
    assert "smollm2-135m-instruct:q4_1" in proc.stdout and "Traceback" not in proc.stderr


def test_chat_json_prints_the_reply_when_the_log_cannot_be_written(data_dir_is_a_file: Path,
                                                                   tiny_model: Path) -> None:
    proc = tokrace("chat", "-m", str(tiny_model), "-p", "hi", "-n", "8", "--temp", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["completion_tokens"] == 8  # the reply is not thrown away
    assert "warning: speed log not written" in proc.stderr and str(data_dir_is_a_file) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bench_prints_every_result_when_the_log_cannot_be_written(data_dir_is_a_file: Path,
                                                                  tiny_model: Path) -> None:
    proc = tokrace("bench", str(tiny_model), "-p", "8", "-n", "4", "-r", "1", "--json", "-q")
    assert proc.returncode == 0, proc.stderr
    assert [r["test"] for r in json.loads(proc.stdout)] == ["pp8", "tg4"]  # tg ran after pp's log failed
    assert "warning: speed log not written" in proc.stderr and "Traceback" not in proc.stderr


def test_a_read_only_hf_cache_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from fake_hub import FakeHub, use_fake_hub

    from tokrace.model_registry.hf_download import pull_hf
    from tokrace.model_registry.hub import hub_cache_dir, parse_hf_ref

    real_mkdir = Path.mkdir

    def read_only(self: Path, *args: Any, **kwargs: Any) -> None:
        if str(self).startswith(str(hub_cache_dir())):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        real_mkdir(self, *args, **kwargs)

    with FakeHub() as hub:
        use_fake_hub(monkeypatch, tmp_path, hub)
        hub.add_repo("acme/Tiny-GGUF", {"t-Q4_K_M.gguf": b"x" * 1000})
        monkeypatch.setattr(Path, "mkdir", read_only)
        with pytest.raises(TokraceError) as exc:
            pull_hf(parse_hf_ref("hf:acme/Tiny-GGUF:Q4_K_M"))
    message = str(exc.value)
    assert "Permission denied" in message and "HF_HUB_CACHE" in message and "\n" not in message


# -- kind 5: a broken user catalog ----------------------------------------------------------------------

def test_a_broken_user_catalog_is_reported_and_skipped(tiny_model: Path) -> None:
    user_catalog_path().write_text('[models."mine:f32"\nfamily = ')
    catalog = load_catalog()
    assert "smollm2-135m-instruct:q4_1" in catalog  # the built-in entries still work
    assert len(catalog.problems) == 1 and "not valid TOML" in catalog.problems[0]
    assert resolve_model(str(tiny_model)).path == tiny_model  # and so do paths
    with pytest.raises(TokraceError, match=r"skipped: .*not valid TOML"):
        resolve_model("mine:f32")
    proc = tokrace("models", "list")
    assert proc.returncode == 0 and "smollm2-135m-instruct:q4_1" in proc.stdout
    assert "warning: the catalog" in proc.stderr and "not valid TOML" in proc.stderr


# -- #15: a closed pipe ---------------------------------------------------------------------------------

def test_a_closed_pipe_is_not_a_traceback() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "tokrace.cli.main", "models", "list"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # `| head -0`: the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err
