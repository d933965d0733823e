"""SIGTERM and SIGHUP end the TUI as Ctrl+C ends ``tokrace chat``: the reply stops, is logged as
cancelled, the terminal is restored (Textual's normal exit) and the exit status is 143 / 129."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokrace.tui.app import TokraceApp

EXIT_GRACE_S = 5.0
"""After SIGTERM/SIGHUP, the longest the app waits for the stopped reply to be logged before exiting."""


class ExitSignals:
    """The app's handlers for SIGTERM and SIGHUP (on its asyncio loop, the main thread only)."""

    def __init__(self, app: TokraceApp) -> None:
        self.app = app
        self.signals: list[signal.Signals] = []
        self.pending: int | None = None
        """The exit status a signal asked for, while the stopped reply is being logged."""

    def watch(self) -> None:
        loop = asyncio.get_running_loop()
        for name in ("SIGTERM", "SIGHUP"):
            sig = getattr(signal, name, None)
            if sig is None:
                continue
            try:
                loop.add_signal_handler(sig, self._on_signal, 128 + sig)
            except (NotImplementedError, RuntimeError, ValueError):
                continue  # not the main thread, or a platform without them: the default stays
            self.signals.append(sig)

    def unwatch(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self.signals:
            loop.remove_signal_handler(sig)
        self.signals.clear()

    def _on_signal(self, code: int) -> None:
        app = self.app
        self.pending = code
        if not app.chat.generating:
            app.exit(return_code=code)
            return
        # The cancelled reply's ReplyFinished is recorded, then record_reply exits; this is a backstop.
        app.chat.action_stop_reply()
        app.set_timer(EXIT_GRACE_S, lambda: app.exit(return_code=code))

    def exit_if_pending(self) -> None:
        """Exit now if a signal asked for it (its reply has been logged)."""
        if self.pending is not None:
            self.app.exit(return_code=self.pending)
