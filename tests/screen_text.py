"""What a running Textual app shows, as plain text lines (for asserting that nothing is clipped)."""

from __future__ import annotations

import io

from rich.console import Console
from textual.app import App


def screen_text(app: App[object]) -> list[str]:
    """The app's screen as it is drawn now (the modal screens over their backgrounds), one string per
    terminal row, styles dropped."""
    width, height = app.size
    console = Console(width=width, height=height, record=True, file=io.StringIO(), color_system=None,
                      force_terminal=True, legacy_windows=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text().splitlines()
