//! Fuzz the tagged-block parser: any text parses without panicking, and what it returns is
//! consistent (parsed + dropped = blocks; every question has a text, 4 options and a key
//! in A-D).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rgd_generator_llm::parse::parse_reply;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let r = parse_reply(&text);
    let dropped: usize = r.dropped.values().sum();
    assert_eq!(r.questions.len() + dropped, r.blocks);
    for q in &r.questions {
        assert!(!q.question.trim().is_empty());
        assert!(q.options.iter().all(|o| !o.trim().is_empty()));
        assert!(q.answer < 4);
    }
});
