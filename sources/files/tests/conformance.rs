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
