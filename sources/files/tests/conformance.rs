//! Every data source of this crate passes the testkit's conformance check, on the committed
//! format fixtures (tests/fixtures/formats).
use rgd_files as _;
use rgd_testkit::{builtin, check_data_source};
use std::path::PathBuf;

fn formats() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/formats")
}

#[test]
fn responses_wide() {
    let t = "type = \"responses\"\nlayout = \"wide\"\ntrain = \"wide/train.csv\"\ntest = \"wide/test.csv\"\nchoice = \"{model}|choice\"\nconfidence = \"{model}|confidence\"";
    check_data_source(&builtin(), t, &formats()).unwrap();
}

#[test]
fn responses_routerbench() {
    let t = "type = \"responses\"\npreset = \"routerbench\"\npath = \"routerbench/routerbench_0shot.parquet\"\nembeddings = \"routerbench/embeddings.parquet\"\ntest_share = 0.5\nseed = 4";
    check_data_source(&builtin(), t, &formats()).unwrap();
}

#[test]
fn responses_embedllm() {
    let t = "type = \"responses\"\npreset = \"embedllm\"\ntrain = \"embedllm/train.csv\"\ntest = \"embedllm/test.csv\"\nembeddings = \"embedllm/embeddings.parquet\"";
    check_data_source(&builtin(), t, &formats()).unwrap();
}

#[test]
fn lm_eval() {
    let t = "type = \"lm_eval\"\ntest_share = 0.5\n\n[models]\ndummy-1 = \"lm-eval/dummy-1\"\ndummy-2 = \"lm-eval/dummy-2\"";
    check_data_source(&builtin(), t, &formats()).unwrap();
}

#[test]
fn question_files() {
    for t in [
        "type = \"file\"\npath = \"questions/mmlu-style.parquet\"\npreset = \"mmlu\"",
        "type = \"file\"\npath = \"questions/arc-style.jsonl\"\npreset = \"arc\"",
        "type = \"file\"\npath = \"questions/abcd.csv\"\noptions = [\"A\", \"B\", \"C\", \"D\"]\nanswer_format = \"letter\"",
    ] {
        let qs = rgd_testkit::check_questions(&builtin(), t, &formats()).unwrap();
        assert!(!qs.is_empty(), "{t}");
    }
}

#[test]
fn mmlu_pro() {
    let t = "type = \"mmlu_pro\"\n\n[models]\nmistral = \"mmlu-pro/model_outputs_Mistral-7B-v0.1_5shots.json\"\nllama = \"mmlu-pro/model_outputs_Meta-Llama-3_1-8B_5shots.json\"\nqwen = \"mmlu-pro/model_outputs_Qwen1.5-7B-Chat_5shots.zip\"";
    check_data_source(&builtin(), t, &formats()).unwrap();
}

#[test]
fn lm_eval_search_ends_in_folders_whose_links_loop_and_finds_the_same_files() {
    let t = tempfile::tempdir().unwrap();
    for m in ["dummy-1", "dummy-2"] {
        let dir = t.path().join(m).join("nested");
        std::fs::create_dir_all(&dir).unwrap();
        for f in std::fs::read_dir(formats().join("lm-eval").join(m)).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
        }
        // two loops: a link to the folder itself and one to its parent
        std::os::unix::fs::symlink(".", t.path().join(m).join("again")).unwrap();
        std::os::unix::fs::symlink("..", dir.join("up")).unwrap();
    }
    let table = |base: &str| {
        format!(
            "type = \"lm_eval\"\ntest_share = 0.5\n\n[models]\ndummy-1 = \"{base}/dummy-1\"\ndummy-2 = \"{base}/dummy-2\""
        )
    };
    let looped = check_data_source(&builtin(), &table("."), t.path()).unwrap();
    let plain = check_data_source(&builtin(), &table("lm-eval"), &formats()).unwrap();
    assert_eq!(
        looped.train.len() + looped.test.len(),
        plain.train.len() + plain.test.len()
    );
    let ids = |qs: &[rgd_core::Question]| -> Vec<(String, Option<rgd_core::Letter>)> {
        qs.iter().map(|q| (q.id.clone(), q.answer)).collect()
    };
    assert_eq!(ids(&looped.test.questions), ids(&plain.test.questions));
    assert_eq!(looped.test.responses.choice, plain.test.responses.choice);
}
