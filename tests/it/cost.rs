//! Cost-aware routing: the world (a cheap model as good as the expensive one on half
//! the subjects), the contract pipeline with `[costs]`, and bad `[costs]` tables.

use crate::common::{rgd, stderr};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn results(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap()
}

/// The calibrated point aiming at 99% of the best single model.
fn at_99(detail: &Value) -> (f64, f64) {
    let k = detail["calibrated"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["target"].as_str().unwrap().starts_with("99%"))
        .expect("a point calibrated to 99% of the best single model");
    (
        k["cost_saving"].as_f64().unwrap(),
        k["accuracy_change"].as_f64().unwrap(),
    )
}

#[test]
fn cost_aware_cascal_and_the_cascade_save_30_percent_at_most_1_point_lost() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let pipeline = repo().join("examples/pipelines/cost.toml");
    let o = rgd(
        t.path(),
        &[
            "run",
            pipeline.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r = results(&out);
    // seeded world (examples/pipelines/cost.toml, seed 4): calibrated on training data only
    let (saving, change) = at_99(&r["routers"]["cascal"]["cost"]);
    assert!(saving >= 0.30, "cost-aware CASCAL saves {saving}");
    assert!(change >= -0.01, "cost-aware CASCAL loses {change}");
    let (saving, change) = at_99(&r["costs"]["cascade"][1]["detail"]);
    assert!(saving >= 0.30, "the cascade saves {saving}");
    assert!(change >= -0.01, "the cascade loses {change}");
    // the cheap model leads the cascade, the strong one ends it
    let chain = r["costs"]["cascade"][0].as_array().unwrap();
    assert_eq!(chain.first().unwrap(), "M1");
    assert_eq!(chain.last().unwrap(), "M0");
    // CASCAL's curve beats the zero router (mixing single models) and random routing
    let aiq = |n: &str| r["routers"][n]["aiq"].as_f64().unwrap();
    let zero = r["costs"]["zero_router"][0].as_f64().unwrap();
    assert!(aiq("cascal") > zero + 0.05, "{} vs {zero}", aiq("cascal"));
    assert!(aiq("cascal") > aiq("random") + 0.05);
    // costs come from the measured latency, stated with their source
    let m0 = &r["costs"]["per_model"]["M0"];
    assert!((m0["cost"].as_f64().unwrap() - 1.0).abs() < 0.05);
    assert!(m0["source"].as_str().unwrap().contains("measured"));
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("## Cost and quality"), "{report}");
    assert!(report.contains("independent errors would give"));
    let svg = std::fs::read_to_string(out.join("cost_quality.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("cascal") && svg.contains("cascade"));
}

fn contract_world(dir: &Path) {
    let o = rgd(
        dir,
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
}

const CONTRACT: &str = "[data]\ntype = \"reference_layout\"\npath = \"world\"\ntask = \"SYN\"\n[routers.cascal]\ntype = \"cascal\"\n";

#[test]
fn contract_pipeline_with_costs_writes_aiq_and_curve() {
    let t = tempfile::tempdir().unwrap();
    contract_world(t.path());
    std::fs::write(
        t.path().join("p.toml"),
        format!("{CONTRACT}[costs.models]\nM0 = 1\nM1 = 2\nM2 = 3\nM3 = 4\nM4 = 5\nM5 = 6\n"),
    )
    .unwrap();
    let o = rgd(t.path(), &["run", "p.toml", "--out", "D", "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = results(&t.path().join("D"));
    let aiq = r["routers"]["cascal"]["aiq"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&aiq));
    let curve = r["routers"]["cascal"]["curve"].as_array().unwrap();
    assert!(curve.len() >= 3, "{curve:?}");
    for p in curve {
        let (c, a) = (p[0].as_f64().unwrap(), p[1].as_f64().unwrap());
        assert!((1.0..=6.0).contains(&c) && (0.0..=1.0).contains(&a));
    }
    // the cheapest end of the curve is the cheapest model, alone
    let min_cost = curve
        .iter()
        .map(|p| p[0].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    assert_eq!(min_cost, 1.0);
    assert!(t.path().join("D/cost_quality.svg").exists());
}

#[test]
fn bad_costs_tables_are_named() {
    let t = tempfile::tempdir().unwrap();
    contract_world(t.path());
    for (costs, expect) in [
        ("models = { M0 = \"cheap\" }", "`M0` must be a number"),
        ("models = { M0 = 1, M9 = 2 }", "`M9` is not a pool model"),
        ("models = { M0 = 1 }", "no cost for model `M1`"),
        // a typo in a setting is named, never taken for a model
        ("accuracy_shar = 0.9", "unknown field `accuracy_shar`"),
        ("from = \"latency\"", "records no latency"),
        ("rule = \"fastest\"", "`rule` must be"),
    ] {
        std::fs::write(
            t.path().join("p.toml"),
            format!("{CONTRACT}\n[costs]\n{costs}\n"),
        )
        .unwrap();
        let o = rgd(t.path(), &["run", "p.toml", "--out", "D", "--quiet"]);
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(e.contains("p.toml:8 [costs]"), "{costs}: {e}");
        assert!(e.contains(expect), "{costs}: {e}");
        assert!(!e.contains("panicked"), "{e}");
    }
}
