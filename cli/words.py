"""How the command line names settings and actions in an error's remedy (``--ctx``, not ``Context``)."""

from __future__ import annotations

from tokrace.model_registry.errors import TokraceError, render


class CliWords:
    """Settings are named by their flag; actions say what to do on the next command line."""

    ACTIONS = {
        "new_chat": "send a shorter conversation",
        "stop_reply": "press Ctrl+C",
        "settings": "change the flags",
    }

    def setting(self, name: str) -> str:
        from tokrace.settings import Settings

        return Settings.cli_flag(name)

    def action(self, name: str) -> str:
        return self.ACTIONS.get(name, name.replace("_", " "))


CLI_WORDS = CliWords()


def say(err: TokraceError | str) -> str:
    """An error or a marked message (``{setting:n_ctx}``) in the command line's words."""
    return err.render(CLI_WORDS) if isinstance(err, TokraceError) else render(err, CLI_WORDS)
