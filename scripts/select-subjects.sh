#!/usr/bin/env bash
# Score the local pool (all four models) on 20 seeded test questions of each candidate subject
# and print, per subject, each model's accuracy, the best single model and the oracle.
# Every call goes through the cache given as $1 (default ~/.cache/rgd/calls.sqlite), so a rerun
# or an interrupted run costs only the missing calls.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${1:-}"
args=(); [ -n "$cache" ] && args=(--cache "$cache")
rgd="${RGD:-./target/release/rgd}"
for p in examples/pipelines/select/*.toml; do
  name=$(basename "$p" .toml)
  "$rgd" run "$p" --out "out/select/$name" -q "${args[@]}"
done
python3 - <<'PY'
import json, glob, os
rows = []
for f in sorted(glob.glob("out/select/*/results.json")):
    r = json.load(open(f))
    for subj, ref in r["references"]["per_subject"].items():
        rows.append((ref["oracle"] - ref["best_single"], subj, ref))
print("| subject | n | " + " | ".join(r_ for r_ in rows[0][2]["single"]) + " | best single | oracle | oracle - best |")
print("|---|---:|" + "---:|" * (len(rows[0][2]["single"]) + 3))
for gap, subj, ref in sorted(rows, key=lambda x: -x[0]):
    singles = " | ".join(f"{100*v:.0f}" for v in ref["single"].values())
    print(f"| {subj} | {ref['n']} | {singles} | {100*ref['best_single']:.0f} ({ref['best_single_model']}) | {100*ref['oracle']:.0f} | {100*gap:.0f} |")
PY
