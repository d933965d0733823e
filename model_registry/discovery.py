"""GGUFs other tools already downloaded: the Hugging Face cache, llama.cpp's cache, LM Studio's models
folder and Ollama's blob store. Read-only: tokrace lists and loads them, never moves or deletes them.
Multimodal projectors (``mmproj-*.gguf``) are not chat models and are not listed.

Ollama stores models as content-addressed blobs (``blobs/sha256-<hex>``, GGUF inside) and names them in
manifests (``manifests/<registry>/<namespace>/<model>/<tag>``: JSON whose layer of media type
``application/vnd.ollama.image.model`` gives the blob digest), so names come from the manifests.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tokrace.model_registry.gguf_meta import GGUF_MAGIC
from tokrace.model_registry.hub import hub_cache_dir

OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
SOURCES = ("hf-cache", "llama.cpp", "lm-studio", "ollama")


@dataclass(frozen=True, slots=True)
class FoundModel:
    name: str
    path: Path
    source: str
    """One of ``SOURCES``."""
    size: int


def llama_cache_dir() -> Path:
    """llama.cpp's model cache, in llama.cpp's own order (``fs_get_cache_directory``): ``LLAMA_CACHE``,
    else ``$XDG_CACHE_HOME/llama.cpp``, else ``~/.cache/llama.cpp``."""
    llama = os.environ.get("LLAMA_CACHE")
    if llama:
        return Path(llama).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "llama.cpp"
    return Path.home() / ".cache" / "llama.cpp"


def is_projector(path: Path) -> bool:
    """A multimodal projector (``mmproj-*.gguf``, llama.cpp's naming for CLIP/vision towers), not a
    model one can chat with: discovery skips it."""
    return "mmproj" in path.name.lower()


def default_roots() -> dict[str, list[Path]]:
    """Where each tool keeps models on this machine (env overrides as each tool honours them)."""
    home = Path.home()
    ollama = os.environ.get("OLLAMA_MODELS")
    return {
        "hf-cache": [hub_cache_dir()],
        "llama.cpp": [llama_cache_dir()],
        "lm-studio": [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"],
        "ollama": [Path(ollama).expanduser()] if ollama else [home / ".ollama" / "models"],
    }


def _is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def _ggufs(root: Path) -> Iterator[Path]:
    try:
        yield from sorted(p for p in root.rglob("*.gguf") if p.is_file() and not is_projector(p))
    except OSError:
        return


def _hf_cache(root: Path) -> Iterator[FoundModel]:
    for repo_dir in sorted(root.glob("models--*")):
        repo = repo_dir.name.removeprefix("models--").replace("--", "/")
        seen: set[Path] = set()
        for path in _ggufs(repo_dir / "snapshots"):
            blob = path.resolve()
            if blob in seen or not blob.is_file():
                continue
            seen.add(blob)
            rel = path.relative_to(repo_dir / "snapshots").parts[1:]
            yield FoundModel(f"{repo}/{'/'.join(rel)}", path, "hf-cache", blob.stat().st_size)


def _plain(root: Path, source: str) -> Iterator[FoundModel]:
    for path in _ggufs(root):
        yield FoundModel(str(path.relative_to(root)), path, source, path.stat().st_size)


def _ollama(root: Path) -> Iterator[FoundModel]:
    manifests = root / "manifests"
    if not manifests.is_dir():
        return
    for manifest in sorted(p for p in manifests.rglob("*") if p.is_file()):
        try:
            layers = json.loads(manifest.read_text(encoding="utf-8")).get("layers", [])
        except (OSError, ValueError, AttributeError):
            continue
        for layer in layers if isinstance(layers, list) else []:
            if not isinstance(layer, dict) or layer.get("mediaType") != OLLAMA_MODEL_LAYER:
                continue
            digest = str(layer.get("digest", ""))
            if not digest.startswith("sha256:") or "/" in digest or ".." in digest:
                continue
            blob = root / "blobs" / digest.replace(":", "-")
            if not _is_gguf(blob):
                continue
            # manifests/<registry>/<namespace>/<model>/<tag>; the default namespace "library" is implied.
            parts = manifest.relative_to(manifests).parts
            model, tag = parts[-2], parts[-1]
            namespace = parts[-3] if len(parts) >= 3 else "library"
            name = f"{model}:{tag}" if namespace == "library" else f"{namespace}/{model}:{tag}"
            yield FoundModel(name, blob, "ollama", blob.stat().st_size)


def discover(roots: dict[str, list[Path]] | None = None) -> list[FoundModel]:
    """Every GGUF found under ``roots`` (default: ``default_roots()``), by source then name."""
    roots = default_roots() if roots is None else roots
    found: list[FoundModel] = []
    for source in SOURCES:
        for root in roots.get(source, []):
            if not root.is_dir():
                continue
            if source == "hf-cache":
                found.extend(_hf_cache(root))
            elif source == "ollama":
                found.extend(_ollama(root))
            else:
                found.extend(_plain(root, source))
    return found
