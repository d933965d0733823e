"""The tokrace Textual app: loads the model in the background, then hands it to the chat screen."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen

from backends.base import Backend, GenerationParams, LoadConfig
from backends.device_telemetry import DeviceSampler
from backends.placement import PlacementRequest
from backends.split_planner import SplitPlan
from model_registry.errors import TokraceError
from model_registry.gguf_meta import GGUFInfo
from model_registry.units import format_bytes
from tui.chat.draft import DraftChoice, DraftPicker
from tui.chat.screen import ChatScreen, ReplyFinished
from tui.race.screen import RaceScreen, RaceSetup
from tui.widgets.error_modal import ErrorModal

GIL_SWITCH_INTERVAL_S = 0.001


class ModelLoaded(Message):
    def __init__(self, backend: Backend, recorder: object | None = None, plan: SplitPlan | None = None,
                 cpu_bandwidth: float | None = None) -> None:
        super().__init__()
        self.backend = backend
        self.recorder = recorder
        self.plan = plan
        self.cpu_bandwidth = cpu_bandwidth


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
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True),
        Binding("ctrl+o", "open_models", "Models", id="app.models"),
        Binding("ctrl+l", "open_sessions", "Speed log", id="app.sessions"),
        Binding("ctrl+r", "toggle_race", "Race", id="app.race"),
        Binding("ctrl+d", "choose_draft", "Draft", id="app.draft"),
        Binding("f2", "open_settings", "Settings", id="app.settings"),
    ]

    def __init__(
        self,
        *,
        model_ref: str | None = None,
        configure: LoadConfig | None = None,
        request: PlacementRequest | None = None,
        params: GenerationParams | None = None,
        backend: Backend | None = None,
        sampler: DeviceSampler | None = None,
        race: RaceSetup | None = None,
        draft: DraftChoice | None = None,
        price_per_hour: float | None = None,
    ) -> None:
        """``model_ref`` is resolved and loaded in the background; tests may pass a loaded ``backend``.
        ``configure`` carries flag overrides (its ``path`` is ignored: the resolved model's is used).
        ``race`` starts the app on the race screen (``tokrace race A B``); the chat model then loads only
        when the user first goes to the chat (Ctrl+R), so it does not compete with the race."""
        super().__init__()
        self.model_ref = model_ref
        self.configure = configure
        self.request = request or PlacementRequest()
        self.recorder: object | None = None
        self.plan: SplitPlan | None = None
        self.cpu_bandwidth: float | None = None
        self.params = params or GenerationParams()
        self.backend = backend
        self.sampler = sampler if sampler is not None else DeviceSampler()
        self.chat = ChatScreen(self.params)
        self.draft = draft or DraftChoice()
        self.price_per_hour = price_per_hour
        """What the hardware costs per hour (--price-per-hour): replies then show $ per 1K tokens."""
        self.race_setup = race
        self.race: RaceScreen | None = None
        self._chat_load_started = race is None

    def get_default_screen(self) -> Screen[None]:
        return self.chat

    def on_mount(self) -> None:
        # The generating thread needs the GIL for a moment per token; Textual's layout passes hold it
        # for tens of ms. A shorter switch interval hands it over sooner, so a UI frame delays a
        # token by at most ~1 ms instead of ~5 ms (measured: see bench/overhead.py).
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        self.sampler.start()
        if self.race_setup is not None:
            self.action_toggle_race()
        elif self.backend is not None:
            # Same path as a background load, so it lands after the screen is composed.
            self.post_message(ModelLoaded(self.backend))
        else:
            self.load_model()

    def on_unmount(self) -> None:
        sys.setswitchinterval(self._switch_interval)
        self.sampler.stop()
        if self.chat._cancel is not None:
            self.chat._cancel.cancel()
        if self.race is not None:
            self.race.stop_all()

    # -- loading ----------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="load")
    def load_model(self) -> None:
        from backends.draft_setup import build_drafted_backend, draft_fields
        from backends.placement import place
        from backends.roofline import cpu_bandwidth
        from model_registry.resolve import resolve_model
        from speedlog import SessionRecorder

        def progress(done: int, total: int, what: str) -> None:
            pct = f" {100 * done / total:.0f}%" if total else ""
            self.post_message(LoadProgress(f"{what}: {format_bytes(done)}{pct}"))

        try:
            resolved = resolve_model(self.model_ref, progress=progress)
            self.post_message(LoadProgress(f"loading {resolved.path.name}…"))
            config = LoadConfig(path=str(resolved.path), name=resolved.model_id,
                                chat_template=resolved.chat_template)
            if self.configure is not None:
                config.n_threads = self.configure.n_threads
            plan = place(config, self.sampler.latest().gpus, self.request)
            d = self.draft
            backend = build_drafted_backend(config, d.ref, lookup=d.lookup, k=d.k, adaptive=d.adaptive,
                                            progress=progress)
            backend.load()
            recorder = SessionRecorder(backend.model, config, kind="chat", model_id=resolved.model_id,
                                       **draft_fields(backend))
            # Measured once per machine (~0.3 s), then cached: the CPU side of the roofline.
            bandwidth = cpu_bandwidth().bytes_per_s
        except TokraceError as err:
            self.post_message(ModelLoadFailed(str(err)))
            return
        self.post_message(ModelLoaded(backend, recorder, plan, bandwidth))

    def on_load_progress(self, message: LoadProgress) -> None:
        self.chat.set_status(message.text)

    def on_model_loaded(self, message: ModelLoaded) -> None:
        old = self.backend
        self.recorder, self.plan, self.cpu_bandwidth = message.recorder, message.plan, message.cpu_bandwidth
        self._attach(message.backend)
        if old is not None and old is not message.backend:
            old.unload()

    def on_model_load_failed(self, message: ModelLoadFailed) -> None:
        self.chat.set_status("no model loaded: restart with --model PATH.gguf or a catalog id")
        self.push_screen(ErrorModal(message.error, title="Could not load the model"))

    def _attach(self, backend: Backend) -> None:
        self.backend = backend
        self.chat.attach_backend(backend)

    # -- replies ----------------------------------------------------------------------------------
    def on_reply_finished(self, message: ReplyFinished) -> None:
        """Write the reply to the speed log the moment it ends (on a thread: fsync, maybe a sha256)."""
        if self.recorder is not None:
            self.record_reply(message)

    @work(thread=True, group="record")
    def record_reply(self, message: ReplyFinished) -> None:
        window = message.window
        try:
            self.recorder.record(  # type: ignore[attr-defined]
                message.stats,
                peak_vram_bytes=window.peak_vram_bytes if window else None,
                energy_j=window.energy_j if window else None,
            )
        except TokraceError as err:
            self.call_from_thread(self.notify, f"speed log not written: {err}", severity="error")

    def action_choose_draft(self) -> None:
        """Pick a draft model (only vocabulary-compatible ones are offered), then reload with it."""
        loaded = self._loaded_info()
        if loaded is None:
            return
        info, path = loaded

        def chosen(choice: DraftChoice | None) -> None:
            if choice is not None and choice != self.draft and self._may_reload():
                self.draft = choice
                self._reload("loading with the new draft setting…")

        self.push_screen(DraftPicker(info, path, self.draft), callback=chosen)

    def action_open_settings(self) -> None:
        """Context, threads, GPU offload and price; Apply reloads the model with them."""
        from tui.screens.settings_screen import LoadSettings, SettingsScreen

        loaded = self._loaded_info()
        if loaded is None:
            return
        info, path = loaded
        threads = self.configure.n_threads if self.configure is not None else None
        current = LoadSettings(self.request, threads, self.price_per_hour)

        def chosen(settings: LoadSettings | None) -> None:
            if settings is not None and self._may_reload():
                self.request = settings.request
                self.price_per_hour = settings.price_per_hour
                self.configure = self.configure or LoadConfig(path="")
                self.configure.n_threads = settings.threads
                self._reload("reloading with the new settings…")

        self.push_screen(SettingsScreen(info, path, self.sampler.latest().gpus, current), callback=chosen)

    def _loaded_info(self) -> tuple[GGUFInfo, str] | None:
        """The loaded (target) model's metadata and path, or a notice that nothing is loaded."""
        backend = self.backend
        info = getattr(getattr(backend, "target", backend), "info", None)
        if backend is None or info is None:
            self.notify("Load a model first.", severity="warning")
            return None
        return info, backend.model.path

    def _may_reload(self) -> bool:
        if self.chat.generating:
            self.notify("Stop the reply (Esc) before reloading the model.", severity="warning")
            return False
        return True

    def _reload(self, status: str) -> None:
        self.chat.set_status(status)
        self.load_model()

    def action_open_sessions(self) -> None:
        from tui.screens.sessions_screen import SessionsScreen

        self.push_screen(SessionsScreen())

    def action_open_models(self) -> None:
        from tui.screens.models_screen import ModelsScreen

        def chosen(ref: str | None) -> None:
            if ref is not None and self._may_reload():
                self.model_ref = ref
                self._reload(f"loading {ref}…")

        self.push_screen(ModelsScreen(), callback=chosen)

    def action_toggle_race(self) -> None:
        """Ctrl+R: to the race screen (made once, kept with its lanes and history) and back to chat."""
        if self.race is not None and self.screen is self.race:
            self.pop_screen()
            if self.backend is None and self.race_setup is not None and not self._chat_load_started:
                self._chat_load_started = True
                self.load_model()  # started as a race: the chat's model loads on first visit
            return
        if self.race is None:
            setup = self.race_setup or RaceSetup(refs=[self.model_ref, None])
            self.race = RaceScreen(setup, self.params)
            self.install_screen(self.race, name="race")
        self.push_screen("race")

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("New chat", "Clear the conversation (Ctrl+N)", self.chat.action_new_chat)
        yield SystemCommand("Stop reply", "Stop the streaming reply (Esc)", self.chat.action_stop_reply)
        yield SystemCommand("Models", "Browse, pull and switch models (Ctrl+O)", self.action_open_models)
        yield SystemCommand("Settings", "Context, threads, GPU offload, price per hour (F2)",
                            self.action_open_settings)
        yield SystemCommand("Draft model", "Speculative decoding: pick a draft or prompt lookup (Ctrl+D)",
                            self.action_choose_draft)
        yield SystemCommand("A/B rerun without the draft", "Measure the draft's speedup (Ctrl+B)",
                            self.chat.action_ab_rerun)
        yield SystemCommand("Speed log", "Past sessions and replies, export (Ctrl+L)",
                            self.action_open_sessions)
        yield SystemCommand("Race", "Two models, one prompt, side by side (Ctrl+R)", self.action_toggle_race)


def run_app(args: argparse.Namespace) -> int:
    from cli import common
    from model_registry.resolve import ResolvedModel

    # Flag overrides only; the path is filled in once the model is resolved in the background.
    configure = common.load_config(args, ResolvedModel(path=Path(""), model_id=""))
    draft = DraftChoice(ref=args.draft, lookup=args.lookup, k=args.draft_k, adaptive=args.adaptive_k)
    app = TokraceApp(model_ref=args.model, configure=configure, request=common.placement_request(args),
                     params=common.generation_params(args), draft=draft,
                     price_per_hour=args.price_per_hour)
    app.run()
    return 0


def run_race_app(args: argparse.Namespace) -> int:
    """``tokrace race A B`` without ``--prompt``: the app opens on the race screen."""
    from cli import common

    setup = RaceSetup(refs=[args.model_a, args.model_b], mode=args.mode, threads=args.threads,
                      request=common.placement_request(args), drafts=(args.draft_a, args.draft_b),
                      draft_k=args.draft_k)
    app = TokraceApp(params=common.generation_params(args), race=setup)
    app.run()
    return 0
