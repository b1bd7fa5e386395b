//! Property tests of the free-text answer extractor (the invariant the `extract_answer` fuzz
//! target checks, on stable Rust), the precedence of "The answer is (X)", and a replay of the
//! fuzz corpus.

use proptest::prelude::*;
use rgd_pool::extract::extract_answer;

/// What the fuzz target asserts: no panic, and a letter only within the options.
fn check(text: &str, n_options: usize) {
    if let Some(l) = extract_answer(text, n_options) {
        assert!(
            l.index() < n_options,
            "{text:?} with {n_options} options gave {l:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn any_text_gives_a_letter_within_the_options(text in any::<String>(), n in 0usize..24) {
        check(&text, n);
    }

    #[test]
    fn answer_like_text_gives_a_letter_within_the_options(
        text in "([A-Za-z() *\\\\{}:]|answer is|boxed|The answer is){0,30}",
        n in 0usize..24,
    ) {
        check(&text, n);
    }

    #[test]
    fn a_closing_the_answer_is_wins(prefix in any::<String>(), n in 1usize..20, pick in 0usize..20) {
        let i = pick % n;
        let letter = (b'A' + i as u8) as char;
        let text = format!("{prefix}\n\nSo the answer is ({letter}).");
        let got = extract_answer(&text, n);
        prop_assert_eq!(got.map(|l| l.index()), Some(i), "{}", text);
    }

    #[test]
    fn a_letter_outside_the_options_is_never_read(n in 0usize..4, pick in 4usize..20) {
        let letter = (b'A' + pick as u8) as char;
        let text = format!("The answer is ({letter}). \\boxed{{{letter}}} ({letter}) {letter}");
        prop_assert_eq!(extract_answer(&text, n), None);
    }
}

#[test]
fn the_fuzz_corpus_replays() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/extract_answer");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        // the fuzz target's reading of an input: first byte the option count, the rest text
        if let Some((&k, rest)) = bytes.split_first() {
            check(&String::from_utf8_lossy(rest), (k % 24) as usize);
        }
        n += 1;
    }
    assert!(n > 0, "no corpus in {}", dir.display());
}
