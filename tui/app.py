"""The tokrace Textual app: loads the model in the background, then hands it to the chat screen."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, Keymap
from textual.screen import Screen
from textual.theme import Theme

from tokrace.backends.base import Backend, GenerationParams
from tokrace.backends.device_sampler import DeviceSampler
from tokrace.backends.remote_endpoint import is_remote_ref
from tokrace.backends.split_plan import SplitPlan
from tokrace.conversations import SavedConversation
from tokrace.load import DraftSpec, LoadSpec
from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.gguf_meta import GGUFInfo
from tokrace.model_registry.units import format_bytes
from tokrace.session import Session
from tokrace.settings import Settings
from tokrace.tui.app_messages import LoadProgress, ModelLoaded, ModelLoadFailed
from tokrace.tui.app_settings import open_settings
from tokrace.tui.chat.draft import DraftPicker
from tokrace.tui.chat.resume import open_conversations
from tokrace.tui.chat.screen import ChatScreen, ReplyFinished
from tokrace.tui.commands import system_commands
from tokrace.tui.exit_signals import ExitSignals
from tokrace.tui.race.screen import RaceScreen
from tokrace.tui.race.setup import RaceSetup
from tokrace.tui.reply_records import ReplyRecords
from tokrace.tui.widgets.error_modal import ErrorModal
from tokrace.tui.words import key, keyed, say

GIL_SWITCH_INTERVAL_S = 0.001
RECORD_FLUSH_S = 120.0
"""After the app stopped, the longest it waits for reply records still being written (a first record
hashes the model file: ~20 s for 40 GB)."""


class TokraceApp(App[None]):
    TITLE = "tokrace"
    CSS_PATH = Path(__file__).parent / "tokrace.tcss"
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True),
        Binding("f1", "help", "Keys", id="app.help"),
        Binding("f2", "open_settings", "Settings", id="app.settings"),
        Binding("ctrl+o", "open_models", "Models", id="app.models"),
        Binding("f3", "open_conversations", "Chats", id="app.conversations", show=False),
        Binding("ctrl+l", "open_sessions", "Speed log", id="app.sessions", show=False),
        Binding("ctrl+r", "toggle_race", "Race", id="app.race"),
        Binding("ctrl+d", "choose_draft", "Draft", id="app.draft", show=False),
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
        resume: SavedConversation | None = None,
    ) -> None:
        """``settings`` are this run's (``settings.toml`` overlaid with the flags): what to load, sampling,
        price, theme. ``spec`` (or just ``model_ref`` and ``draft``) and ``params`` override them (tests).
        The model is resolved and loaded in the background through the application layer
        (``tokrace.session``); tests may pass a loaded ``backend`` instead (its replies are not
        recorded). ``race`` starts the app on the race screen (``tokrace race A B``); the chat model
        then loads only when the user first goes to the chat (Ctrl+R), so it does not compete with the
        race. F2 changes and the theme are saved to ``settings.toml``. ``resume`` opens a saved conversation
        (``tokrace --resume``) to continue it."""
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
        self.chat = ChatScreen(self.params, system_prompt=self.settings.system_prompt,
                               context_policy=self.settings.context_policy)
        if resume is not None:
            self.chat.resume(resume)
        self._resumed_at_start = resume
        self.pending_resume: SavedConversation | None = None
        """A saved chat to resume once its own model, being loaded now, is in (F3: load its model)."""
        self.price_per_hour = price_per_hour if price_per_hour is not None else self.settings.price_per_hour
        """What the hardware costs per hour (--price-per-hour): replies then show $ per 1K tokens."""
        self.race_setup = race
        self.race: RaceScreen | None = None
        self.records = ReplyRecords()
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
        self.exit_signals = ExitSignals(self)
        self.exit_signals.watch()
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

    def _exit_if_pending(self) -> None:
        self.exit_signals.exit_if_pending()

    def on_unmount(self) -> None:
        if hasattr(self, "exit_signals"):
            self.exit_signals.unwatch()
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
            if done <= 0:  # nothing counted yet: say what is starting, not "0 B 0%"
                size = f" ({format_bytes(total)})" if total else ""
                self.post_message(LoadProgress(f"{what}{size}: starting…"))
                return
            pct = f" {100 * done / total:.0f}%" if total else ""
            of = f" of {format_bytes(total)}" if total else ""
            self.post_message(LoadProgress(f"{what}: {format_bytes(done)}{of}{pct}"))

        def status(line: str) -> None:
            self.post_message(LoadProgress(line))

        try:
            self.sampler.mark_load_start()  # "our" VRAM where NVML cannot tell (containers)
            session = open_session(self.spec, self.sampler.latest().gpus, progress=progress, status=status)
            # Measured once per machine (~0.3 s), then cached: the CPU side of the roofline.
            bandwidth = cpu_bandwidth().bytes_per_s
        except TokraceError as err:
            self.post_message(ModelLoadFailed(err))
            return
        except OSError as err:  # a disk or folder fault no layer named yet: a notice, not a crash
            where = f" ({err.filename})" if err.filename else ""
            self.post_message(ModelLoadFailed(TokraceError(
                f"{err.strerror or err}{where}; check the disk and folders, or set TOKRACE_HOME",
                                                           kind="storage")))
            return
        self.post_message(ModelLoaded(session, bandwidth))

    def on_load_progress(self, message: LoadProgress) -> None:
        self.chat.set_status(message.text)

    def on_model_loaded(self, message: ModelLoaded) -> None:
        old = self.session
        self.session, self.cpu_bandwidth = message.session, message.cpu_bandwidth
        if old is not None and old.model.path != message.session.model.path:
            self.chat.action_new_chat()  # another model: a new conversation, no figures of the old one
        self.chat.attach_backend(message.session.backend)
        if old is not None and old.backend is not message.session.backend:
            race = self.race
            if race is not None and self.screen is not race and any(
                    lane.backend is old.backend for lane in race.lanes):
                # A lane raced on the chat's old model: the race starts afresh on the next Ctrl+R.
                self.uninstall_screen(race)
                self.race = None
            old.unload()
        self._resume_after_load(old)

    def _resume_after_load(self, old: Session | None) -> None:
        """The chat waiting for this model (F3, "load its model") is resumed on it; a chat resumed at
        start (``--resume``) that was made with another model says which model continues it."""
        from tokrace.tui.chat.resume import made_with_another_model

        pending, self.pending_resume = self.pending_resume, None
        if pending is not None:
            self.chat.resume(pending)
        start, self._resumed_at_start = self._resumed_at_start, None
        if old is None and start is not None and made_with_another_model(start, self.session):
            assert self.session is not None
            self.notify(f"This chat was made with {start.model}; it continues on {self.session.model.name}"
                        f" ({key('app.conversations')} offers to load its model).", severity="warning",
                        timeout=10)

    def on_model_load_failed(self, message: ModelLoadFailed) -> None:
        if self.pending_resume is not None:
            self.pending_resume = None
            self.notify("The saved chat was not resumed: its model did not load.", severity="warning")
        self.chat.set_status(keyed("no model loaded: {key:app.models} picks one, {key:app.settings} changes"
                                   " the load settings"))
        self.push_screen(ErrorModal(say(message.error), title="Could not load the model"))

    # -- replies ----------------------------------------------------------------------------------
    def on_reply_finished(self, message: ReplyFinished) -> None:
        """Write the reply to the speed log the moment it ends (on a thread: fsync, maybe a sha256).
        What is recorded (draft or none, k) comes from the reply's own events."""
        if message.turn.session.records:
            self.record_reply(self.records.add(message))
        else:
            self._exit_if_pending()  # a signal stopped a reply that is not logged: nothing to wait for
        self._check_cpu_ceiling(message)

    def _check_cpu_ceiling(self, message: ReplyFinished) -> None:
        """A CPU reply faster than the roofline means the cached CPU bandwidth was measured under load:
        measure it again (keeping the best), so the efficiency figure stays an upper bound."""
        from tokrace.backends.placement import ceiling_tok_s
        from tokrace.backends.roofline import beats_ceiling

        plan, stats = self.plan, message.stats
        if plan is None or plan.per_device or self.cpu_bandwidth is None:
            return
        ceiling = ceiling_tok_s(plan, None, self.cpu_bandwidth, stats.prompt_tokens or 0)
        if beats_ceiling(stats.gen_tok_s, ceiling):
            self.remeasure_cpu_bandwidth()

    @work(thread=True, exclusive=True, group="bandwidth")
    def remeasure_cpu_bandwidth(self) -> None:
        from tokrace.backends.roofline import cpu_bandwidth

        best = cpu_bandwidth(refresh=True).bytes_per_s
        self.call_from_thread(setattr, self, "cpu_bandwidth", best)

    @work(thread=True, group="record")
    def record_reply(self, job: int) -> None:
        try:
            error = self.records.write(job)
            if error is not None and self.is_running:
                self.call_from_thread(self.notify, f"speed log not written: {error}", severity="error")
        finally:
            if self.is_running:
                self.call_from_thread(self._exit_if_pending)  # SIGTERM/SIGHUP waited for this record

    def flush_records(self, timeout_s: float = RECORD_FLUSH_S) -> list[str]:
        """After the app stopped: write the replies whose record never started and wait (at most
        ``timeout_s``) for those being written (the first reply of a big model waits for its sha256).
        A quit never loses a finished reply. Returns the error lines of records not written."""
        return self.records.flush(timeout_s)

    def action_choose_draft(self) -> None:
        """Pick a draft model (only vocabulary-compatible ones are offered), then reload with it."""
        loaded = self.loaded_info()
        if loaded is None:
            return
        info, path = loaded

        def chosen(choice: DraftSpec | None) -> None:
            if choice is not None and choice != self.spec.draft and self.may_reload():
                self.spec = replace(self.spec, draft=choice)
                self.reload_model("loading with the new draft setting…")

        self.push_screen(DraftPicker(info, path, self.spec.draft), callback=chosen)

    def action_open_settings(self) -> None:
        """Context, threads, GPU offload and price; Apply reloads the model with them (F2)."""
        open_settings(self)

    @work(thread=True, group="settings")
    def save_settings(self, changes: dict[str, object]) -> None:
        """Write what changed into settings.toml (off the UI thread); a failure is a notice."""
        from tokrace.settings_file import update_settings_file

        if not changes:
            return
        try:
            update_settings_file(changes)
        except OSError as err:  # read-only config folder, full disk
            self.call_from_thread(self.notify, f"settings not saved: {err.strerror or err}", severity="error")
        except TokraceError as err:
            self.call_from_thread(self.notify, f"settings not saved: {say(err)}", severity="error")

    def _theme_changed(self, theme: Theme) -> None:
        if theme.name != self.settings.theme:
            self.settings = self.settings.updated({"theme": theme.name})
            self.save_settings({"theme": theme.name})

    def loaded_info(self) -> tuple[GGUFInfo, str] | None:
        """The loaded (target) model's metadata and path, or a notice that nothing is loaded."""
        if self.race is not None and self.screen is self.race:
            # F2 and Ctrl+D act on the chat's model; a lane's settings come from `tokrace race`.
            self.notify(keyed("{key:app.settings} and {key:chat.draft} set the chat's model: go back to the"
                              " chat ({key:app.race}) first. Race lanes take their settings from"
                              " `tokrace race` (--ctx, --threads, --draft-a/-b)."), severity="warning")
            return None
        session = self.session
        if session is None or session.info is None:
            self.notify("Load a model first.", severity="warning")
            return None
        return session.info, session.model.path

    def may_reload(self) -> bool:
        """Whether the model may be reloaded now (not while a reply streams: that says so)."""
        if self.chat.generating:
            self.notify(keyed("Stop the reply ({key:chat.stop}) before reloading the model."),
                        severity="warning")
            return False
        return True

    def reload_model(self, status: str) -> None:
        """Load ``self.spec`` again in the background, ``status`` shown meanwhile."""
        self.chat.detach_backend(status)
        self.load_model()

    def set_keymap(self, keymap: Keymap) -> None:
        """Textual's keymap (binding id → keys); the TUI's texts then name the new keys."""
        super().set_keymap(keymap)
        self._keys_changed()

    def update_keymap(self, keymap: Keymap) -> None:
        super().update_keymap(keymap)
        self._keys_changed()

    def _keys_changed(self) -> None:
        """Texts already on screen that name keys say them again (new ones ask the keymap anyway)."""
        for screen in (self.chat, self.race):
            if screen is not None and screen.is_mounted:
                screen.refresh_key_texts()

    def action_help(self) -> None:
        from tokrace.tui.screens.help_screen import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_open_conversations(self) -> None:
        """Saved conversations: resume one (Enter) or export it as Markdown (F3)."""
        open_conversations(self)

    def action_open_sessions(self) -> None:
        from tokrace.tui.screens.sessions_screen import SessionsScreen

        self.push_screen(SessionsScreen())

    def action_open_models(self) -> None:
        from tokrace.tui.screens.models_screen import ModelsScreen

        def chosen(ref: str | None) -> None:
            if ref is not None and self.may_reload():
                self.switch_model(ref)

        self.push_screen(ModelsScreen(), callback=chosen)

    def switch_model(self, ref: str) -> None:
        """Load ``ref`` as the chat's model (a new chat starts when it is another model)."""
        self.spec = replace(self.spec, model=ref)
        if is_remote_ref(ref) and self.spec.draft.active:  # a server drafts on its own side
            self.spec = replace(self.spec, draft=DraftSpec())
            self.notify("The draft is off for a server: it drafts on its own side.")
        self.reload_model(f"loading {ref}…")

    def action_toggle_race(self) -> None:
        """Ctrl+R: to the race screen (made once, kept with its lanes and history) and back to chat."""
        if self.race is not None and self.screen is self.race:
            self.pop_screen()
            if self.backend is None and self.race_setup is not None and not self._chat_load_started:
                self._chat_load_started = True
                self.load_model()  # started as a race: the chat's model loads on first visit
            return
        if self.race is None:
            setup = self.race_setup or RaceSetup(refs=[self.spec.model, None], base=self.spec,
                                                 system=self.settings.system_prompt)
            self.race = RaceScreen(setup, self.params)
            self.install_screen(self.race, name="race")
        self.push_screen("race")

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield from system_commands(self)
