//! Bring your own data: every file format of `rgd-files` read by `rgd run`, the numbers
//! checked against a hand computation on the fixtures of `tests/fixtures/formats` (see its
//! README: alpha answers every arithmetic question right, beta every geography question,
//! gamma none; the embeddings separate the two subjects).

use crate::common::{rgd, stderr};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn formats() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats")
}

fn run(dir: &Path, toml: &str) -> Value {
    let p = dir.join("p.toml");
    std::fs::write(&p, toml.replace("FORMATS", formats().to_str().unwrap())).unwrap();
    let o = rgd(dir, &["run", p.to_str().unwrap(), "--out", "out", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(&std::fs::read_to_string(dir.join("out/results.json")).unwrap()).unwrap()
}

fn top1(r: &Value, router: &str) -> f64 {
    r["routers"][router]["top1"]
        .as_f64()
        .unwrap_or_else(|| panic!("no router {router}: {r}"))
}

const ROUTERS: &str = "\n[routers.cascal]\ntype = \"cascal\"\n\n[routers.knn]\ntype = \"knn\"\n\n[routers.best_single]\ntype = \"best_single\"\n";

/// By hand: on any test split with as many arithmetic as geography questions, alpha and beta
/// are each right on half (best single 50%), gamma on none, and the oracle on all; kNN, whose
/// neighbours share the query's subject, routes every query to the model that knows it.
fn assert_hand_numbers(r: &Value) {
    let refs = &r["references"];
    assert_eq!(refs["single"]["alpha"], 0.5, "{refs}");
    assert_eq!(refs["single"]["beta"], 0.5, "{refs}");
    assert_eq!(refs["single"]["gamma"], 0.0, "{refs}");
    assert_eq!(refs["best_single"], 0.5);
    assert_eq!(refs["oracle"], 1.0);
    assert_eq!(top1(r, "knn"), 1.0);
    assert_eq!(top1(r, "best_single"), 0.5);
}

#[test]
fn a_wide_csv_with_letters_runs_cascal_knn_and_best_single_to_the_hand_numbers() {
    let t = tempfile::tempdir().unwrap();
    let r = run(
        t.path(),
        &format!(
            "[data]\ntype = \"responses\"\nlayout = \"wide\"\ntrain = \"FORMATS/wide/train.csv\"\ntest = \"FORMATS/wide/test.csv\"\nchoice = \"{{model}}|choice\"\nconfidence = \"{{model}}|confidence\"\n{ROUTERS}"
        ),
    );
    assert_eq!(
        (r["n_train"].as_u64(), r["n_test"].as_u64()),
        (Some(20), Some(12))
    );
    assert_hand_numbers(&r);
    // every training answer's consensus is the key (the right model is confident, the two
    // wrong ones disagree), so CASCAL learns what correctness would teach: alpha for
    // arithmetic, beta for geography
    assert_eq!(top1(&r, "cascal"), 1.0);
}

#[test]
fn a_routerbench_parquet_runs_the_correctness_routers_and_cascal_says_why_it_cannot() {
    let t = tempfile::tempdir().unwrap();
    let r = run(
        t.path(),
        &format!(
            "[data]\ntype = \"responses\"\npreset = \"routerbench\"\npath = \"FORMATS/routerbench/routerbench_0shot.parquet\"\nembeddings = \"FORMATS/routerbench/embeddings.parquet\"\ntest_share = 0.5\nseed = 4\n{ROUTERS}"
        ),
    );
    // 16 questions per subject, half of each to test
    assert_eq!(
        (r["n_train"].as_u64(), r["n_test"].as_u64()),
        (Some(16), Some(16))
    );
    assert_eq!(r["models"], serde_json::json!(["alpha", "beta", "gamma"]));
    assert_hand_numbers(&r);
    let why = r["failed"]["cascal"]["error"].as_str().unwrap();
    assert!(
        why.contains("records only whether each answer was right"),
        "{why}"
    );
    assert!(
        r["warnings"].as_array().unwrap().iter().any(|w| w
            .as_str()
            .unwrap()
            .contains("only whether each answer was right")),
        "{}",
        r["warnings"]
    );
}

#[test]
fn an_embedllm_long_csv_counts_a_missing_row_as_an_abstention() {
    let t = tempfile::tempdir().unwrap();
    let r = run(
        t.path(),
        &format!(
            "[data]\ntype = \"responses\"\npreset = \"embedllm\"\ntrain = \"FORMATS/embedllm/train.csv\"\ntest = \"FORMATS/embedllm/test.csv\"\nembeddings = \"FORMATS/embedllm/embeddings.parquet\"\n{ROUTERS}"
        ),
    );
    assert_eq!(
        (r["n_train"].as_u64(), r["n_test"].as_u64()),
        (Some(20), Some(12))
    );
    assert_hand_numbers(&r);
    let warnings = r["warnings"].to_string();
    assert!(
        warnings.contains("1 answer(s) missing, abstentions there")
            && warnings.contains("model `gamma` has no row"),
        "{warnings}"
    );
    assert!(r["failed"]["cascal"].is_object());
}

#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn lm_eval_sample_logs_give_the_harness_own_accuracy_per_model() {
    let t = tempfile::tempdir().unwrap();
    let r = run(
        t.path(),
        &format!(
            "[data]\ntype = \"lm_eval\"\ntest_share = 0.5\n\n[data.models]\ndummy-1 = \"FORMATS/lm-eval/dummy-1\"\ndummy-2 = \"FORMATS/lm-eval/dummy-2\"\n\n[embedder]\ntype = \"minilm\"\n{ROUTERS}"
        ),
    );
    assert_eq!(
        (r["n_train"].as_u64(), r["n_test"].as_u64()),
        (Some(16), Some(16))
    );
    for router in ["cascal", "knn", "best_single"] {
        let x = top1(&r, router);
        assert!((0.0..=1.0).contains(&x), "{router}: {x}");
    }
    // by hand: the harness's own `acc` of every document, averaged over this run's test
    // split (its ids, from `rgd export`), per model
    let o = rgd(t.path(), &["export", "p.toml", "--out", "layout", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let test: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(t.path().join("layout/Data/lm_eval/test.json")).unwrap(),
    )
    .unwrap();
    let test_ids: std::collections::HashSet<String> = test
        .iter()
        .map(|q| q["question_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(test_ids.len(), 16);
    for model in ["dummy-1", "dummy-2"] {
        let (mut right, mut n) = (0.0, 0.0);
        for f in std::fs::read_dir(formats().join("lm-eval").join(model)).unwrap() {
            let f = f.unwrap().path();
            let task = f
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .trim_start_matches("samples_")
                .split("_2026")
                .next()
                .unwrap()
                .to_string();
            for line in std::fs::read_to_string(&f).unwrap().lines() {
                let s: Value = serde_json::from_str(line).unwrap();
                if test_ids.contains(&format!("{task}:{}", s["doc_id"])) {
                    right += s["acc"].as_f64().unwrap();
                    n += 1.0;
                }
            }
        }
        assert_eq!(n, 16.0, "{model}");
        let single = r["references"]["single"][model].as_f64().unwrap();
        assert!(
            (single - right / n).abs() < 1e-12,
            "{model}: rgd {single}, harness {}",
            right / n
        );
    }
}

#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "model tier: needs model or benchmark files (scripts/test.sh fetches them)"
)]
fn question_files_answered_by_real_models_run_cascal_knn_and_best_single() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("calls.sqlite");
    let r = run(
        t.path(),
        &format!(
            "[cache]\npath = \"{}\"\n\n[questions.train]\ntype = \"file\"\npath = \"FORMATS/questions/abcd.csv\"\noptions = [\"A\", \"B\", \"C\", \"D\"]\nanswer_format = \"letter\"\nper_subject = 3\nseed = 2\n\n[questions.test]\ntype = \"file\"\npath = \"FORMATS/questions/mmlu-style.parquet\"\npreset = \"mmlu\"\nper_subject = 3\nseed = 2\n\n[pool.smollm2]\ntype = \"llamacpp\"\nmodel = \"smollm2-135m\"\n\n[pool.gemma]\ntype = \"llamacpp\"\nmodel = \"gemma3-270m\"\n\n[embedder]\ntype = \"minilm\"\n{ROUTERS}",
            cache.display()
        ),
    );
    assert_eq!(
        (r["n_train"].as_u64(), r["n_test"].as_u64()),
        (Some(6), Some(6))
    );
    for router in ["cascal", "knn", "best_single"] {
        let x = top1(&r, router);
        assert!((0.0..=1.0).contains(&x), "{router}: {x}");
    }
    // by hand: best single is the better of the two models' own test accuracies
    let single = &r["references"]["single"];
    let best = single["smollm2"]
        .as_f64()
        .unwrap()
        .max(single["gemma"].as_f64().unwrap());
    assert_eq!(r["references"]["best_single"].as_f64().unwrap(), best);
    assert_eq!(top1(&r, "best_single"), best);
    // the CSV's row answering `E` was skipped and counted, naming its line
    let warnings = r["warnings"].to_string();
    assert!(
        warnings.contains("abcd.csv: 1 row(s) skipped") && warnings.contains("line 34"),
        "{warnings}"
    );
    // the test questions are the Parquet file's, with the gold option it says
    let o = rgd(t.path(), &["export", "p.toml", "--out", "layout", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let test: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(t.path().join("layout/Data/p/test.json")).unwrap(),
    )
    .unwrap();
    for q in &test {
        let text = q["question"].as_str().unwrap();
        let gold = q["options"]
            [q["answer"].as_str().unwrap().as_bytes()[0] as usize - b'A' as usize]
            .as_str()
            .unwrap();
        if let Some((a, b)) = text
            .strip_prefix("What is ")
            .and_then(|r| r.trim_end_matches('?').split_once(" + "))
        {
            let sum = a.parse::<u32>().unwrap() + b.parse::<u32>().unwrap();
            assert_eq!(gold, sum.to_string(), "{text}");
        }
    }
}
