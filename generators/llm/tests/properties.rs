//! Property tests of the tagged-block parser (the invariants the `parse_blocks` fuzz target
//! checks, on stable Rust), a round trip of well-formed replies, and a replay of the fuzz
//! corpus.

use proptest::prelude::*;
use rgd_generator_llm::parse::{ParsedReply, parse_reply};

/// What any reply must parse into: every block either parsed or dropped with a reason, and
/// every parsed question complete with a key in A-D.
fn check_invariants(r: &ParsedReply) {
    let dropped: usize = r.dropped.values().sum();
    assert_eq!(r.questions.len() + dropped, r.blocks, "{r:?}");
    for q in &r.questions {
        assert!(!q.question.trim().is_empty(), "{q:?}");
        assert!(q.options.iter().all(|o| !o.trim().is_empty()), "{q:?}");
        assert!(q.answer < 4, "{q:?}");
    }
}

/// Text a generator might put in a field: words and punctuation, no tags or brackets.
fn field() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9 ,.?'%=+-]{0,40}".prop_map(|s| s.trim().to_string())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_text_parses_consistently(text in any::<String>()) {
        check_invariants(&parse_reply(&text));
    }

    #[test]
    fn text_made_of_tags_parses_consistently(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("[QUESTION]".to_string()),
                Just("[OPTION A]".to_string()),
                Just("**[Option_B]**:".to_string()),
                Just("[OPTION C]".to_string()),
                Just("[option d]".to_string()),
                Just("[ANSWER]".to_string()),
                Just("#####\n".to_string()),
                Just("```\n".to_string()),
                "[A-Ha-h()*. \n]{0,6}",
                ".{0,12}",
            ],
            0..40,
        )
    ) {
        check_invariants(&parse_reply(&parts.concat()));
    }

    #[test]
    fn well_formed_replies_round_trip(
        items in proptest::collection::vec(
            (field(), [field(), field(), field(), field()], 0usize..4),
            1..6,
        )
    ) {
        // fields must not be empty for the block to be well formed
        prop_assume!(items.iter().all(|(q, o, _)| !q.is_empty() && o.iter().all(|x| !x.is_empty())));
        let reply = items
            .iter()
            .map(|(q, o, a)| {
                format!(
                    "[QUESTION] {q}\n[OPTION A] {}\n[OPTION B] {}\n[OPTION C] {}\n[OPTION D] {}\n[ANSWER] {}",
                    o[0], o[1], o[2], o[3], (b'A' + *a as u8) as char
                )
            })
            .collect::<Vec<_>>()
            .join("\n#####\n");
        let r = parse_reply(&reply);
        check_invariants(&r);
        prop_assert_eq!(r.blocks, items.len());
        prop_assert_eq!(r.questions.len(), items.len(), "{:?}", r.dropped);
        for (p, (q, o, a)) in r.questions.iter().zip(&items) {
            prop_assert_eq!(&p.question, q);
            prop_assert_eq!(&p.options, o);
            prop_assert_eq!(p.answer, *a);
        }
    }
}

#[test]
fn the_fuzz_corpus_replays() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/parse_blocks");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        check_invariants(&parse_reply(&String::from_utf8_lossy(&bytes)));
        n += 1;
    }
    assert!(n > 0, "no corpus in {}", dir.display());
}
