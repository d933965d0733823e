"""GPU check kit, packed: bench/gpu_check.py on a GPU machine with no package index, in one command.

    python bench/gpu_kit.py pack [--out .gpukit] [--budget-mib 40]      # here: the index is reachable
    python3 bench/gpu_kit.py run [--cpu] [--json PATH] [--jobs N] [--cache DIR] [-- gpu_check args]

On this project's device machine (one H200, 16 cores, 600 s a command) the call is
``run(command="python3 bench/gpu_kit.py run --json $OUT/gpu_check.json", carry=[".gpukit"])``.

``pack`` fills ``--out`` with ``llama-src.tar.xz`` (the installed llama-cpp-python's sdist trimmed by
rule, ``KEEP`` minus ``DROP``, to its ``llama_cpp`` package and what CMake needs for libllama with the CPU
and CUDA backends), ``wheels/`` (CPython 3.12 manylinux x86_64 wheels, at this environment's versions, of
every distribution gpu_check's imports reach, tokrace's modules followed, with their requirements; not
``LEFT_TO_MACHINE``) and ``manifest.json`` (versions, files, bytes). Over the budget (working tree +
pack; the device tool carries 64 MiB) it fails in one line and leaves ``--out`` as it was.

``run`` (standard library only: it runs before the wheels are installed) prints a timestamp per phase:
installs the wheels into ``<cache>/site-*`` (``pip --target --no-index``); reads the cards' compute
capabilities from nvidia-smi (9.0 → ``90-real``: machine code for that card only; no nvidia-smi, or
``--cpu``: a CPU build with ``CMAKE_ARGS`` or scripts/_venv.sh's AVX2 baseline); unpacks the source and
builds the ``llama`` target (libllama, libggml*) with CMake and ninja in ``<cache>/build-<hash of source
and CMake arguments>``, so a warm machine builds once (a CUDA toolkit without cuBLAS or the driver stub,
as pip wheels assemble one, gets PyTorch's ``nvidia-cublas`` wheel and the driver's libcuda.so.1); runs
gpu_check in a child process with the wheels, the pack's ``llama_cpp`` and the repository on
``PYTHONPATH`` and ``LLAMA_CPP_LIB_PATH`` at the built libraries (the child prints where llama_cpp,
libllama and libggml* came from) and adds a ``kit`` entry (build seconds, CMake arguments) to its JSON.
Exit status: gpu_check's (0: every figure within tolerance, 1: not); 2: a kit error, in one line.
``<cache>``: ``--cache``, ``$TOKRACE_GPUKIT_CACHE`` or ``~/.cache/tokrace/gpukit``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import DEFAULT_CMAKE_ARGS

ROOT = Path(__file__).resolve().parents[1]
SOURCE = "llama-src.tar.xz"
MIB = 1 << 20
BUDGET_MIB = 40
LEFT_TO_MACHINE = {
    "numpy": "the machine's own (2.5.2 on the H200 image; ours is a 16 MiB wheel)",
    "llama-cpp-python": "built there from the trimmed source",
}
"""Distributions not carried as wheels, and why. Everything else is carried at our version, also where
the machine has its own (its huggingface_hub 1.33 is older than tokrace's >= 2.4): ours come first."""


class KitError(Exception):
    """A problem the kit reports in one line (exit status 2)."""


# ---- run: on the GPU machine, standard library only ----

def cuda_archs(smi_output: str) -> list[str]:
    """CMake CUDA architectures from ``nvidia-smi --query-gpu=compute_cap --format=csv,noheader``
    (one "major.minor" a GPU): the distinct ones, as machine code only (``9.0`` → ``90-real``)."""
    archs: set[str] = set()
    for line in filter(None, map(str.strip, smi_output.splitlines())):
        m = re.fullmatch(r"(\d+)\.(\d+)", line)
        if not m:
            raise KitError(f"nvidia-smi gave {line!r} for a compute capability; run with --cpu to skip CUDA")
        archs.add(f"{m[1]}{m[2]}-real")
    return sorted(archs, key=lambda a: int(a.split("-")[0]))


def detect_archs() -> list[str]:
    """The GPUs' CUDA architectures, or [] without nvidia-smi (a CPU build)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    proc = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"],
                          capture_output=True, text=True)
    if proc.returncode:
        first = (proc.stderr or proc.stdout).strip().splitlines() or ["no message"]
        raise KitError(f"nvidia-smi failed ({first[0]}); run with --cpu for a CPU build")
    return cuda_archs(proc.stdout)


def cmake_args(archs: list[str], cpu_args: str, nvcc: str | None = None) -> list[str]:
    """CMake's configure arguments: shared libllama + ggml, no tools, tests, examples or server; the CPU
    flags ``cpu_args``; with ``archs`` the CUDA backend for those architectures only."""
    args = ["-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=ON", "-DLLAMA_BUILD_COMMON=OFF",
            "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_TOOLS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
            "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_BUILD_APP=OFF", "-DLLAMA_OPENSSL=OFF", *cpu_args.split()]
    if archs:
        # Build-time cuts from ggml/CMakeLists.txt: FlashAttention vector kernels for F16 K/V only (the
        # cache type gpu_check uses; the default adds q4_0, q8_0, bf16), no fatbin compression (CUDA
        # >= 12.8), no NCCL (one machine; layer split does not use it).
        args += ["-DGGML_CUDA=ON", f"-DCMAKE_CUDA_ARCHITECTURES={';'.join(archs)}",
                 "-DGGML_CUDA_FA_QUANTS=f16-f16", "-DGGML_CUDA_COMPRESSION_MODE=none", "-DGGML_CUDA_NCCL=OFF"]
        if nvcc:
            args.append(f"-DCMAKE_CUDA_COMPILER={nvcc}")
    return args


def cuda_extras(toolkits: list[Path], sites: list[Path], driver_dirs: list[Path]) -> list[str]:
    """CMake arguments for what a CUDA toolkit assembled from NVIDIA's pip wheels may lack (as on this
    project's CPU machine: nvcc and cudart, no cuBLAS, no driver stub): cuBLAS from an ``nvidia-cublas``
    wheel in ``sites`` (PyTorch's), the driver's libcuda.so.1 from ``driver_dirs``. What ``toolkits`` have,
    or what is found nowhere, is left to CMake's own search (which then names what it misses)."""
    def has(*rels: str) -> bool:
        return any((t / r).exists() for t in toolkits for r in rels)

    args = []
    if not has("include/cublas_v2.h", "targets/x86_64-linux/include/cublas_v2.h"):
        heads = [h for s in sites for h in sorted(s.glob("nvidia/*/include/cublas_v2.h"))]
        libs = [h.parent.parent / "lib" for h in heads]
        lib = next((d for d in libs if any(d.glob("libcublasLt.so*")) and any(d.glob("libcublas.so*"))), None)
        if lib is not None:
            args += [f"-DCUDA_cublas_LIBRARY={min(lib.glob('libcublas.so*'))}",
                     f"-DCUDA_cublasLt_LIBRARY={min(lib.glob('libcublasLt.so*'))}",
                     f"-DCMAKE_CUDA_FLAGS=-I{lib.parent / 'include'}"]
    if not has(*(f"{d}/stubs/libcuda.so" for d in ("lib64", "lib", "targets/x86_64-linux/lib"))):
        driver = next((d / "libcuda.so.1" for d in driver_dirs if (d / "libcuda.so.1").exists()), None)
        args += [f"-DCUDA_cuda_driver_LIBRARY={driver}"] if driver else []
    return args


def _tool(name: str) -> str | None:
    """``name`` on PATH, else beside this Python (a venv's console scripts: the cmake and ninja wheels)."""
    return shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))


def say(msg: str, t0: float = time.monotonic()) -> None:
    """``msg`` with the clock time and the seconds since the kit started."""
    print(f"[{time.strftime('%H:%M:%S')} +{time.monotonic() - t0:6.1f}s] {msg}", flush=True)


def _logged(cmd: list[str], log: Path, what: str) -> None:
    """Run ``cmd``, its output appended to ``log``; every 30 s its latest progress line (ninja's
    ``[n/N] ...``) is printed, so that a run cut short still says how far the build got."""
    last = time.monotonic()
    with log.open("a") as f, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                              text=True, errors="replace") as proc:
        f.write(f"$ {' '.join(cmd)}\n")
        for line in proc.stdout or []:
            f.write(line)
            if line.startswith("[") and time.monotonic() - last > 30:
                print(f"    {line.strip()[:100]}", flush=True)
                last = time.monotonic()
    if rc := proc.returncode:
        print("\n".join(log.read_text(errors="replace").splitlines()[-40:]), file=sys.stderr)
        raise KitError(f"{what} failed (exit {rc}); full log: {log}")


def _done(folder: Path, make: Callable[[Path], None]) -> Path:
    """``folder``, made once by ``make`` (a ``.done`` marker says it is complete)."""
    if not (folder / ".done").exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        make(folder)
        (folder / ".done").touch()
    return folder


PRELUDE = """\
import os, runpy, sys
import llama_cpp
lib = llama_cpp.llama_cpp._lib._name
print(f"llama_cpp {llama_cpp.__version__} from {os.path.dirname(llama_cpp.__file__)}; libllama: {lib}")
maps = open("/proc/self/maps").read().split()
print("ggml libraries:", " ".join(sorted({p for p in maps if "/libggml" in p})) or "none")
if not lib.startswith(os.environ["LLAMA_CPP_LIB_PATH"]):
    print("gpu_kit: libllama was not loaded from the kit's build", file=sys.stderr)
    sys.exit(2)
sys.argv = ["bench/gpu_check.py", *sys.argv[1:]]
runpy.run_path("bench/gpu_check.py", run_name="__main__")
"""


def run(kit: Path, cache: Path, *, cpu: bool, json_out: Path | None, jobs: int, extra: list[str]) -> int:
    """Install, build, check (the module's docstring); returns gpu_check's exit status."""
    manifest_path = kit / "manifest.json"
    if not manifest_path.is_file():
        raise KitError(f"no pack at {kit}: run `python bench/gpu_kit.py pack` where the package index is")
    try:
        manifest = json.loads(manifest_path.read_text())
        sha, version = manifest["source"]["sha256"], manifest["llama_cpp_python"]
    except (ValueError, KeyError, TypeError) as e:
        raise KitError(f"{manifest_path} is not a kit manifest ({e!r}); pack again") from None
    if not (ROOT / "tokrace" / "backends").is_dir():
        raise KitError(f"{ROOT / 'tokrace'} lacks its links to the package folders (backends, cli, ...)")
    import importlib.util

    for name in (n for n in LEFT_TO_MACHINE if n != "llama-cpp-python"):
        if importlib.util.find_spec(name) is None:
            raise KitError(f"{name} is not installed for {sys.executable}; the kit leaves it to the machine")
    archs = [] if cpu else detect_archs()
    nvcc = _tool("nvcc") or next((p for p in ["/usr/local/cuda/bin/nvcc"] if Path(p).exists()), None)
    if archs and nvcc is None:
        raise KitError("nvcc not found (PATH, /usr/local/cuda/bin); run with --cpu for a CPU build")
    cmake, ninja = _tool("cmake"), _tool("ninja")
    if cmake is None:
        raise KitError("cmake not found (PATH, beside this Python)")
    args = cmake_args(archs, os.environ.get("CMAKE_ARGS") or DEFAULT_CMAKE_ARGS, nvcc)
    if archs and nvcc:
        toolkits = {os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda",
                    str(Path(nvcc).resolve().parents[1])}
        drivers = [*os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep), "/usr/local/nvidia/lib64",
                   "/usr/local/nvidia/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib64"]
        args += cuda_extras([Path(t) for t in toolkits if t], [Path(p) for p in sys.path if p],
                            [Path(d) for d in drivers if d])
    if ninja:
        args += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted((kit / "wheels").glob("*.whl"))
    key = hashlib.sha256("".join(w.name for w in wheels).encode()).hexdigest()[:12]
    say(f"{len(wheels)} wheels → {cache / f'site-{key}'}")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
           "--disable-pip-version-check", "--target"]
    site = _done(cache / f"site-{key}", lambda d: _logged([*pip, str(d), *map(str, wheels)], d / "pip.log",
                                                           "pip install"))
    src_dir = cache / f"src-{sha[:12]}"
    say(f"llama-cpp-python {version}, trimmed source → {src_dir}")
    src_root = _done(src_dir, lambda d: shutil.unpack_archive(kit / SOURCE, d, filter="data"))
    pkg = next(p for p in src_root.iterdir() if p.is_dir())
    build = cache / f"build-{hashlib.sha256((sha + ' '.join(args)).encode()).hexdigest()[:12]}"
    say(f"building libllama for {'CUDA ' + ';'.join(archs) if archs else 'the CPU'} in {build} "
        f"({jobs} jobs): {' '.join(args)}")
    t_build = time.monotonic()
    build.mkdir(exist_ok=True)
    log = build / "kit-build.log"
    _logged([cmake, "-S", str(pkg / "vendor" / "llama.cpp"), "-B", str(build), *args], log, "cmake configure")
    _logged([cmake, "--build", str(build), "--config", "Release", "-j", str(jobs), "--target", "llama"],
            log, "cmake build")
    build_s = time.monotonic() - t_build
    lib = next(build.rglob("libllama.so"), None)
    if lib is None:
        raise KitError(f"the build made no libllama.so; see {log}")
    say(f"built in {build_s:.0f} s; running bench/gpu_check.py")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LLAMA_CPP_LIB_PATH": str(lib.parent),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(site), str(pkg), str(ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    check_args = [*(["--cpu"] if cpu else []), *(["--json", str(json_out)] if json_out else []), *extra]
    rc = subprocess.run([sys.executable, "-c", PRELUDE, *check_args], cwd=ROOT, env=env).returncode
    if json_out is not None and json_out.is_file():
        report = json.loads(json_out.read_text())
        report["kit"] = {"build_s": round(build_s, 1), "cmake_args": args, "archs": archs, "jobs": jobs,
                         "lib_path": str(lib.parent), "llama_cpp_python": version}
        json_out.write_text(json.dumps(report, indent=2))
    say(f"gpu_check exit status {rc} (build {build_s:.0f} s)")
    return rc if rc >= 0 else 128 - rc  # killed by a signal: the shell's convention


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        argv, extra = argv[: argv.index("--")], argv[argv.index("--") + 1:]
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="gather the kit here (package index needed)")
    p.add_argument("--out", type=Path, default=ROOT / ".gpukit")
    p.add_argument("--budget-mib", type=float, default=BUDGET_MIB)
    r = sub.add_parser("run", help="build llama.cpp and run gpu_check (on the GPU machine)")
    r.add_argument("--kit", type=Path, default=ROOT / ".gpukit")
    r.add_argument("--cpu", action="store_true", help="CPU build and CPU configuration only")
    r.add_argument("--json", type=Path, default=None)
    r.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="build jobs (default: all cores)")
    default_cache = os.environ.get("TOKRACE_GPUKIT_CACHE") or Path.home() / ".cache" / "tokrace" / "gpukit"
    r.add_argument("--cache", type=Path, default=Path(default_cache))
    args = ap.parse_args(argv)
    if args.cmd == "run" and args.jobs < 1:
        ap.error("--jobs must be at least 1")
    try:
        if args.cmd == "pack":
            from gpu_kit_pack import pack  # the pack half: never imported on the GPU machine

            m = pack(args.out.resolve(), args.budget_mib)
            size, tree = m["pack_bytes"] / MIB, m["tree_bytes"] / MIB
            print(f"{args.out}: {size:.1f} MiB (source {m['source']['bytes'] / MIB:.1f} MiB, "
                  f"{len(m['wheels'])} wheels); with the working tree {size + tree:.1f} MiB of "
                  f"{args.budget_mib:.0f}")
            return 0
        json_out = args.json.resolve() if args.json else None
        return run(args.kit.resolve(), args.cache.resolve(), cpu=args.cpu, json_out=json_out,
                   jobs=args.jobs, extra=extra)
    except KitError as e:
        print(f"gpu_kit: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
