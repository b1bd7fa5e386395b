//! The answer extractor for free-text responses (docs/rgd.md, stage 3), in this order:
//! "The answer is (X)", then `\boxed{X}`, then the last "(X)", then the last isolated capital
//! letter in range; otherwise unparsed. Letters outside the question's options never count.

use regex::Regex;
use rgd_core::Letter;
use std::sync::OnceLock;

fn res() -> &'static [Regex; 4] {
    static RE: OnceLock<[Regex; 4]> = OnceLock::new();
    RE.get_or_init(|| {
        [
            // "The answer is (B)", "the answer is: B", "The final answer is **B**"
            Regex::new(r"(?i)answer\s+is\s*:?\s*[*_]*\s*\(?\s*([A-Ta-t])\s*\)?(?:[^A-Za-z]|$)")
                .expect("static regex"),
            Regex::new(r"\\boxed\s*\{\s*(?:\\text\s*\{\s*)?\(?\s*([A-T])\s*\)?")
                .expect("static regex"),
            Regex::new(r"\(\s*([A-T])\s*\)").expect("static regex"),
            Regex::new(r"\b([A-T])\b").expect("static regex"),
        ]
    })
}

/// The letter a free-text response answers among `n_options` options, if any.
pub fn extract_answer(text: &str, n_options: usize) -> Option<Letter> {
    let in_range = |c: &str| {
        let ch = c.chars().next()?.to_ascii_uppercase();
        let i = (ch as u8).checked_sub(b'A')? as usize;
        (i < n_options.min(rgd_core::N_LETTERS)).then(|| Letter::from_index(i))?
    };
    for re in res() {
        // the last match that is a valid option
        let found = re
            .captures_iter(text)
            .filter_map(|c| in_range(c.get(1)?.as_str()))
            .last();
        if found.is_some() {
            return found;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(c: char) -> Option<Letter> {
        Letter::from_index((c as u8 - b'A') as usize)
    }

    #[test]
    fn in_rgd_md_order() {
        let cases = [
            (
                "Let me think. (A) is wrong because ... The answer is (C).",
                Some('C'),
            ),
            ("... so the answer is: b", Some('B')),
            ("The final answer is **D**.", Some('D')),
            ("We get \\boxed{B} in the end, not (A).", Some('B')),
            ("Options (A) and (C) fit, but (C) is better.", Some('C')),
            ("I pick D", Some('D')),
            // "The answer is" beats a later "(X)"
            ("The answer is (A). Note (B) was tempting.", Some('A')),
            // out of range letters are ignored at every step
            ("The answer is (F). I mean B.", Some('B')),
            ("No idea.", None),
            ("", None),
            // "I" is a pronoun but in range for 10 options: the last isolated letter rule
            ("Hmm", None),
        ];
        for (text, want) in cases {
            assert_eq!(extract_answer(text, 4), want.and_then(l), "{text:?}");
        }
        assert_eq!(extract_answer("I think so", 10), l('I'));
        assert_eq!(extract_answer("I think so", 4), None);
    }
}
