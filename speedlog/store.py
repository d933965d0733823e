"""The append-only speed log: one JSON object per line in ``data_dir()/speedlog/replies.jsonl``.

Why JSONL and not SQLite:

- Durability against kill -9 is one ``write`` of a whole line plus ``fsync`` per finished reply. A
  process killed mid-write can only leave a torn *last* line; the reader skips it with a warning and the
  next writer starts on a fresh line, so every reply that finished before the kill is still there.
  SQLite gives the same guarantee, but with a journal, locks and a file that is opaque to ``grep``.
- Several writers (chat, two race lanes, a bench in another terminal) append with ``O_APPEND``: each
  record is one ``write`` of one line, which local filesystems do not interleave.
- A reader must survive a corrupt line and records of a newer schema: line by line, that is natural;
  a damaged SQLite page can make the whole file unreadable.
- The log is small (a few KB per reply) and read whole for exports; no query engine is needed.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tokrace.model_registry import paths
from tokrace.model_registry.errors import TokraceError
from tokrace.speedlog.record import SCHEMA_VERSION, ReplyRecord
from tokrace.speedlog.stats import mean

LOG_NAME = "replies.jsonl"


class SpeedLogWarning(UserWarning):
    """Part of the log could not be read (corrupt line, unknown schema); the rest was."""


def default_log_path() -> Path:
    return paths.data_dir() / "speedlog" / LOG_NAME


@dataclass(slots=True)
class LogContents:
    records: list[ReplyRecord]
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SessionSummary:
    session_id: str
    started: str
    ended: str
    kinds: tuple[str, ...]
    models: tuple[str, ...]
    replies: int
    mean_gen_tok_s: float | None
    mean_ttft_s: float | None


def parse_lines(lines: Iterable[str], source: str = "log") -> LogContents:
    """Records from JSONL text; bad lines and unknown schema versions become ``problems``, not errors."""
    records: list[ReplyRecord] = []
    problems: list[str] = []
    newer: dict[int, int] = {}
    for lineno, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("not an object")
            version = data.get("schema")
            if not isinstance(version, int) or version < 1:
                raise ValueError(f"no schema version ({version!r})")
            if version > SCHEMA_VERSION:
                # Its fields may mean something else: skipping beats showing wrong figures.
                newer[version] = newer.get(version, 0) + 1
                continue
            records.append(ReplyRecord.from_dict(data))
        except (ValueError, TypeError) as err:
            problems.append(f"{source} line {lineno} is not a readable record ({err}); skipped")
    for version, count in sorted(newer.items()):
        problems.append(
            f"{source}: {count} record(s) of schema version {version} skipped "
            f"(this tokrace reads version {SCHEMA_VERSION}); upgrade tokrace to read them"
        )
    return LogContents(records, problems)


class SpeedLog:
    """Append finished replies; read them back. Thread-safe; several processes may append at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = None

    @classmethod
    def open(cls, path: str | Path | None = None) -> SpeedLog:
        """The log at ``path`` (default: under the data dir); the file is created on first append."""
        return cls(Path(path) if path is not None else default_log_path())

    def _ensure_open(self) -> int:
        if self._fd is not None:
            return self._fd
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as err:
            raise TokraceError(
                f"cannot write the speed log {self.path}: {err.strerror or err}; "
                "check that the directory is writable or set TOKRACE_HOME"
            ) from err
        if created:
            _fsync_dir(self.path.parent)
        elif _ends_torn(self.path):
            # A writer was killed mid-line: start ours on a fresh line so only the torn one is lost.
            os.write(fd, b"\n")
        self._fd = fd
        return fd

    def append(self, record: ReplyRecord) -> None:
        """Write one record as one line and fsync it: once this returns, a kill -9 cannot lose it."""
        line = (json.dumps(record.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        with self._lock:
            fd = self._ensure_open()
            try:
                view = memoryview(line)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            except OSError as err:
                raise TokraceError(
                    f"cannot write the speed log {self.path}: {err.strerror or err}; free some disk space"
                ) from err

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> SpeedLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read_all(self) -> LogContents:
        """Every readable record, with a list of what could not be read."""
        try:
            with self.path.open(encoding="utf-8", errors="replace") as f:
                return parse_lines(f, source=str(self.path))
        except FileNotFoundError:
            return LogContents([])
        except OSError as err:
            raise TokraceError(f"cannot read the speed log {self.path}: {err.strerror or err}") from err

    def read(self, session_id: str | None = None, kind: str | None = None) -> list[ReplyRecord]:
        """Records in file order, optionally of one session / kind; problems become ``SpeedLogWarning``."""
        contents = self.read_all()
        for problem in contents.problems:
            warnings.warn(problem, SpeedLogWarning, stacklevel=2)
        return [
            r for r in contents.records
            if (session_id is None or r.session_id == session_id) and (kind is None or r.kind == kind)
        ]

    def sessions(self, records: list[ReplyRecord] | None = None) -> list[SessionSummary]:
        """One summary per session, newest first."""
        return summarize_sessions(self.read() if records is None else records)


def summarize_sessions(records: Iterable[ReplyRecord]) -> list[SessionSummary]:
    by_session: dict[str, list[ReplyRecord]] = {}
    for r in records:
        by_session.setdefault(r.session_id, []).append(r)
    out = []
    for sid, recs in by_session.items():
        rates = [x for r in recs for x in r.rates()]
        ttfts = [r.ttft_s for r in recs if r.ttft_s is not None]
        out.append(SessionSummary(
            session_id=sid,
            started=min(r.time for r in recs),
            ended=max(r.time for r in recs),
            kinds=tuple(dict.fromkeys(r.kind for r in recs)),
            models=tuple(dict.fromkeys(r.model for r in recs)),
            replies=len(recs),
            mean_gen_tok_s=mean(rates) if rates else None,
            mean_ttft_s=mean(ttfts) if ttfts else None,
        ))
    out.sort(key=lambda s: s.ended, reverse=True)
    return out


def _ends_torn(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return False
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except OSError:
        return False


def _fsync_dir(directory: Path) -> None:
    """Make a new file's directory entry durable too (matters for power loss, not for kill -9)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
