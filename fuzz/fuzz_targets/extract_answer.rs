//! Fuzz the free-text answer extractor: any text and option count, no panic, and a letter
//! only within the options.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rgd_pool::extract::extract_answer;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n_options = (n % 24) as usize;
    let text = String::from_utf8_lossy(rest);
    if let Some(l) = extract_answer(&text, n_options) {
        assert!(l.index() < n_options);
    }
});
