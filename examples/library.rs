//! rgd as a library: run a pipeline given as a TOML string and read the typed results — the
//! shape a notebook binding wraps. `cargo run --example library` (no model, about a second).

use rgd_experiment::{Resolved, RunResults, Session};

const PIPELINE: &str = r#"
seed = 7

[data]                     # a small simulated world: 4 subjects, 4 models
type = "simulated"
subjects = 4
models = 4
train_per_subject = 100
test_per_subject = 50

[routers.cascal]           # the query-only router of the paper
type = "cascal"

[routers.knn]              # learns from the generator's answer key
type = "knn"

[routers.best]             # the reference: the best model on the training split
type = "best_single"
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let registry = rgd_components::registry()?;
    let resolved = Resolved::from_toml(&registry, PIPELINE, std::path::Path::new("."), true)?;
    let results: RunResults = rgd_experiment::run(&resolved, &Session::default(), None)?;
    println!(
        "{} test questions; best single model {:.1}%, oracle {:.1}%",
        results.n_test,
        100.0 * results.references.best_single,
        100.0 * results.references.oracle
    );
    for name in &results.order {
        let r = &results.routers[name];
        println!(
            "{name:<8} top-1 {:.1}% [{:.1}, {:.1}]",
            100.0 * r.top1,
            100.0 * r.ci95.top1[0],
            100.0 * r.ci95.top1[1]
        );
    }
    // results serialize and read back typed
    let back: RunResults = serde_json::from_str(&serde_json::to_string(&results)?)?;
    assert_eq!(back.routers.len(), results.routers.len());
    Ok(())
}
