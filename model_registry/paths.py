"""Where tokrace keeps its files (platformdirs), overridable with ``TOKRACE_HOME`` for tests.

The folder functions create their folder when they can and never fail: a read-only disk or a regular
file where a folder should be must not stop commands that only read (``models list``, a chat with a
``.gguf`` path). Code that writes calls ``ensure_dir`` for one clear ``TokraceError`` instead.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import platformdirs

from tokrace.model_registry.errors import TokraceError

APP_NAME = "tokrace"


def _root_override() -> Path | None:
    home = os.environ.get("TOKRACE_HOME")
    return Path(home) if home else None


def _try_mkdir(path: Path) -> Path:
    with contextlib.suppress(OSError):  # reported by ensure_dir() when something must write there
        path.mkdir(parents=True, exist_ok=True)
    return path


def dir_problem(path: Path, err: OSError) -> TokraceError:
    """One line for a folder tokrace cannot create or write: the path, the reason and what to do."""
    reason = err.strerror or type(err).__name__
    blocker = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        what = f"{blocker} is a file, not a folder"
        fix = "move that file away"
    else:
        what = f"cannot create or write {path} ({reason})"
        fix = "make it writable"
    return TokraceError(f"{what}; {fix} or set TOKRACE_HOME to a writable folder",
                        kind="storage", facts={"path": str(path)})


def ensure_dir(path: Path) -> Path:
    """``path``, created if missing. Raises ``TokraceError`` (kind ``storage``) naming the folder when it
    cannot be created (read-only disk, a file in its place)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise dir_problem(path, err) from None
    if not path.is_dir():
        raise dir_problem(path, NotADirectoryError(20, "Not a directory"))
    return path


def data_dir() -> Path:
    """Models tokrace imported itself (PyPI wheels, local imports) and the speed logs."""
    root = _root_override()
    return _try_mkdir(root / "data" if root else Path(platformdirs.user_data_dir(APP_NAME)))


def config_dir() -> Path:
    """User catalog and settings."""
    root = _root_override()
    return _try_mkdir(root / "config" if root else Path(platformdirs.user_config_dir(APP_NAME)))


def cache_dir() -> Path:
    """Disposable things (measured CPU bandwidth, downloaded wheels before extraction)."""
    root = _root_override()
    return _try_mkdir(root / "cache" if root else Path(platformdirs.user_cache_dir(APP_NAME)))


def models_dir() -> Path:
    return _try_mkdir(data_dir() / "models")
