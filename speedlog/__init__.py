"""Session speed logs: every finished reply (chat, race lane, bench test) kept, exportable, plottable.

No Textual import here (the TUI's sessions screen lives in ``tui/screens``). Typical use::

    from speedlog import SessionRecorder, SpeedLog
    recorder = SessionRecorder(model, config, kind="chat")   # after the backend loaded the model
    recorder.record(meter.stats)                              # on GenerationFinished
    records = SpeedLog.open().read(session_id=recorder.session_id)

(``make_record`` + ``SpeedLog.append`` are the lower-level pair ``SessionRecorder`` uses.)
"""

from __future__ import annotations

from speedlog.record import (
    KINDS,
    SCHEMA_VERSION,
    Kind,
    ReplyRecord,
    make_bench_record,
    make_record,
    new_session_id,
)
from speedlog.recorder import SessionRecorder
from speedlog.store import SessionSummary, SpeedLog, SpeedLogWarning, default_log_path

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
