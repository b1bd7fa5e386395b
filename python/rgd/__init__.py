"""rgd: Routing with Generated Data, from Python.

Run a pipeline and read its results as data frames, load a trained router and rank numpy
embeddings with it, load a pipeline's data as numpy arrays, and write routers as Python
classes that run next to the built-in ones. The work is done by rgd's Rust library; this
package is a thin layer over it.

    import rgd
    results = rgd.run("examples/pipelines/zoo.toml")
    results.to_pandas()["routers"]
"""

from __future__ import annotations

import html
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Union

from . import _rgd
from ._rgd import RgdError, Router

__all__ = [
    "RgdError",
    "Results",
    "Router",
    "Split",
    "Dataset",
    "run",
    "load_router",
    "load_dataset",
    "register_labeler",
    "register_router",
    "components",
]
__version__ = _rgd.__version__

Pipeline = Union[str, "os.PathLike[str]", Mapping[str, Any]]


def _ordered(v: Any) -> Any:
    """A dict as a list of [key, value] pairs (recursively): JSON objects carry no order, and
    a pipeline's table order is meaningful (routers are reported in it)."""
    if isinstance(v, Mapping):
        return {"__rgd_table__": [[str(k), _ordered(x)] for k, x in v.items()]}
    if isinstance(v, (list, tuple)):
        return [_ordered(x) for x in v]
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    return v


def _pipeline(pipeline: Pipeline, base_dir: Optional[Union[str, "os.PathLike[str]"]]):
    """(kind, value, base_dir) for the native functions: a dict, TOML text or a file."""
    base = Path(base_dir) if base_dir is not None else None
    if isinstance(pipeline, Mapping):
        return "json", json.dumps(_ordered(pipeline)), str(base or Path.cwd())
    if isinstance(pipeline, os.PathLike):
        return "path", os.fspath(pipeline), str(base or Path(pipeline).parent)
    if isinstance(pipeline, str):
        # a string with a newline or a table header is TOML text; otherwise a file name
        if "\n" in pipeline or pipeline.lstrip().startswith("["):
            return "toml", pipeline, str(base or Path.cwd())
        return "path", pipeline, str(base or Path(pipeline).parent)
    raise TypeError(
        f"pipeline must be a path, a TOML string or a dict, not {type(pipeline).__name__}"
    )


class _Progress:
    """Default progress: a line per finished stage on stderr, and a bar for the long steps
    (model calls, routers trained): tqdm's when it is installed (`tqdm.auto`, a widget in a
    notebook), otherwise a plain line at every tenth of the way."""

    def __init__(self) -> None:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            tqdm = None
        self._tqdm = tqdm
        self._bar: Any = None
        self._label: Optional[str] = None
        self._shown = -1

    def _line(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def __call__(self, event: str, text: str) -> None:
        if event in ("done", "info"):
            self._line("  " + text)
        elif event == "warning":
            self._line("warning: " + text)

    def update(self, label: str, done: int, total: int) -> None:
        """`done` of `total` items of the long step `label`."""
        if label != self._label:
            self.close()
            self._label = label
            if self._tqdm is not None:
                self._bar = self._tqdm(total=total, desc=label, file=sys.stderr, leave=False)
        if self._bar is not None:
            self._bar.total = total
            self._bar.n = done
            self._bar.refresh()
        else:
            tenth = done * 10 // max(total, 1)
            if tenth > self._shown:
                self._shown = tenth
                print(f"  {label} {done}/{total}", file=sys.stderr, flush=True)

    def close(self) -> None:
        """The long step ended."""
        if self._bar is not None:
            self._bar.close()
        self._bar, self._label, self._shown = None, None, -1


class Results:
    """What a run found: the content of results.json (`.data`), its tables as data frames
    (`.to_pandas()`) and the Markdown report (`.report()`)."""

    def __init__(self, data: Dict[str, Any], report: str):
        self.data = data
        self._report = report

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __repr__(self) -> str:
        routers = ", ".join(
            f"{n} {100 * self.data['routers'][n]['top1']:.1f}%"
            for n in self.order
            if n in self.data["routers"]
        )
        return f"<rgd.Results {self.data['task']}: {routers}>"

    def _repr_html_(self) -> str:
        """The routers table as HTML (what a notebook shows for a `Results`)."""
        d = self.data
        esc = html.escape

        def pct(x: Optional[float]) -> str:
            return "" if x is None else f"{100 * x:.1f}"

        def signed(x: Optional[float]) -> str:
            return "" if x is None else f"{100 * x:+.1f}"

        head = ("<tr><th>router</th><th>type</th><th>learns from</th><th>top-1 %</th>"
                "<th>95% CI</th><th>vs best single</th><th>top-3 vote %</th></tr>")
        rows = []
        for name in self.order:
            r = d["routers"].get(name)
            if r is None:
                f = d["failed"].get(name, {})
                rows.append(f"<tr><td>{esc(name)}</td><td>{esc(str(f.get('type', '')))}</td>"
                            f"<td colspan='5'>failed: {esc(str(f.get('error', '')))}</td></tr>")
                continue
            learns = r["supervision"] + (f" ({r['labels']} labels)" if r.get("labels") else "")
            lo, hi = r["ci95"]["top1"]
            vs = (r.get("vs_best_single") or {}).get("top1")
            rows.append(
                f"<tr><td>{esc(name)}</td><td>{esc(r['type'])}</td><td>{esc(learns)}</td>"
                f"<td>{pct(r['top1'])}</td><td>[{pct(lo)}, {pct(hi)}]</td>"
                f"<td>{signed(vs)}</td><td>{pct(r['top3_vote'])}</td></tr>")
        refs = d["references"]
        caption = (f"{esc(str(d['task']))}: {d['n_train']} training and {d['n_test']} test "
                   f"questions, {len(d['models'])} models; best single "
                   f"{pct(refs['best_single'])} %, oracle {pct(refs['oracle'])} %")
        return (f"<table><caption>{caption}</caption><thead>{head}</thead>"
                f"<tbody>{''.join(rows)}</tbody></table>")

    @property
    def order(self):
        """Router names in the pipeline's order."""
        return self.data.get("order") or sorted(self.data["routers"])

    def report(self) -> str:
        """The Markdown report (what `rgd run` writes to report.md)."""
        return self._report

    def to_pandas(self) -> Dict[str, Any]:
        """The results as pandas data frames: `routers` (one row per router, failed ones
        included), `references`, `per_subject` (router x subject top-1), and when the run
        has them `sources` (router x source top-1), `costs` (per model) and `curves` (each
        router's cost-quality curve: one row per point, `router`, `cost`, `top1`)."""
        try:
            import pandas as pd
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("to_pandas() needs pandas: pip install pandas") from e
        d = self.data
        rows = []
        for name in self.order:
            r = d["routers"].get(name)
            if r is None:
                f = d["failed"].get(name, {})
                rows.append({"router": name, "type": f.get("type"), "status": "failed",
                             "error": f.get("error")})
                continue
            rows.append({
                "router": name,
                "type": r["type"],
                "supervision": r["supervision"],
                "status": "ok",
                "top1": r["top1"],
                "top1_lo": r["ci95"]["top1"][0],
                "top1_hi": r["ci95"]["top1"][1],
                "top1_vs_best": (r.get("vs_best_single") or {}).get("top1"),
                "top1_vs_best_lo": (r.get("vs_best_single") or {}).get("top1_ci95", [None, None])[0],
                "top1_vs_best_hi": (r.get("vs_best_single") or {}).get("top1_ci95", [None, None])[1],
                "top3_vote": r["top3_vote"],
                "top3_vote_lo": r["ci95"]["top3_vote"][0],
                "top3_vote_hi": r["ci95"]["top3_vote"][1],
                "gap_closed_top1": r["oracle_gap_closed"]["top1"],
                "train_s": r["seconds"].get("train"),
                "route_s": r["seconds"].get("route"),
                "aiq": r.get("aiq"),
            })
        refs = d["references"]
        references = pd.DataFrame(
            [{"reference": k, "top1": refs[k]} for k in
             ("best_single", "oracle", "oracle_if_independent", "random", "majority_vote")]
            + [{"reference": f"single: {m}", "top1": v} for m, v in refs["single"].items()]
        )
        per_subject = pd.DataFrame(
            {n: {s: a["top1"] for s, a in d["routers"][n]["per_subject"].items()}
             for n in self.order if n in d["routers"]}
        )
        out = {
            "routers": pd.DataFrame(rows),
            "references": references,
            "per_subject": per_subject,
        }
        if d.get("sources"):
            src = d["sources"]
            out["sources"] = pd.DataFrame(
                {s: {r: cells[s]["top1"] for r, cells in src["results"].items() if s in cells}
                 for s in src["order"]}
            )
        if d.get("costs"):
            out["costs"] = pd.DataFrame(
                [{"model": m, **v} for m, v in d["costs"]["per_model"].items()]
            )
            out["curves"] = pd.DataFrame(
                [{"router": n, "cost": c, "top1": a}
                 for n in self.order if n in d["routers"]
                 for c, a in (d["routers"][n].get("curve") or [])]
            )
        return out


def run(
    pipeline: Pipeline,
    out: Optional[Union[str, "os.PathLike[str]"]] = None,
    *,
    base_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
    progress: Union[bool, Callable[[str, str], None]] = True,
    cache: Optional[Union[str, "os.PathLike[str]"]] = None,
    live: bool = False,
) -> Results:
    """Run a pipeline (a path, TOML text or a dict) and return its results.

    With `out`, writes what `rgd run` writes (results.json, report.md, results.csv, plots,
    routers/NAME.json). `progress=True` prints a line per stage to stderr and shows a bar for
    the long steps (tqdm's when installed); a callable gets `(event, text)`; False is silent. Ctrl-C stops the run at its next step and raises
    KeyboardInterrupt; every model call that finished is in the cache.
    """
    kind, value, base = _pipeline(pipeline, base_dir)
    bar = _Progress() if progress is True else None
    cb = bar if progress is True else (progress or None)
    try:
        text, report = _rgd.run(
            kind, value, base,
            out=None if out is None else os.fspath(out),
            progress=cb,
            bar=bar,
            cache=None if cache is None else os.fspath(cache),
            live=live,
        )
    finally:
        if bar is not None:
            bar.close()
    return Results(json.loads(text), report)


def load_router(
    path: Union[str, "os.PathLike[str]"], precision: Optional[str] = None
) -> Router:
    """Load a trained router (`OUT/routers/NAME.json`): `.scores(emb)`, `.rank(emb)` for
    float32 embeddings `[query, dim]`, and `.route(text)` when its embedder was saved.
    `precision` ("f32" or "int8") replaces its MiniLM embedder's: `.route(text)` then embeds
    by that path (as `rgd serve --precision`)."""
    return _rgd.load_router(os.fspath(path), precision)


class Split:
    """One split as numpy arrays: `embeddings` (float32 `[question, dim]`), `choice` (int64
    `[question, model]`, -1 abstained), `correct` (bool), `confidence` (float64), `answer`
    (int64, -1 without a key), `latency` (float64 or None), and the lists `ids`, `subjects`,
    `questions`, `options`."""

    def __init__(self, d: Dict[str, Any]):
        self.__dict__.update(d)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"<rgd.Split {self.name}: {len(self)} questions x {self.choice.shape[1]} models>"


class Dataset:
    """A pipeline's data: `task`, `models`, and the `train` and `test` splits."""

    def __init__(self, d: Dict[str, Any]):
        self.task = d["task"]
        self.models = d["models"]
        self.train = Split(d["train"])
        self.test = Split(d["test"])

    def __repr__(self) -> str:
        return (f"<rgd.Dataset {self.task}: {len(self.train)} train, {len(self.test)} test, "
                f"models {self.models}>")


def load_dataset(
    pipeline: Pipeline,
    *,
    base_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
    cache: Optional[Union[str, "os.PathLike[str]"]] = None,
) -> Dataset:
    """Load a pipeline's data as a run would (model calls through the cache) without training
    anything."""
    kind, value, base = _pipeline(pipeline, base_dir)
    return Dataset(_rgd.load_dataset(kind, value, base,
                                     cache=None if cache is None else os.fspath(cache)))


def register_router(name: str, cls: type, supervision: str = "query_answer") -> None:
    """Make the class `cls` the router type `name` in pipelines run from this interpreter.

    `cls(**table)` is built from its pipeline table (every key but `type`); `train(split)`
    learns from a `Split`-like object (numpy arrays plus `models`); `score(split)` returns a
    float array `[question, model]` (higher is better). Optional: `state()` returns JSON the
    artifact keeps and the classmethod `from_state(state)` restores it. `supervision` is
    `query_answer` (learns from the key), `query_only` (the pool's answers) or `none`.
    An exception in the class fails that router only; the run reports it by name.
    """
    _rgd.register_router(name, cls, supervision)


def register_labeler(name: str, cls: type, reads_key: bool = False) -> None:
    """Make the class `cls` the labeler type `name` in pipelines run from this interpreter.

    `cls(**table)` is built from its `[labelers.NAME]` table (every key but `type`; no keys when
    a router names the type directly with `labels = "name"`); `label(split)` returns a float
    array `[question, model]` of labels in [0, 1] (higher: the model is more likely right) for
    a `Split`-like object (numpy arrays `choice`, `confidence`, `answer`, `correct`, ...). Set
    `reads_key=True` when the labels use the answer key. An exception fails the routers that
    learn from it; the run reports them by name.
    """
    _rgd.register_labeler(name, cls, reads_key)


def components() -> Dict[str, Any]:
    """Every component type per kind with its fields, and the framework's own tables."""
    return json.loads(_rgd.components())
