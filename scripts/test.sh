#!/usr/bin/env bash
# Set up and run the tests, both tiers: the system packages the build loads (scripts/setup.sh),
# llama-cpp-python's server (a real OpenAI-compatible server), cargo-nextest, the real-model
# assets listed in tests/assets.txt (cached in $RGD_ASSETS_DIR, default ~/.cache/rgd/assets),
# then every test of the workspace with the model tier on, then the Python package's tests
# (scripts/test-python.sh). The fast tier alone is `cargo test --workspace`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# a real OpenAI-compatible server (llama-cpp-python) for the real-server test
source scripts/setup-llama-server.sh
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
# the model tier: tests that load model files or start servers (ignored without these features)
tier=(--features rgd/model-tests,rgd-embedders/model-tests,rgd-benchmarks/model-tests)
# build everything the tests use once (one feature set), then use that rgd to fetch the assets
cargo nextest run --workspace "${tier[@]}" --no-run
mapfile -t assets < <(grep -v '^\s*\(#\|$\)' tests/assets.txt)
"${CARGO_TARGET_DIR:-target}/debug/rgd" assets fetch "${assets[@]}"
cargo nextest run --workspace "${tier[@]}"
# the Python package: its wheel built and installed in a virtualenv, then pytest
./scripts/test-python.sh
