"""Key names for the TUI's own text, taken from its bindings: the key a user actually has for an action.

Every ``Binding`` in ``tui/`` has an id (``app.settings``, ``chat.new``, …) and a user may remap it with
Textual's keymap (``App.set_keymap`` / ``App.update_keymap``: binding id → comma-separated keys). Text
that names a key (a notice, a placeholder, F1's table, an error's remedy) asks ``key("chat.new")`` instead
of writing "Ctrl+N", so it names the key that works.

The active app is found as Textual finds it (the running app's context; in a thread worker, the worker's
node's app); without one, the declared keys are used.
"""

from __future__ import annotations

import importlib
import re
from functools import cache
from typing import Any

from textual.app import App
from textual.binding import Binding

TUI_MODULES = (
    "tokrace.tui.app", "tokrace.tui.chat.screen", "tokrace.tui.chat.prompt", "tokrace.tui.chat.draft",
    "tokrace.tui.chat.resume", "tokrace.tui.race.screen", "tokrace.tui.screens.conversations_screen",
    "tokrace.tui.screens.help_screen", "tokrace.tui.screens.models_screen",
    "tokrace.tui.screens.sessions_screen", "tokrace.tui.screens.settings_screen",
    "tokrace.tui.widgets.error_modal",
)
"""The modules whose classes declare the TUI's bindings (imported on first use, not at import)."""
PALETTE = "command_palette"
"""Textual's command palette key: not a binding with an id (``App.COMMAND_PALETTE_BINDING``)."""

_NAMES = {
    "escape": "Esc", "enter": "Enter", "tab": "Tab", "space": "Space", "pageup": "PageUp",
    "pagedown": "PageDown", "home": "Home", "end": "End", "up": "↑", "down": "↓", "left": "←",
    "right": "→", "backspace": "Backspace", "delete": "Delete", "insert": "Insert",
}
_MODIFIERS = {"ctrl": "Ctrl", "shift": "Shift", "alt": "Alt", "meta": "Meta", "super": "Super"}


@cache
def declared() -> dict[str, str]:
    """Binding id → its declared keys (comma-separated, as in ``Binding``), over every TUI class."""
    from textual.dom import DOMNode

    for module in TUI_MODULES:
        importlib.import_module(module)
    found: dict[str, str] = {}
    todo: list[type[Any]] = [App, DOMNode]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if not cls.__module__.startswith("tokrace.tui"):
            continue
        for binding in cls.__dict__.get("BINDINGS", []):
            if isinstance(binding, Binding) and binding.id:
                found.setdefault(binding.id, binding.key)
    return found


def current_app() -> App[Any] | None:
    """The running app of this context: the UI thread's, or a thread worker's node's."""
    from textual._context import active_app  # where Textual itself looks (MessagePump.app)
    from textual.worker import NoActiveWorker, get_current_worker

    try:
        return active_app.get()
    except LookupError:
        pass
    try:
        return get_current_worker().node.app
    except (NoActiveWorker, LookupError, AttributeError):
        return None


def bound_keys(binding_id: str, app: App[Any] | None = None) -> list[str]:
    """The keys bound to ``binding_id`` now: the app's keymap entry for it, else the declared keys.

    Raises ``KeyError`` for an id no TUI binding has (a typo in the text that asks for it)."""
    app = app or current_app()
    if binding_id == PALETTE:
        return [app.COMMAND_PALETTE_BINDING if app is not None else App.COMMAND_PALETTE_BINDING]
    keys = declared()[binding_id]
    keymap: dict[str, str] = getattr(app, "_keymap", {}) if app is not None else {}  # App.set_keymap's
    keys = keymap.get(binding_id, keys)
    return [k.strip() for k in keys.split(",") if k.strip()]


def display(key: str) -> str:
    """A Textual key as people write it: ``ctrl+n`` → ``Ctrl+N``, ``f2`` → ``F2``, ``escape`` → ``Esc``,
    ``question_mark`` → ``?``."""
    from textual.keys import format_key

    *mods, name = key.split("+")
    if name in _NAMES:
        shown = _NAMES[name]
    elif len(name) == 1:
        shown = name.upper() if mods else name
    elif name[0] == "f" and name[1:].isdigit():
        shown = name.upper()
    else:
        shown = format_key(name)
    return "+".join([*(_MODIFIERS.get(m, m.capitalize()) for m in mods), shown])


def key(binding_id: str, app: App[Any] | None = None, *, every: bool = False, sep: str = ", ") -> str:
    """The key (with ``every``: all its keys, joined by ``sep``: ``Shift+Enter, Ctrl+J``) the user has
    for ``binding_id``, as shown."""
    keys = [display(k) for k in bound_keys(binding_id, app)]
    return sep.join(keys) if every else keys[0]


_KEY_MARK = re.compile(r"\{(keys?):([\w.]+)\}")


def keyed(text: str, app: App[Any] | None = None) -> str:
    """``text`` with each ``{key:BINDING_ID}`` said as the key the user has for it, and each
    ``{keys:BINDING_ID}`` as all of them (``Shift+Enter or Ctrl+J``)."""
    return _KEY_MARK.sub(lambda m: key(m.group(2), app, every=m.group(1) == "keys", sep=" or "), text)
