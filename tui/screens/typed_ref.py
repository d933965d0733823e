"""A model or draft typed into the models screen's (Ctrl+O) or the draft picker's (Ctrl+D) box, checked
before anything loads: a model anywhere on disk, a server URL, or an id.

Both checks read files (a GGUF header, the catalog): call them from a worker, never on the UI thread.
Each failure is one ``TokraceError`` line in the TUI's words (what is wrong, what to type instead).
"""

from __future__ import annotations

import os
from pathlib import Path

from tokrace.backends.remote_endpoint import is_remote_ref, parse_endpoint
from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.gguf_meta import GGUFInfo, read_gguf_info

MODEL_HINT = "type a .gguf path, a server URL (http://HOST:PORT/v1[#MODEL]) or a model id from the list"
DRAFT_HINT = "type the path of a .gguf file with the loaded model's vocabulary"


def _looks_like_path(text: str) -> bool:
    return text.endswith(".gguf") or text.startswith(("~", ".")) or "/" in text or os.sep in text


def _gguf_path(text: str) -> Path:
    """The typed path, absolute (links kept: a Hub snapshot must stay beside its shards) after checking
    that it is a readable GGUF model (its header parses; a split model's first shard with every shard)."""
    path = Path(os.path.abspath(Path(text).expanduser()))
    if not path.exists():
        raise TokraceError(f"no file at {path}: check the path", kind="model_file")
    if path.is_dir():
        raise TokraceError(f"{path} is a folder: type the .gguf file inside it", kind="model_file")
    read_gguf_info(path)  # not GGUF, truncated, a later shard, unreadable: its own one line
    return path


def check_model_ref(text: str) -> str:
    """The reference to load for what was typed into the models screen: a server URL as ``-m`` takes it
    (``http(s)://HOST:PORT/v1[#MODEL]``, normalised), the absolute path of a GGUF file, or a catalog id /
    ``hf:`` ref / another tool's model name as typed.

    Raises ``TokraceError`` with one line: a malformed URL, a missing or non-GGUF file, an unknown id."""
    text = text.strip()
    if not text:
        raise TokraceError(f"nothing typed: {MODEL_HINT}", kind="usage")
    if is_remote_ref(text):
        return parse_endpoint(text).ref()  # the server is contacted when it loads, as with -m
    if text.startswith("hf:"):
        from tokrace.model_registry.hub import parse_hf_ref

        return str(parse_hf_ref(text))
    if _looks_like_path(text):
        return str(_gguf_path(text))
    from tokrace.model_registry.catalog import load_catalog
    from tokrace.model_registry.listing import list_models

    if load_catalog().find(text) is not None or any(row["id"] == text for row in list_models()):
        return text
    raise TokraceError(f"unknown model {text!r}: {MODEL_HINT}", kind="usage")


def check_draft_path(text: str, target: GGUFInfo, target_path: str) -> str:
    """The absolute path of the draft typed into the draft picker, after checking it is a GGUF model,
    not the target itself, with the target's token table (``vocab_mismatch``: token ids pass between the
    two unchanged).

    Raises ``TokraceError`` with one line naming what is wrong."""
    from tokrace.backends.draft_compat import vocab_mismatch

    text = text.strip()
    if not text:
        raise TokraceError(f"nothing typed: {DRAFT_HINT}", kind="usage")
    if is_remote_ref(text):
        raise TokraceError("a draft must be a local .gguf file (a server drafts on its own side):"
                           f" {DRAFT_HINT}", kind="draft")
    path = _gguf_path(text)
    if path.resolve() == Path(target_path).resolve():
        raise TokraceError(f"{path.name} is the loaded model itself: {DRAFT_HINT} (a smaller one)",
                           kind="draft")
    why = vocab_mismatch(target, read_gguf_info(path))
    if why is not None:
        raise TokraceError(f"{path.name} cannot draft for {Path(target_path).name}: {why}; pick a draft"
                           " of the same family (same tokenizer)", kind="draft")
    return str(path)
