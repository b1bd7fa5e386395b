//! rgd as a library: the experiment crate runs a pipeline from a TOML string with the numbers
//! the CLI writes, and a results.json written by `rgd run` reads back into `RunResults`.

use crate::common::{rgd_run, stderr};
use rgd_experiment::{Resolved, RunResults, Session};

const WORLD: &str = r#"
seed = 3

[data]
type = "simulated"
subjects = 3
models = 4
train_per_subject = 60
test_per_subject = 40

[routers.cascal]
type = "cascal"

[routers.knn]
type = "knn"

[routers.best]
type = "best_single"

[costs]
from = "table"
[costs.models]
M0 = 1
M1 = 2
M2 = 3
M3 = 4
"#;

#[test]
fn results_written_by_rgd_run_read_back_typed_and_match_the_library_run() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("p.toml");
    std::fs::write(&p, WORLD).unwrap();
    let o = rgd_run(t.path(), &p, &t.path().join("out"));
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(t.path().join("out/results.json")).unwrap();
    let from_cli: RunResults = serde_json::from_str(&text).expect("results.json reads back");
    assert_eq!(from_cli.order, ["cascal", "knn", "best"]);
    assert_eq!(from_cli.routers.len(), 3);
    assert!(from_cli.costs.is_some());
    // what reads back writes out as the same JSON
    let again: serde_json::Value = serde_json::to_value(&from_cli).unwrap();
    let orig: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(again, orig);

    // the library, from the TOML text, gives the same numbers (no files written)
    let registry = rgd_components::registry().unwrap();
    let resolved = Resolved::from_toml(&registry, WORLD, t.path(), true).unwrap();
    let lib = rgd_experiment::run(&resolved, &Session::default(), None).unwrap();
    for (name, r) in &from_cli.routers {
        let l = &lib.routers[name];
        assert_eq!(
            (l.top1, l.top3_vote, l.ci95.top1),
            (r.top1, r.top3_vote, r.ci95.top1),
            "{name}"
        );
        assert_eq!(l.aiq, r.aiq, "{name}");
        assert!(l.artifact.is_none());
    }
    assert_eq!(lib.references.best_single, from_cli.references.best_single);
}
