"""``--draft``, ``--draft-k``, ``--adaptive-k``, ``--lookup``: speculative decoding from the command line
(the flags are generated from ``tokrace.settings.Settings``; the application layer builds the backend)."""

from __future__ import annotations

import argparse

from tokrace.settings import Settings
from tokrace.settings_args import add_settings_args


def add_draft_args(parser: argparse.ArgumentParser) -> None:
    """The "speculative decoding" group: ``--draft``, ``--draft-k``, ``--[no-]adaptive-k``, ``--[no-]lookup``
    (from the ``Settings`` fields in that group)."""
    add_settings_args(parser, Settings.names(group="draft"))
