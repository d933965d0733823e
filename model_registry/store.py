"""What tokrace pulled, recorded in ``pulls.json`` in its data dir.

A pull is recorded only after every file (every shard) is in place and its sha256 matched the Hub's LFS
metadata, so an interrupted or rejected pull leaves no record and is never loaded. Each file notes
whether tokrace downloaded it (``owned``) or found it already in the Hugging Face cache; ``models rm``
deletes owned files only.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.paths import data_dir, ensure_dir

STORE_NAME = "pulls.json"


@dataclass(slots=True)
class PulledFile:
    filename: str
    path: str
    """The snapshot path (what llama.cpp loads); for the HF cache, a symlink to ``blob``."""
    blob: str
    sha256: str
    size: int
    mtime_ns: int
    owned: bool

    def is_intact(self) -> bool:
        """Present with the size and mtime it had when its sha256 was checked (a cheap re-check)."""
        try:
            st = Path(self.blob).stat()
        except OSError:
            return False
        return Path(self.path).exists() and st.st_size == self.size and st.st_mtime_ns == self.mtime_ns


@dataclass(slots=True)
class Pull:
    ref: str
    """The ``hf:`` ref pulled (catalog ids map to one)."""
    repo: str
    revision: str
    commit: str
    files: list[PulledFile]
    model_id: str | None = None
    pulled_at: float = field(default_factory=time.time)

    @property
    def path(self) -> Path:
        """The file to load: the first shard (llama.cpp finds the others next to it)."""
        return Path(self.files[0].path)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def is_intact(self) -> bool:
        return bool(self.files) and all(f.is_intact() for f in self.files)


def store_path() -> Path:
    return data_dir() / STORE_NAME


def load_pulls() -> dict[str, Pull]:
    path = store_path()
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {
            key: Pull(**{**p, "files": [PulledFile(**f) for f in p["files"]]})
            for key, p in raw.get("pulls", {}).items()
        }
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise TokraceError(f"{path} is damaged ({err}); move it away and pull your models again",
                           kind="storage") from None


def _save(pulls: dict[str, Pull]) -> None:
    """Raises ``TokraceError`` (kind ``storage``) naming the file when it cannot be written."""
    path = store_path()
    ensure_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    data: dict[str, Any] = {"version": 1, "pulls": {k: asdict(p) for k, p in pulls.items()}}
    try:
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, path)  # atomic: a reader sees the old or the new record, never half of one
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise TokraceError(
            f"cannot record the pull in {path} ({err.strerror or err}); free some space or make the folder"
            " writable (or set TOKRACE_HOME), then pull again: the downloaded files are kept",
            kind="storage", facts={"path": str(path)},
        ) from None


def record_pull(pull: Pull) -> None:
    pulls = load_pulls()
    pulls[pull.ref] = pull
    _save(pulls)


def forget_pull(ref: str) -> Pull | None:
    pulls = load_pulls()
    pull = pulls.pop(ref, None)
    if pull is not None:
        _save(pulls)
    return pull


def find_pull(ref: str) -> Pull | None:
    """The intact pull for ``ref`` (an ``hf:`` ref or a catalog id), or None."""
    for key, pull in load_pulls().items():
        if ref in (key, pull.model_id) and pull.is_intact():
            return pull
    return None
