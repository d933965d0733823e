"""How the TUI names settings and actions in an error's remedy: the key that gets there, not a flag.
``key`` and ``keyed`` (from ``tui.keys``) name the key a binding has now, for every TUI text."""

from __future__ import annotations

from tokrace.model_registry.errors import TokraceError, render
from tokrace.tui.keys import key, keyed

__all__ = ["TUI_WORDS", "TuiWords", "key", "keyed", "say"]

DRAFT_SETTINGS = frozenset({"draft", "draft_k", "adaptive_k", "lookup"})


class TuiWords:
    """Load settings are named as the F2 form labels them; draft settings point at the draft picker.
    Keys are the ones the user has (``tui.keys``: the active keymap, else the declared bindings)."""

    ACTIONS = {
        "new_chat": ("start a new chat ({key})", "chat.new"),
        "stop_reply": ("press {key}", "chat.stop"),
        "settings": ("open the settings ({key})", "app.settings"),
    }

    def setting(self, name: str) -> str:
        if name in DRAFT_SETTINGS:
            return f"the draft setting ({key('chat.draft')})"
        from tokrace.settings import Settings

        return f"the {Settings.form_label(name)} field ({key('app.settings')})"

    def action(self, name: str) -> str:
        if name in self.ACTIONS:
            text, binding = self.ACTIONS[name]
            return text.format(key=key(binding))
        return name.replace("_", " ")


TUI_WORDS = TuiWords()


def say(err: TokraceError | str) -> str:
    """An error or a marked message (``{setting:n_ctx}``) in the TUI's words."""
    return err.render(TUI_WORDS) if isinstance(err, TokraceError) else render(err, TUI_WORDS)
