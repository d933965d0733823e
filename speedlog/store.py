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

import contextlib
import json
import os
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from tokrace.model_registry import paths
from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.paths import dir_problem
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
    def open(cls, path: str | Path | None = None) -> Self:
        """The log at ``path`` (default: under the data dir). Touches nothing on disk: the file (and its
        folder) is created on the first append, so a log that cannot be written fails there, as a
        ``TokraceError`` the caller shows after the reply, never as a failed load."""
        return cls(Path(path) if path is not None else default_log_path())

    def _ensure_open(self) -> int:
        if self._fd is not None:
            return self._fd
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as err:
            problem = dir_problem(self.path.parent, err)
            raise TokraceError(f"cannot write the speed log {self.path}: {problem.template}",
                               kind="log", facts={"path": str(self.path)}) from err
        if created:
            _fsync_dir(self.path.parent)
        self._fd = fd
        return fd

    def _problem(self, err: OSError, fix: str) -> TokraceError:
        return TokraceError(f"cannot write the speed log {self.path}: {err.strerror or err}; {fix}",
                            kind="log", facts={"path": str(self.path)})

    def append(self, record: ReplyRecord) -> None:
        """Write one record as one line and fsync it: once this returns, a kill -9 cannot lose it.

        Raises ``TokraceError`` (kind ``log``) when the log cannot be written (full disk, read-only
        folder). A write that fails part-way is cut off again when no other writer appended after it,
        and a torn last line (a writer killed mid-line, or an uncut failure) is ended before the next
        record, so one failure never damages the records after it."""
        line = (json.dumps(record.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        with self._lock:
            fd = self._ensure_open()
            try:
                if _fd_ends_torn(fd):
                    # Start on a fresh line so only the torn one is lost; one write, so no new tear.
                    line = b"\n" + line
                _write_line(fd, line)
                os.fsync(fd)
            except OSError as err:
                raise self._problem(err, "free some disk space") from err

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
        except (FileNotFoundError, NotADirectoryError):
            return LogContents([])  # nothing logged yet (or no folder to log into: append says why)
        except OSError as err:
            raise TokraceError(f"cannot read the speed log {self.path}: {err.strerror or err}",
                               kind="log") from err

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


class TolerantLog(SpeedLog):
    """A speed log whose ``append`` never raises, for batch runs whose results must be shown even when
    the log cannot be written (bench): the first failure is kept in ``failure`` and later appends are
    skipped; show it after the results."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.failure: TokraceError | None = None

    def append(self, record: ReplyRecord) -> None:
        if self.failure is not None:
            return
        try:
            super().append(record)
        except TokraceError as err:
            self.failure = err


def model_key(record: ReplyRecord) -> str:
    """What identifies the model file of a record: its sha256 (the same file under any name, path or
    catalog id is one model), else its path, else its display name (remote engines, old records)."""
    return record.model_sha256 or record.model_path or record.model


def model_names(records: Iterable[ReplyRecord]) -> dict[str, str]:
    """One display name per model file (``model_key``), used everywhere the log is shown: the catalog
    id when any record of that file has one (the most frequent), else the most frequent GGUF
    ``general.name``, else the file name."""
    ids: dict[str, dict[str, int]] = {}
    names: dict[str, dict[str, int]] = {}
    for r in records:
        key = model_key(r)
        if r.model_id:
            bucket = ids.setdefault(key, {})
            bucket[r.model_id] = bucket.get(r.model_id, 0) + 1
        name = r.model or r.model_filename
        if name:
            bucket = names.setdefault(key, {})
            bucket[name] = bucket.get(name, 0) + 1
    out: dict[str, str] = {}
    for key in {*ids, *names}:
        counts = ids.get(key) or names.get(key) or {}
        out[key] = max(counts, key=lambda n: (counts[n], n)) if counts else key
    return out


def summarize_sessions(records: Iterable[ReplyRecord]) -> list[SessionSummary]:
    records = list(records)
    named = model_names(records)
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
            models=tuple(dict.fromkeys(named.get(model_key(r), r.model) for r in recs)),
            replies=len(recs),
            mean_gen_tok_s=mean(rates) if rates else None,
            mean_ttft_s=mean(ttfts) if ttfts else None,
        ))
    out.sort(key=lambda s: s.ended, reverse=True)
    return out


def _fd_ends_torn(fd: int) -> bool:
    """Whether the file behind ``fd`` has a last line without its newline."""
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"


def _write_line(fd: int, line: bytes) -> None:
    """Append ``line`` (O_APPEND); if a write fails after part of it landed, cut that part off again
    when the file still ends with it (no other writer appended since), then re-raise."""
    written = 0
    try:
        while written < len(line):
            written += os.write(fd, line[written:])
    except OSError:
        if written:
            end = os.lseek(fd, 0, os.SEEK_CUR)  # O_APPEND: just past our last byte
            with contextlib.suppress(OSError):
                if os.fstat(fd).st_size == end:
                    os.ftruncate(fd, end - written)
        raise


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
