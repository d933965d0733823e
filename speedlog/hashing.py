"""sha256 of model files, computed once per file and cached by path + size + mtime.

Hashing a 40 GB model takes minutes, so a reply must never trigger it twice: the cache (a small JSON
file under the cache dir) remembers each file's digest for as long as its size and mtime stay the same.
``prefetch(path)`` starts hashing in a background thread right after a model loads, so the first finished
reply usually finds the digest ready.

A split model (``x-00001-of-00003.gguf``, from any of its shards) is one model: its digest is the sha256
of all shards' bytes in order (what ``cat x-0000*-of-00003.gguf | sha256sum`` prints), and its cache
entry goes stale when any shard changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

from tokrace.model_registry import paths
from tokrace.model_registry.hub import shard_names

_CHUNK = 4 << 20
_lock = threading.Lock()
_inflight: dict[str, threading.Event] = {}
_memo: dict[tuple[str, str], str] = {}


def _cache_file() -> Path:
    return paths.cache_dir() / "sha256.json"


def _files(path: Path) -> list[Path]:
    """The file, or every shard of the split model it belongs to, in order."""
    return [path.with_name(name) for name in shard_names(path.name)]


def _key(path: Path) -> tuple[str, str]:
    files = _files(path)
    stamps = []
    for f in files:
        st = f.stat()
        stamps.append(f"{st.st_size}:{st.st_mtime_ns}")
    return str(files[0].resolve()), ";".join(stamps)


def _load() -> dict[str, dict[str, str]]:
    try:
        data = json.loads(_cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _store(cache: dict[str, dict[str, str]]) -> None:
    target = _cache_file()
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(json.dumps(cache, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, target)
    except OSError:
        # A cache we cannot write only costs a re-hash next run; never fail a reply over it.
        tmp.unlink(missing_ok=True)


def cached_sha256(path: str | Path) -> str | None:
    """The digest if it is already known for this exact file version, else ``None`` (never hashes)."""
    path = Path(path)
    try:
        name, stamp = _key(path)
    except OSError:
        return None
    if (name, stamp) in _memo:
        return _memo[name, stamp]
    entry = _load().get(name)
    if entry and entry.get("stamp") == stamp and isinstance(entry.get("sha256"), str):
        _memo[name, stamp] = entry["sha256"]
        return entry["sha256"]
    return None


def file_sha256(path: str | Path) -> str | None:
    """The file's sha256, from the cache or computed (once, even with concurrent callers)."""
    path = Path(path)
    try:
        name, stamp = _key(path)
    except OSError:
        return None
    while True:
        digest = cached_sha256(path)
        if digest is not None:
            return digest
        with _lock:
            event = _inflight.get(name)
            if event is None:
                event = _inflight[name] = threading.Event()
                owner = True
            else:
                owner = False
        if not owner:
            event.wait()
            continue
        try:
            digest = _hash(path)
            _memo[name, stamp] = digest
            with _lock:
                cache = _load()
                cache[name] = {"stamp": stamp, "sha256": digest}
                _store(cache)
            return digest
        except OSError:
            return None
        finally:
            with _lock:
                _inflight.pop(name, None)
            event.set()


def _hash(path: Path) -> str:
    h = hashlib.sha256()
    for part in _files(path):
        with part.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    return h.hexdigest()


def prefetch(path: str | Path) -> threading.Thread:
    """Hash in a daemon thread so the first recorded reply does not wait for it."""
    thread = threading.Thread(target=file_sha256, args=(path,), name="tokrace-sha256", daemon=True)
    thread.start()
    return thread
