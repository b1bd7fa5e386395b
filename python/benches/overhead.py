"""The Python binding's overhead, measured (quoted in docs/python.md):

1. Ranking 7,000 query embeddings (384-d) with CASCAL trained on the 14 x 2,000-question
   simulated world of `rgd bench cascal`: `Router.scores` from Python (numpy in, numpy out)
   against the Rust call alone (the router's batched scoring), median of 7.
2. A router written in Python: the per-call time of scoring one query through it
   (Rust -> Python -> Rust), against the process protocol's 0.23 ms per call.

Run with the wheel installed (built with --release): python python/benches/overhead.py
"""

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import rgd

WORLD = {
    "seed": 0,
    "data": {"type": "simulated", "subjects": 14, "models": 6, "dim": 384,
             "train_per_subject": 2000, "test_per_subject": 500},
    "routers": {"cascal": {"type": "cascal"}},
}


class Zero:
    """Scores every model 0: only the call's overhead is left."""

    def __init__(self):
        pass

    def train(self, split):
        self.m = len(split.models)

    def score(self, split):
        return np.zeros((len(split.ids), self.m))

    def state(self):
        return {"m": self.m}

    @classmethod
    def from_state(cls, state):
        z = cls()
        z.m = state["m"]
        return z


def median_seconds(f, repeats):
    t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        t.append(time.perf_counter() - t0)
    return statistics.median(t)


def main():
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out"
        rgd.run(WORLD, out=out, progress=False)
        router = rgd.load_router(out / "routers" / "cascal.json")
        emb = rgd.load_dataset(WORLD).test.embeddings
        assert emb.shape == (7000, 384), emb.shape
        py = median_seconds(lambda: router.scores(emb), 7)
        rust = router._rust_seconds(emb, 7)
        print(f"CASCAL, 7000 x 384 queries: Python Router.scores {1e3 * py:.2f} ms, "
              f"Rust call alone {1e3 * rust:.2f} ms, ratio {py / rust:.2f}")

        rgd.register_router("bench_zero", Zero)
        world = {**WORLD, "routers": {"zero": {"type": "bench_zero"}}}
        rgd.run(world, out=out, progress=False)
        zero = rgd.load_router(out / "routers" / "zero.json")
        one = emb[:1]
        n = 2000
        per_call = median_seconds(lambda: [zero.scores(one) for _ in range(n)], 5) / n
        builtin = median_seconds(lambda: [router.scores(one) for _ in range(n)], 5) / n
        print(f"one query through a Python-class router: {1e3 * per_call:.3f} ms per call "
              f"(a built-in router through the same binding: {1e3 * builtin:.3f} ms; "
              f"the process protocol: 0.23 ms)")


if __name__ == "__main__":
    main()
