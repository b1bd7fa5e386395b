//! A response matrix's confidences, costs and latencies are numbers of their kind: a text, an
//! infinity, a positive log-probability or a negative cost is counted in a warning and left
//! unknown, never read as a value.

use rgd_core::Context;
use rgd_files as _;
use rgd_testkit::builtin;
use std::path::PathBuf;

/// A long-layout row: question `id` with options x/y, key `answer`, answered `choice` by `model`.
fn long_row(id: &str, model: &str, answer: &str, choice: &str) -> String {
    format!("{id},{model},Q {id}?,\"[\"\"x\"\", \"\"y\"\"]\",{answer},{choice},\"[1.0, 0.5]\"\n")
}

/// The header of [`long_row`]'s rows.
const LONG_HEADER: &str = "question_id,model,question,options,answer,choice,embedding\n";

/// `train` and `test` written as `train.EXT` and `test.EXT` in a new folder and read as a
/// `responses` source with `settings`: what it read, and the context holding its warnings.
fn read_pair(
    ext: &str,
    train: &str,
    test: &str,
    settings: &str,
) -> (
    rgd_core::Result<rgd_core::Dataset>,
    Context,
    tempfile::TempDir,
) {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join(format!("train.{ext}")), train).unwrap();
    std::fs::write(t.path().join(format!("test.{ext}")), test).unwrap();
    let spec =
        format!("type = \"responses\"\ntrain = \"train.{ext}\"\ntest = \"test.{ext}\"\n{settings}");
    let src = builtin()
        .build_data_source(toml::from_str(&spec).unwrap(), "test")
        .unwrap();
    let ctx = Context::new(t.path());
    (src.load(&ctx), ctx, t)
}

#[test]
fn unreadable_confidences_and_costs_are_counted_and_left_unknown() {
    let wide = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/formats/wide");
    let t = tempfile::tempdir().unwrap();
    let train = std::fs::read_to_string(wide.join("train.csv")).unwrap();
    let mut lines: Vec<String> = train.lines().map(String::from).collect();
    lines[0].push_str(",alpha|cost,beta|cost,gamma|cost");
    for (i, l) in lines.iter_mut().enumerate().skip(1) {
        l.push_str(if i == 1 { ",-0.25,inf,text" } else { ",1,2,3" });
    }
    // the first row's confidences: a word, an infinity, a positive log-probability
    let first = lines[1].clone();
    let n = first.len();
    let tail = ",A,-0.1,C,-1.5,D,-1.5,-0.25,inf,text";
    assert!(first.ends_with(tail), "{first}");
    lines[1] = format!(
        "{},A,high,C,inf,D,0.5,-0.25,inf,text",
        &first[..n - tail.len()]
    );
    std::fs::write(t.path().join("train.csv"), lines.join("\n") + "\n").unwrap();
    let test = std::fs::read_to_string(wide.join("test.csv")).unwrap();
    let test: Vec<String> = test
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                format!("{l},alpha|cost,beta|cost,gamma|cost")
            } else {
                format!("{l},1,2,3")
            }
        })
        .collect();
    std::fs::write(t.path().join("test.csv"), test.join("\n") + "\n").unwrap();
    let src = builtin()
        .build_data_source(
            toml::from_str("type = \"responses\"\nlayout = \"wide\"\ntrain = \"train.csv\"\ntest = \"test.csv\"\nchoice = \"{model}|choice\"\nconfidence = \"{model}|confidence\"\ncost = \"{model}|cost\"").unwrap(),
            "test",
        )
        .unwrap();
    let ctx = Context::new(t.path());
    let ds = src.load(&ctx).unwrap();
    let q = ds
        .train
        .questions
        .iter()
        .position(|q| q.id == "arith-00")
        .unwrap();
    assert!(
        ds.train
            .responses
            .confidence
            .row(q)
            .iter()
            .all(|c| c.is_nan())
    );
    let cost = ds.train.responses.cost.as_ref().unwrap();
    assert!(cost.row(q).iter().all(|c| c.is_nan()), "{:?}", cost.row(q));
    assert_eq!(cost[[q + 1, 0]], 1.0);
    let warnings = ctx.warnings.lock().unwrap().join("\n");
    for said in [
        "confidence `high`",
        "confidence `inf`",
        "confidence `0.5`",
        "cost `-0.25`",
        "cost `inf`",
        "cost `text`",
    ] {
        assert!(warnings.contains(said), "`{said}` not in: {warnings}");
    }
}

#[test]
fn correctness_written_as_pandas_booleans_reads_as_0_and_1() {
    let t = tempfile::tempdir().unwrap();
    for (name, rows) in [("train", 0..6), ("test", 6..10)] {
        let mut csv = String::from("id,subject,question,embedding,a|correct,b|correct\n");
        for i in rows {
            let (a, b) = if i % 2 == 0 {
                ("True", "False")
            } else {
                ("false", "TRUE")
            };
            csv.push_str(&format!("q{i},s,Question {i}?,\"[1.0, {i}.0]\",{a},{b}\n"));
        }
        std::fs::write(t.path().join(format!("{name}.csv")), csv).unwrap();
    }
    let src = builtin()
        .build_data_source(
            toml::from_str("type = \"responses\"\nlayout = \"wide\"\ntrain = \"train.csv\"\ntest = \"test.csv\"\ncorrect = \"{model}|correct\"").unwrap(),
            "test",
        )
        .unwrap();
    let ctx = Context::new(t.path());
    let ds = src.load(&ctx).unwrap();
    let c = ds.train.responses.correct.as_ref().unwrap();
    for (q, question) in ds.train.questions.iter().enumerate() {
        let even = question.id[1..].parse::<usize>().unwrap() % 2 == 0;
        assert_eq!((c[[q, 0]], c[[q, 1]]), (even, !even), "{}", question.id);
    }
    assert!(ctx.warnings.lock().unwrap().is_empty());
}

#[test]
fn rows_of_one_question_that_disagree_on_it_are_an_error_naming_both_lines() {
    let train = [
        LONG_HEADER.to_string(),
        long_row("q1", "a", "A", "A"),
        long_row("q1", "b", "B", "A"), // the same question, another key
    ]
    .concat();
    let test = [
        LONG_HEADER.to_string(),
        long_row("q2", "a", "A", "A"),
        long_row("q2", "b", "A", "A"),
    ]
    .concat();
    let (read, _, _t) = read_pair(
        "csv",
        &train,
        &test,
        "layout = \"long\"\nchoice = \"choice\"",
    );
    let e = read.unwrap_err().to_string();
    assert!(
        e.contains("train.csv") && e.contains("question `q1`") && e.contains("another answer"),
        "{e}"
    );
    assert!(e.contains("line 3") && e.contains("line 2"), "{e}");
}

#[test]
fn a_test_file_listing_the_same_models_in_another_order_reads_in_the_training_order() {
    let mut train = LONG_HEADER.to_string();
    for id in ["q1", "q2"] {
        train.push_str(&long_row(id, "a", "A", "A"));
        train.push_str(&long_row(id, "b", "A", "B"));
    }
    // the test file's rows come model `b` first, and one row has an empty model cell
    let test = [
        LONG_HEADER.to_string(),
        long_row("q3", "b", "A", "B"),
        long_row("q3", "a", "A", "A"),
        long_row("q4", "b", "A", "B"),
        long_row("q4", "a", "A", "A"),
        long_row("q4", "", "A", "B"),
    ]
    .concat();
    let (read, ctx, _t) = read_pair(
        "csv",
        &train,
        &test,
        "layout = \"long\"\nchoice = \"choice\"",
    );
    let ds = read.unwrap();
    assert_eq!(ds.models, ["a", "b"]);
    for split in [&ds.train, &ds.test] {
        for q in 0..split.questions.len() {
            // model `a` always answered A (right), `b` always B
            assert!(
                split.responses.is_correct(q, 0, split.questions[q].answer),
                "{q}"
            );
            assert!(
                !split.responses.is_correct(q, 1, split.questions[q].answer),
                "{q}"
            );
        }
    }
    let warnings = ctx.warnings.lock().unwrap().join("\n");
    assert!(
        warnings.contains("no `model`") && warnings.contains("line 6"),
        "{warnings}"
    );
}

#[test]
fn a_question_with_an_empty_options_list_is_skipped_and_counted() {
    let rows = "{\"id\":\"q1\",\"question\":\"What?\",\"options\":[],\"answer\":\"A\",\"a|choice\":\"A\",\"b|choice\":\"B\",\"embedding\":[1.0,0.0]}\n\
                {\"id\":\"q2\",\"question\":\"Why?\",\"options\":[\"x\",\"y\"],\"answer\":\"A\",\"a|choice\":\"A\",\"b|choice\":\"B\",\"embedding\":[0.0,1.0]}\n";
    let (read, ctx, _t) = read_pair(
        "jsonl",
        rows,
        rows,
        "layout = \"wide\"\nchoice = \"{model}|choice\"",
    );
    let ds = read.unwrap();
    assert_eq!(ds.train.questions.len(), 1);
    assert_eq!(ds.train.questions[0].id, "q2");
    let warnings = ctx.warnings.lock().unwrap().join("\n");
    assert!(
        warnings.contains("0 options (rgd takes 2 to") && warnings.contains("line 1"),
        "{warnings}"
    );
}
