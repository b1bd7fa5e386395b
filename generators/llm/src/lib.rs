//! The `llm` generator of Routing with Generated Data: an LLM writes multiple-choice questions
//! with answer keys from a one-paragraph description of each subject (docs/rgd.md, stage 2), in the
//! tagged-block format that [`parse`] reads; task descriptions as data ([`descriptions`]); and
//! the describe stage ([`describe`]), which derives a subject's description from a few
//! unlabeled example questions.

/// Subject descriptions files and the describe stage (in `rgd-core`, shared with the experiment).
pub use rgd_core::descriptions;
pub use rgd_core::descriptions::{clean_description, describe};
pub mod parse;

use rgd_core::{
    Context, GenerateRequest, Generated, GenerationRecord, GenerationStats, Generator, Letter,
    LlmBackend, Message, Question, SubjectDescription,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// A parameter is out of range.
    #[error("generator llm: {0}")]
    Invalid(String),
}

rgd_core::component_error!(GenError, "generator");

/// The system instruction of docs/rgd.md; `{n}` becomes the number of questions per call.
pub const DEFAULT_INSTRUCTION: &str = "You write advanced graduate-level multiple-choice exam questions on topics like the ones the user describes. Each question has exactly 4 options, A to D, and exactly one correct answer. Do not use JSON and do not use markdown. Write {n} questions. Write each question as a block in exactly this format:
[QUESTION] the question
[OPTION A] the first option
[OPTION B] the second option
[OPTION C] the third option
[OPTION D] the fourth option
[ANSWER] the letter of the correct option
Separate the blocks with a line containing only #####.";

/// An LLM writes questions and keys from each subject's description.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LlmGenerator {
    /// The backend that writes (a `[backends.NAME]` of the pipeline).
    pub backend: String,
    /// Questions asked for per call.
    pub questions_per_call: usize,
    /// Calls per subject (each with its own seed).
    pub calls_per_subject: usize,
    /// Sampling temperature (docs/rgd.md: 0.8).
    pub temperature: f64,
    /// Nucleus mass (docs/rgd.md: 0.95).
    pub top_p: f64,
    /// Token budget per call (0: 170 per question asked + 64).
    pub max_tokens: usize,
    /// Keep at most this many questions per subject (0: all parsed).
    pub max_per_subject: usize,
    /// Seed (each call's seed derives from it, the subject and the call number).
    pub seed: u64,
    /// The system instruction (`{n}` = questions per call); empty: docs/rgd.md's.
    pub instruction: String,
    /// Append one worked example block to the instruction (small models copy the format
    /// from it; docs/rgd.md's instruction has none).
    pub example: bool,
    /// Start the reply with `[QUESTION]` (for backends that support a reply prefix; small
    /// models then stay in the format).
    pub prefill: bool,
}

impl Default for LlmGenerator {
    fn default() -> Self {
        LlmGenerator {
            backend: String::new(),
            questions_per_call: 5,
            calls_per_subject: 4,
            temperature: 0.8,
            top_p: 0.95,
            max_tokens: 0,
            max_per_subject: 0,
            seed: 0,
            instruction: String::new(),
            example: true,
            prefill: true,
        }
    }
}

/// The worked example appended with `example = true`.
pub const EXAMPLE_BLOCK: &str = "

For example, one block:
[QUESTION] Which enzyme unwinds the DNA double helix at the replication fork?
[OPTION A] DNA ligase
[OPTION B] Helicase
[OPTION C] Primase
[OPTION D] DNA polymerase I
[ANSWER] B
#####";

fn sha_hex(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A file- and id-safe slug of a subject name.
pub fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

impl LlmGenerator {
    fn check(&self) -> Result<(), GenError> {
        if self.backend.is_empty() {
            return Err(GenError::Invalid(
                "`backend` (the name of a [backends.NAME]) is required".into(),
            ));
        }
        if !(1..=20).contains(&self.questions_per_call) {
            return Err(GenError::Invalid(format!(
                "questions_per_call must be in 1..=20, got {}",
                self.questions_per_call
            )));
        }
        if self.calls_per_subject == 0 {
            return Err(GenError::Invalid("calls_per_subject must be >= 1".into()));
        }
        if !(self.temperature >= 0.0
            && self.temperature <= 100.0
            && self.top_p > 0.0
            && self.top_p <= 1.0)
        {
            return Err(GenError::Invalid(
                "temperature must be in [0, 100] and top_p in (0, 1]".into(),
            ));
        }
        Ok(())
    }

    /// The prompt for one subject.
    pub fn messages(&self, description: &str) -> Vec<Message> {
        let instruction = if self.instruction.is_empty() {
            DEFAULT_INSTRUCTION
        } else {
            &self.instruction
        };
        vec![
            Message {
                role: "system".into(),
                content: format!(
                    "{}{}",
                    instruction.replace("{n}", &self.questions_per_call.to_string()),
                    if self.example { EXAMPLE_BLOCK } else { "" }
                ),
            },
            Message {
                role: "user".into(),
                content: description.trim().to_string(),
            },
        ]
    }

    /// The seed of one call.
    pub fn call_seed(&self, subject: &str, call: usize) -> u64 {
        let h = sha_hex(&[&self.seed.to_string(), subject, &call.to_string()]);
        u64::from_str_radix(&h[..16], 16).unwrap_or(0)
    }

    /// Generate with an explicit backend (what [`Generator::generate`] does with the
    /// context's named one).
    pub fn generate_with(
        &self,
        backend: &dyn LlmBackend,
        subjects: &[SubjectDescription],
        ctx: &Context,
    ) -> rgd_core::Result<Generated> {
        self.check()?;
        let max_tokens = if self.max_tokens == 0 {
            170 * self.questions_per_call + 64
        } else {
            self.max_tokens
        };
        let identity = backend.identity();
        let short_id: String = identity.chars().take(48).collect();
        let mut out = Generated::default();
        for sd in subjects {
            let messages = self.messages(&sd.description);
            let prompt_sha = sha_hex(
                &messages
                    .iter()
                    .flat_map(|m| [m.role.as_str(), m.content.as_str()])
                    .collect::<Vec<_>>(),
            );
            let mut stats = GenerationStats::default();
            let mut kept = 0usize;
            let requests: Vec<GenerateRequest> = (0..self.calls_per_subject)
                .map(|call| GenerateRequest {
                    messages: messages.clone(),
                    temperature: self.temperature,
                    top_p: self.top_p,
                    max_tokens,
                    seed: self.call_seed(&sd.subject, call),
                    assistant_prefix: if self.prefill {
                        "[QUESTION]".into()
                    } else {
                        String::new()
                    },
                })
                .collect();
            // a remote backend takes several calls at once; a local model decodes them together
            let replies = rgd_core::generate_all(backend, &requests);
            for (call, (req, reply)) in requests.iter().zip(replies).enumerate() {
                let seed = req.seed;
                stats.calls += 1;
                let reply = match reply {
                    Ok(g) => {
                        stats.tokens += g.n_tokens;
                        stats.seconds += g.seconds;
                        g.text
                    }
                    // a prompt the model cannot take, or a server that stayed down through
                    // its retries: an empty reply, counted (and not cached: a rerun retries)
                    Err(e) if e.is_call_failure() => {
                        stats.failed_calls += 1;
                        ctx.info(format!(
                            "  {subject} call {call}: {e}",
                            subject = sd.subject
                        ));
                        String::new()
                    }
                    Err(e) => {
                        return Err(rgd_core::Error::component(
                            format!(
                                "generator backend `{}` on subject `{}` (call {call})",
                                self.backend, sd.subject
                            ),
                            e,
                        ));
                    }
                };
                let parsed = parse::parse_reply(&reply);
                if parsed.blocks == 0 {
                    stats.replies_without_blocks += 1;
                }
                stats.blocks += parsed.blocks;
                stats.parsed += parsed.questions.len();
                for (k, v) in &parsed.dropped {
                    *stats.dropped.entry(k.clone()).or_default() += v;
                }
                let mut ids = Vec::new();
                for (k, q) in parsed.questions.into_iter().enumerate() {
                    if self.max_per_subject > 0 && kept >= self.max_per_subject {
                        *stats
                            .dropped
                            .entry("over max_per_subject".into())
                            .or_default() += 1;
                        continue;
                    }
                    kept += 1;
                    let id = format!("gen-{}-{call}-{k}", slug(&sd.subject));
                    ids.push(id.clone());
                    out.questions.push(Question {
                        id,
                        subject: sd.subject.clone(),
                        text: q.question,
                        options: q.options.to_vec(),
                        answer: Letter::from_index(q.answer),
                        source: Some(format!(
                            "llm generator `{}` ({short_id}), prompt {}, call {call}, seed {seed}",
                            self.backend,
                            &prompt_sha[..12]
                        )),
                    });
                }
                out.records.push(GenerationRecord {
                    subject: sd.subject.clone(),
                    call,
                    seed,
                    messages: messages.clone(),
                    reply,
                    question_ids: ids,
                    dropped: parsed.dropped,
                });
            }
            ctx.info(format!(
                "  generated {subject}: {parsed}/{blocks} blocks parsed, {calls} calls",
                subject = sd.subject,
                parsed = stats.parsed,
                blocks = stats.blocks,
                calls = stats.calls
            ));
            out.stats.insert(sd.subject.clone(), stats);
        }
        Ok(out)
    }
}

impl Generator for LlmGenerator {
    fn generate(
        &self,
        subjects: &[SubjectDescription],
        ctx: &Context,
    ) -> rgd_core::Result<Generated> {
        self.check()?;
        let backend = ctx.backend(&self.backend)?;
        self.generate_with(backend.as_ref(), subjects, ctx)
    }
    fn backend_name(&self) -> Option<&str> {
        Some(&self.backend)
    }
}

rgd_core::register!(generator, "llm", LlmGenerator);

#[cfg(test)]
mod tests {
    use super::*;
    use rgd_core::{ChoiceScores, Generation, ScoreRequest};
    use std::sync::Mutex;

    /// A backend that replays canned replies (the parser is tested on real-looking text; the
    /// real-model path is tested in the integration tests).
    #[derive(Debug)]
    struct Canned(Mutex<Vec<String>>);

    impl LlmBackend for Canned {
        fn identity(&self) -> String {
            "canned".into()
        }
        fn score_choices(&self, _: &ScoreRequest) -> rgd_core::Result<ChoiceScores> {
            Err(rgd_core::Error::Data("not used".into()))
        }
        fn generate(&self, _: &GenerateRequest) -> rgd_core::Result<Generation> {
            let text = self.0.lock().unwrap().remove(0);
            Ok(Generation {
                n_tokens: text.len() / 4,
                text,
                mean_logprob: -1.0,
                seconds: 0.5,
            })
        }
    }

    #[test]
    fn items_inherit_the_subject_and_record_generator_and_prompt() {
        let block =
            "[QUESTION] Q?\n[OPTION A] a\n[OPTION B] b\n[OPTION C] c\n[OPTION D] d\n[ANSWER] D";
        let backend = Canned(Mutex::new(vec![
            format!("{block}\n#####\n{block}"),
            "I cannot do that.".into(),
        ]));
        let g = LlmGenerator {
            backend: "gen".into(),
            calls_per_subject: 2,
            ..Default::default()
        };
        let mut ctx = Context::new(".");
        ctx.quiet = true;
        let subjects = [SubjectDescription {
            subject: "college physics".into(),
            description: "These questions describe mechanics.".into(),
        }];
        let out = g.generate_with(&backend, &subjects, &ctx).unwrap();
        assert_eq!(out.questions.len(), 2);
        assert!(out.questions.iter().all(|q| q.subject == "college physics"));
        assert_eq!(out.questions[0].answer, Letter::from_index(3));
        assert_eq!(out.questions[0].id, "gen-college_physics-0-0");
        let src = out.questions[0].source.as_deref().unwrap();
        assert!(src.contains("`gen`") && src.contains("prompt "), "{src}");
        let st = &out.stats["college physics"];
        assert_eq!(
            (st.calls, st.blocks, st.parsed, st.replies_without_blocks),
            (2, 2, 2, 1)
        );
        assert_eq!(out.records.len(), 2);
        assert_eq!(out.records[0].question_ids.len(), 2);
        assert_ne!(out.records[0].seed, out.records[1].seed);
        assert!(
            out.records[0].messages[0]
                .content
                .contains("Write 5 questions")
        );
    }

    #[test]
    fn description_cleanup() {
        assert_eq!(
            clean_description(
                "\"These questions describe X, covering a, b, and require recall.\"\n\nExtra."
            ),
            "These questions describe X, covering a, b, and require recall."
        );
        assert_eq!(clean_description(""), "");
    }
}
