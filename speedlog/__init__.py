"""Session speed logs: every finished reply (chat, race lane, bench test) kept, exportable, plottable.

No Textual import here (the TUI's sessions screen lives in ``tui/screens``). Typical use::

    from tokrace.speedlog import SessionRecorder, SpeedLog
    recorder = SessionRecorder(model, config, kind="chat")   # after the backend loaded the model
    recorder.record(meter.stats)                              # on GenerationFinished
    records = SpeedLog.open().read(session_id=recorder.session_id)

(``make_record`` + ``SpeedLog.append`` are the lower-level pair ``SessionRecorder`` uses.)
"""

from __future__ import annotations

from tokrace.speedlog.record import (
    KINDS,
    SCHEMA_VERSION,
    Kind,
    ReplyRecord,
    make_bench_record,
    make_record,
    new_session_id,
)
from tokrace.speedlog.recorder import SessionRecorder
from tokrace.speedlog.store import SessionSummary, SpeedLog, SpeedLogWarning, default_log_path

__all__ = [
    "KINDS",
    "SCHEMA_VERSION",
    "Kind",
    "ReplyRecord",
    "SessionRecorder",
    "SessionSummary",
    "SpeedLog",
    "SpeedLogWarning",
    "default_log_path",
    "make_bench_record",
    "make_record",
    "new_session_id",
]
