//! Generated training data on simulated worlds: the self_answer and differentiation filters
//! against a deliberately bad generator, and bad generation inputs.

use crate::common::{rgd, stderr};
use serde_json::Value;
use std::path::Path;

const BAD_GENERATOR: &str = "seed = 0
[data]
type = \"simulated\"
subjects = 8
train_per_subject = 300
test_per_subject = 200
key_accuracy = 0.5      # the generator's key is right half the time
easy_share = 0.5        # half its questions every model answers alike
generator_skill = 0.8   # re-answering its own questions, it is right 80% of the time
seed = 1

[routers.cascal_gt]
type = \"cascal_gt\"
";

fn run(dir: &Path, name: &str, filters: &str) -> Value {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, format!("{BAD_GENERATOR}{filters}")).unwrap();
    let out = dir.join(name);
    let o = rgd(
        dir,
        &[
            "run",
            p.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap()
}

#[test]
fn self_answer_and_differentiation_raise_a_query_answer_router_on_a_bad_generator() {
    let t = tempfile::tempdir().unwrap();
    let top1 = |r: &Value| r["routers"]["cascal_gt"]["top1"].as_f64().unwrap();
    let none = run(t.path(), "none", "");
    let s = run(t.path(), "self", "[filters.self]\ntype = \"self_answer\"\n");
    let d = run(
        t.path(),
        "diff",
        "[filters.diff]\ntype = \"differentiation\"\n",
    );
    let both = run(
        t.path(),
        "both",
        "[filters.self]\ntype = \"self_answer\"\n[filters.diff]\ntype = \"differentiation\"\n",
    );
    let (n, s, d, b) = (top1(&none), top1(&s), top1(&d), top1(&both));
    // seeded world (seed 1): measured 65.8 / 71.1 / 68.1 / 69.9
    assert!(s >= n + 0.02, "self_answer: {n} -> {s}");
    assert!(d >= n + 0.01, "differentiation: {n} -> {d}");
    assert!(b >= n + 0.02, "both: {n} -> {b}");
    // the filters say what they removed and why
    let f = &both["training_data"]["filters"];
    assert!(
        f[0]["removed"]["generator disagrees with its key"]
            .as_u64()
            .unwrap()
            > 1000
    );
    assert!(
        f[1]["removed"]["the whole pool answers identically"]
            .as_u64()
            .unwrap()
            > 100
    );
    // the diagnostics see the bad generator: self-answer ~ 0.5 x 0.8 + 0.5 x 0.2/3
    let g = &none["training_data"]["diagnostics"]["overall"];
    let sa = g["self_answer_accuracy"].as_f64().unwrap();
    assert!((sa - 0.433).abs() < 0.04, "{sa}");
    assert!(g["disagreement_share"].as_f64().unwrap() < 0.6);
}

#[test]
fn self_answer_without_generator_answers_is_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("p.toml");
    std::fs::write(
        &p,
        "[data]\ntype = \"simulated\"\n[filters.self]\ntype = \"self_answer\"\n[routers.c]\ntype = \"cascal\"\n",
    )
    .unwrap();
    let o = rgd(t.path(), &["run", "p.toml", "--out", "o", "-q"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("filter `self`") && e.contains("generator answers"),
        "{e}"
    );
}

#[test]
fn bad_generate_tables_and_descriptions_are_named() {
    let t = tempfile::tempdir().unwrap();
    let base = "[questions.test]\ntype = \"benchmark\"\nname = \"mmlu\"\n[pool.a]\ntype = \"llamacpp\"\nmodel = \"smollm2-135m\"\n[embedder]\ntype = \"minilm\"\n";
    for (generate, expect) in [
        (
            "[generate]\ndescriptions = \"d.toml\"\n",
            "missing [generate.generator]",
        ),
        (
            "[generate]\ndescriptions = \"d.toml\"\ncolour = 1\n[generate.generator]\ntype = \"llm\"\nbackend = \"x\"\n",
            "unknown field `colour`",
        ),
        (
            "[generate]\n[generate.generator]\ntype = \"llm\"\nbackend = \"x\"\n",
            "`descriptions`",
        ),
        (
            "[questions.train]\ntype = \"benchmark\"\nname = \"mmlu\"\n[generate]\ndescriptions = \"d.toml\"\n[generate.generator]\ntype = \"llm\"\nbackend = \"x\"\n",
            "not both",
        ),
        (
            "[generate]\ndescriptions = \"d.toml\"\n[generate.generator]\ntype = \"writer\"\n",
            "unknown generator type `writer`",
        ),
    ] {
        std::fs::write(t.path().join("p.toml"), format!("{base}{generate}")).unwrap();
        let o = rgd(t.path(), &["run", "p.toml", "--out", "o", "-q"]);
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(e.contains("p.toml:"), "{generate}: {e}");
        assert!(e.contains(expect), "{generate}: {e}");
        assert!(!e.contains("panicked"), "{e}");
    }
}
