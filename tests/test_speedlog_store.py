from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_speedlog_fixtures import sample_records

from tokrace.model_registry.errors import TokraceError
from tokrace.speedlog import SpeedLog, SpeedLogWarning, default_log_path
from tokrace.speedlog.store import parse_lines

ROOT = Path(__file__).resolve().parents[1]


def test_append_then_read_round_trips_under_the_data_dir() -> None:
    records = sample_records()
    with SpeedLog.open() as log:
        for r in records:
            log.append(r)
    assert log.path == default_log_path()
    assert str(log.path).startswith(os.environ["TOKRACE_HOME"])
    assert SpeedLog.open().read() == records
    assert [r.record_id for r in SpeedLog.open().read(session_id="s2")] == ["rec003", "rec004"]
    assert [r.kind for r in SpeedLog.open().read(kind="race")] == ["race"]


def test_one_line_per_record() -> None:
    log = SpeedLog.open()
    for r in sample_records():
        log.append(r)
    log.close()
    lines = log.path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 5
    assert all(json.loads(line)["schema"] == 1 for line in lines)


def test_missing_log_reads_as_empty(tmp_path: Path) -> None:
    assert SpeedLog.open(tmp_path / "none.jsonl").read() == []


def test_corrupt_line_is_skipped_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    good = [json.dumps(r.to_dict()) for r in sample_records()[:2]]
    path.write_text(good[0] + "\n{not json\n[1, 2]\n" + good[1] + "\n", encoding="utf-8")
    with pytest.warns(SpeedLogWarning) as caught:
        records = SpeedLog.open(path).read()
    assert [r.record_id for r in records] == ["rec000", "rec001"]
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2 and "line 2" in messages[0] and "line 3" in messages[1]


def test_unknown_schema_version_is_skipped_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    data = sample_records()[0].to_dict()
    future = dict(data, schema=99, record_id="future", gen_tok_s="a different meaning")
    nothing = {k: v for k, v in data.items() if k != "schema"}
    path.write_text("\n".join(json.dumps(d) for d in (data, future, nothing)) + "\n", encoding="utf-8")
    with pytest.warns(SpeedLogWarning) as caught:
        records = SpeedLog.open(path).read()
    assert [r.record_id for r in records] == ["rec000"]
    messages = " ".join(str(w.message) for w in caught)
    assert "schema version 99" in messages and "upgrade tokrace" in messages
    assert "no schema version" in messages


def test_unknown_fields_of_the_same_version_are_ignored() -> None:
    data = dict(sample_records()[0].to_dict(), energy_per_token_j=0.5)
    contents = parse_lines([json.dumps(data)])
    assert contents.problems == [] and contents.records[0].record_id == "rec000"


def test_a_torn_last_line_costs_only_itself(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    first, second = sample_records()[:2]
    line = json.dumps(first.to_dict())
    path.write_text(line + "\n" + line[: len(line) // 2], encoding="utf-8")  # killed mid-write
    log = SpeedLog.open(path)
    log.append(second)
    log.close()
    with pytest.warns(SpeedLogWarning, match="line 2"):
        records = log.read()
    assert [r.record_id for r in records] == ["rec000", "rec001"]


def test_unwritable_log_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    log = SpeedLog.open(blocker / "sub" / "log.jsonl")  # a directory under a plain file
    with pytest.raises(TokraceError) as err:
        log.append(sample_records()[0])
    assert "\n" not in str(err.value) and "cannot write the speed log" in str(err.value)


def test_sessions_are_summarised_newest_first() -> None:
    log = SpeedLog.open()
    records = sample_records()
    records[3].time = records[4].time = "2025-02-01T00:00:00.000000Z"
    for r in records:
        log.append(r)
    sessions = log.sessions()
    assert [s.session_id for s in sessions] == ["s2", "s1"]
    s1 = sessions[1]
    assert s1.replies == 3 and s1.kinds == ("chat", "race")
    assert s1.models == ("Llama 3 8B",)
    assert s1.mean_gen_tok_s == pytest.approx((128.0 + 102.4 + 16.0) / 3)


WRITER = textwrap.dedent("""
    import sys, time
    sys.path[:0] = [{root!r}, {tests!r}]
    from test_speedlog_fixtures import sample_records
    from tokrace.speedlog import SpeedLog
    log = SpeedLog.open()
    template = sample_records()[0]
    i = 0
    while True:
        template.record_id = f"reply{{i}}"
        log.append(template)
        print(template.record_id, flush=True)  # reported only after append() returned
        i += 1
        time.sleep(0.002)
""")


def test_finished_replies_survive_kill_9() -> None:
    script = WRITER.format(root=str(ROOT), tests=str(ROOT / "tests"))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    finished: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        finished.append(line.strip())
        if len(finished) >= 25:
            break
    proc.send_signal(signal.SIGKILL)
    finished += [line.strip() for line in proc.stdout]  # reported before the kill, still in the pipe
    proc.wait(timeout=30)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    contents = SpeedLog.open().read_all()
    recorded = [r.record_id for r in contents.records]
    # Every reply reported finished is there, in order; beyond them at most the one whose append
    # returned but whose report the kill cut off (a torn line would be a read problem, not a record).
    assert recorded[: len(finished)] == finished
    assert len(recorded) - len(finished) <= 1
    assert len(contents.problems) <= 1
