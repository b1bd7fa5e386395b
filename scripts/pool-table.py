#!/usr/bin/env python3
"""Each pool member's accuracy per subject on a run's test split, the best member and the
oracle per subject, then each member's cost and accuracy (markdown tables).

Usage: scripts/pool-table.py OUT/results.json   (the `results.json` of `rgd run`)
"""
import json
import sys

if len(sys.argv) != 2:
    sys.exit(__doc__.strip())
r = json.load(open(sys.argv[1]))
refs = r["references"]
per = refs["per_subject"]
members = list(next(iter(per.values()))["single"])
print("| subject | n | " + " | ".join(members) + " | best member | oracle | oracle - best |")
print("|---|---:|" + "---:|" * (len(members) + 3))
rows = sorted(per.items(), key=lambda kv: -(kv[1]["oracle"] - kv[1]["best_single"]))
overall = dict(refs, n=r["n_test"])
for subj, ref in rows + [("**all**", overall)]:
    cells = " | ".join(f"{100 * ref['single'][m]:.1f}" for m in members)
    gap = ref["oracle"] - ref["best_single"]
    print(
        f"| {subj} | {ref['n']} | {cells} | {100 * ref['best_single']:.1f} "
        f"({ref['best_single_model']}) | {100 * ref['oracle']:.1f} | {100 * gap:.1f} |"
    )
print(
    f"\nOracle {100 * refs['oracle']:.1f} %; independent errors would give "
    f"{100 * refs['oracle_if_independent']:.1f} %."
)
costs = r.get("costs")
if costs:
    print()
    print("| member | seconds per question | accuracy (%) |")
    print("|---|---:|---:|")
    for m in members:
        c = costs["per_model"][m]
        print(f"| {m} | {c['cost']:.2f} | {100 * c['accuracy']:.1f} |")
for split, per in (r.get("call_failures") or {}).items():
    for m, (n, reason) in per.items():
        print(f"\n{split}: {m} abstained on {n} questions (first: {reason})")
