"""What the figures were measured on: CPU model, GPUs and driver, llama.cpp build.

Described once per process (none of it changes while tokrace runs) and cached.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

from tokrace.backends.device_telemetry import cpu_model, gpu_inventory


@dataclass(frozen=True, slots=True)
class Hardware:
    cpu_model: str
    cpu_count: int
    gpu_names: tuple[str, ...] = ()
    gpu_driver: str | None = None
    build_commit: str | None = None
    """llama.cpp's commit as its ggml reports it (``ggml_commit``), e.g. ``0c1e570``."""
    gpu_offload: bool = False
    system_info: str = field(default="", compare=False)

    def label(self) -> str:
        if self.gpu_names:
            return ", ".join(self.gpu_names)
        return self.cpu_model


def llama_build() -> tuple[str | None, bool, str]:
    """(build commit, GPU offload supported, system info) of the bundled llama.cpp, if importable."""
    try:
        import ctypes

        import llama_cpp
    except ImportError:
        return None, False, ""
    commit: str | None = None
    # llama-cpp-python binds no build-info call; ggml (built from the same llama.cpp tree) exports one.
    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    for name in ("libggml-base.so", "libggml-base.dylib", "ggml-base.dll"):
        lib_path = lib_dir / name
        if not lib_path.exists():
            continue
        try:
            fn = ctypes.CDLL(str(lib_path)).ggml_commit
            fn.restype = ctypes.c_char_p
            raw = fn()
            commit = raw.decode() if raw else None
        except (OSError, AttributeError):
            commit = None
        break
    try:
        offload = bool(llama_cpp.llama_supports_gpu_offload())
        info = llama_cpp.llama_print_system_info().decode(errors="replace").strip()
    except Exception:
        offload, info = False, ""
    return commit, offload, info


@functools.cache
def describe_hardware() -> Hardware:
    gpus, driver = gpu_inventory()
    commit, offload, info = llama_build()
    return Hardware(
        cpu_model=cpu_model(),
        cpu_count=os.cpu_count() or 1,
        gpu_names=gpus,
        gpu_driver=driver,
        build_commit=commit,
        gpu_offload=offload,
        system_info=info,
    )
