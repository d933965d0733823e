"""tokrace: a terminal chat client for local GGUF models that is also a precise speed instrument.

One import name. The design card's folders at the repository root are installed beneath it
(``tokrace.backends``, ``tokrace.cli``, ``tokrace.model_registry``, ``tokrace.speedlog``,
``tokrace.tui``); this folder holds the application layer every front end goes through
(``tokrace.session``: resolve, place, load, record) and the settings declared once
(``tokrace.settings``).
"""

from __future__ import annotations

__version__ = "0.2.0"

__all__ = ["__version__"]
