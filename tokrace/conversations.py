"""Saved conversations: every turn on disk the moment it exists, listed, resumed, exported as Markdown.

One JSON Lines file per conversation in ``<data dir>/conversations/<id>.jsonl`` (``TOKRACE_HOME``
applies). Like the speed log (``speedlog/store.py``) it is append-only, one ``write`` of a whole line and
an ``fsync`` per turn: once a turn is shown as sent or finished, a crash or a ``kill -9`` cannot lose it.
A line torn by a kill in the middle of a write is skipped on reading.

Lines (``"t"`` is the line's type)::

    {"t": "start", "time": ISO-8601 UTC, "model": name, "model_ref": ref}  # ref: what loads it again
    {"t": "msg", "role": "system"|"user"|"assistant", "content": text, "time": ...,
     "stop_reason": ..., "figures": {...}}    # a reply's stop reason and figures (ReplyStats fields)
    {"t": "cut", "keep": n}      # regenerate / edit: the history is its first n messages again

Reading replays the lines, so regenerating or editing the last message never rewrites the file. Files
written before a key existed (``model_ref``, ``figures``) read as before: the key is simply missing.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tokrace.backends.base import ChatMessage
from tokrace.backends.meter import ReplyStats
from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.paths import data_dir

TITLE_CHARS = 60
SAVED_FIGURES = frozenset(f.name for f in fields(ReplyStats)) - {"token_times_s", "llama_perf"}
"""The ``ReplyStats`` fields a reply's ``figures`` keep (not its per-token times or llama.cpp's counters,
which the speed log has)."""


def reply_figures(stats: ReplyStats) -> dict[str, Any]:
    """What a conversation file keeps of a reply's figures (``SAVED_FIGURES``)."""
    return {k: v for k, v in stats.to_dict().items() if k in SAVED_FIGURES}


@dataclass(frozen=True, slots=True)
class SavedReply:
    """How a saved reply ended and its figures, as written with it (both ``None`` in older files)."""

    stop_reason: str | None = None
    figures: dict[str, Any] | None = None

    def stats(self) -> ReplyStats | None:
        """The reply's figures as ``ReplyStats`` (unknown keys ignored), ``None`` when none were saved."""
        if not self.figures:
            return None
        known = {k: v for k, v in self.figures.items() if k in SAVED_FIGURES}
        try:
            return ReplyStats(**known)
        except TypeError:
            return None


def conversations_dir() -> Path:
    """``<data dir>/conversations`` (not created here)."""
    return data_dir() / "conversations"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(slots=True)
class SavedConversation:
    """A conversation as read back: its messages after replaying every line."""

    id: str
    path: Path
    model: str = ""
    model_ref: str = ""
    """What loads the conversation's model again (a catalog id, ``hf:`` ref, absolute path or server URL);
    empty in files written before it was recorded, or for a model built outside the app."""
    started: str = ""
    updated: str = ""
    messages: list[ChatMessage] = field(default_factory=list)
    replies: list[SavedReply] = field(default_factory=list)
    """One per message, in the same order: a reply's stop reason and figures (empty for other turns)."""

    @property
    def title(self) -> str:
        """The first user message's first line, cut to ``TITLE_CHARS`` characters."""
        first = next((m.content for m in self.messages if m.role == "user"), "")
        line = first.strip().splitlines()[0] if first.strip() else "(empty)"
        return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1] + "…"


class ConversationLog:
    """The file of one conversation being written. The file is created with the first turn (a chat
    that never sends anything leaves nothing behind). Thread-safe; each call fsyncs before returning.

    Raises ``TokraceError`` (kind ``log``) when the folder or the file cannot be written."""

    def __init__(self, model: str, conversation_id: str | None = None, folder: Path | None = None, *,
                 model_ref: str | None = None) -> None:
        """``model``: the loaded model's name (shown); ``model_ref``: what loads it again (saved with it,
        so a resumed chat can offer to load its own model)."""
        self.id = conversation_id or (datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3))
        self.model = model
        self.model_ref = model_ref
        self.path = (folder or conversations_dir()) / f"{self.id}.jsonl"
        self._fd: int | None = None
        self._lock = threading.Lock()

    @classmethod
    def resume(cls, saved: SavedConversation) -> ConversationLog:
        """Keep appending to a saved conversation's file."""
        log = cls(saved.model, saved.id, saved.path.parent, model_ref=saved.model_ref or None)
        return log

    def _write(self, data: dict[str, Any]) -> None:
        line = (json.dumps(data, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            try:
                if self._fd is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    new = not self.path.exists()
                    self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                    if new:
                        start = {"t": "start", "time": _now(), "model": self.model}
                        if self.model_ref:
                            start["model_ref"] = self.model_ref
                        line = (json.dumps(start, ensure_ascii=False) + "\n").encode("utf-8") + line
                os.write(self._fd, line)
                os.fsync(self._fd)
            except OSError as err:
                raise TokraceError(f"conversation not saved: {self.path.parent} ({err.strerror or err});"
                                   " check the folder, or set TOKRACE_HOME", kind="log") from None

    def append(self, message: ChatMessage, *, stop_reason: str | None = None,
               figures: dict[str, Any] | None = None) -> None:
        """Save one message (a user turn when sent, a reply when it ended, with how it ended and its
        ``figures``: ``reply_figures(stats)``)."""
        data: dict[str, Any] = {"t": "msg", "role": message.role, "content": message.content, "time": _now()}
        if stop_reason is not None:
            data["stop_reason"] = stop_reason
        if figures:
            data["figures"] = figures
        self._write(data)

    def cut(self, keep: int) -> None:
        """The history is its first ``keep`` messages again (regenerate, edit the last message)."""
        self._write({"t": "cut", "keep": keep, "time": _now()})

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def read_conversation(path: Path) -> SavedConversation:
    """Replay one conversation file. Unreadable lines (a torn last line) are skipped; a file that cannot
    be read raises ``TokraceError``."""
    saved = SavedConversation(path.stem, path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise TokraceError(f"{path}: cannot read it ({err.strerror or err})", kind="log") from None
    for line in raw.decode("utf-8", "replace").splitlines():
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(data, dict):
            continue
        kind = data.get("t")
        if kind == "start":
            saved.model = str(data.get("model", ""))
            saved.model_ref = str(data.get("model_ref", ""))
            saved.started = saved.updated = str(data.get("time", ""))
        elif kind == "msg" and data.get("role") in ("system", "user", "assistant"):
            saved.messages.append(ChatMessage(data["role"], str(data.get("content", ""))))
            figures = data.get("figures")
            stop_reason = data.get("stop_reason")
            saved.replies.append(SavedReply(stop_reason if isinstance(stop_reason, str) else None,
                                            figures if isinstance(figures, dict) else None))
            saved.updated = str(data.get("time", saved.updated))
        elif kind == "cut" and isinstance(data.get("keep"), int):
            del saved.messages[max(0, data["keep"]):]
            del saved.replies[max(0, data["keep"]):]
            saved.updated = str(data.get("time", saved.updated))
    return saved


def list_conversations(folder: Path | None = None) -> list[SavedConversation]:
    """Every saved conversation with at least one message, the most recently updated first."""
    folder = folder or conversations_dir()
    try:
        paths = sorted(folder.glob("*.jsonl"))
    except OSError:
        return []
    found = []
    for path in paths:
        try:
            saved = read_conversation(path)
        except TokraceError:
            continue
        if saved.messages:
            found.append(saved)
    return sorted(found, key=lambda s: s.updated, reverse=True)


def find_conversation(ref: str, folder: Path | None = None) -> SavedConversation:
    """A saved conversation by id (or a unique start of one), a path, or ``last`` (the latest).

    Raises ``TokraceError`` (kind ``usage``) naming what exists when ``ref`` matches none or several."""
    path = Path(ref)
    if path.suffix == ".jsonl" and path.exists():
        return read_conversation(path)
    saved = list_conversations(folder)
    if not saved:
        raise TokraceError("no saved conversations yet: chat first, then resume", kind="usage")
    if ref == "last":
        return saved[0]
    matches = [s for s in saved if s.id.startswith(ref)]
    if len(matches) != 1:
        what = "matches no" if not matches else "matches several"
        ids = ", ".join(s.id for s in (matches or saved)[:5])
        raise TokraceError(f"{ref!r} {what} saved conversation (e.g. {ids}): give a longer id, or last",
                           kind="usage")
    return matches[0]


def to_markdown(saved: SavedConversation) -> str:
    """The conversation as Markdown: a title, then one section per message (its text as written)."""
    lines = [f"# {saved.title}", ""]
    facts = [f for f in (f"model: {saved.model}" if saved.model else "",
                         f"started: {saved.started}" if saved.started else "") if f]
    if facts:
        lines += [" · ".join(facts), ""]
    for message in saved.messages:
        lines += [f"## {message.role.capitalize()}", "", message.content.rstrip(), ""]
    return "\n".join(lines)
