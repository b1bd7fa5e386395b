#!/usr/bin/env python3
"""An rgd router (and a filter and a labeler) in Python, standard library only, served over rgd's
JSON-lines process protocol (version 1; see plugins/process/src/lib.rs).

Use it from a pipeline:

    [routers.centroid_py]
    type = "process"
    command = ["python3", "examples/plugins/python/centroid_router.py"]
    config = { prior = 0.5 }

`centroid_py` is the same nearest-centroid router as the Rust template plugin
(plugins/template): each model's score is the cosine between the query and the mean embedding
of the training questions it answered with the pool's plurality, plus `prior` times its share
of such answers. `min_words_py` drops training questions shorter than `min_words` words.
`peer_share_py` labels each (question, model) with the share of the other models that chose
the same letter (what `[labelers.NAME] type = "process"` serves to routers' `labels`).

Write logs to stderr: stdout carries the protocol only.
"""
import json
import math
import sys

PROTOCOL = 1


def plurality(choices):
    """The most frequent letter of one question's answers (ties: the first letter)."""
    counts = {}
    for c in choices:
        if c is not None:
            counts[c] = counts.get(c, 0) + 1
    if not counts:
        return None
    best = max(counts.values())
    return min(letter for letter, n in counts.items() if n == best)


def unit(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v] if n > 0 else v


def train(config, models, split):
    prior = float(config.get("prior", 0.5))
    majority = [plurality(row) for row in split["choices"]]
    dim = len(split["embeddings"][0]) if split["embeddings"] else 0
    centroids, priors = [], []
    for m in range(len(models)):
        total, n = [0.0] * dim, 0
        for q, maj in enumerate(majority):
            if maj is not None and split["choices"][q][m] == maj:
                total = [a + b for a, b in zip(total, split["embeddings"][q])]
                n += 1
        centroids.append(unit(total))
        priors.append(prior * n / max(1, len(majority)))
    return {"centroids": centroids, "priors": priors}


def score(state, queries):
    out = []
    for q in queries:
        e = unit([float(x) for x in q["embedding"]])
        out.append([
            sum(a * b for a, b in zip(c, e)) + p
            for c, p in zip(state["centroids"], state["priors"])
        ])
    return out


def filter_split(config, split):
    n = int(config.get("min_words", 4))
    keep = [len(q["text"].split()) >= n for q in split["questions"]]
    return {"keep": keep, "removed": {"too short": keep.count(False)}}


def peer_share(split):
    out = []
    for row in split["choices"]:
        others = max(1, len(row) - 1)
        out.append([
            0.0 if c is None else sum(1 for k, d in enumerate(row) if k != j and d == c) / others
            for j, c in enumerate(row)
        ])
    return {"labels": out}


LOADED = {}  # handle -> state, for this process's lifetime


def handle(req):
    method, p = req.get("method"), req.get("params", {})
    if method == "train":
        return {"state": train(p.get("config", {}), p["models"], p["split"])}
    if method == "load":
        h = len(LOADED)
        LOADED[h] = p["state"]
        return {"handle": h}
    if method == "score":
        return {"scores": score(LOADED[p["handle"]], p["queries"])}
    if method == "filter":
        return filter_split(p.get("config", {}), p["split"])
    if method == "label":
        return peer_share(p["split"])
    raise ValueError(f"unknown method {method!r}")


def main():
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("rgd") == "hello":
            reply = {
                "protocol": PROTOCOL,
                "components": [
                    {"kind": "router", "type": "centroid_py",
                     "doc": "Nearest centroid of the questions each model answered with the plurality."},
                    {"kind": "filter", "type": "min_words_py",
                     "doc": "Drops training questions shorter than min_words words."},
                    {"kind": "labeler", "type": "peer_share_py",
                     "doc": "Share of the other models that chose the same letter."},
                ],
            }
        else:
            try:
                reply = {"id": req.get("id"), "result": handle(req)}
            except Exception as e:  # the error goes back to rgd, which names this process
                reply = {"id": req.get("id"), "error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
