#!/usr/bin/env bash
# Pool and subject selection (issue 19): every candidate member (model x answer mode) of
# examples/pipelines/select-experts.toml answers 8 held-out questions of each candidate subject;
# prints, per subject, each member's accuracy, the best member and the oracle, then each
# member's measured seconds per question. Calls go through the cache given as $1, so a rerun or
# an interrupted run costs only the missing calls.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${1:-}"
args=(); [ -n "$cache" ] && args=(--cache "$cache")
rgd="${RGD:-./target/release/rgd}"
"$rgd" run examples/pipelines/select-experts.toml --out out/select-experts -q "${args[@]}"
python3 scripts/pool-table.py out/select-experts/results.json
