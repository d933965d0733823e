"""The packed GPU check kit (bench/gpu_kit.py): what can be checked without a GPU or a build, fast: the
compute-capability parsing (a fake nvidia-smi), the CMake arguments, the trim rule, the budget, the
wheel list and the one-line errors. The build and the check themselves ran by hand (see the module)."""

from __future__ import annotations

import io
import os
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import gpu_kit  # noqa: E402
import gpu_kit_pack  # noqa: E402
from gpu_kit import KitError  # noqa: E402


def fake_nvidia_smi(folder: Path, stdout: str, rc: int = 0, stderr: str = "") -> None:
    folder.mkdir(exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        '[ "$1 $2" = "--query-gpu=compute_cap --format=csv,noheader" ] || { echo "args: $*" >&2; exit 64; }\n'
        f"printf '{stdout}'\nprintf '{stderr}' >&2\nexit {rc}\n")
    script.chmod(0o755)


def test_compute_capabilities_become_machine_code_architectures() -> None:
    assert gpu_kit.cuda_archs("9.0\n") == ["90-real"]
    # Several GPUs: one architecture each kind, in order; blank lines and spaces are no GPUs.
    assert gpu_kit.cuda_archs("9.0\n8.6\n 9.0 \n\n12.0\n") == ["86-real", "90-real", "120-real"]
    assert gpu_kit.cuda_archs("") == []
    with pytest.raises(KitError, match=r"^nvidia-smi gave '\[N/A\]' .*--cpu") as e:
        gpu_kit.cuda_archs("9.0\n[N/A]\n")
    assert "\n" not in str(e.value)


def test_detect_archs_asks_nvidia_smi_and_builds_for_the_cpu_without_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    fake_nvidia_smi(bin_dir, "9.0\\n9.0\\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    assert gpu_kit.detect_archs() == ["90-real"]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert gpu_kit.detect_archs() == []  # no nvidia-smi: a CPU build
    fake_nvidia_smi(bin_dir, "", 9, "NVIDIA-SMI has failed because it could not communicate with the driver")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    with pytest.raises(KitError, match=r"^nvidia-smi failed \(NVIDIA-SMI has failed because .*--cpu"):
        gpu_kit.detect_archs()


def test_cmake_arguments_for_cuda_and_for_the_cpu() -> None:
    cpu = gpu_kit.cmake_args([], gpu_kit.DEFAULT_CMAKE_ARGS)
    cuda = gpu_kit.cmake_args(["86-real", "90-real"], gpu_kit.DEFAULT_CMAKE_ARGS, "/usr/local/cuda/bin/nvcc")
    for args in (cpu, cuda):
        # Shared libraries (what llama_cpp loads), nothing but the libraries, scripts/_venv.sh's CPU flags.
        assert {"-DBUILD_SHARED_LIBS=ON", "-DLLAMA_BUILD_COMMON=OFF", "-DLLAMA_BUILD_TOOLS=OFF",
                "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF",
                "-DGGML_NATIVE=OFF", "-DGGML_AVX2=ON", "-DCMAKE_BUILD_TYPE=Release"} <= set(args)
    assert not [a for a in cpu if "CUDA" in a]
    assert set(cuda) - set(cpu) == {
        "-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=86-real;90-real", "-DGGML_CUDA_FA_QUANTS=f16-f16",
        "-DGGML_CUDA_COMPRESSION_MODE=none", "-DGGML_CUDA_NCCL=OFF",
        "-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc"}
    assert "-DGGML_NATIVE=ON" in gpu_kit.cmake_args(["90-real"], "-DGGML_NATIVE=ON")  # CMAKE_ARGS wins


def touch(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def test_cuda_parts_a_wheel_assembled_toolkit_lacks_are_found_elsewhere(tmp_path: Path) -> None:
    full, slim, site, driver = (tmp_path / n for n in ("cuda-full", "cuda-slim", "site", "nvidia-lib64"))
    touch(full / "targets/x86_64-linux/include/cublas_v2.h", full / "lib64/stubs/libcuda.so",
          slim / "include/cuda_runtime.h", slim / "lib/libcudart.so.13")
    touch(driver / "libcuda.so.1")
    assert gpu_kit.cuda_extras([slim, full], [site], [driver]) == []  # a full toolkit: CMake finds them
    cu13 = site / "nvidia" / "cu13"  # PyTorch's nvidia-cublas wheel (CUDA 13 layout)
    touch(cu13 / "include/cublas_v2.h", cu13 / "lib/libcublas.so.13")
    # Found nowhere (no cublasLt beside cublas, no driver): left to CMake, which names what it misses.
    assert gpu_kit.cuda_extras([slim], [site], [tmp_path / "none"]) == []
    touch(cu13 / "lib/libcublasLt.so.13")
    assert gpu_kit.cuda_extras([slim], [tmp_path / "elsewhere", site], [tmp_path / "none", driver]) == [
        f"-DCUDA_cublas_LIBRARY={cu13}/lib/libcublas.so.13",
        f"-DCUDA_cublasLt_LIBRARY={cu13}/lib/libcublasLt.so.13",
        f"-DCMAKE_CUDA_FLAGS=-I{cu13}/include", f"-DCUDA_cuda_driver_LIBRARY={driver}/libcuda.so.1"]


KEPT = [
    "LICENSE.md", "llama_cpp/__init__.py", "llama_cpp/llama_cpp.py", "llama_cpp/mtmd_cpp.py",
    "vendor/llama.cpp/CMakeLists.txt", "vendor/llama.cpp/LICENSE", "vendor/llama.cpp/cmake/common.cmake",
    "vendor/llama.cpp/include/llama.h", "vendor/llama.cpp/src/llama.cpp",
    "vendor/llama.cpp/src/models/llama.cpp", "vendor/llama.cpp/ggml/CMakeLists.txt",
    "vendor/llama.cpp/ggml/cmake/common.cmake", "vendor/llama.cpp/ggml/include/ggml-cuda.h",
    "vendor/llama.cpp/ggml/src/CMakeLists.txt", "vendor/llama.cpp/ggml/src/ggml.c",
    "vendor/llama.cpp/ggml/src/ggml-cpu/arch/x86/quants.c",
    "vendor/llama.cpp/ggml/src/ggml-cuda/CMakeLists.txt",
    "vendor/llama.cpp/ggml/src/ggml-cuda/vendors/cuda.h",
    "vendor/llama.cpp/ggml/src/ggml-cuda/template-instances/mmq-instance-q4_0.cu",
    "vendor/llama.cpp/vendor/CMakeLists.txt", "vendor/llama.cpp/vendor/miniaudio/CMakeLists.txt",
    "vendor/llama.cpp/vendor/hash/xxhash/xxhash.c",
]
DROPPED = [
    "README.md", "docs/index.md", "tests/test_llama.py", "examples/high_level_api/x.py",
    "llama_cpp/server/app.py", "llama_cpp/__pycache__/llama.cpython-311.pyc",
    "vendor/llama.cpp/models/ggml-vocab-llama-bpe.gguf", "vendor/llama.cpp/docs/build.md",
    "vendor/llama.cpp/tests/test-backend-ops.cpp", "vendor/llama.cpp/examples/simple/simple.cpp",
    "vendor/llama.cpp/tools/server/server.cpp", "vendor/llama.cpp/tools/mtmd/clip.cpp",
    "vendor/llama.cpp/common/common.cpp", "vendor/llama.cpp/gguf-py/gguf/gguf.py",
    "vendor/llama.cpp/ggml/src/ggml-vulkan/ggml-vulkan.cpp", "vendor/llama.cpp/ggml/src/ggml-metal/x.m",
    "vendor/llama.cpp/ggml/src/ggml-sycl/CMakeLists.txt", "vendor/llama.cpp/ggml/src/ggml-hip/CMakeLists.txt",
    "vendor/llama.cpp/vendor/miniaudio/miniaudio.h", "vendor/llama.cpp/vendor/cpp-httplib/httplib.cpp",
]


def test_trim_rule_keeps_the_build_and_drops_the_rest(tmp_path: Path) -> None:
    sdist = tmp_path / "llama_cpp_python-9.9.9.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        for i, rel in enumerate(KEPT + DROPPED):
            data = f"file {i}\n".encode()
            info = tarfile.TarInfo(f"llama_cpp_python-9.9.9/{rel}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        folder = tarfile.TarInfo("llama_cpp_python-9.9.9/vendor/llama.cpp/src/models")
        folder.type = tarfile.DIRTYPE  # folders are not copied: extraction makes them
        tar.addfile(folder)
    n, size = gpu_kit_pack.trim_sdist(sdist, tmp_path / "out.tar.xz")
    with tarfile.open(tmp_path / "out.tar.xz") as tar:
        names = {m.name for m in tar.getmembers()}
        first = tar.extractfile("llama_cpp_python-9.9.9/llama_cpp/__init__.py")
        assert first is not None and first.read() == b"file 1\n"
    assert names == {f"llama_cpp_python-9.9.9/{rel}" for rel in KEPT}
    assert n == len(KEPT) and size == sum(len(f"file {i}\n") for i in range(len(KEPT)))
    # ``*`` stays within a folder, ``**`` crosses them.
    assert gpu_kit_pack.kept("vendor/llama.cpp/ggml/src/ggml-cpu.c")
    assert not gpu_kit_pack.kept("vendor/llama.cpp/ggml/src/ggml-opencl/ggml-opencl.cpp")
    assert not gpu_kit_pack.kept("vendor/llama.cpp/vendor/hashes/x.c")


def test_budget_refuses_a_pack_too_big_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "big.whl").write_bytes(b"\0" * (3 * gpu_kit.MIB))
    (tmp_path / "manifest.json").write_text("{}")
    assert gpu_kit_pack.check_budget(tmp_path, gpu_kit.MIB, 5 * gpu_kit.MIB) == 3 * gpu_kit.MIB + 2
    with pytest.raises(KitError) as e:
        gpu_kit_pack.check_budget(tmp_path, 2 * gpu_kit.MIB, 5 * gpu_kit.MIB)
    assert str(e.value) == ("the pack (3.0 MiB) and the working tree (2.0 MiB) come to 5.0 MiB, "
                            "over the 5 MiB budget")


def test_imports_are_followed_through_the_package(tmp_path: Path) -> None:
    pkg = tmp_path / "tokrace"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("import platformdirs\n")
    (pkg / "a.py").write_text(
        "from __future__ import annotations\nimport json\nfrom typing import TYPE_CHECKING\n"
        "from .sub import b\nif TYPE_CHECKING:\n    import textual\n"
        "def f():\n    import yaml.constructor\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from ..c import x\nimport requests as r\n")
    (pkg / "c.py").write_text("try:\n    import tomllib\nexcept ImportError:\n    import tomli\n")
    (pkg / "unused.py").write_text("import pydantic\n")
    script = tmp_path / "check.py"
    script.write_text("import numpy as np\nfrom tokrace.a import f\nimport tokrace\n")
    assert gpu_kit_pack.third_party_imports(script, tmp_path) == {"numpy", "yaml", "requests", "platformdirs",
                                                             "tomli"}


def test_requirement_closure_evaluates_markers_and_extras_for_the_target() -> None:
    requires = {
        "a": ["B>=1", "c; python_version < '3.12'", "d[x]; sys_platform == 'linux'", "e; extra == 'dev'"],
        "b": ["a"],  # a cycle
        "d": ["f; extra == 'x'", "g; extra == 'y'", "h_i"],
        "h-i": None,  # not installed: listed, nothing more known
    }
    got = gpu_kit_pack.requirement_closure(["A"], lambda name: requires.get(name, []))
    assert got == {"a", "b", "d", "f", "h-i"}


def test_wheel_list_is_what_gpu_check_reaches_at_our_versions() -> None:
    from importlib.metadata import version

    dists = gpu_kit_pack.needed_distributions()
    # What the GPU machine lacks, and huggingface_hub: its 1.33 is older than tokrace's >= 2.4.
    for name in ("gguf", "httpx-sse", "platformdirs", "huggingface-hub", "diskcache", "nvidia-ml-py"):
        assert dists[name] == version(name), name
    # numpy: the machine's own; llama-cpp-python: built there.
    assert "numpy" not in dists and not set(dists) & set(gpu_kit.LEFT_TO_MACHINE)
    assert "textual" not in dists and "matplotlib" not in dists  # the UI and plots are off gpu_check's path
    # Settings (pydantic) and writing settings.toml are off its path too: it prepares a load (tokrace.load)
    # without reading the user's settings.
    assert "tomli-w" not in dists and "pydantic" not in dists


def test_failed_step_quotes_its_log_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "build.log"
    with pytest.raises(KitError) as e:
        gpu_kit._logged([sys.executable, "-c", "print('[1/2] compiling'); raise SystemExit(3)"], log,
                        "cmake build")
    assert str(e.value) == f"cmake build failed (exit 3); full log: {log}"
    assert "[1/2] compiling" in log.read_text() and "[1/2] compiling" in capsys.readouterr().err


def test_run_without_a_pack_or_with_a_bad_one_says_so_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = gpu_kit.main(["run", "--kit", str(tmp_path / "nothing"), "--cache", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("gpu_kit: no pack at ") and err.count("\n") == 1
    (tmp_path / "kit").mkdir()
    (tmp_path / "kit" / "manifest.json").write_text('{"source": {}}')
    code = gpu_kit.main(["run", "--kit", str(tmp_path / "kit"), "--cache", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 2 and "is not a kit manifest" in err and err.count("\n") == 1
    assert not (tmp_path / "cache").exists()  # nothing built or installed
