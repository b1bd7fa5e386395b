//! The command line: the pipeline contract, plugins, simulate, artifacts.

use crate::common::{rgd, stderr};
use rgd_core::TrainedRouter;
use serde_json::Value;

#[test]
fn contract_pipeline_with_relative_path_writes_results_json() {
    let t = tempfile::tempdir().unwrap();
    let o = rgd(
        t.path(),
        &[
            "simulate",
            "--out",
            "world",
            "--task",
            "SYN",
            "--subjects",
            "4",
            "--train-per-subject",
            "60",
            "--test-per-subject",
            "40",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::create_dir(t.path().join("pipelines")).unwrap();
    std::fs::write(
        t.path().join("pipelines/it.toml"),
        "[data]\ntype = \"reference_layout\"\npath = \"../world\"\ntask = \"SYN\"\n[routers.cascal]\ntype = \"cascal\"\n",
    )
    .unwrap();
    // run from another folder: the path resolves against the pipeline file
    let elsewhere = tempfile::tempdir().unwrap();
    let pipeline = t.path().join("pipelines/it.toml");
    let out = t.path().join("D");
    let o = rgd(
        elsewhere.path(),
        &[
            "run",
            pipeline.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).is_empty(),
        "--quiet prints nothing: {}",
        stderr(&o)
    );
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(r["n_test"], 160);
    for k in ["top1", "top3_vote"] {
        let v = r["routers"]["cascal"][k].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v));
    }
    for k in ["best_single", "oracle", "random"] {
        let v = r["references"][k].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v));
    }
    assert_eq!(r["references"]["single"].as_object().unwrap().len(), 6);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("| cascal | cascal | pool answers (`consensus` labels) |"),
        "{report}"
    );
    // the saved artifact routes exactly as the run did
    let art = std::fs::read_to_string(out.join("routers/cascal.json")).unwrap();
    let trained: Box<dyn TrainedRouter> = serde_json::from_str(&art).unwrap();
    assert_eq!(trained.models().len(), 6);
}

#[test]
fn plugins_lists_cascal_and_the_references() {
    let o = rgd(std::path::Path::new("."), &["plugins"]);
    assert!(o.status.success());
    let s = String::from_utf8(o.stdout).unwrap();
    for name in [
        "cascal ",
        "cascal_gt",
        "best_single",
        "random",
        "reference_layout",
        "simulated",
        "consensus",
        "correctness",
    ] {
        assert!(s.contains(name), "missing {name} in\n{s}");
    }
    assert!(s.contains("references (computed by every run"));
    assert!(s.contains("fallback_distance") && s.contains("default 0.5"));
    let o = rgd(std::path::Path::new("."), &["plugins", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let routers = v["router"].as_array().unwrap();
    assert!(
        routers
            .iter()
            .any(|r| r["type"] == "cascal" && r["origin"]["origin"] == "built_in")
    );
}

#[test]
fn simulated_pipeline_runs_and_is_deterministic() {
    let t = tempfile::tempdir().unwrap();
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/pipelines/simulated.toml"
    );
    let mut results = Vec::new();
    for run in ["a", "b"] {
        let out = t.path().join(run);
        let o = rgd(
            t.path(),
            &["run", example, "--out", out.to_str().unwrap(), "-q"],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let mut r: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap())
                .unwrap();
        for (_, v) in r["routers"].as_object_mut().unwrap() {
            v.as_object_mut().unwrap().remove("seconds");
        }
        r.as_object_mut().unwrap().remove("load_seconds");
        results.push(r);
    }
    assert_eq!(results[0], results[1]);
    let r = &results[0];
    // on a world with skill niches, CASCAL beats the best single model by a clear margin
    let cascal = r["routers"]["cascal"]["top1"].as_f64().unwrap();
    let best = r["references"]["best_single"].as_f64().unwrap();
    assert!(
        cascal > best + 0.05,
        "cascal {cascal} vs best single {best}"
    );
    assert_eq!(r["routers"]["cascal_gt"]["supervision"], "query_answer");
    assert_eq!(r["routers"]["cascal"]["supervision"], "query_only");
}

#[test]
fn export_writes_the_authors_layout_that_reads_back_identically() {
    let t = tempfile::tempdir().unwrap();
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/pipelines/simulated.toml"
    );
    let o = rgd(t.path(), &["export", example, "--out", "layout"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let sim: rgd_sim::Simulated = toml::from_str(
        "subjects = 8\ntrain_per_subject = 200\ntest_per_subject = 100\nkey_accuracy = 0.85\nseed = 1\n",
    )
    .unwrap();
    let original = sim.generate().unwrap();
    let back = rgd_core::DataSource::load(
        &rgd_reference_layout::ReferenceLayout {
            path: t.path().join("layout"),
            task: "SIM".into(),
            models: None,
            train_split: "train".into(),
            test_split: "test".into(),
        },
        &rgd_core::Context::new("."),
    )
    .unwrap();
    assert_eq!(back.models, original.models);
    assert_eq!(back.train.responses.choice, original.train.responses.choice);
    assert_eq!(back.test.questions.len(), original.test.questions.len());
    for (a, b) in back.train.questions.iter().zip(&original.train.questions) {
        assert_eq!((&a.id, &a.subject, a.answer), (&b.id, &b.subject, b.answer));
    }
    let diff = (&back.train.embeddings - &original.train.embeddings).mapv(f32::abs);
    assert!(diff.iter().all(|d| *d < 1e-6));
}

#[test]
fn zoo_reports_every_router_with_intervals_csv_and_plots_and_routes_one_query() {
    let t = tempfile::tempdir().unwrap();
    let zoo =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/pipelines/zoo.toml");
    let o = rgd(
        t.path(),
        &["run", zoo.to_str().unwrap(), "--out", "z", "-q"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(t.path().join("z/results.json")).unwrap())
            .unwrap();
    for name in [
        "cascal_gt",
        "knn",
        "best_single",
        "cascal",
        "consensus_knn",
        "dawid_skene",
        "random",
    ] {
        let x = &r["routers"][name];
        let (t1, ci) = (x["top1"].as_f64().unwrap(), &x["ci95"]["top1"]);
        let (lo, hi) = (ci[0].as_f64().unwrap(), ci[1].as_f64().unwrap());
        assert!(
            lo <= t1 && t1 <= hi && hi - lo < 0.1,
            "{name}: {t1} [{lo}, {hi}]"
        );
    }
    // learning routers beat the best single model on this world
    let best = r["references"]["best_single"].as_f64().unwrap();
    for name in ["cascal", "knn", "consensus_knn", "mlp", "mf"] {
        assert!(
            r["routers"][name]["top1"].as_f64().unwrap() > best + 0.05,
            "{name}"
        );
    }
    assert!(r["references"]["majority_vote"].as_f64().unwrap() > best);
    // routers with a seed are retrained per training seed; the others are not
    let o = &r["routers"]["mlp"]["over_seeds"];
    assert_eq!(o["top1"].as_array().unwrap().len(), 3);
    assert!(o["top1_sd"].as_f64().unwrap() >= 0.0);
    assert!(r["routers"]["dawid_skene"].get("over_seeds").is_none());
    // each router against the best single model on the same questions, with a paired interval
    for (name, x) in r["routers"].as_object().unwrap() {
        let d = &x["vs_best_single"];
        assert_eq!(d["model"], r["references"]["best_single_model"], "{name}");
        let diff = d["top1"].as_f64().unwrap();
        let want = x["top1"].as_f64().unwrap() - best;
        assert!((diff - want).abs() < 1e-9, "{name}: {diff} vs {want}");
        let ci: Vec<f64> = serde_json::from_value(d["top1_ci95"].clone()).unwrap();
        assert!(
            ci[0] <= diff && diff <= ci[1],
            "{name}: {diff} outside {ci:?}"
        );
    }
    let csv = std::fs::read_to_string(t.path().join("z/results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 11);
    assert!(
        csv.lines()
            .nth(2)
            .unwrap()
            .starts_with("knn,knn,answer key,ok,")
    );
    for svg in ["accuracy.svg", "per_subject.svg"] {
        let s = std::fs::read_to_string(t.path().join("z").join(svg)).unwrap();
        assert!(s.starts_with("<svg") && s.contains("dawid_skene"), "{svg}");
    }
    // rgd route ranks the pool for one query given its embedding, and says why
    let emb = serde_json::to_string(&vec![0.1f32; 96]).unwrap();
    let o = rgd(
        t.path(),
        &[
            "route",
            "z/routers/dawid_skene.json",
            "a query",
            "--embedding",
            &emb,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| rank"))
            .count(),
        6
    );
    assert!(out.contains("why: nearest training subject"), "{out}");
}

#[test]
fn sweep_runs_every_router_over_key_quality() {
    let t = tempfile::tempdir().unwrap();
    let zoo =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/pipelines/zoo.toml");
    let o = rgd(
        t.path(),
        &[
            "sweep",
            zoo.to_str().unwrap(),
            "--out",
            "s",
            "--key-accuracy",
            "1.0,0.4",
            "--easy-share",
            "0",
            "--seeds",
            "1,2",
            "-q",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let cells: Value =
        serde_json::from_str(&std::fs::read_to_string(t.path().join("s/sweep.json")).unwrap())
            .unwrap();
    let get = |router: &str, ka: f64| {
        cells
            .as_array()
            .unwrap()
            .iter()
            .find(|c| {
                c["router"] == router && (c["key_accuracy"].as_f64().unwrap() - ka).abs() < 1e-9
            })
            .unwrap()["top1_mean"]
            .as_f64()
            .unwrap()
    };
    // the paper's claim on these worlds: learning from a bad key hurts, the pool's answers do not
    assert!(get("cascal_gt", 1.0) - get("cascal_gt", 0.4) > 0.05);
    assert!((get("cascal", 1.0) - get("cascal", 0.4)).abs() < 0.03);
    assert!(t.path().join("s/sweep_easy0.svg").exists());
    let o = rgd(t.path(), &["sweep", "missing.toml", "--out", "x"]);
    assert!(!o.status.success() && stderr(&o).contains("missing.toml"));
}

#[test]
fn training_sources_side_by_side_with_the_drop_from_real_data() {
    let t = tempfile::tempdir().unwrap();
    let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples/pipelines/sources.toml");
    let o = rgd(t.path(), &["run", p.to_str().unwrap(), "--out", "o", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(t.path().join("o/results.json")).unwrap())
            .unwrap();
    let s = &r["sources"];
    assert_eq!(s["order"], serde_json::json!(["main", "weak", "real"]));
    let drop = |router: &str, src: &str| {
        s["results"][router][src]["drop_from_reference"]
            .as_f64()
            .unwrap()
    };
    // seeded world: learning from a bad key costs the query-answer routers, not CASCAL
    assert!(drop("knn", "weak") < -0.05, "{}", drop("knn", "weak"));
    assert!(drop("cascal_gt", "weak") < -0.03);
    assert!(drop("cascal", "weak").abs() < 0.03);
    assert_eq!(drop("cascal", "real"), 0.0);
    // main's numbers are the main run's
    assert_eq!(
        s["results"]["cascal"]["main"]["top1"],
        r["routers"]["cascal"]["top1"]
    );
    let report = std::fs::read_to_string(t.path().join("o/report.md")).unwrap();
    assert!(report.contains("## Training sources"));
    // a source that changes the test split is refused, naming it
    let src = std::fs::read_to_string(&p).unwrap();
    let bad = src.replace(
        "[sources.weak]\ntype = \"simulated\"\nsubjects = 8",
        "[sources.weak]\ntype = \"simulated\"\nsubjects = 7",
    );
    std::fs::write(t.path().join("bad.toml"), bad).unwrap();
    let o = rgd(t.path(), &["run", "bad.toml", "--out", "b", "-q"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("[sources.weak]") && e.contains("changes the test split"),
        "{e}"
    );
}

#[test]
fn bench_scale_prints_each_stage_per_world_size() {
    let t = tempfile::tempdir().unwrap();
    let args = "bench scale --sizes 700,1400 --routers best_single,cascal";
    let o = rgd(t.path(), &args.split(' ').collect::<Vec<_>>());
    let table = String::from_utf8_lossy(&o.stdout);
    let rows = [
        "simulate",
        "train cascal",
        "route cascal",
        "train best_single",
    ];
    let missing: Vec<&&str> = rows
        .iter()
        .filter(|r| !table.contains(&format!("| {r} |")))
        .collect();
    assert!(
        o.status.success() && missing.is_empty(),
        "{missing:?} {table} {}",
        stderr(&o)
    );
    assert!(table.contains("| stage | 700 train") && table.contains("1400 train"));
    // an unknown router type is named, not a panic
    let bad = rgd(
        t.path(),
        &"bench scale --sizes 700 --routers nope"
            .split(' ')
            .collect::<Vec<_>>(),
    );
    assert!(!bad.status.success() && stderr(&bad).contains("unknown router type `nope`"));
}

#[test]
fn bench_sizes_beyond_their_ceilings_are_errors_naming_the_flag() {
    let t = tempfile::tempdir().unwrap();
    for (args, expect) in [
        (
            &["bench", "cascal", "--test-per-subject", "0"][..],
            "--test-per-subject",
        ),
        (&["bench", "embed", "--batch", "0"][..], "--batch"),
        (
            &["bench", "embed", "--routing"][..],
            "--pipeline and --precision int8",
        ),
        (
            &[
                "bench",
                "embed",
                "--precision",
                "int8",
                "--embedder",
                "wordllama",
            ][..],
            "--precision is MiniLM's",
        ),
        (
            &["bench", "matrix", "--questions", "1000000000000"][..],
            "--questions",
        ),
        (&["bench", "matrix", "--dim", "1000000000"][..], "--dim"),
        (&["bench", "matrix", "--models", "10000000"][..], "--models"),
        (
            &[
                "bench",
                "cascal",
                "--subjects",
                "1000",
                "--train-per-subject",
                "1000000",
            ][..],
            "at most 250000000 fit a bench world",
        ),
    ] {
        let o = crate::common::rgd(t.path(), args);
        let e = crate::common::stderr(&o);
        assert!(!o.status.success(), "{args:?}: {e}");
        assert!(
            !e.contains("panicked") && e.contains(expect),
            "{args:?}: {e}"
        );
    }
}
