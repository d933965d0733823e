"""``tokrace models search``: GGUF repos on the Hub and their quant files with sizes (shards summed)."""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from tokrace.model_registry.hub import call_hub, hub_endpoint, shard_names

if TYPE_CHECKING:
    from huggingface_hub import HfApi, RepoFile, RepoFolder

_QUANT_TOKEN = re.compile(r"^(I?Q\d[A-Z0-9_]*|F16|BF16|F32|TQ\d_\d)$")


@dataclass(frozen=True, slots=True)
class QuantFile:
    quant: str
    size: int
    files: int
    first_file: str


@dataclass(frozen=True, slots=True)
class SearchResult:
    repo_id: str
    downloads: int
    gated: bool
    quants: list[QuantFile] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def quant_of(path: str) -> str | None:
    for token in reversed(re.split(r"[./\-]", path.upper())):
        if _QUANT_TOKEN.match(token):
            return token
    return None


def group_quants(files: list[tuple[str, int]]) -> list[QuantFile]:
    """(path, size) of a repo's files → one row per GGUF model (a sharded model is one row)."""
    groups: dict[str, list[tuple[str, int]]] = {}
    for path, size in files:
        if path.lower().endswith(".gguf") and "mmproj" not in path.lower():
            groups.setdefault(shard_names(path)[0], []).append((path, size))
    rows = [QuantFile(quant_of(first) or first.rsplit("/", 1)[-1], sum(s for _, s in g), len(g), first)
            for first, g in groups.items()]
    return sorted(rows, key=lambda q: q.size)


def _repo_tree(api: HfApi, repo_id: str) -> list[RepoFile | RepoFolder]:
    return list(api.list_repo_tree(repo_id, recursive=True))


def search_hub(text: str, limit: int = 10) -> list[SearchResult]:
    from huggingface_hub import HfApi, RepoFile

    api = HfApi(endpoint=hub_endpoint())
    repos = call_hub(f"search {text!r}", lambda: list(
        api.list_models(search=text, filter="gguf", sort="downloads", limit=max(1, limit))))
    results = []
    for repo in repos:
        tree = call_hub(repo.id, functools.partial(_repo_tree, api, repo.id))
        files = [(f.path, f.size) for f in tree if isinstance(f, RepoFile)]  # folders have no size
        results.append(SearchResult(repo.id, repo.downloads or 0, bool(repo.gated), group_quants(files)))
    return results
