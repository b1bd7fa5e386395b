"""Tests of the rgd Python package (run by scripts/test-python.sh against the built wheel)."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import rgd

REPO = Path(__file__).resolve().parents[2]

WORLD = {
    "seed": 3,
    "data": {
        "type": "simulated",
        "subjects": 4,
        "models": 4,
        "train_per_subject": 120,
        "test_per_subject": 60,
        "seed": 5,
    },
    "routers": {
        "cascal": {"type": "cascal"},
        "knn": {"type": "knn"},
        "best": {"type": "best_single"},
    },
}


def test_run_from_a_dict_a_toml_string_and_a_file_gives_the_same_numbers(tmp_path):
    a = rgd.run(WORLD, progress=False)
    # the same pipeline as TOML text (written here from the dict: tables after the top level)
    top = "\n".join(f"{k} = {v}" for k, v in WORLD.items() if not isinstance(v, dict))
    data = "\n".join(f"{k} = {json.dumps(v)}" for k, v in WORLD["data"].items())
    routers = "\n".join(
        f'[routers.{n}]\ntype = "{t["type"]}"' for n, t in WORLD["routers"].items()
    )
    toml_text = f"{top}\n[data]\n{data}\n{routers}\n"
    b = rgd.run(toml_text, progress=False)
    f = tmp_path / "p.toml"
    f.write_text(toml_text)
    out = tmp_path / "out"
    c = rgd.run(f, out=out, progress=False)
    for r in (a, b, c):
        assert r.order == ["cascal", "knn", "best"]
    for name in a.order:
        assert a["routers"][name]["top1"] == b["routers"][name]["top1"] == c["routers"][name]["top1"]
    # with out, what `rgd run` writes, and results.json is the same content
    written = json.loads((out / "results.json").read_text())
    assert written["routers"]["cascal"]["top1"] == c["routers"]["cascal"]["top1"]
    assert (out / "report.md").read_text() == c.report()
    assert (out / "routers" / "cascal.json").exists()


def test_results_tables_as_data_frames():
    pd = pytest.importorskip("pandas")
    r = rgd.run(WORLD, progress=False)
    t = r.to_pandas()
    routers = t["routers"]
    assert list(routers["router"]) == ["cascal", "knn", "best"]
    assert (routers["status"] == "ok").all()
    assert ((routers["top1_lo"] <= routers["top1"]) & (routers["top1"] <= routers["top1_hi"])).all()
    refs = t["references"].set_index("reference")["top1"]
    assert refs["best_single"] == r["references"]["best_single"]
    assert refs["oracle"] >= refs["best_single"]
    assert set(t["per_subject"].columns) == {"cascal", "knn", "best"}
    assert len(t["per_subject"]) == 4
    assert isinstance(t["routers"], pd.DataFrame)
    assert "| cascal |" in r.report()


def test_a_progress_callback_hears_every_stage():
    events = []
    rgd.run(WORLD, progress=lambda e, t: events.append((e, t)))
    done = [t for e, t in events if e == "done"]
    assert any(t.startswith("load data") for t in done), done
    assert any(t.startswith("router cascal") for t in done), done


def test_in_a_notebook_results_are_an_html_table_of_every_router():
    r = rgd.run(WORLD, progress=False)
    html = r._repr_html_()
    assert html.startswith("<table>") and html.endswith("</table>")
    for name in ("cascal", "knn", "best"):
        assert f"<td>{name}</td>" in html
    assert f"{100 * r['routers']['cascal']['top1']:.1f}" in html
    assert "SIM: 480 training and 240 test questions, 4 models" in html


def test_progress_is_a_tqdm_bar_when_tqdm_is_installed_and_plain_lines_otherwise(
    capsys, monkeypatch
):
    pytest.importorskip("tqdm")
    rgd.run(WORLD)
    err = capsys.readouterr().err
    assert "routers trained and tested" in err and "3/3" in err, err
    assert "  router cascal (" in err, err
    # without tqdm: a plain line at each tenth of the way, and the stage lines
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    rgd.run(WORLD)
    lines = capsys.readouterr().err.splitlines()
    assert "  routers trained and tested 0/3" in lines and "  routers trained and tested 3/3" in lines, lines
    assert not any("it/s" in line for line in lines), lines


def test_cost_quality_curves_as_a_data_frame():
    pytest.importorskip("pandas")
    r = rgd.run(REPO / "examples/pipelines/cost.toml", progress=False)
    t = r.to_pandas()
    curves = t["curves"]
    assert set(curves.columns) == {"router", "cost", "top1"}
    for name in r.order:
        if name in r["routers"] and r["routers"][name].get("curve"):
            got = curves[curves["router"] == name][["cost", "top1"]].values.tolist()
            assert got == r["routers"][name]["curve"], name


def test_load_router_ranks_numpy_embeddings_as_its_scores_say(tmp_path):
    out = tmp_path / "out"
    rgd.run(WORLD, out=out, progress=False)
    router = rgd.load_router(out / "routers" / "cascal.json")
    assert router.models == ["M0", "M1", "M2", "M3"]
    # a precision is the saved embedder's; this run's data carried its embeddings
    with pytest.raises(rgd.RgdError, match="embedder.toml"):
        rgd.load_router(out / "routers" / "cascal.json", precision="int8")
    ds = rgd.load_dataset(WORLD)
    emb = ds.test.embeddings
    assert emb.dtype == np.float32
    scores = router.scores(emb)
    assert scores.shape == (len(ds.test), 4) and scores.dtype == np.float64
    ranked = router.rank(emb)
    assert ranked.shape == scores.shape and ranked.dtype == np.int64
    # the first ranked model has the highest score
    assert np.all(scores[np.arange(len(scores)), ranked[:, 0]] == scores.max(axis=1))
    # top-1 accuracy from Python equals the run's
    top1 = ds.test.correct[np.arange(len(ds.test)), ranked[:, 0]].mean()
    r = rgd.run(WORLD, progress=False)
    assert abs(top1 - r["routers"]["cascal"]["top1"]) < 1e-12
    # a wrong dimension is an error, not a crash
    with pytest.raises(rgd.RgdError, match="values"):
        router.scores(np.zeros((2, 7), dtype=np.float32))
    # no embedder beside a [data] pipeline's artifact
    with pytest.raises(rgd.RgdError, match="embedder"):
        router.route("what is a cell?")


def test_load_dataset_gives_numpy_splits():
    ds = rgd.load_dataset(WORLD)
    assert ds.models == ["M0", "M1", "M2", "M3"]
    assert len(ds.train) == 4 * 120 and len(ds.test) == 4 * 60
    assert ds.train.choice.shape == (480, 4) and ds.train.choice.dtype == np.int64
    assert ds.train.correct.dtype == np.bool_
    assert ds.test.answer.min() >= 0
    assert set(ds.test.subjects) and len(ds.test.questions) == 240
    # correctness agrees with choice == answer
    c = ds.test.choice == ds.test.answer[:, None]
    assert np.array_equal(c, ds.test.correct)


def test_a_response_matrix_loads_with_its_correctness_and_runs_from_python():
    # tests/fixtures/formats: alpha knows arithmetic, beta geography, gamma nothing
    pipeline = REPO / "examples" / "pipelines" / "routerbench.toml"
    ds = rgd.load_dataset(pipeline)
    assert ds.models == ["alpha", "beta", "gamma"]
    assert len(ds.train) == 16 and len(ds.test) == 16
    arith = np.array([s == "arithmetic" for s in ds.test.subjects])
    assert np.array_equal(ds.test.correct[:, 0], arith)
    assert np.array_equal(ds.test.correct[:, 1], ~arith)
    assert not ds.test.correct[:, 2].any()
    r = rgd.run(pipeline, progress=False)
    routers = r.to_pandas()["routers"].set_index("router")
    assert routers.loc["knn", "top1"] == 1.0 and routers.loc["best_single", "top1"] == 0.5
    assert routers.loc["cascal", "status"] == "failed"
    assert "only whether each answer was right" in routers.loc["cascal", "error"]


class Centroid:
    """Scores a model by the cosine of the query to the centroid of the questions it got right."""

    def __init__(self, shrink=0.0):
        self.shrink = float(shrink)
        self.centroids = None

    def train(self, split):
        x = split.embeddings / np.linalg.norm(split.embeddings, axis=1, keepdims=True)
        cs = []
        for m in range(len(split.models)):
            right = x[split.correct[:, m]]
            c = right.mean(axis=0) if len(right) else np.zeros(x.shape[1], dtype=np.float32)
            cs.append(c / max(np.linalg.norm(c), 1e-9))
        self.centroids = np.stack(cs)

    def score(self, split):
        x = split.embeddings / np.linalg.norm(split.embeddings, axis=1, keepdims=True)
        return x @ self.centroids.T - self.shrink

    def state(self):
        return {"shrink": self.shrink, "centroids": self.centroids.tolist()}

    @classmethod
    def from_state(cls, state):
        r = cls(state["shrink"])
        r.centroids = np.asarray(state["centroids"], dtype=np.float32)
        return r


class Broken:
    """Fails when it trains."""

    def __init__(self):
        pass

    def train(self, split):
        raise ValueError("this router is broken on purpose")

    def score(self, split):  # pragma: no cover
        return np.zeros((len(split.ids), len(split.models)))


def test_a_python_router_runs_next_to_the_built_in_ones_and_its_artifact_reloads(tmp_path):
    rgd.register_router("py_centroid", Centroid)
    world = json.loads(json.dumps(WORLD))
    world["routers"]["mine"] = {"type": "py_centroid", "shrink": 0.5}
    out = tmp_path / "out"
    r = rgd.run(world, out=out, progress=False)
    mine = r["routers"]["mine"]
    assert mine["type"] == "py_centroid" and mine["supervision"] == "query_answer"
    # it learns something: better than random routing in this world
    assert mine["top1"] > r["references"]["random"]
    # the artifact restores through from_state and scores as in the run
    router = rgd.load_router(out / "routers" / "mine.json")
    ds = rgd.load_dataset(world)
    ranked = router.rank(ds.test.embeddings)
    top1 = ds.test.correct[np.arange(len(ds.test)), ranked[:, 0]].mean()
    assert abs(top1 - mine["top1"]) < 1e-12
    assert "py_centroid" in [c["type"] for c in rgd.components()["router"]]


def test_an_exception_in_a_python_router_fails_that_router_only_naming_it():
    rgd.register_router("py_broken", Broken)
    world = json.loads(json.dumps(WORLD))
    world["routers"]["bad"] = {"type": "py_broken"}
    r = rgd.run(world, progress=False)
    assert "bad" in r["failed"]
    err = r["failed"]["bad"]["error"]
    assert "py_broken" in err and "broken on purpose" in err and "ValueError" in err
    assert set(r["routers"]) == {"cascal", "knn", "best"}
    t = r.to_pandas()["routers"].set_index("router")
    assert t.loc["bad", "status"] == "failed"


class PeerShare:
    """Share of the other models that chose the same letter (no key)."""

    def __init__(self, **config):
        self.config = config

    def label(self, split):
        choice = split.choice  # [question, model], -1 for an abstention
        same = (choice[:, :, None] == choice[:, None, :]) & (choice[:, :, None] >= 0)
        others = max(1, choice.shape[1] - 1)
        return (same.sum(axis=2) - (choice >= 0)) / others


def test_a_python_labeler_labels_a_knn_like_the_same_labeler_in_rust():
    rgd.register_labeler("py_peer_share", PeerShare)
    world = json.loads(json.dumps(WORLD))
    world["labelers"] = {"peers": {"type": "py_peer_share"}}
    world["routers"] = {
        "knn_py": {"type": "knn", "labels": "peers"},
        "knn_py_direct": {"type": "knn", "labels": "py_peer_share"},
        "knn_plurality": {"type": "knn", "labels": "plurality"},
        "knn_key": {"type": "knn"},
    }
    r = rgd.run(world, progress=False)
    assert not r["failed"], r["failed"]
    py = r["routers"]["knn_py"]
    assert py["supervision"] == "query_only" and py["labels"] == "peers"
    assert py["top1"] == r["routers"]["knn_py_direct"]["top1"]
    assert r["routers"]["knn_key"]["supervision"] == "query_answer"
    quality = {(q["labeler"], q["split"]): q for q in r["label_quality"]}
    assert quality[("key", "train")]["agreement"] == 1.0
    assert 0 < quality[("peers", "train")]["brier"] < 1
    assert "py_peer_share" in [c["type"] for c in rgd.components()["labeler"]]
    # labels outside [0, 1] are refused naming the labeler
    rgd.register_labeler("py_too_big", TooBig)
    world["routers"] = {"knn": {"type": "knn", "labels": "py_too_big"}}
    r = rgd.run(world, progress=False)
    assert "py_too_big" in r["failed"]["knn"]["error"]
    assert "[0, 1]" in r["failed"]["knn"]["error"]


class TooBig:
    """Labels of 2."""

    def label(self, split):
        return np.full(split.choice.shape, 2.0)


def test_bad_input_raises_a_clear_error_naming_the_table():
    bad = json.loads(json.dumps(WORLD))
    bad["routers"]["knn"]["k_nearst"] = 5
    with pytest.raises(rgd.RgdError, match=r"\[routers.knn\].*unknown field `k_nearst`"):
        rgd.run(bad, progress=False)
    with pytest.raises(rgd.RgdError, match="unknown field `budgest`"):
        rgd.run({**WORLD, "costs": {"budgest": 1}}, progress=False)
    with pytest.raises(rgd.RgdError, match="no-such-file"):
        rgd.run("no-such-file.toml", progress=False)
    with pytest.raises(TypeError):
        rgd.run(42)
    with pytest.raises(rgd.RgdError, match="built-in"):
        rgd.register_router("cascal", Centroid)
    with pytest.raises(rgd.RgdError, match="score"):
        rgd.register_router("py_nothing", object)
    with pytest.raises(rgd.RgdError, match="built-in labeler"):
        rgd.register_labeler("dawid_skene", PeerShare)
    with pytest.raises(rgd.RgdError, match="label"):
        rgd.register_labeler("py_no_label", object)


def assets_present():
    root = Path(os.environ.get("RGD_ASSETS_DIR", Path.home() / ".cache/rgd/assets"))
    return (root / "minilm").exists()


def wheel_has(kind, name):
    return any(c["type"] == name for c in rgd.components()[kind])


@pytest.mark.skipif(not wheel_has("embedder", "minilm") or not wheel_has("backend", "llamacpp"),
                    reason="a lean wheel: build it with `--features full` for the local-model stack")
@pytest.mark.skipif(not assets_present(), reason="MiniLM is fetched by scripts/test.sh")
def test_the_default_experiment_replays_from_python_and_routes_text_with_minilm(tmp_path):
    out = tmp_path / "out"
    r = rgd.run(REPO / "examples/default/default.toml", out=out, progress=False)
    committed = json.loads((REPO / "examples/default/out/results.json").read_text())
    for name, x in committed["routers"].items():
        assert r["routers"][name]["top1"] == x["top1"], name
    assert r["calls"]["model_calls"] == 0
    router = rgd.load_router(out / "routers" / "cascal.json")
    ranking, why = router.route("Which organelle makes ATP in a cell?")
    assert sorted(m for m, _ in ranking) == sorted(router.models)
    assert why


def test_ctrl_c_stops_a_run_with_keyboard_interrupt(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "slow.py"
    script.write_text(
        "import time, rgd\n"
        "class Slow:\n"
        "    def __init__(self): pass\n"
        "    def train(self, split): time.sleep(60)\n"
        "    def score(self, split): pass\n"
        "rgd.register_router('slow', Slow)\n"
        "w = {'data': {'type': 'simulated', 'subjects': 2, 'train_per_subject': 20,"
        " 'test_per_subject': 10}, 'routers': {'slow': {'type': 'slow'},"
        " 'cascal': {'type': 'cascal'}}}\n"
        "print('started', flush=True)\n"
        "rgd.run(w, progress=False)\n"
        "print('finished', flush=True)\n"
    )
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "started"
    time.sleep(2)
    t0 = time.time()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert time.time() - t0 < 10
    assert "finished" not in out
    assert "KeyboardInterrupt" in err and "interrupted" in err, err
