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
python3 - <<'PY'
import json
r = json.load(open("out/select-experts/results.json"))
per = r["references"]["per_subject"]
members = list(next(iter(per.values()))["single"])
print("| subject | n | " + " | ".join(members) + " | best member | oracle | oracle - best |")
print("|---|---:|" + "---:|" * (len(members) + 3))
rows = sorted(per.items(), key=lambda kv: -(kv[1]["oracle"] - kv[1]["best_single"]))
overall = dict(r["references"], n=r["n_test"])
for subj, ref in rows + [("**all**", overall)]:
    cells = " | ".join(f"{100*ref['single'][m]:.0f}" for m in members)
    gap = ref["oracle"] - ref["best_single"]
    print(f"| {subj} | {ref['n']} | {cells} | {100*ref['best_single']:.0f} ({ref['best_single_model']}) | {100*ref['oracle']:.0f} | {100*gap:.0f} |")
o = overall
print(f"\nOracle {100*o['oracle']:.1f} %; independent errors would give {100*o['oracle_if_independent']:.1f} %.")
costs = r["costs"]["per_model"]
print()
print("| member | seconds per question | accuracy |")
print("|---|---:|---:|")
for m in members:
    print(f"| {m} | {costs[m]['cost']:.2f} | {100*costs[m]['accuracy']:.1f} |")
PY
