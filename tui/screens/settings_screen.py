"""Load settings: context, threads, GPU offload overrides and the hardware price, with the plan they
give shown before anything is reloaded. An impossible override is one red line, never a crash."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from backends.device_telemetry import GpuSample
from backends.placement import PlacementRequest
from backends.split_planner import HeadBytes, gpus_from_samples, plan_split
from model_registry.errors import TokraceError
from model_registry.gguf_meta import GGUFInfo

SPLIT_MODES = [("planner's choice", ""), ("layer", "layer"), ("row", "row"), ("none (one GPU)", "none")]


@dataclass(frozen=True, slots=True)
class LoadSettings:
    request: PlacementRequest
    threads: int | None
    price_per_hour: float | None


def _int(text: str, what: str, *, minimum: int) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise TokraceError(f"{what}: expected a whole number, got {text!r}") from None
    if value < minimum:
        raise TokraceError(f"{what}: expected {minimum} or more, got {value}")
    return value


def parse_settings(ctx: str, threads: str, gpu_layers: str, tensor_split: str, split_mode: str,
                   main_gpu: str, price: str) -> LoadSettings:
    """The form's text → settings; raises ``TokraceError`` with one line for a bad field."""
    from cli.common import parse_tensor_split

    price_value: float | None = None
    if price.strip():
        try:
            price_value = float(price)
        except ValueError:
            raise TokraceError(f"price per hour: expected a number, got {price!r}") from None
        if price_value < 0:
            raise TokraceError("price per hour: expected 0 or more")
    request = PlacementRequest(
        n_ctx=_int(ctx, "context", minimum=1),
        n_gpu_layers=_int(gpu_layers, "GPU layers", minimum=-1),
        tensor_split=parse_tensor_split(tensor_split.strip() or None),
        split_mode=split_mode or None,  # type: ignore[arg-type]
        main_gpu=_int(main_gpu, "main GPU", minimum=0),
    )
    return LoadSettings(request, _int(threads, "threads", minimum=1), price_value)


class SettingsScreen(ModalScreen[LoadSettings | None]):
    DEFAULT_CSS = """
    SettingsScreen { align: center middle; }
    SettingsScreen > Vertical { width: 100; height: auto; max-height: 40; padding: 1 2;
                                border: thick $accent; background: $surface; }
    SettingsScreen Horizontal { height: auto; }
    SettingsScreen .field { width: 1fr; height: auto; margin-right: 1; }
    SettingsScreen #plan { height: auto; margin: 1 0; color: $text-muted; }
    SettingsScreen #plan.error { color: $error; }
    SettingsScreen Button { margin-right: 2; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="settings.cancel")]

    def __init__(self, info: GGUFInfo, path: str, gpus: Sequence[GpuSample], current: LoadSettings) -> None:
        super().__init__()
        self.info = info
        self.path = path
        self.gpus = list(gpus)
        self.current = current

    def compose(self) -> ComposeResult:
        r = self.current.request

        def field(label: str, value: object, field_id: str, placeholder: str) -> Vertical:
            text = "" if value is None else str(value)
            return Vertical(Label(label), Input(text, placeholder=placeholder, id=field_id), classes="field")

        split = ",".join(f"{v:g}" for v in r.tensor_split) if r.tensor_split else None
        with Vertical():
            yield Label(f"[b]Load settings[/b] · {len(self.gpus) or 'no'} GPU(s) detected")
            with Horizontal():
                yield field("context (tokens)", r.n_ctx, "ctx", f"model's, max {self.info.n_ctx_train}")
                yield field("CPU threads", self.current.threads, "threads", "all cores")
                yield field("price per hour ($)", self.current.price_per_hour, "price", "none")
            with Horizontal():
                yield field("GPU layers (-1 = all)", r.n_gpu_layers, "gpu_layers", "planned")
                yield field("tensor split", split, "tensor_split", "e.g. 1,1")
                yield field("main GPU", r.main_gpu, "main_gpu", "0")
                yield Vertical(Label("split mode"),
                               Select(SPLIT_MODES, value=r.split_mode or "", allow_blank=False,
                                      id="split_mode"), classes="field")
            yield Static("", id="plan", markup=False)
            with Horizontal():
                yield Button("Apply and reload", variant="primary", id="apply")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.check()

    def _settings(self) -> LoadSettings:
        def value(field_id: str) -> str:
            return self.query_one(f"#{field_id}", Input).value

        mode = self.query_one("#split_mode", Select).value
        return parse_settings(value("ctx"), value("threads"), value("gpu_layers"), value("tensor_split"),
                              str(mode or ""), value("main_gpu"), value("price"))

    def check(self) -> LoadSettings | None:
        """Plan with the form's values; show the plan or the one-line reason it is impossible."""
        from cli.plan_cmd import describe_plan

        out = self.query_one("#plan", Static)
        try:
            settings = self._settings()
            r = settings.request
            plan = plan_split(self.info, gpus_from_samples(self.gpus), n_ctx=r.n_ctx,
                              n_gpu_layers=r.n_gpu_layers, tensor_split=r.tensor_split,
                              split_mode=r.split_mode, main_gpu=r.main_gpu,
                              head=HeadBytes.from_file(self.path))
        except TokraceError as err:
            out.update(str(err))
            out.add_class("error")
            return None
        out.update("\n".join(describe_plan(plan, self.info, self.path)))
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
