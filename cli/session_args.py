"""From parsed flags (over ``settings.toml``) to the application layer's ``LoadSpec``."""

from __future__ import annotations

import argparse

from tokrace.cli import common
from tokrace.session import LoadSpec


def load_spec(args: argparse.Namespace) -> LoadSpec:
    """What to load and how: the settings file overlaid with this command's flags."""
    return LoadSpec.from_settings(common.settings_for(args))
