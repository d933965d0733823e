"""Where tokrace keeps its files (platformdirs), overridable with ``TOKRACE_HOME`` for tests."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "tokrace"


def _root_override() -> Path | None:
    home = os.environ.get("TOKRACE_HOME")
    return Path(home) if home else None


def data_dir() -> Path:
    """Models tokrace imported itself (PyPI wheels, local imports) and the speed logs."""
    root = _root_override()
    path = root / "data" if root else Path(platformdirs.user_data_dir(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_dir() -> Path:
    """User catalog and settings."""
    root = _root_override()
    path = root / "config" if root else Path(platformdirs.user_config_dir(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Disposable things (measured CPU bandwidth, downloaded wheels before extraction)."""
    root = _root_override()
    path = root / "cache" if root else Path(platformdirs.user_cache_dir(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    path = data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path
