"""The tokrace Textual app: loads the model in the background, then hands it to the chat screen."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen

from backends.base import Backend, GenerationParams, LoadConfig
from backends.device_telemetry import DeviceSampler
from backends.units import format_bytes
from model_registry.errors import TokraceError
from tui.chat.screen import ChatScreen, ReplyFinished
from tui.widgets.error_modal import ErrorModal


class ModelLoaded(Message):
    def __init__(self, backend: Backend) -> None:
        super().__init__()
        self.backend = backend


class ModelLoadFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class LoadProgress(Message):
    """Posted from the loading thread; a newer one replaces a queued older one."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LoadProgress)


class TokraceApp(App[None]):
    TITLE = "tokrace"
    CSS_PATH = Path(__file__).parent / "tokrace.tcss"
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True)]

    def __init__(
        self,
        *,
        model_ref: str | None = None,
        configure: LoadConfig | None = None,
        params: GenerationParams | None = None,
        backend: Backend | None = None,
        sampler: DeviceSampler | None = None,
    ) -> None:
        """``model_ref`` is resolved and loaded in the background; tests may pass a loaded ``backend``.
        ``configure`` carries flag overrides (its ``path`` is ignored: the resolved model's is used)."""
        super().__init__()
        self.model_ref = model_ref
        self.configure = configure
        self.params = params or GenerationParams()
        self.backend = backend
        self.sampler = sampler if sampler is not None else DeviceSampler()
        self.chat = ChatScreen(self.params)

    def get_default_screen(self) -> Screen[None]:
        return self.chat

    def on_mount(self) -> None:
        self.sampler.start()
        if self.backend is not None:
            # Same path as a background load, so it lands after the screen is composed.
            self.post_message(ModelLoaded(self.backend))
        else:
            self.load_model()

    def on_unmount(self) -> None:
        self.sampler.stop()
        if self.chat._cancel is not None:
            self.chat._cancel.cancel()

    # -- loading ----------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="load")
    def load_model(self) -> None:
        from backends.llama_cpp_backend import LlamaCppBackend
        from model_registry.resolve import resolve_model

        def progress(done: int, total: int, what: str) -> None:
            pct = f" {100 * done / total:.0f}%" if total else ""
            self.post_message(LoadProgress(f"{what}: {format_bytes(done)}{pct}"))

        try:
            resolved = resolve_model(self.model_ref, progress=progress)
            self.post_message(LoadProgress(f"loading {resolved.path.name}…"))
            config = self.configure or LoadConfig(path="")
            config.path = str(resolved.path)
            config.name = config.name or resolved.model_id
            config.chat_template = config.chat_template or resolved.chat_template
            backend = LlamaCppBackend(config)
            backend.load()
        except TokraceError as err:
            self.post_message(ModelLoadFailed(str(err)))
            return
        self.post_message(ModelLoaded(backend))

    def on_load_progress(self, message: LoadProgress) -> None:
        self.chat.set_status(message.text)

    def on_model_loaded(self, message: ModelLoaded) -> None:
        self._attach(message.backend)

    def on_model_load_failed(self, message: ModelLoadFailed) -> None:
        self.chat.set_status("no model loaded: restart with --model PATH.gguf or a catalog id")
        self.push_screen(ErrorModal(message.error, title="Could not load the model"))

    def _attach(self, backend: Backend) -> None:
        self.backend = backend
        self.chat.attach_backend(backend)

    # -- replies ----------------------------------------------------------------------------------
    def on_reply_finished(self, message: ReplyFinished) -> None:
        """Hook for the speed log (the record is written the moment a reply ends)."""

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("New chat", "Clear the conversation (Ctrl+N)", self.chat.action_new_chat)
        yield SystemCommand("Stop reply", "Stop the streaming reply (Esc)", self.chat.action_stop_reply)


def run_app(args: argparse.Namespace) -> int:
    from cli import common
    from model_registry.resolve import ResolvedModel

    # Flag overrides only; the path is filled in once the model is resolved in the background.
    configure = common.load_config(args, ResolvedModel(path=Path(""), model_id=""))
    configure.name = None
    app = TokraceApp(model_ref=args.model, configure=configure, params=common.generation_params(args))
    app.run()
    return 0
