"""F2 settings: sampling, system prompt and context policy (applied to the next reply), and the load
settings (context, threads, GPU offload overrides, hardware price), with the plan they give shown before
anything is reloaded. An impossible override is one red line, never a crash. Each keystroke replans from
the header parsed at load time (no file is read here); the dialog scrolls, so it fits 80×24.

The form is generated from ``tokrace.settings.Settings``: its fields are the settings with a
``form_row``, each input's id is the field name, labels, placeholders and parsing come from the field's
knob. Apply dismisses with the whole updated ``Settings`` (``None`` on cancel).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from tokrace.backends.device_telemetry import GpuSample
from tokrace.backends.model_bytes import HeadBytes
from tokrace.backends.split_plan import gpus_from_samples
from tokrace.backends.split_planner import plan_split
from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.gguf_meta import GGUFInfo
from tokrace.settings import Settings
from tokrace.tui.words import say


def _form_rows() -> tuple[tuple[str, ...], ...]:
    """Field names with a ``form_row``, row by row, each row in declaration order."""
    knobs = (Settings.knob(name) for name in Settings.names())
    rows = sorted({knob.form_row for knob in knobs if knob.form_row is not None})
    return tuple(tuple(Settings.names(form_row=row)) for row in rows)


FORM_ROWS: tuple[tuple[str, ...], ...] = _form_rows()
"""The form's fields, row by row (``Settings`` field names with a ``form_row``, in declaration order)."""

FORM_FIELDS: tuple[str, ...] = tuple(name for row in FORM_ROWS for name in row)


DIALOG_WIDTH = 100
DIALOG_CHROME = 8
"""Columns of the dialog that are not the form: border, padding and the scrollbar."""
SELECT_CHROME = 9
"""Columns a select takes around its value's label (its border, padding and arrow)."""


def field_width(name: str) -> int:
    """Columns a form field needs to show its label and (for a select) its longest choice whole, with
    the gutter after it."""
    knob = Settings.knob(name)
    choices = max((len(label) + SELECT_CHROME for _, label in knob.form_choices), default=0)
    return max(len(knob.label), choices) + 1


def default_n_ctx(info: GGUFInfo) -> int:
    """The context an empty context field loads with: the planner's default (4096), or the model's
    trained context when smaller (``split_planner.plan_split``)."""
    from tokrace.backends.split_planner import DEFAULT_CTX

    return min(DEFAULT_CTX, info.n_ctx_train or DEFAULT_CTX)


def parse_settings(values: Mapping[str, str], base: Settings | None = None) -> Settings:
    """The form's text (field name → text; blank = not set) applied to ``base`` (default: the defaults).

    Raises ``TokraceError`` with one line naming the field by its form label for a bad value.
    """
    return (base or Settings()).updated(values, name_of=Settings.form_label)


class SettingsScreen(ModalScreen[Settings | None]):
    DEFAULT_CSS = """
    SettingsScreen { align: center middle; }
    SettingsScreen > VerticalScroll { width: 100; max-width: 100%; height: auto; max-height: 100%;
                                      padding: 0 1; border: thick $accent; background: $surface; }
    SettingsScreen #title { width: 100%; }
    SettingsScreen Horizontal { height: auto; }
    SettingsScreen Grid.form-row { height: auto; grid-rows: auto; grid-gutter: 0 1; }
    SettingsScreen .field { height: auto; }
    SettingsScreen #plan { height: auto; margin: 0 0 1 0; color: $text-muted; }
    SettingsScreen #plan.error { color: $error; }
    SettingsScreen Button { margin-right: 2; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="settings.cancel")]

    def __init__(self, info: GGUFInfo, path: str, gpus: Sequence[GpuSample], current: Settings, *,
                 ram_free_bytes: int | None = None) -> None:
        """``ram_free_bytes``: RAM the reloaded model may use (the plan checks what stays on the CPU)."""
        super().__init__()
        self.ram_free_bytes = ram_free_bytes
        self.info = info
        self.path = path
        self.gpus = list(gpus)
        self.current = current
        # The header was parsed once, when the model loaded (off the UI thread): the tensor table is in
        # ``info``. Reading the file again per keystroke froze the app (~8 s a key for a 262k vocabulary).
        self.head = HeadBytes.from_info(info)

    def compose(self) -> ComposeResult:
        def field(name: str) -> Vertical:
            knob = Settings.knob(name)
            widget: Input | Select[str]
            if knob.form_choices:
                widget = Select([(label, value) for value, label in knob.form_choices],
                                value=self.current.as_text(name), allow_blank=False, id=name)
            else:
                placeholder = knob.placeholder.format(n_ctx_train=self.info.n_ctx_train,
                                                      n_ctx_default=default_n_ctx(self.info))
                widget = Input(self.current.as_text(name), placeholder=placeholder, id=name)
            return Vertical(Label(knob.label), widget, classes="field")

        with VerticalScroll():
            yield Label(f"[b]Settings[/b] · {len(self.gpus) or 'no'} GPU(s) detected · sampling applies to"
                        " the next reply; context, threads and GPU fields reload the model", id="title")
            for i, row in enumerate(FORM_ROWS):
                with Grid(classes="form-row", id=f"form-row-{i}"):
                    for name in row:
                        yield field(name)
            yield Static("", id="plan", markup=False)
            with Horizontal():
                yield Button("Apply", variant="primary", id="apply")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one(f"#{FORM_FIELDS[0]}").focus()  # typing goes into the first field at once
        self._fit_rows()
        self.check()

    def on_resize(self) -> None:
        self._fit_rows()

    def _fit_rows(self) -> None:
        """As many fields side by side in each row as fit with their labels and choices whole; a row
        that does not fit goes on in the next line (80 columns: the five sampling fields are 4 + 1)."""
        width = min(DIALOG_WIDTH, self.app.size.width) - DIALOG_CHROME
        for i, row in enumerate(FORM_ROWS):
            need = max(field_width(name) for name in row)
            columns = max(1, min(len(row), (width + 1) // need))
            self.query_one(f"#form-row-{i}", Grid).styles.grid_size_columns = columns

    def _settings(self) -> Settings:
        values: dict[str, str] = {}
        for name in FORM_FIELDS:
            if Settings.knob(name).form_choices:
                values[name] = str(self.query_one(f"#{name}", Select).value or "")
            else:
                values[name] = self.query_one(f"#{name}", Input).value
        return parse_settings(values, self.current)

    def check(self) -> Settings | None:
        """Plan with the form's values; show the plan or the one-line reason it is impossible."""
        from tokrace.backends.placement import describe_plan

        out = self.query_one("#plan", Static)
        try:
            settings = self._settings()
            r = settings.placement_request()
            plan = plan_split(self.info, gpus_from_samples(self.gpus), n_ctx=r.n_ctx,
                              n_gpu_layers=r.n_gpu_layers, tensor_split=r.tensor_split,
                              split_mode=r.split_mode, main_gpu=r.main_gpu,
                              head=self.head, host_free_bytes=self.ram_free_bytes)
        except TokraceError as err:
            out.update(say(err))
            out.add_class("error")
            return None
        out.update("\n".join(say(line) for line in describe_plan(plan, self.info, self.path)))
        out.remove_class("error")
        return settings

    def on_input_changed(self, _event: Input.Changed) -> None:
        self.check()

    def on_select_changed(self, _event: Select.Changed) -> None:
        self.check()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._apply()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "apply":
            self._apply()
        else:
            self.dismiss(None)

    def _apply(self) -> None:
        settings = self.check()
        if settings is not None:
            self.dismiss(settings)

    def action_cancel(self) -> None:
        self.dismiss(None)
