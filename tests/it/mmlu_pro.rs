//! The MMLU-Pro example (examples/mmlu-pro/: the published answers of open models, committed
//! with their MiniLM embeddings) replays with no model and no fetch, to the committed numbers.

use std::path::PathBuf;

#[test]
fn the_mmlu_pro_pools_replay_to_the_committed_numbers() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let registry = rgd_components::registry().unwrap();
    for pool in ["six-7b", "specialists", "largest"] {
        let committed: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                repo.join(format!("examples/mmlu-pro/out/{pool}/results.json")),
            )
            .unwrap(),
        )
        .unwrap();
        let models: Vec<String> = committed["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().to_string())
            .collect();
        // the quick routers (the neural ones train for seconds each in a debug build)
        let routers: Vec<String> = ["cascal", "knn", "best_single"].map(String::from).to_vec();
        let r = rgd_experiment::Resolved::from_file_with_pool(
            &registry,
            &repo.join(format!("examples/mmlu-pro/{pool}.toml")),
            &models,
            &routers,
            true,
        )
        .unwrap();
        let out = rgd_experiment::run(&r, &rgd_experiment::Session::default(), None).unwrap();
        assert_eq!((out.n_train, out.n_test), (7191, 4793), "{pool}");
        let close = |a: f64, b: &serde_json::Value| (a - b.as_f64().unwrap()).abs() < 1e-12;
        let refs = &committed["references"];
        assert!(
            close(out.references.best_single, &refs["best_single"]),
            "{pool}"
        );
        assert!(close(out.references.oracle, &refs["oracle"]), "{pool}");
        assert!(
            close(out.references.majority_vote, &refs["majority_vote"]),
            "{pool}"
        );
        for name in &routers {
            let want = &committed["routers"][name];
            let got = &out.routers[name];
            assert!(
                close(got.top1, &want["top1"]),
                "{pool} {name}: {} vs {}",
                got.top1,
                want["top1"]
            );
            assert!(close(got.top3_vote, &want["top3_vote"]), "{pool} {name}");
        }
    }
}
