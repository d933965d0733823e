"""How the TUI names settings and actions in an error's remedy: the key that gets there, not a flag."""

from __future__ import annotations

from tokrace.model_registry.errors import TokraceError, render

DRAFT_SETTINGS = frozenset({"draft", "draft_k", "adaptive_k", "lookup"})


class TuiWords:
    """Load settings are named as the F2 form labels them; draft settings point at Ctrl+D."""

    ACTIONS = {
        "new_chat": "start a new chat (Ctrl+N)",
        "stop_reply": "press Esc",
        "settings": "open the settings (F2)",
    }

    def setting(self, name: str) -> str:
        if name in DRAFT_SETTINGS:
            return "the draft setting (Ctrl+D)"
        from tokrace.settings import Settings

        return f"the {Settings.form_label(name)} field (F2)"

    def action(self, name: str) -> str:
        return self.ACTIONS.get(name, name.replace("_", " "))


TUI_WORDS = TuiWords()


def say(err: TokraceError | str) -> str:
    """An error or a marked message (``{setting:n_ctx}``) in the TUI's words."""
    return err.render(TUI_WORDS) if isinstance(err, TokraceError) else render(err, TUI_WORDS)
