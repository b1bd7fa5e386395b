"""rgd from Python, notebook style: replay the default experiment, compare its routers in a
data frame, add a router written in Python next to them, and plot (if matplotlib is there).

    pip install target/wheels/rgd-*.whl pandas   # see docs/python.md
    python examples/python/compare.py
"""

from pathlib import Path

import numpy as np

import rgd

REPO = Path(__file__).resolve().parents[2]
PIPELINE = REPO / "examples" / "default" / "default.toml"


class NearestRight:
    """Routes a query to the model that answered its 25 nearest training questions best."""

    def __init__(self, k=25):
        self.k = int(k)

    def train(self, split):
        self.x = split.embeddings / np.linalg.norm(split.embeddings, axis=1, keepdims=True)
        self.right = split.correct.astype(np.float64)

    def score(self, split):
        q = split.embeddings / np.linalg.norm(split.embeddings, axis=1, keepdims=True)
        sim = q @ self.x.T
        near = np.argsort(-sim, axis=1)[:, : self.k]
        return self.right[near].mean(axis=1)

    def state(self):
        return {"k": self.k, "x": self.x.tolist(), "right": self.right.tolist()}

    @classmethod
    def from_state(cls, s):
        r = cls(s["k"])
        r.x = np.asarray(s["x"], dtype=np.float32)
        r.right = np.asarray(s["right"])
        return r


def main():
    # 1. the default experiment, replayed from its recording (no model runs; seconds)
    results = rgd.run(PIPELINE)
    print(results)
    table = results.to_pandas()["routers"]
    print(table[["router", "supervision", "top1", "top1_lo", "top1_hi", "top3_vote"]])

    # 2. the same pipeline with a router written here, side by side with the built-in ones
    rgd.register_router("nearest_right", NearestRight)
    text = PIPELINE.read_text() + '\n[routers.nearest_right]\ntype = "nearest_right"\nk = 25\n'
    mine = rgd.run(text, base_dir=PIPELINE.parent)
    t = mine.to_pandas()["routers"].set_index("router")
    print(t.loc[["nearest_right", "knn", "cascal", "best_single"], ["top1", "top3_vote"]])

    # 3. the data, as numpy arrays, for your own code
    ds = rgd.load_dataset(PIPELINE)
    print(ds, "per-model test accuracy:", ds.test.correct.mean(axis=0).round(3))

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    ax = t["top1"].sort_values().plot.barh(figsize=(6, 4), title="top-1 on the real test split")
    ax.axvline(mine["references"]["best_single"], color="grey", linestyle="--")
    plt.tight_layout()
    plt.savefig("compare.png")
    print("wrote compare.png")


if __name__ == "__main__":
    main()
