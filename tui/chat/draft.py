"""Speculative decoding in the chat: which draft is in use, and a picker that offers only drafts whose
vocabulary matches the loaded model (token ids pass between the two unchanged). A draft outside the known
model folders is typed into the picker's box and checked the same way (``typed_ref.check_draft_path``)."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from tokrace.backends.base import Backend
from tokrace.load import DraftSpec
from tokrace.model_registry.gguf_meta import GGUFInfo


def draft_label(backend: Backend) -> str | None:
    """``draft smollm2-135m (k=4)`` / ``prompt lookup (k=4, adaptive)`` for the status line."""
    draft = backend.capabilities.draft
    if draft is None:
        return None
    what = f"draft {draft.name}" if draft.kind == "draft model" else "prompt lookup"
    extra = ", adaptive" if draft.adaptive else ""
    return f"{what} (k={draft.k}{extra})"


def compatible_drafts(target: GGUFInfo, target_path: str) -> list[tuple[str, str]]:
    """(label, ref) of local models that can draft for ``target``: same token table, smaller file."""
    from tokrace.backends.draft_compat import vocab_mismatch
    from tokrace.model_registry.errors import TokraceError
    from tokrace.model_registry.gguf_meta import read_gguf_info
    from tokrace.model_registry.listing import list_models
    from tokrace.model_registry.units import format_params

    out = []
    for row in list_models():
        path = row.get("path")
        if not path or Path(path).resolve() == Path(target_path).resolve():
            continue
        try:
            info = read_gguf_info(path)
        except TokraceError:
            continue
        if vocab_mismatch(target, info) is None and (info.file_size or 0) < (target.file_size or 0):
            ref = row["id"] if row.get("source") in ("hf", "pypi", "file") else path
            out.append((f"{row['id']} ({info.quantization}, {format_params(info.n_params)} params)", ref))
    return out


class DraftPicker(ModalScreen[DraftSpec | None]):
    """No draft / prompt lookup / each compatible local model."""

    DEFAULT_CSS = """
    DraftPicker { align: center middle; }
    DraftPicker > Vertical { width: 80; height: auto; max-height: 24; padding: 1 2;
                             border: thick $accent; background: $surface; }
    DraftPicker OptionList { height: auto; max-height: 16; }
    DraftPicker #draft-line { color: $text-muted; height: auto; }
    DraftPicker #draft-line.error { color: $error; }
    DraftPicker #draft-line.empty { display: none; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="draft.cancel")]

    def __init__(self, target: GGUFInfo, target_path: str, current: DraftSpec) -> None:
        super().__init__()
        self.target = target
        self.target_path = target_path
        self.current = current
        self._choices: list[DraftSpec] = [DraftSpec(), DraftSpec(lookup=True, k=current.k)]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("[b]Draft model[/b] (only models with the same vocabulary are listed)")
            yield OptionList(
                Option("No draft: plain decoding", id="none"),
                Option("Prompt lookup: n-gram drafting from the context, no second model", id="lookup"),
                Option("checking local models…", id="checking", disabled=True),
            )
            yield Input(placeholder="…or the path of a .gguf draft (Enter checks and loads it)",
                        id="draft-path")
            yield Static("", id="draft-line", classes="empty", markup=False)

    def on_mount(self) -> None:
        self.find_drafts()

    @work(thread=True)
    def find_drafts(self) -> None:
        found = compatible_drafts(self.target, self.target_path)
        self.app.call_from_thread(self._show, found)

    def _show(self, found: list[tuple[str, str]]) -> None:
        options = self.query_one(OptionList)
        options.remove_option("checking")
        for label, ref in found:
            self._choices.append(DraftSpec(ref=ref, k=self.current.k, adaptive=self.current.adaptive))
            options.add_option(Option(label, id=f"model-{len(self._choices) - 1}"))
        if not found:
            options.add_option(Option("no local model shares this vocabulary (pull a smaller one of "
                                      "the same family)", disabled=True))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        option_id = event.option.id or ""
        if option_id == "none":
            self.dismiss(self._choices[0])
        elif option_id == "lookup":
            self.dismiss(self._choices[1])
        elif option_id.startswith("model-"):
            self.dismiss(self._choices[int(option_id.removeprefix("model-"))])

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip():
            self._show_line("checking…")
            self.check_typed(event.value)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._show_line("")

    @work(thread=True, exclusive=True, group="typed")
    def check_typed(self, text: str) -> None:
        """Check the typed draft off the UI thread (reads its header): a GGUF with the target's token
        table; dismiss with it, or say in one line what is wrong."""
        from tokrace.model_registry.errors import TokraceError
        from tokrace.tui.screens.typed_ref import check_draft_path
        from tokrace.tui.words import say

        try:
            path = check_draft_path(text, self.target, self.target_path)
        except TokraceError as err:
            self.app.call_from_thread(self._show_line, say(err), True)
            return
        self.app.call_from_thread(self._typed_ok, path)

    def _typed_ok(self, path: str) -> None:
        if self.is_attached and self.app.screen is self:
            self.dismiss(DraftSpec(ref=path, k=self.current.k, adaptive=self.current.adaptive))

    def _show_line(self, line: str, error: bool = False) -> None:
        for widget in self.query("#draft-line").results(Static):
            widget.update(line)
            widget.set_class(not line, "empty")
            widget.set_class(error, "error")

    def action_cancel(self) -> None:
        self.dismiss(None)
