"""The models screen: every model tokrace knows of, the memory plan of the highlighted one, and pulls
with a progress bar (bytes, speed, ETA) that Esc cancels (the partial download stays for a resume).

Enter on a downloaded model dismisses the screen with its id (or path); Enter on one not downloaded
pulls it. The plan is read in a worker (a remote header for models not downloaded yet). A model that is
not listed (a file anywhere on disk, a server URL as ``-m`` takes it) is typed into the box below the list
(``p`` or Tab goes there) and checked in a worker before the screen is dismissed with it
(``typed_ref.check_model_ref``); a bad one is one red line under the box.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, ProgressBar, Static

from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.units import format_bytes, format_params
from tokrace.tui.words import keyed, say


class ModelsScreen(Screen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back / cancel pull", id="models.back"),
        Binding("enter", "choose", "Use / pull", priority=True, id="models.choose"),
        Binding("r", "refresh", "Refresh", id="models.refresh"),
        Binding("p", "type_ref", "Path / URL", id="models.type"),
    ]
    DEFAULT_CSS = """
    ModelsScreen DataTable { height: 1fr; }
    ModelsScreen #plan { height: auto; max-height: 3; }
    ModelsScreen #ref-line { color: $text-muted; height: auto; }
    ModelsScreen #ref-line.error { color: $error; }
    ModelsScreen #ref-line.empty { display: none; }
    """

    def __init__(self, rows_fn: Any = None) -> None:
        super().__init__()
        from tokrace.model_registry.listing import list_models

        self._rows_fn = rows_fn or list_models
        self.rows: list[dict[str, Any]] = []
        self.cancel: threading.Event | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield DataTable(id="models", cursor_type="row")
            yield Static("", id="plan")
            yield Input(placeholder=keyed("…or type a .gguf path or http://HOST:PORT/v1[#MODEL], then"
                                          " {key:models.choose}"), id="model-ref")
            yield Static("", id="ref-line", classes="empty", markup=False)
            yield ProgressBar(id="pull-bar", show_eta=False)
            yield Static("", id="pull-status")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("", "model", "params", "size", "source")
        self.query_one(ProgressBar).display = False
        self.action_refresh()
        table.focus()

    def action_refresh(self) -> None:
        from tokrace.model_registry.listing import catalog_problems

        table = self.query_one(DataTable)
        highlighted = self._selected()  # the cursor stays on this model when the list is read again
        table.clear()
        try:
            self.rows = self._rows_fn()
            problems = catalog_problems()
        except TokraceError as err:  # a damaged pulls.json, an unreadable folder: say it, list nothing
            self.rows, problems = [], [say(err)]
        if problems:
            self.query_one("#pull-status", Static).update("\n".join(f"skipped: {p}" for p in problems))
        for r in self.rows:
            table.add_row("✓" if r["downloaded"] else " ", r["id"], format_params(r["params"]),
                          format_bytes(r["size"]) if r["size"] else "?", r["where"], key=r["id"])
        if highlighted is not None:
            index = next((i for i, r in enumerate(self.rows) if r["id"] == highlighted["id"]), None)
            if index is not None:
                table.move_cursor(row=index)

    def _selected(self) -> dict[str, Any] | None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row is None or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        row = self._selected()
        if row is not None:
            self.query_one("#plan", Static).update(f"{row['id']}: reading metadata…")
            self.show_plan(row["path"] or row["id"])

    @work(exclusive=True, group="plan", thread=True)
    def show_plan(self, ref: str) -> None:
        from tokrace.model_registry.memory_plan import fit_summary, plan_memory
        from tokrace.model_registry.model_info import model_info

        try:
            import psutil

            info = model_info(ref).info
            line = fit_summary(plan_memory(info), info, [], psutil.virtual_memory().available)
            kv = info.kv_bytes_per_token()
            text = f"{info.name or ref} · {info.quantization} · KV {kv:,} bytes/token\n{line}"
        except TokraceError as err:
            text = say(err)
        except OSError as err:
            text = f"{ref}: {err.strerror or err}"
        self.app.call_from_thread(self._put_plan, text)

    def _put_plan(self, text: str) -> None:
        """Show ``text`` in the plan line, on the UI thread; nothing when the screen closed meanwhile
        (a slow metadata read must not fail the app after the user moved on)."""
        for widget in self.query("#plan").results(Static):
            widget.update(text)

    def action_type_ref(self) -> None:
        self.query_one("#model-ref", Input).focus()

    def action_choose(self) -> None:
        box = self.query_one("#model-ref", Input)
        if self.focused is box:
            # Enter is a priority binding: it runs before the box handled the keys typed just before it
            # (a path pasted or typed in one burst); read the box after them, from its own queue.
            box.call_later(self._choose_typed)
            return
        row = self._selected()
        if row is None or self.cancel is not None:
            return
        if row["downloaded"]:
            # Catalog ids and hf: refs resolve by name; other tools' models by path.
            self.dismiss(row["id"] if row["source"] in ("hf", "pypi", "file") else row["path"])
        else:
            self.cancel = threading.Event()
            bar = self.query_one(ProgressBar)
            bar.display = True
            bar.update(total=None, progress=0)
            self.pull(row["id"], self.cancel)

    def _choose_typed(self) -> None:
        text = self.query_one("#model-ref", Input).value
        if text.strip():
            self._show_ref_line("checking…")
            self.check_typed(text)

    @work(exclusive=True, group="typed", thread=True)
    def check_typed(self, text: str) -> None:
        """Check the typed model off the UI thread (a GGUF header, the catalog); dismiss with it, or say
        in one line what is wrong."""
        from tokrace.tui.screens.typed_ref import check_model_ref

        try:
            ref = check_model_ref(text)
        except TokraceError as err:
            self.app.call_from_thread(self._show_ref_line, say(err), True)
            return
        self.app.call_from_thread(self._typed_ok, ref)

    def _typed_ok(self, ref: str) -> None:
        if self.is_attached and self.app.screen is self:
            self.dismiss(ref)

    def _show_ref_line(self, line: str, error: bool = False) -> None:
        """The line under the box: what is being checked, or why the typed model cannot be used."""
        for widget in self.query("#ref-line").results(Static):
            widget.update(line)
            widget.set_class(not line, "empty")
            widget.set_class(error, "error")

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "model-ref":
            self._show_ref_line("")

    def action_back(self) -> None:
        if self.cancel is not None:
            self.cancel.set()
        else:
            self.dismiss(None)

    @work(exclusive=True, group="pull", thread=True)
    def pull(self, model_id: str, cancel: threading.Event) -> None:
        from tokrace.model_registry.resolve import resolve_model
        from tokrace.model_registry.transfer import TransferMeter

        meter = TransferMeter()
        shown = [0.0]

        def progress(done: int, total: int, what: str) -> None:
            status = meter.update(done, total, what)
            # call_from_thread blocks until the UI ran it: a few updates a second, never per chunk.
            if status.eta_s is None or meter.clock() - shown[0] > 0.2 or done >= total:
                shown[0] = meter.clock()
                self.app.call_from_thread(self._show_progress, status)

        try:
            resolve_model(model_id, progress, cancel=cancel)
            message = f"{model_id} is ready"
        except TokraceError as err:
            message = say(err)
        except OSError as err:  # a disk fault no layer named: a line, not a crash
            message = f"{model_id}: {err.strerror or err} ({err.filename or 'disk'}); pull again to resume"
        self.app.call_from_thread(self._pull_done, message)

    def _show_progress(self, status: Any) -> None:
        self.query_one(ProgressBar).update(total=status.total or None, progress=status.done)
        self.query_one("#pull-status", Static).update(status.line())

    def _pull_done(self, message: str) -> None:
        self.cancel = None
        self.query_one(ProgressBar).display = False
        self.query_one("#pull-status", Static).update(message)
        self.action_refresh()
