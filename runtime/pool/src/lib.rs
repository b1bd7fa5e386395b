//! The pool stage: every pool model answers every question (one forward pass scoring the
//! option letters), and the questions are embedded; the result is a [`Split`].
//!
//! The prompt is the question, then `Choices:` with `(A) text` lines, then an instruction to
//! answer with the letter; `Answer:` follows the rendered conversation and the letter is the
//! next token. Letter log-probabilities are renormalized over the options; the answer is the
//! argmax and its (renormalized) log-probability the confidence.
//!
//! Letter-prior correction (per model, opt-in): small models answer the same letter whatever
//! the question (SmolLM2-135M says "A" almost always). With `prior_correction`, each letter's
//! mean log-probability over the split's questions (with the same number of options) is
//! subtracted before the argmax; the confidence stays the uncorrected log-probability of the
//! chosen letter. A question the model cannot score (e.g. longer than its context) is an
//! abstention, counted and reported, not a crash; any other backend error (a model that
//! cannot load, say) stops the run, naming the model.

pub mod extract;

use ndarray::Array2;
use rgd_core::{
    ChoiceScores, ClozeRequest, Context, Embedder, GenerateRequest, Letter, LlmBackend, Message,
    OptionScores, Question, Responses, ScoreRequest, Split,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The embedder returned the wrong number of rows.
    #[error("embedder returned {got} rows for {want} texts")]
    Embed {
        /// Rows returned.
        got: usize,
        /// Texts sent.
        want: usize,
    },
}

rgd_core::component_error!(PoolError, "pool");

/// A pool model.
#[derive(Debug)]
pub struct PoolMember {
    /// Its name in reports.
    pub name: String,
    /// Its backend (usually wrapped in the call cache).
    pub backend: Box<dyn LlmBackend>,
    /// Subtract the model's mean log-probability per letter before choosing.
    pub prior_correction: bool,
    /// How it answers.
    pub mode: AnswerMode,
}

/// How a pool member answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AnswerMode {
    /// Score the option letters in one forward pass (local models).
    #[default]
    Score,
    /// Reason in free text and end with "The answer is (X)" (docs/rgd.md's prompt, for backends
    /// that generate instead of scoring); the letter comes from [`extract::extract_answer`],
    /// the confidence is the reply's mean token log-probability. Greedy decoding.
    Generate {
        /// Token budget of the reply.
        max_tokens: usize,
    },
    /// Score each option's text as the continuation of the question (its log-likelihood after
    /// "Answer:", the prompt's KV cache reused across options), normalized by `norm`; the
    /// answer is the best option. Evaluation harnesses score small models this way: below
    /// ~1B parameters letter scoring mostly measures a letter bias.
    Cloze {
        /// How an option's log-likelihood is normalized before the options are compared.
        norm: ClozeNorm,
    },
}

/// The normalization of a cloze score.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClozeNorm {
    /// Per character of the option text (lm-evaluation-harness's `acc_norm`).
    #[default]
    Chars,
    /// Per token.
    Tokens,
    /// The plain sum (favours short options).
    None,
}

/// The cloze prompt of a question: the question alone, then `Answer:`; each option's text
/// follows it.
pub fn cloze_request(q: &Question) -> ClozeRequest {
    ClozeRequest {
        messages: vec![Message {
            role: "user".into(),
            content: q.text.trim().to_string(),
        }],
        answer_prefix: "Answer:".into(),
        options: q.options.iter().map(|o| o.trim().to_string()).collect(),
    }
}

/// Per option: its log-likelihood divided as `norm` says.
pub fn cloze_scores(s: &OptionScores, options: &[String], norm: ClozeNorm) -> Vec<f64> {
    s.logprobs
        .iter()
        .zip(&s.tokens)
        .zip(options)
        .map(|((&lp, &t), o)| match norm {
            // the scored text is " " + the trimmed option
            ClozeNorm::Chars => lp / (o.trim().chars().count() + 1) as f64,
            ClozeNorm::Tokens => lp / t.max(1) as f64,
            ClozeNorm::None => lp,
        })
        .collect()
}

/// docs/rgd.md's free-text prompt: the question, the choices, then the instruction to reason step
/// by step and finish with "The answer is (X)".
pub fn cot_request(q: &Question, max_tokens: usize) -> GenerateRequest {
    let mut user = format!("{}\n\nChoices:\n", q.text.trim());
    for (i, o) in q.options.iter().enumerate() {
        let l = Letter::from_index(i).map(|l| l.as_char()).unwrap_or('?');
        user.push_str(&format!("({l}) {}\n", o.trim()));
    }
    user.push_str("\nThink step by step, then finish your reply with \"The answer is (X)\", where X is the letter of the correct choice.");
    GenerateRequest {
        messages: vec![Message {
            role: "user".into(),
            content: user,
        }],
        temperature: 0.0,
        top_p: 1.0,
        max_tokens,
        seed: 0,
        assistant_prefix: String::new(),
    }
}

/// The multiple-choice prompt of a question.
pub fn mc_request(q: &Question) -> ScoreRequest {
    let mut user = format!("{}\n\nChoices:\n", q.text.trim());
    for (i, o) in q.options.iter().enumerate() {
        let l = Letter::from_index(i).map(|l| l.as_char()).unwrap_or('?');
        user.push_str(&format!("({l}) {}\n", o.trim()));
    }
    user.push_str("\nAnswer with the letter of the correct choice.");
    ScoreRequest {
        messages: vec![Message {
            role: "user".into(),
            content: user,
        }],
        n_options: q.options.len(),
        answer_prefix: "Answer:".into(),
    }
}

fn renormalize(lp: &[f64]) -> Vec<f64> {
    let mx = lp.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !mx.is_finite() {
        return vec![f64::NAN; lp.len()];
    }
    let lse = mx + lp.iter().map(|x| (x - mx).exp()).sum::<f64>().ln();
    lp.iter().map(|x| x - lse).collect()
}

/// What answering produced besides the responses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnswerReport {
    /// Per model: questions it could not score (abstentions) and the first reason.
    pub failures: BTreeMap<String, (usize, String)>,
}

impl AnswerReport {
    /// Count one abstention of `model`, keeping the first reason.
    fn abstained(&mut self, model: &str, reason: String) {
        self.failures
            .entry(model.to_string())
            .or_insert((0, reason))
            .0 += 1;
    }
}

/// `run` on the items in chunks (of the backend's [`LlmBackend::parallelism`] × 4 for a remote
/// backend, of `batch` for a local one), so that progress is reported and an interrupt is seen
/// as they finish.
fn in_chunks<T: Sync, R: Send>(
    items: &[T],
    member: &PoolMember,
    batch: usize,
    progress: &mut dyn FnMut(&str, usize, usize),
    interrupt: &AtomicBool,
    run: impl Fn(&[T]) -> Vec<R>,
) -> rgd_core::Result<Vec<R>> {
    let workers = member.backend.parallelism().max(1);
    let chunk = if workers == 1 {
        batch.max(1)
    } else {
        workers * 4
    };
    let mut out = Vec::with_capacity(items.len());
    for (k, part) in items.chunks(chunk).enumerate() {
        progress(&member.name, k * chunk, items.len());
        if interrupt.load(Ordering::SeqCst) {
            return Err(rgd_core::Error::Interrupted);
        }
        out.extend(run(part));
    }
    Ok(out)
}

/// One call per question, up to the backend's [`LlmBackend::parallelism`] at once.
fn calls<R: Send>(
    questions: &[Question],
    member: &PoolMember,
    progress: &mut dyn FnMut(&str, usize, usize),
    interrupt: &AtomicBool,
    call: impl Fn(&Question) -> rgd_core::Result<R> + Sync,
) -> rgd_core::Result<Vec<rgd_core::Result<R>>> {
    let workers = member.backend.parallelism().max(1);
    in_chunks(questions, member, 1, progress, interrupt, |part| {
        rgd_core::parallel_map(part, workers, |_, q| call(q))
    })
}

/// Every member answers every question. `progress(model, done, total)` is called as it goes.
pub fn answer(
    questions: &[Question],
    members: &[PoolMember],
    progress: &mut dyn FnMut(&str, usize, usize),
) -> rgd_core::Result<(Responses, AnswerReport)> {
    answer_until(questions, members, progress, &AtomicBool::new(false))
}

/// [`answer`], stopping with [`rgd_core::Error::Interrupted`] once `interrupt` is set (checked
/// between batches of calls; every finished call is already in the cache).
pub fn answer_until(
    questions: &[Question],
    members: &[PoolMember],
    progress: &mut dyn FnMut(&str, usize, usize),
    interrupt: &AtomicBool,
) -> rgd_core::Result<(Responses, AnswerReport)> {
    let n = questions.len();
    let m = members.len();
    let mut choice = Array2::from_elem((n, m), None);
    let mut confidence = Array2::from_elem((n, m), f64::NAN);
    let mut latency = Array2::from_elem((n, m), f64::NAN);
    let mut report = AnswerReport::default();
    for (j, member) in members.iter().enumerate() {
        if let AnswerMode::Generate { max_tokens } = member.mode {
            let reqs: Vec<GenerateRequest> = questions
                .iter()
                .map(|q| cot_request(q, max_tokens))
                .collect();
            // a local model decodes a batch of replies together
            let batch = member.backend.batch_size();
            let replies = in_chunks(&reqs, member, batch, progress, interrupt, |part| {
                rgd_core::generate_all(member.backend.as_ref(), part)
            })?;
            for ((i, q), reply) in questions.iter().enumerate().zip(replies) {
                match reply {
                    Ok(g) => {
                        latency[[i, j]] = g.seconds;
                        choice[[i, j]] = extract::extract_answer(&g.text, q.options.len());
                        if choice[[i, j]].is_some() {
                            confidence[[i, j]] = g.mean_logprob;
                        } else {
                            report.abstained(&member.name, "no answer letter in the reply".into());
                        }
                    }
                    Err(e) if e.is_call_failure() => {
                        report.abstained(&member.name, e.to_string());
                    }
                    Err(e) => {
                        return Err(rgd_core::Error::component(
                            format!("pool model `{}` on question `{}`", member.name, q.id),
                            e,
                        ));
                    }
                }
            }
            progress(&member.name, n, n);
            continue;
        }
        let mut norm: Vec<Option<Vec<f64>>> = Vec::with_capacity(n);
        let scored = calls(questions, member, progress, interrupt, |q| {
            match member.mode {
                AnswerMode::Cloze { norm } => {
                    let s = member.backend.score_options(&cloze_request(q))?;
                    Ok(ChoiceScores {
                        logprobs: cloze_scores(&s, &q.options, norm),
                        seconds: s.seconds,
                    })
                }
                _ => member.backend.score_choices(&mc_request(q)),
            }
        })?;
        for ((i, q), scores) in questions.iter().enumerate().zip(scored) {
            match scores {
                Ok(s) => {
                    latency[[i, j]] = s.seconds;
                    let r = renormalize(&s.logprobs);
                    norm.push(r.iter().all(|x| x.is_finite()).then_some(r));
                }
                Err(e) if e.is_call_failure() => {
                    report.abstained(&member.name, e.to_string());
                    norm.push(None);
                }
                Err(e) => {
                    return Err(rgd_core::Error::component(
                        format!("pool model `{}` on question `{}`", member.name, q.id),
                        e,
                    ));
                }
            }
        }
        progress(&member.name, n, n);
        // per number of options: the mean renormalized log-prob of each letter
        let mut prior: BTreeMap<usize, (Vec<f64>, usize)> = BTreeMap::new();
        if member.prior_correction {
            for r in norm.iter().flatten() {
                let e = prior.entry(r.len()).or_insert((vec![0.0; r.len()], 0));
                for (a, x) in e.0.iter_mut().zip(r) {
                    *a += x;
                }
                e.1 += 1;
            }
        }
        for (i, r) in norm.iter().enumerate() {
            let Some(r) = r else { continue };
            let shift = prior
                .get(&r.len())
                .map(|(s, c)| s.iter().map(|x| x / *c as f64).collect::<Vec<_>>());
            let adj: Vec<f64> = match &shift {
                Some(s) => r.iter().zip(s).map(|(x, p)| x - p).collect(),
                None => r.clone(),
            };
            let best = rgd_core::rank(&adj)[0];
            choice[[i, j]] = Letter::from_index(best);
            confidence[[i, j]] = r[best];
        }
    }
    Ok((
        Responses {
            choice,
            confidence,
            latency: Some(latency),
            correct: None,
            cost: None,
        },
        report,
    ))
}

/// Embed the question texts (the text only, no options) in batches.
pub fn embed(
    questions: &[Question],
    embedder: &dyn Embedder,
    batch: usize,
) -> rgd_core::Result<Array2<f32>> {
    let mut rows: Vec<Vec<f32>> = Vec::with_capacity(questions.len());
    for chunk in questions.chunks(batch.max(1)) {
        let texts: Vec<&str> = chunk.iter().map(|q| q.text.as_str()).collect();
        let e = embedder.embed(&texts)?;
        if e.nrows() != texts.len() {
            return Err(PoolError::Embed {
                got: e.nrows(),
                want: texts.len(),
            }
            .into());
        }
        rows.extend(e.rows().into_iter().map(|r| r.to_vec()));
    }
    let dim = rows.first().map(Vec::len).unwrap_or(0);
    let mut out = Array2::zeros((rows.len(), dim));
    for (i, r) in rows.iter().enumerate() {
        out.row_mut(i).assign(&ndarray::ArrayView1::from(&r[..]));
    }
    Ok(out)
}

/// Answer and embed one split.
pub fn build_split(
    name: &str,
    questions: Vec<Question>,
    members: &[PoolMember],
    embedder: &dyn Embedder,
    ctx: &Context,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> rgd_core::Result<Split> {
    let (responses, report) = answer_until(&questions, members, progress, &ctx.interrupt)?;
    for (model, (count, first)) in &report.failures {
        ctx.info(format!(
            "warning: {model} could not answer {count} {name} question(s) (abstentions); first: {first}"
        ));
    }
    let embeddings = embed(&questions, embedder, 256)?;
    Ok(Split {
        name: name.to_string(),
        questions,
        responses,
        embeddings,
        generator_answer: None,
        call_failures: report.failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rgd_core::{ChoiceScores, GenerateRequest, Generation};

    /// A backend that always prefers letter A by a margin, with a question-dependent bump.
    #[derive(Debug)]
    struct BiasedA;
    impl LlmBackend for BiasedA {
        fn identity(&self) -> String {
            "biased".into()
        }
        fn score_choices(&self, req: &ScoreRequest) -> rgd_core::Result<ChoiceScores> {
            let text = &req.messages[0].content;
            if text.contains("too long") {
                return Err(rgd_core::Error::Unanswerable(
                    "prompt longer than the context".into(),
                ));
            }
            // the right letter (encoded in the question) gets +1, A always gets +2
            let right = text.chars().next().unwrap() as usize - '0' as usize;
            let lp = (0..req.n_options)
                .map(|i| -3.0 + if i == 0 { 2.0 } else { 0.0 } + if i == right { 1.0 } else { 0.0 })
                .collect();
            Ok(ChoiceScores {
                logprobs: lp,
                seconds: 0.01,
            })
        }
        fn generate(&self, _req: &GenerateRequest) -> rgd_core::Result<Generation> {
            unreachable!()
        }
    }

    fn q(right: usize) -> Question {
        Question {
            id: format!("{right}"),
            subject: "s".into(),
            text: format!("{right} what?"),
            options: vec!["w".into(), "x".into(), "y".into(), "z".into()],
            answer: Letter::from_index(right),
            source: None,
        }
    }

    #[test]
    fn prior_correction_removes_a_letter_bias_and_failures_abstain() {
        let qs: Vec<Question> = (0..8)
            .map(|i| q(i % 4))
            .chain([Question {
                text: "0 too long".into(),
                ..q(0)
            }])
            .collect();
        let members = vec![
            PoolMember {
                name: "raw".into(),
                backend: Box::new(BiasedA),
                prior_correction: false,
                mode: Default::default(),
            },
            PoolMember {
                name: "fixed".into(),
                backend: Box::new(BiasedA),
                prior_correction: true,
                mode: Default::default(),
            },
        ];
        let (r, report) = answer(&qs, &members, &mut |_, _, _| {}).unwrap();
        for i in 0..8 {
            assert_eq!(r.choice[[i, 0]], Letter::from_index(0), "raw always says A");
            assert_eq!(
                r.choice[[i, 1]],
                Letter::from_index(i % 4),
                "corrected finds the right letter"
            );
            assert!(r.confidence[[i, 1]] < 0.0);
        }
        assert_eq!(r.choice[[8, 0]], None);
        assert_eq!(report.failures["raw"].0, 1);
        let p = mc_request(&qs[0]);
        assert!(p.messages[0].content.contains("Choices:\n(A) w\n(B) x"));
    }
}
