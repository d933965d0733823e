"""F2 for the app: the settings form over the loaded model's plan, and what applying it changes
(sampling, system prompt and context policy at once; context, threads and placement by reloading)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from tokrace.settings import Settings

if TYPE_CHECKING:
    from tokrace.tui.app import TokraceApp


def open_settings(app: TokraceApp) -> None:
    """F2: context, threads, GPU offload, price and sampling over the loaded model's plan; Apply saves
    what changed to settings.toml and reloads the model when its load settings changed."""
    from tokrace.settings import changed_fields
    from tokrace.tui.screens.settings_screen import SettingsScreen

    loaded = app.loaded_info()
    if loaded is None:
        return
    info, path = loaded

    def chosen(new: Settings | None) -> None:
        if new is None or (_needs_reload(app.settings, new) and not app.may_reload()):
            return
        changes = changed_fields(app.settings, new)
        app.settings = new
        app.price_per_hour = new.price_per_hour
        apply_chat_settings(app, new)
        app.save_settings(changes)  # they survive a restart
        request, threads = new.placement_request(), new.n_threads
        if request != app.spec.request or threads != app.spec.n_threads:
            app.spec = replace(app.spec, request=request, n_threads=threads)
            app.reload_model("reloading with the new settings…")

    snap = app.sampler.latest()
    # A reload frees what this process holds now (the loaded model), as GPU planning counts it.
    ram = (snap.ram_total_bytes - snap.ram_used_bytes + snap.process_rss_bytes
           if snap.ram_total_bytes else None)
    app.push_screen(SettingsScreen(info, path, snap.gpus, app.settings, ram_free_bytes=ram),
                    callback=chosen)


def apply_chat_settings(app: TokraceApp, settings: Settings) -> None:
    """Sampling, system prompt and context policy apply from the next reply on (no reload)."""
    app.params = settings.generation_params()
    app.chat.params = app.params
    app.chat.system_prompt = settings.system_prompt
    app.chat.context_policy = settings.context_policy


def _needs_reload(before: Settings, after: Settings) -> bool:
    """Whether applying ``after`` reloads the model (context, threads, GPU placement changed)."""
    return before.placement_request() != after.placement_request() or before.n_threads != after.n_threads
