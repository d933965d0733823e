"""The tokrace Textual app: loads the model in the background, then hands it to the chat screen."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.theme import Theme

from tokrace.backends.base import Backend, GenerationParams
from tokrace.backends.device_telemetry import DeviceSampler
from tokrace.backends.split_planner import SplitPlan
from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.gguf_meta import GGUFInfo
from tokrace.model_registry.units import format_bytes
from tokrace.session import DraftSpec, LoadSpec, Session
from tokrace.settings import Settings
from tokrace.tui.chat.draft import DraftPicker
from tokrace.tui.chat.screen import ChatScreen, ReplyFinished
from tokrace.tui.race.screen import RaceScreen, RaceSetup
from tokrace.tui.widgets.error_modal import ErrorModal
from tokrace.tui.words import say

GIL_SWITCH_INTERVAL_S = 0.001


class ModelLoaded(Message):
    def __init__(self, session: Session, cpu_bandwidth: float | None = None) -> None:
        super().__init__()
        self.session = session
        self.cpu_bandwidth = cpu_bandwidth


class ModelLoadFailed(Message):
    def __init__(self, error: TokraceError) -> None:
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
        spec: LoadSpec | None = None,
        settings: Settings | None = None,
        params: GenerationParams | None = None,
        backend: Backend | None = None,
        sampler: DeviceSampler | None = None,
        race: RaceSetup | None = None,
        draft: DraftSpec | None = None,
        price_per_hour: float | None = None,
    ) -> None:
        """``settings`` are this run's (``settings.toml`` overlaid with the flags): what to load, sampling,
        price, theme. ``spec`` (or just ``model_ref`` and ``draft``) and ``params`` override them (tests).
        The model is resolved and loaded in the background through the application layer
        (``tokrace.session``); tests may pass a loaded ``backend`` instead (its replies are not
        recorded). ``race`` starts the app on the race screen (``tokrace race A B``); the chat model
        then loads only when the user first goes to the chat (Ctrl+R), so it does not compete with the
        race. F2 changes and the theme are saved to ``settings.toml``."""
        super().__init__()
        self.settings = settings or Settings()
        if spec is None and (model_ref is not None or draft is not None):
            spec = LoadSpec(model=model_ref, draft=draft or DraftSpec())
        self.spec = spec or LoadSpec.from_settings(self.settings)
        self.session: Session | None = None
        self.cpu_bandwidth: float | None = None
        self.params = params or self.settings.generation_params()
        self._given_backend = backend
        self.sampler = sampler if sampler is not None else DeviceSampler()
        self.chat = ChatScreen(self.params)
        self.price_per_hour = price_per_hour if price_per_hour is not None else self.settings.price_per_hour
        """What the hardware costs per hour (--price-per-hour): replies then show $ per 1K tokens."""
        self.race_setup = race
        self.race: RaceScreen | None = None
        self._chat_load_started = race is None

    @property
    def backend(self) -> Backend | None:
        """The loaded chat backend (``None`` while loading)."""
        return self.session.backend if self.session is not None else None

    @property
    def plan(self) -> SplitPlan | None:
        """Where the chat model's layers went (``None`` for a backend built outside the app)."""
        return self.session.plan if self.session is not None else None

    def get_default_screen(self) -> Screen[None]:
        return self.chat

    def on_mount(self) -> None:
        # The generating thread needs the GIL for a moment per token; Textual's layout passes hold it
        # for tens of ms. A shorter switch interval hands it over sooner, so a UI frame delays a
        # token by at most ~1 ms instead of ~5 ms (measured: see bench/overhead.py).
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        self.sampler.start()
        if self.settings.theme is not None and self.settings.theme in self.available_themes:
            self.theme = self.settings.theme
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        if self.race_setup is not None:
            self.action_toggle_race()
        elif self._given_backend is not None:
            # Same path as a background load, so it lands after the screen is composed.
            self.post_message(ModelLoaded(Session(self._given_backend, record=False)))
        else:
            self.load_model()

    def on_unmount(self) -> None:
        sys.setswitchinterval(self._switch_interval)
        self.sampler.stop()
        self.chat.action_stop_reply()
        if self.race is not None:
            self.race.stop_all()

    # -- loading ----------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="load")
    def load_model(self) -> None:
        from tokrace.backends.roofline import cpu_bandwidth
        from tokrace.session import open_session

        def progress(done: int, total: int, what: str) -> None:
            pct = f" {100 * done / total:.0f}%" if total else ""
            self.post_message(LoadProgress(f"{what}: {format_bytes(done)}{pct}"))

        def status(line: str) -> None:
            self.post_message(LoadProgress(line))

        try:
            session = open_session(self.spec, self.sampler.latest().gpus, progress=progress, status=status)
            # Measured once per machine (~0.3 s), then cached: the CPU side of the roofline.
            bandwidth = cpu_bandwidth().bytes_per_s
        except TokraceError as err:
            self.post_message(ModelLoadFailed(err))
            return
        self.post_message(ModelLoaded(session, bandwidth))

    def on_load_progress(self, message: LoadProgress) -> None:
        self.chat.set_status(message.text)

    def on_model_loaded(self, message: ModelLoaded) -> None:
        old = self.session
        self.session, self.cpu_bandwidth = message.session, message.cpu_bandwidth
        self.chat.attach_backend(message.session.backend)
        if old is not None and old.backend is not message.session.backend:
            old.unload()

    def on_model_load_failed(self, message: ModelLoadFailed) -> None:
        self.chat.set_status("no model loaded: Ctrl+O picks one, F2 changes the load settings")
        self.push_screen(ErrorModal(say(message.error), title="Could not load the model"))

    # -- replies ----------------------------------------------------------------------------------
    def on_reply_finished(self, message: ReplyFinished) -> None:
        """Write the reply to the speed log the moment it ends (on a thread: fsync, maybe a sha256).
        What is recorded (draft or none, k) comes from the reply's own events."""
        if self.session is not None and self.session.records:
            self.record_reply(self.session, message)

    @work(thread=True, group="record")
    def record_reply(self, session: Session, message: ReplyFinished) -> None:
        window = message.window
        try:
            session.record(
                message.stats,
                peak_vram_bytes=window.peak_vram_bytes if window else None,
                energy_j=window.energy_j if window else None,
            )
        except TokraceError as err:
            self.call_from_thread(self.notify, f"speed log not written: {say(err)}", severity="error")

    def action_choose_draft(self) -> None:
        """Pick a draft model (only vocabulary-compatible ones are offered), then reload with it."""
        loaded = self._loaded_info()
        if loaded is None:
            return
        info, path = loaded

        def chosen(choice: DraftSpec | None) -> None:
            if choice is not None and choice != self.spec.draft and self._may_reload():
                self.spec = replace(self.spec, draft=choice)
                self._reload("loading with the new draft setting…")

        self.push_screen(DraftPicker(info, path, self.spec.draft), callback=chosen)

    def action_open_settings(self) -> None:
        """Context, threads, GPU offload and price; Apply reloads the model with them."""
        from tokrace.settings import changed_fields
        from tokrace.tui.screens.settings_screen import SettingsScreen

        loaded = self._loaded_info()
        if loaded is None:
            return
        info, path = loaded
        def chosen(new: Settings | None) -> None:
            if new is None or not self._may_reload():
                return
            changes = changed_fields(self.settings, new)
            self.settings = new
            self.spec = replace(self.spec, request=new.placement_request(), n_threads=new.n_threads)
            self.price_per_hour = new.price_per_hour
            self.save_settings(changes)  # they survive a restart
            self._reload("reloading with the new settings…")

        self.push_screen(SettingsScreen(info, path, self.sampler.latest().gpus, self.settings),
                         callback=chosen)

    @work(thread=True, group="settings")
    def save_settings(self, changes: dict[str, object]) -> None:
        """Write what changed into settings.toml (off the UI thread); a failure is a notice."""
        from tokrace.settings import update_settings_file

        if not changes:
            return
        try:
            update_settings_file(changes)
        except TokraceError as err:
            self.call_from_thread(self.notify, f"settings not saved: {say(err)}", severity="error")

    def _theme_changed(self, theme: Theme) -> None:
        if theme.name != self.settings.theme:
            self.settings = self.settings.updated({"theme": theme.name})
            self.save_settings({"theme": theme.name})

    def _loaded_info(self) -> tuple[GGUFInfo, str] | None:
        """The loaded (target) model's metadata and path, or a notice that nothing is loaded."""
        session = self.session
        if session is None or session.info is None:
            self.notify("Load a model first.", severity="warning")
            return None
        return session.info, session.model.path

    def _may_reload(self) -> bool:
        if self.chat.generating:
            self.notify("Stop the reply (Esc) before reloading the model.", severity="warning")
            return False
        return True

    def _reload(self, status: str) -> None:
        self.chat.set_status(status)
        self.load_model()

    def action_open_sessions(self) -> None:
        from tokrace.tui.screens.sessions_screen import SessionsScreen

        self.push_screen(SessionsScreen())

    def action_open_models(self) -> None:
        from tokrace.tui.screens.models_screen import ModelsScreen

        def chosen(ref: str | None) -> None:
            if ref is not None and self._may_reload():
                self.spec = replace(self.spec, model=ref)
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
            setup = self.race_setup or RaceSetup(refs=[self.spec.model, None])
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
