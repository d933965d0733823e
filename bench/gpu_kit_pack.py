"""The ``pack`` half of the GPU check kit (bench/gpu_kit.py): run here, where the package index is
reachable. Trims the llama-cpp-python sdist to what CMake needs (``KEEP`` minus ``DROP``), follows
gpu_check's imports to the third-party distributions it needs and downloads their CPython 3.12 wheels,
and checks the pack against the device tool's budget. The ``run`` half (gpu_kit.py) is standard library
only and never imports this module.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_kit import BUDGET_MIB, LEFT_TO_MACHINE, MIB, ROOT, SOURCE, KitError
from peers import llama_cpp_python_version

TARGET_PY = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
TARGET_ENV = {"python_version": TARGET_PY, "python_full_version": "3.12.3", "sys_platform": "linux",
              "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
              "implementation_name": "cpython", "platform_python_implementation": "CPython"}
_LL = "vendor/llama.cpp/"
KEEP = ("LICENSE.md", "llama_cpp/**",
        _LL + "CMakeLists.txt", _LL + "LICENSE", _LL + "licenses/**", _LL + "cmake/**", _LL + "include/**",
        _LL + "src/**", _LL + "ggml/CMakeLists.txt", _LL + "ggml/cmake/**", _LL + "ggml/include/**",
        _LL + "ggml/src/*", _LL + "ggml/src/ggml-cpu/**", _LL + "ggml/src/ggml-cuda/**",
        # vendor/CMakeLists.txt adds every vendored library; only vendor-hash has sources CMake checks.
        _LL + "vendor/CMakeLists.txt", _LL + "vendor/*/CMakeLists.txt", _LL + "vendor/hash/**")
"""Paths of the sdist (below its top folder) the pack keeps; ``*`` stays within a folder, ``**`` not."""
DROP = ("llama_cpp/server/**", "**/__pycache__/**")
"""Exceptions to ``KEEP``: never imported on gpu_check's path (the server needs FastAPI)."""



def _glob_re(pattern: str) -> re.Pattern[str]:
    out = "".join(".*" if p == "**" else "[^/]*" if p == "*" else "[^/]" if p == "?" else re.escape(p)
                  for p in re.split(r"(\*\*|\*|\?)", pattern))
    return re.compile(out + r"\Z")


_KEEP_RE = [_glob_re(p) for p in KEEP]
_DROP_RE = [_glob_re(p) for p in DROP]


def kept(path: str) -> bool:
    """Whether the trim keeps ``path`` (POSIX, relative to the sdist's top folder)."""
    return any(r.match(path) for r in _KEEP_RE) and not any(r.match(path) for r in _DROP_RE)


def trim_sdist(sdist: Path, dest: Path) -> tuple[int, int]:
    """Copy the files of ``sdist`` (a .tar.gz with one top folder) that ``kept`` keeps into ``dest``
    (.tar.xz, same top folder); returns (files kept, bytes kept before compression)."""
    n = size = 0
    with tarfile.open(sdist) as src, tarfile.open(dest, "w:xz") as out:
        for m in src:
            rel = m.name.partition("/")[2]
            if m.isfile() and rel and kept(rel):
                m.uid = m.gid = 0
                m.uname = m.gname = ""
                out.addfile(m, src.extractfile(m))
                n, size = n + 1, size + m.size
    return n, size


def _imports(path: Path, module: str) -> Iterable[str]:
    """Every module ``path`` imports, at any depth, except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(), str(path))
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
            and "TYPE_CHECKING" in ast.unparse(node.test) for b in node.body for n in ast.walk(b)}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            yield base
            yield from (f"{base}.{a.name}" for a in node.names)


def third_party_imports(script: Path, root: Path, package: str = "tokrace") -> set[str]:
    """Top-level names of the non-standard modules ``script`` reaches, following ``package``'s own
    modules (found under ``root``) through their imports."""
    seen: set[str] = set()
    found: set[str] = set()
    todo = [(script, script.stem)]
    while todo:
        path, module = todo.pop()
        for name in _imports(path, module):
            top = name.partition(".")[0]
            if top == package:
                base = root.joinpath(*name.split("."))
                file = next((f for f in (base.with_suffix(".py"), base / "__init__.py") if f.is_file()), None)
                if file is not None and name not in seen:
                    seen.add(name)
                    todo.append((file, name))
            elif top and top != "__future__" and top not in sys.stdlib_module_names:
                found.add(top)
    return found


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_closure(roots: Iterable[str], requires: Callable[[str], list[str] | None],
                        env: dict[str, str] = TARGET_ENV) -> set[str]:
    """``roots`` and everything they require (``requires(name)``: Requires-Dist lines, None when not
    installed), markers evaluated for ``env`` with the extras asked for; canonical names."""
    from packaging.requirements import Requirement

    out: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    todo: list[tuple[str, frozenset[str]]] = [(_canon(r), frozenset()) for r in roots]
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        out.add(name)
        for line in requires(name) or []:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate({**env, "extra": e}) for e in {"", *extras}):
                todo.append((_canon(req.name), frozenset(req.extras)))
    return out


def needed_distributions(root: Path = ROOT) -> dict[str, str]:
    """{distribution: installed version} to carry for gpu_check, ``LEFT_TO_MACHINE`` excluded."""
    from importlib import metadata

    by_module = metadata.packages_distributions()
    imports = third_party_imports(root / "bench" / "gpu_check.py", root)
    missing = sorted(m for m in imports if m not in by_module)
    if missing:
        print(f"imported on gpu_check's path but not installed here, not carried: {', '.join(missing)}")
    roots = {d for m in imports for d in by_module.get(m, [])}

    def requires(name: str) -> list[str] | None:
        try:
            return metadata.requires(name)
        except metadata.PackageNotFoundError:
            return None

    return {d: metadata.version(d) for d in sorted(requirement_closure(roots, requires))
            if d not in LEFT_TO_MACHINE}


def _pip(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "-q"],
                          capture_output=True, text=True)
    if proc.returncode:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "is ignored" not in ln]
        raise KitError(f"pip {args[0]} failed: {(lines or ['no message'])[-1].strip()}")


def tree_bytes(root: Path = ROOT) -> int:
    """Bytes of what the device tool sends: tracked and untracked-not-ignored files."""
    proc = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                          cwd=root, capture_output=True, check=True)
    paths = (root / p.decode() for p in proc.stdout.split(b"\0") if p)
    return sum(p.lstat().st_size for p in paths if p.is_symlink() or p.exists())


def check_budget(pack: Path, tree: int, budget: int) -> int:
    """Bytes in ``pack``; raises ``KitError`` when they and ``tree`` exceed ``budget`` bytes."""
    size = sum(f.stat().st_size for f in pack.rglob("*") if f.is_file())
    if size + tree > budget:
        raise KitError(f"the pack ({size / MIB:.1f} MiB) and the working tree ({tree / MIB:.1f} MiB) come "
                       f"to {(size + tree) / MIB:.1f} MiB, over the {budget / MIB:.0f} MiB budget")
    return size


def pack(out: Path, budget_mib: float = BUDGET_MIB) -> dict[str, Any]:
    """Build the pack into ``out`` (replacing it); returns the manifest."""
    version = llama_cpp_python_version()
    dists = needed_distributions()
    tmp = Path(tempfile.mkdtemp(prefix="gpukit-"))  # outside the tree: not counted in it
    tmp.chmod(0o755)
    (tmp / "wheels").mkdir()
    try:
        with tempfile.TemporaryDirectory() as dl:
            _pip("download", "--no-deps", "--no-binary", ":all:", "-d", dl, f"llama-cpp-python=={version}")
            n_files, raw = trim_sdist(next(Path(dl).glob("llama_cpp_python-*.tar.gz")), tmp / SOURCE)
        platforms = [a for p in PLATFORMS for a in ("--platform", p)]
        _pip("download", "--no-deps", "--only-binary=:all:", "--python-version", TARGET_PY,
             "--implementation", "cp", *platforms, "-d", str(tmp / "wheels"),
             *(f"{d}=={v}" for d, v in dists.items()))
        wheels = {f.name: f.stat().st_size for f in sorted((tmp / "wheels").glob("*.whl"))}
        src = tmp / SOURCE
        tree = tree_bytes()
        manifest: dict[str, Any] = {
            "llama_cpp_python": version, "python": TARGET_PY, "platforms": list(PLATFORMS),
            "source": {"file": SOURCE, "bytes": src.stat().st_size, "files": n_files, "unpacked_bytes": raw,
                       "sha256": hashlib.sha256(src.read_bytes()).hexdigest(), "keep": KEEP, "drop": DROP},
            "wheels": wheels, "distributions": dists, "left_to_machine": LEFT_TO_MACHINE,
            "pack_bytes": src.stat().st_size + sum(wheels.values()), "tree_bytes": tree}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        manifest["pack_bytes"] = check_budget(tmp, tree, int(budget_mib * MIB))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(out, ignore_errors=True)
    shutil.move(tmp, out)
    return manifest
