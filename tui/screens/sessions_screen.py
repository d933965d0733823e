"""The sessions screen: past sessions and their replies with speeds; pick one to view it; export.

Self-contained: it reads the speed log itself (``speedlog``), so the app only pushes it::

    self.push_screen(SessionsScreen())

Keys: ↑/↓ move (the replies and the detail follow the cursor), Tab switches tables, ``m``/``c``/``j``
export the selected session as Markdown/CSV/JSONL (plus an SVG plot), ``a`` toggles all sessions for
export, ``r`` re-reads the log, Esc closes.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from tokrace.model_registry import paths
from tokrace.model_registry.errors import TokraceError
from tokrace.speedlog import ReplyRecord, SessionSummary, SpeedLog
from tokrace.speedlog.export import render, write_atomic
from tokrace.speedlog.plot import replies_chart, reply_chart, svg_plots
from tokrace.speedlog.store import model_key, model_names, summarize_sessions


def _num(value: float | None, fmt: str) -> str:
    return format(value, fmt) if value is not None else "–"


def reply_detail(record: ReplyRecord, name: str | None = None) -> str:
    """What one reply was: model (``name``: its one name in the log, default the record's own),
    settings, hardware, figures, and its tok/s over time."""
    what = record.test or (f"lane {record.lane}" if record.lane else record.kind)
    lines = [
        f"{record.time[:19].replace('T', ' ')} UTC · {what} · {name or record.model} {record.quantization}"
        f" · {record.hardware_label}",
        f"prompt {_num(record.n_prompt, 'd')} tok @ {_num(record.prompt_tok_s, '.1f')} tok/s"
        f" (+{record.cached_prompt_tokens} cached) · TTFT {_num(record.ttft_s, '.3f')} s"
        f" · {record.n_gen} tok @ {_num(record.gen_tok_s, '.2f')} tok/s · stop {record.stop_reason or '–'}",
        f"threads {_num(record.n_threads, 'd')} · n_gpu_layers {record.n_gpu_layers}"
        f" · split {record.split_mode}"
        f" · build {record.build_commit or '?'} · sha256 {(record.model_sha256 or '?')[:12]}",
    ]
    if record.drafted:
        lines.append(f"draft {record.accepted}/{record.drafted} accepted (accepted ÷ drafted)")
    if record.samples_ts:
        lines.append("repetitions: " + ", ".join(f"{x:.1f}" for x in record.samples_ts) + " tok/s")
    if record.error:
        lines.append(f"error: {record.error}")
    if record.token_times_s and len(record.token_times_s) >= 2:
        lines += ["", reply_chart(record, width=60, height=5)]
    return "\n".join(lines)


class SessionsScreen(Screen[None]):
    DEFAULT_CSS = """
    SessionsScreen { layout: vertical; }
    SessionsScreen #tables { height: 1fr; }
    SessionsScreen #sessions { width: 2fr; }
    SessionsScreen #replies { width: 3fr; }
    SessionsScreen DataTable { height: 1fr; border: round $panel; }
    SessionsScreen DataTable:focus { border: round $accent; }
    SessionsScreen #detail { height: auto; max-height: 16; padding: 0 1; border: round $panel; }
    SessionsScreen #status { height: 1; padding: 0 1; color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back", id="sessions.close"),
        Binding("m", "export('md')", "Export .md", id="sessions.export_md"),
        Binding("c", "export('csv')", "Export .csv", id="sessions.export_csv"),
        Binding("j", "export('jsonl')", "Export .jsonl", id="sessions.export_jsonl"),
        Binding("a", "toggle_all", "All sessions", id="sessions.toggle_all"),
        Binding("r", "reload", "Reload", id="sessions.reload"),
    ]

    def __init__(self, log: SpeedLog | None = None, export_dir: Path | None = None) -> None:
        super().__init__()
        self.speed_log = log or SpeedLog.open()
        self.export_dir = export_dir
        self.records: list[ReplyRecord] = []
        self.sessions: list[SessionSummary] = []
        self.names: dict[str, str] = {}
        self.selected_session: str | None = None
        self.selected_record: ReplyRecord | None = None
        self.export_all = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="tables"):
            yield DataTable(id="sessions", cursor_type="row", zebra_stripes=True)
            yield DataTable(id="replies", cursor_type="row", zebra_stripes=True)
        yield Static("", id="detail", markup=False)
        yield Static("", id="status", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        sessions = self.query_one("#sessions", DataTable)
        sessions.add_columns("session", "ended (UTC)", "kind", "replies", "tok/s", "models")
        replies = self.query_one("#replies", DataTable)
        replies.add_columns(
            "time", "kind", "model", "quant", "tok", "tok/s", "TTFT s", "prompt tok/s", "stop"
        )
        sessions.border_title = "Sessions"
        replies.border_title = "Replies"
        self.action_reload()
        sessions.focus()

    # -- data --------------------------------------------------------------------------------------
    def action_reload(self) -> None:
        try:
            contents = self.speed_log.read_all()
        except TokraceError as err:
            self.notify(str(err), severity="error")
            return
        for problem in contents.problems:
            self.notify(problem, severity="warning", timeout=8)
        self.records = contents.records
        self.names = model_names(self.records)  # one name per model file (sha256), everywhere here
        self.sessions = summarize_sessions(self.records)
        table = self.query_one("#sessions", DataTable)
        table.clear()
        for s in self.sessions:
            table.add_row(
                s.session_id, s.ended[:19].replace("T", " "), "/".join(s.kinds), str(s.replies),
                _num(s.mean_gen_tok_s, ".1f"), ", ".join(s.models), key=s.session_id,
            )
        self._set_status()
        if self.sessions:
            self._show_session(self.sessions[0].session_id)
        else:
            self.query_one("#detail", Static).update(f"Nothing recorded yet in {self.speed_log.path}.")

    def session_records(self, session_id: str | None) -> list[ReplyRecord]:
        return [r for r in self.records if r.session_id == session_id]

    def _show_session(self, session_id: str) -> None:
        self.selected_session = session_id
        records = self.session_records(session_id)
        table = self.query_one("#replies", DataTable)
        table.clear()
        for r in records:
            kind = r.test or (f"race {r.lane}" if r.lane else r.kind)
            table.add_row(
                r.time[11:19], kind, self.model_name(r), r.quantization, str(r.n_gen or r.n_prompt),
                _num(r.gen_tok_s, ".1f"), _num(r.ttft_s, ".3f"), _num(r.prompt_tok_s, ".0f"),
                r.stop_reason or "–", key=r.record_id,
            )
        table.border_title = f"Replies · {session_id}"
        if records:
            self._show_record(records[0])

    def _show_record(self, record: ReplyRecord) -> None:
        self.selected_record = record
        across = replies_chart(self.session_records(record.session_id), width=60, height=3)
        self.query_one("#detail", Static).update(reply_detail(record, self.model_name(record))
                                                 + "\n\n" + across)

    def model_name(self, record: ReplyRecord) -> str:
        return self.names.get(model_key(record), record.model)

    def _set_status(self, extra: str = "") -> None:
        scope = "all sessions" if self.export_all else "the selected session"
        text = f"{len(self.records)} replies in {len(self.sessions)} sessions · export: {scope}"
        self.query_one("#status", Static).update(f"{text} · {extra}" if extra else text)

    # -- events ------------------------------------------------------------------------------------
    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        key = event.row_key.value
        if key is None:
            return
        if event.data_table.id == "sessions":
            if key != self.selected_session:
                self._show_session(key)
        else:
            record = next((r for r in self.records if r.record_id == key), None)
            if record is not None:
                self._show_record(record)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "sessions":
            self.query_one("#replies", DataTable).focus()

    # -- actions -----------------------------------------------------------------------------------
    def action_close(self) -> None:
        self.dismiss(None)

    def action_toggle_all(self) -> None:
        self.export_all = not self.export_all
        self._set_status()

    def action_export(self, fmt: str) -> None:
        records = self.records if self.export_all else self.session_records(self.selected_session)
        if not records:
            self.notify("Nothing to export yet.", severity="warning")
            return
        name = "all-sessions" if self.export_all else f"session-{self.selected_session}"
        directory = self.export_dir or paths.data_dir() / "exports"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            path = write_atomic(directory / f"{name}.{fmt}", render(records, fmt))  # type: ignore[arg-type]
            write_atomic(directory / f"{name}.svg", svg_plots(records))
        except (TokraceError, OSError) as err:
            self.notify(str(err), severity="error", timeout=10)
            return
        self.notify(f"Exported {len(records)} replies to {path} (+ .svg plot)", timeout=6)
        self._set_status(f"last export: {path}")
