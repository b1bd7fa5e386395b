//! The MMLU-Pro example (examples/mmlu-pro/: the published answers of open models, committed
//! with their MiniLM embeddings) replays with no model and no fetch, to the committed numbers.

use std::path::PathBuf;

#[test]
fn the_mmlu_pro_pools_replay_to_the_committed_numbers() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let registry = rgd_components::registry().unwrap();
    for pool in [
        "six-7b",
        "specialists",
        "largest",
        "labelers",
        "labelers-specialists",
    ] {
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
        let (types, routers): (Vec<String>, Vec<String>) = if pool.starts_with("labelers") {
            (
                ["cascal", "knn"].map(String::from).to_vec(),
                [
                    "cascal",
                    "knn-key",
                    "knn-consensus",
                    "knn-plurality",
                    "knn-dawid_skene",
                ]
                .map(String::from)
                .to_vec(),
            )
        } else {
            let r = ["cascal", "knn", "best_single"].map(String::from).to_vec();
            (r.clone(), r)
        };
        let r = rgd_experiment::Resolved::from_file_with_pool(
            &registry,
            &repo.join(format!("examples/mmlu-pro/{pool}.toml")),
            &models,
            &types,
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
        // each labeler's agreement with the key, as committed
        for q in &out.label_quality {
            let want = committed["label_quality"]
                .as_array()
                .unwrap()
                .iter()
                .find(|w| w["labeler"] == q.labeler.as_str() && w["split"] == q.split.as_str())
                .unwrap_or_else(|| panic!("{pool}: no committed quality for {q:?}"));
            assert!(close(q.agreement, &want["agreement"]), "{pool} {q:?}");
            assert!(close(q.brier, &want["brier"]), "{pool} {q:?}");
        }
        if pool.starts_with("labelers") {
            assert_eq!(out.label_quality.len(), 8, "{pool}");
        }
    }
}
