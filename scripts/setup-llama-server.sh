#!/usr/bin/env bash
# Set up a real OpenAI-compatible server for the tests: llama-cpp-python's server, from PyPI.
# Its wheel builds llama.cpp with cmake (about 4 minutes on 2 cores, measured), so the built wheel is
# kept in $RGD_WHEELS_DIR and the virtualenv in $RGD_LLAMA_SERVER_VENV; later runs reuse both.
# Source it: it exports RGD_LLAMA_SERVER_PYTHON, which the real-server test starts.
set -euo pipefail
LLAMA_CPP_PYTHON_VERSION=0.3.36
RGD_LLAMA_SERVER_VENV="${RGD_LLAMA_SERVER_VENV:-$HOME/.cache/rgd/llama-server}"
RGD_WHEELS_DIR="${RGD_WHEELS_DIR:-$HOME/.cache/rgd/wheels}"
if ! "$RGD_LLAMA_SERVER_VENV/bin/python" -c "import llama_cpp.server" 2>/dev/null; then
  mkdir -p "$RGD_WHEELS_DIR"
  wheel=$(ls "$RGD_WHEELS_DIR"/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$wheel" ]; then
    echo "building llama-cpp-python $LLAMA_CPP_PYTHON_VERSION (llama.cpp with cmake; ~4 min on 2 cores)" >&2
    # portable code (no -march=native): the cached wheel may run on another CPU; no llava
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
      CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
      python3 -m pip wheel --quiet --no-deps --no-binary llama-cpp-python \
      "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -w "$RGD_WHEELS_DIR"
    wheel=$(ls "$RGD_WHEELS_DIR"/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION-*.whl | head -1)
  fi
  rm -rf "$RGD_LLAMA_SERVER_VENV"
  python3 -m venv "$RGD_LLAMA_SERVER_VENV"
  "$RGD_LLAMA_SERVER_VENV/bin/pip" install --quiet "$wheel[server]"
fi
export RGD_LLAMA_SERVER_PYTHON="$RGD_LLAMA_SERVER_VENV/bin/python"
echo "llama-cpp-python server: $RGD_LLAMA_SERVER_PYTHON" >&2
