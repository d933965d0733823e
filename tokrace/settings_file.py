"""``settings.toml``: where it is, reading it (one line naming the file, the key and what to do for a
bad one) and writing it atomically (only what differs from the defaults)."""

import contextlib
import os
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path

import tomli_w
from pydantic import ValidationError

from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.paths import config_dir
from tokrace.settings import Settings, explain

SETTINGS_FILE = "settings.toml"


def config_path() -> Path:
    """``settings.toml`` in tokrace's config dir (``$TOKRACE_HOME/config`` when that is set)."""
    return config_dir() / SETTINGS_FILE


def load_settings(path: Path | None = None) -> Settings:
    """The settings in ``path`` (default ``config_path()``); a missing file = the defaults.

    A file that cannot be read, is not TOML, has an unknown key or a bad value raises ``TokraceError``
    with one line naming the file, the key and what to do. Unknown keys are errors, not warnings: a
    misspelt key would otherwise be silently ignored.
    """
    path = path or config_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Settings()
    except OSError as err:
        raise TokraceError(
            f"{path}: cannot read it ({err.strerror}); fix its permissions or delete it", kind="settings"
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise TokraceError(f"{path}: not valid TOML ({err}); fix or delete the file",
                           kind="settings") from None
    try:
        return Settings.model_validate(data)
    except ValidationError as err:
        key, message = explain(err)
        raise TokraceError(f"{path}: {key}: {message}; fix or delete the file", kind="settings") from None


def save_settings(settings: Settings, path: Path | None = None) -> Path:
    """Write the non-default fields of ``settings`` to ``path`` (default ``config_path()``) atomically:
    a temporary file in the same folder, then ``os.replace``. Returns the path written."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    body = tomli_w.dumps(settings.non_defaults())
    header = "# tokrace settings, written by the app (F2, theme); a command-line flag overrides one run\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(header + body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def update_settings_file(changes: Mapping[str, object], path: Path | None = None) -> Settings:
    """Apply ``changes`` to the file's settings (not to this run's flags) and save; returns the file's
    new settings. Raises ``TokraceError`` for a bad existing file or a bad value."""
    settings = load_settings(path).updated(changes)
    save_settings(settings, path)
    return settings
