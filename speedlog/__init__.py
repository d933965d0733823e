"""Session speed logs: every finished reply (chat, race lane, bench test) kept, exportable, plottable.

No Textual import here (the TUI's sessions screen lives in ``tui/screens``). Typical use::

    from speedlog import SpeedLog, make_record, new_session_id
    log = SpeedLog.open()
    log.append(make_record(stats, model, config, session_id, "chat"))
    records = log.read(session_id=...)
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
from speedlog.store import SessionSummary, SpeedLog, SpeedLogWarning, default_log_path

__all__ = [
    "KINDS",
    "SCHEMA_VERSION",
    "Kind",
    "ReplyRecord",
    "SessionSummary",
    "SpeedLog",
    "SpeedLogWarning",
    "default_log_path",
    "make_bench_record",
    "make_record",
    "new_session_id",
]
