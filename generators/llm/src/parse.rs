//! The tagged-block output contract (docs/rgd.md): one block per question,
//! `[QUESTION] ... [OPTION A] ... [OPTION B] ... [OPTION C] ... [OPTION D] ... [ANSWER] X`,
//! blocks separated by a line `#####`. Small models bend it every way, so the parser is
//! lenient where meaning is clear and drops a block (counting why) where it is not:
//!
//! - fields may span lines; tags are case-insensitive and may be wrapped in markdown emphasis
//!   (`**[QUESTION]**`), spelled `[OPTION_A]`/`[Option A]`, or followed by `:`;
//! - a block starts at each `[QUESTION]`, so a missing `#####` does not merge two questions;
//!   `#####` lines and markdown fences are ignored; an `[OPTION A]` after a block's `[ANSWER]`
//!   starts a question whose `[QUESTION]` tag was left out (its text follows the answer line);
//! - the key may be `B`, `b`, `(B)`, `B.`, `B) text`, `**B**`, `Answer: B`, `Option B`;
//! - dropped: a missing or duplicated tag, an empty question or option, a key outside A–D, an
//!   unreadable key. A reply with no block at all is counted apart.

use regex::Regex;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// One parsed question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedQuestion {
    /// The question text.
    pub question: String,
    /// Options A–D.
    pub options: [String; 4],
    /// The key, 0..4.
    pub answer: usize,
}

/// The outcome of parsing one reply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedReply {
    /// Questions parsed.
    pub questions: Vec<ParsedQuestion>,
    /// Blocks found (`[QUESTION]` tags).
    pub blocks: usize,
    /// Reason -> blocks dropped.
    pub dropped: BTreeMap<String, usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    Question,
    Option(usize),
    Answer,
}

impl Tag {
    fn name(self) -> String {
        match self {
            Tag::Question => "[QUESTION]".into(),
            Tag::Option(i) => format!("[OPTION {}]", (b'A' + i as u8) as char),
            Tag::Answer => "[ANSWER]".into(),
        }
    }
}

fn tag_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(?i)[*_]{0,2}\[\s*(question|option[ _]?([a-z])|answer)\s*\][*_]{0,2}[ \t]*:?")
            .expect("static regex")
    })
}

fn key_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(?i)^[\s*_(\[]*(?:(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)\s*(?:is)?\s*[:\-]?\s*)?[\s*_(\[]*([a-z])(?:[\s*_)\].:,]|$)")
            .expect("static regex")
    })
}

/// Remove markdown fences and `#####` separator lines (the split is by `[QUESTION]` tags).
fn clean(reply: &str) -> String {
    reply
        .lines()
        .filter(|l| {
            let t = l.trim();
            !(t.starts_with("```") || (t.len() >= 3 && t.chars().all(|c| c == '#')))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Read the key from an `[ANSWER]` field.
pub fn parse_key(field: &str) -> Result<usize, &'static str> {
    let first = field
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let Some(c) = key_re().captures(first) else {
        return Err("unreadable key");
    };
    let letter = c[1].chars().next().unwrap_or('?').to_ascii_uppercase();
    match letter {
        'A'..='D' => Ok((letter as u8 - b'A') as usize),
        _ => Err("key outside A-D"),
    }
}

fn strip(s: &str) -> String {
    s.trim()
        .trim_matches(|c: char| c == '*' || c == '_')
        .trim()
        .to_string()
}

/// Parse one reply into questions, counting what was dropped and why.
pub fn parse_reply(reply: &str) -> ParsedReply {
    let text = clean(reply);
    let mut tags: Vec<(Tag, usize, usize)> = Vec::new(); // tag, start, end of the tag
    let mut out = ParsedReply::default();
    for c in tag_re().captures_iter(&text) {
        let m = c.get(0).expect("whole match");
        let word = c[1].to_ascii_lowercase();
        let tag = if word == "question" {
            Tag::Question
        } else if word == "answer" {
            Tag::Answer
        } else {
            let l = c
                .get(2)
                .and_then(|x| x.as_str().chars().next())
                .unwrap_or('?')
                .to_ascii_uppercase();
            if !('A'..='D').contains(&l) {
                // an [OPTION E]: the block has more than 4 options
                Tag::Option(usize::MAX)
            } else {
                Tag::Option((l as u8 - b'A') as usize)
            }
        };
        tags.push((tag, m.start(), m.end()));
    }
    // a model that numbers its questions may tag only the first: an [OPTION A] after an
    // [ANSWER] of the same block starts a new question, whose text follows the answer's line
    let mut with_implicit: Vec<(Tag, usize, usize)> = Vec::with_capacity(tags.len());
    let mut answered_at: Option<usize> = None; // content start of the block's [ANSWER]
    for t in tags {
        match t.0 {
            Tag::Question => answered_at = None,
            Tag::Answer => answered_at = Some(t.2),
            Tag::Option(0) => {
                if let Some(a) = answered_at.take() {
                    let rest = &text[a..t.1];
                    let lead = rest.len() - rest.trim_start().len();
                    let line_end = rest[lead..].find('\n').map(|k| a + lead + k).unwrap_or(t.1);
                    with_implicit.push((Tag::Question, line_end, line_end));
                }
            }
            Tag::Option(_) => {}
        }
        with_implicit.push(t);
    }
    let tags = with_implicit;
    // group tags into blocks, each starting at a [QUESTION]
    let starts: Vec<usize> = tags
        .iter()
        .enumerate()
        .filter(|(_, t)| t.0 == Tag::Question)
        .map(|(i, _)| i)
        .collect();
    for (b, &s) in starts.iter().enumerate() {
        out.blocks += 1;
        let e = starts.get(b + 1).copied().unwrap_or(tags.len());
        let block = &tags[s..e];
        let block_end = starts.get(b + 1).map(|&n| tags[n].1).unwrap_or(text.len());
        match parse_block(&text, block, block_end) {
            Ok(q) => out.questions.push(q),
            Err(reason) => *out.dropped.entry(reason).or_default() += 1,
        }
    }
    out
}

fn parse_block(
    text: &str,
    block: &[(Tag, usize, usize)],
    end: usize,
) -> Result<ParsedQuestion, String> {
    let mut question = None;
    let mut options: [Option<String>; 4] = Default::default();
    let mut answer = None;
    for (i, (tag, _, content_start)) in block.iter().enumerate() {
        let content_end = block.get(i + 1).map(|t| t.1).unwrap_or(end);
        let content = &text[*content_start..content_end.max(*content_start)];
        let slot = match tag {
            Tag::Question => &mut question,
            Tag::Answer => &mut answer,
            Tag::Option(usize::MAX) => return Err("option outside A-D".into()),
            Tag::Option(k) => &mut options[*k],
        };
        if slot.is_some() {
            return Err(format!("duplicate {}", tag.name()));
        }
        *slot = Some(content.to_string());
    }
    let question = strip(&question.unwrap_or_default());
    if question.is_empty() {
        return Err("empty question".into());
    }
    let mut opts: [String; 4] = Default::default();
    for (k, o) in options.iter().enumerate() {
        match o {
            None => return Err(format!("missing {}", Tag::Option(k).name())),
            Some(o) => {
                let o = strip(o);
                if o.is_empty() {
                    return Err("empty option".into());
                }
                opts[k] = o;
            }
        }
    }
    let Some(answer) = answer else {
        return Err("missing [ANSWER]".into());
    };
    let answer = parse_key(&answer).map_err(str::to_string)?;
    Ok(ParsedQuestion {
        question,
        options: opts,
        answer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "[QUESTION] Which enzyme unwinds the DNA double helix during replication?
[OPTION A] DNA ligase
[OPTION B] Helicase
[OPTION C] Primase
[OPTION D] Topoisomerase I
[ANSWER] B";

    #[test]
    fn one_clean_block() {
        let r = parse_reply(GOOD);
        assert_eq!(r.blocks, 1);
        assert_eq!(r.questions.len(), 1, "{r:?}");
        let q = &r.questions[0];
        assert_eq!(q.options[1], "Helicase");
        assert_eq!(q.answer, 1);
        assert!(q.question.starts_with("Which enzyme"));
    }

    #[test]
    fn several_blocks_separated_and_unseparated() {
        let other = GOOD.replace("Helicase", "Gyrase");
        let reply =
            format!("Here are your questions:\n\n{GOOD}\n#####\n{other}\n#####\n{GOOD}\n#####\n");
        let r = parse_reply(&reply);
        assert_eq!(r.blocks, 3);
        assert_eq!(r.questions.len(), 3, "{r:?}");
        // no separator at all
        let r = parse_reply(&format!("{GOOD}\n{GOOD}"));
        assert_eq!(r.questions.len(), 2);
    }

    #[test]
    fn multi_line_fields() {
        let reply = "[QUESTION] Consider the following code:
```
fn f(x: u32) -> u32 { x * 2 }
```
What does f(3) return?
[OPTION A] 3
[OPTION B] 5
[OPTION C] 6
[OPTION D] 9
[ANSWER] C";
        let r = parse_reply(reply);
        assert_eq!(r.questions.len(), 1, "{r:?}");
        let q = &r.questions[0].question;
        assert!(
            q.contains("fn f(x: u32)") && q.contains("What does f(3) return?"),
            "{q}"
        );
        let reply = "[QUESTION] A long
question over
three lines?
[OPTION A] one
continued
[OPTION B] two
[OPTION C] three
[OPTION D] four
[ANSWER] A";
        let r = parse_reply(reply);
        assert_eq!(r.questions[0].options[0], "one\ncontinued");
        assert_eq!(
            r.questions[0].question,
            "A long\nquestion over\nthree lines?"
        );
    }

    #[test]
    fn missing_and_duplicate_tags_are_dropped_and_counted() {
        let missing = GOOD.replace("[OPTION C] Primase\n", "");
        let dup = GOOD.replace("[OPTION D]", "[OPTION C]");
        let no_answer = GOOD.replace("[ANSWER] B", "");
        let r = parse_reply(&format!(
            "{missing}\n#####\n{dup}\n#####\n{no_answer}\n#####\n{GOOD}"
        ));
        assert_eq!(r.blocks, 4);
        assert_eq!(r.questions.len(), 1);
        assert_eq!(r.dropped["missing [OPTION C]"], 1, "{r:?}");
        assert_eq!(r.dropped["duplicate [OPTION C]"], 1);
        assert_eq!(r.dropped["missing [ANSWER]"], 1);
    }

    #[test]
    fn numbered_questions_without_their_own_tag() {
        // what Gemma-3-270M wrote (abridged)
        let reply = "[QUESTION]
3. What is DNA?
[OPTION A] the genetic material
[OPTION B] deoxyribonucleic acid
[OPTION C] a protein
[OPTION D] a nucleic acid
[ANSWER] A
4. What is a gene?
[OPTION A] a structure
[OPTION B] a unit of heredity
[OPTION C] a protein
[OPTION D] a sugar
[ANSWER] B";
        let r = parse_reply(reply);
        assert_eq!(r.questions.len(), 2, "{r:?}");
        assert_eq!(r.questions[0].answer, 0);
        assert_eq!(r.questions[1].question, "4. What is a gene?");
        assert_eq!(r.questions[1].answer, 1);
    }

    #[test]
    fn keys_with_punctuation_lowercase_and_words() {
        for (key, want) in [
            ("B", Ok(1)),
            ("b", Ok(1)),
            ("(C)", Ok(2)),
            ("D.", Ok(3)),
            ("A) DNA ligase", Ok(0)),
            ("**B**", Ok(1)),
            ("Answer: c", Ok(2)),
            ("Option D", Ok(3)),
            ("The correct answer is B.", Ok(1)),
            ("E", Err("key outside A-D")),
            ("42", Err("unreadable key")),
            ("", Err("unreadable key")),
            ("Because helicase unwinds", Err("unreadable key")),
        ] {
            assert_eq!(parse_key(key), want, "{key:?}");
        }
    }

    #[test]
    fn markdown_tags_fences_and_colons() {
        let reply = "```text
**[QUESTION]**: What is 2 + 2?
**[OPTION A]** 3
[Option B]: 4
[option_c] 5
[OPTION D] 22
**[ANSWER]** b
```";
        let r = parse_reply(reply);
        assert_eq!(r.questions.len(), 1, "{r:?}");
        assert_eq!(r.questions[0].answer, 1);
        assert_eq!(r.questions[0].options[1], "4");
        assert_eq!(r.questions[0].question, "What is 2 + 2?");
    }

    #[test]
    fn empty_truncated_garbage_and_other_language_replies() {
        assert_eq!(parse_reply(""), ParsedReply::default());
        let r = parse_reply("Lo siento, no puedo ayudar con eso. 我不能回答这个问题。");
        assert_eq!((r.blocks, r.questions.len()), (0, 0));
        // truncated mid-block: counted as a dropped block
        let r = parse_reply(
            "[QUESTION] What is the capital of France?\n[OPTION A] Paris\n[OPTION B] Lyo",
        );
        assert_eq!(r.blocks, 1);
        assert_eq!(r.questions.len(), 0);
        assert_eq!(r.dropped["missing [OPTION C]"], 1);
        // an empty option, an empty question, a fifth option
        let r = parse_reply(&GOOD.replace("Primase", "  "));
        assert_eq!(r.dropped["empty option"], 1);
        let r = parse_reply(&GOOD.replace(
            "Which enzyme unwinds the DNA double helix during replication?",
            "",
        ));
        assert_eq!(r.dropped["empty question"], 1);
        let r = parse_reply(&GOOD.replace("[ANSWER]", "[OPTION E] Gyrase\n[ANSWER]"));
        assert_eq!(r.dropped["option outside A-D"], 1);
        // garbage bytes and stray brackets never panic
        let r =
            parse_reply("[QUESTION]\u{0}\u{feff}[OPTION A][OPTION B][OPTION C][OPTION D][ANSWER]");
        assert_eq!(r.questions.len(), 0);
        // a question in another language is still a question
        let r = parse_reply(&GOOD.replace(
            "Which enzyme unwinds the DNA double helix during replication?",
            "¿Qué enzima desenrolla el ADN?",
        ));
        assert_eq!(r.questions.len(), 1);
    }
}
