# Sourced by scripts/run and scripts/test: create .venv and install tokrace into it.
#
# llama-cpp-python is compiled from source. A -march=native build is not portable and, on CPUs that
# advertise AMX without the kernel granting it (seen on cloud VMs), dies with SIGILL on quantized
# models; so the default is an explicit AVX2 baseline. Set CMAKE_ARGS yourself for other builds, e.g.
# CMAKE_ARGS="-DGGML_CUDA=on" for NVIDIA GPUs (add --no-cache-dir once: pip caches the first build).
: "${CMAKE_ARGS:=-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON}"
export CMAKE_ARGS
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --disable-pip-version-check -q -e "$1"
