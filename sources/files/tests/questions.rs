//! The question-file fixtures of `tests/fixtures/formats/questions`, read by the `file`
//! question source and checked against what `make.py` wrote: 16 arithmetic questions
//! (`What is a + b?`, a = 3 + i, b = 7 + 2i) and 16 capitals, the gold option rotating A..D.

use rgd_core::{Context, Letter};
use rgd_files::QuestionFile;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/formats/questions")
}

fn source(toml: &str) -> QuestionFile {
    toml::from_str(toml).unwrap()
}

fn check(qs: &[rgd_core::Question]) {
    assert_eq!(qs.len(), 32);
    let arith: Vec<_> = qs.iter().filter(|q| q.subject == "arithmetic").collect();
    assert_eq!(arith.len(), 16);
    for (n, q) in qs.iter().enumerate() {
        assert_eq!(q.options.len(), 4);
        // the gold option rotates with the question's position in the file
        assert_eq!(q.answer, Letter::from_index(n % 4), "{}", q.id);
        if let Some(rest) = q
            .text
            .strip_prefix("What is ")
            .filter(|r| r.contains(" + "))
        {
            let (a, b) = rest.trim_end_matches('?').split_once(" + ").unwrap();
            let sum: u32 = a.parse::<u32>().unwrap() + b.parse::<u32>().unwrap();
            assert_eq!(q.options[n % 4], sum.to_string(), "{}", q.id);
        }
    }
    assert_eq!(qs[0].text, "What is 3 + 7?");
    assert_eq!(qs[16].text, "What is the capital of France?");
    assert_eq!(qs[16].options[0], "Paris");
}

fn ctx() -> Context {
    Context::new(dir())
}

#[test]
fn an_mmlu_style_parquet_file_reads_with_the_mmlu_preset() {
    let s = source("path = \"mmlu-style.parquet\"\npreset = \"mmlu\"\n");
    let (mut qs, skipped) = s.load(&ctx()).unwrap();
    assert_eq!(skipped.total(), 0);
    // ids are the row numbers (`mmlu-style:1` ..); sampling groups by subject: sort back
    qs.sort_by_key(|q| q.id["mmlu-style:".len()..].parse::<usize>().unwrap());
    check(&qs);
}

#[test]
fn an_arc_style_jsonl_file_resolves_answers_through_the_option_labels() {
    let s = source("path = \"arc-style.jsonl\"\npreset = \"arc\"\n");
    let (mut qs, skipped) = s.load(&ctx()).unwrap();
    assert_eq!(skipped.total(), 0);
    // no subject column in ARC: the subject is the file's name
    assert!(qs.iter().all(|q| q.subject == "arc-style"));
    let pos = |id: &str| {
        let (s, k) = id.split_once('-').unwrap();
        (s != "arith") as usize * 16 + k.parse::<usize>().unwrap()
    };
    qs.sort_by_key(|q| pos(&q.id));
    for q in &mut qs {
        q.subject = if q.id.starts_with("arith") {
            "arithmetic"
        } else {
            "geography"
        }
        .into();
    }
    check(&qs);
}

#[test]
fn a_csv_file_with_a_column_per_option_skips_and_counts_a_bad_answer() {
    let s = source(
        "path = \"abcd.csv\"\noptions = [\"A\", \"B\", \"C\", \"D\"]\nanswer_format = \"letter\"\n",
    );
    let (mut qs, skipped) = s.load(&ctx()).unwrap();
    assert_eq!(skipped.total(), 1);
    let line = skipped.line("row(s) skipped").unwrap();
    assert!(
        line.contains("abcd.csv") && line.contains("line 34"),
        "{line}"
    );
    let pos = |id: &str| {
        let (s, k) = id.split_once('-').unwrap();
        (s != "arith") as usize * 16 + k.parse::<usize>().unwrap()
    };
    qs.sort_by_key(|q| pos(&q.id));
    check(&qs);
}

#[test]
fn sampling_takes_disjoint_parts_per_subject() {
    let part = |p: &str| {
        let s = source(&format!(
            "path = \"mmlu-style.parquet\"\npreset = \"mmlu\"\nholdout = 0.25\npart = \"{p}\"\nseed = 7\n"
        ));
        s.load(&ctx()).unwrap().0
    };
    let (held, main) = (part("heldout"), part("main"));
    assert_eq!((held.len(), main.len()), (8, 24));
    assert!(held.iter().all(|h| main.iter().all(|m| m.text != h.text)));
}

#[test]
fn a_missing_column_names_the_file_the_column_and_the_columns_found() {
    let s = source("path = \"mmlu-style.parquet\"\nquestion = \"prompt\"\n");
    let e = s.load(&ctx()).unwrap_err().to_string();
    assert!(
        e.contains("mmlu-style.parquet")
            && e.contains("`prompt`")
            && e.contains("question, subject, choices, answer"),
        "{e}"
    );
}

#[test]
fn an_id_that_appears_twice_names_both_lines() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("q.jsonl");
    std::fs::write(
        &p,
        "{\"id\": \"x\", \"question\": \"a?\", \"options\": [\"1\", \"2\"], \"answer\": 0}\n{\"id\": \"y\", \"question\": \"b?\", \"options\": [\"1\", \"2\"], \"answer\": 1}\n{\"id\": \"x\", \"question\": \"c?\", \"options\": [\"1\", \"2\"], \"answer\": 1}\n",
    )
    .unwrap();
    let s = source(&format!("path = \"{}\"\n", p.display()));
    let e = s.load(&ctx()).unwrap_err().to_string();
    assert!(
        e.contains("`x`") && e.contains("line 1") && e.contains("line 3"),
        "{e}"
    );
}

#[test]
fn an_answer_that_is_both_an_options_text_and_an_index_is_refused_not_guessed() {
    let t = tempfile::tempdir().unwrap();
    // options are numbers; answers given as the right option's text
    let mut csv = String::from("id,question,options,answer\n");
    for (i, a) in ["1", "2", "3", "4"].iter().enumerate() {
        csv.push_str(&format!(
            "q{i},Which number is {a}?,\"[\"\"1\"\", \"\"2\"\", \"\"3\"\", \"\"4\"\"]\",{a}\n"
        ));
    }
    std::fs::write(t.path().join("n.csv"), csv).unwrap();
    let ctx = Context::new(t.path());
    let (qs, skipped) = source("path = \"n.csv\"\n").load(&ctx).unwrap();
    // `1`, `2`, `3` are each an option's text and another option's 0-based index: refused;
    // `4` is only a text
    assert_eq!(skipped.total(), 3);
    let line = skipped.line("row(s) skipped").unwrap();
    assert!(line.contains("answer_format"), "{line}");
    assert_eq!(qs.len(), 1);
    assert_eq!(qs[0].answer, Letter::from_index(3));
    // saying how the answer is written reads every key right
    let (qs, skipped) = source("path = \"n.csv\"\nanswer_format = \"text\"\n")
        .load(&ctx)
        .unwrap();
    assert_eq!(skipped.total(), 0);
    let mut keys: Vec<_> = qs.iter().map(|q| (q.id.clone(), q.answer)).collect();
    keys.sort();
    for (i, (_, a)) in keys.iter().enumerate() {
        assert_eq!(*a, Letter::from_index(i));
    }
}

#[test]
fn the_arc_preset_needs_the_option_labels() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(
        t.path().join("a.jsonl"),
        "{\"id\": \"x\", \"question\": \"Q?\", \"choices\": {\"text\": [\"a\", \"b\"]}, \"answerKey\": \"1\"}\n",
    )
    .unwrap();
    let e = source("path = \"a.jsonl\"\npreset = \"arc\"\n")
        .load(&Context::new(t.path()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("choices.label"), "{e}");
}
