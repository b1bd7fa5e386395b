//! Filters for generated training data and the generator diagnostics (docs/rgd.md: good
//! generators answer their own questions correctly and write questions that separate the
//! pool). Every filter is a plugin with TOML fields and reports what it removed and why.
//!
//! - `validity`: the number of options, distinct non-empty options, a valid key, length bounds;
//! - `self_answer`: keep a question when the generator's own answer equals its key;
//! - `differentiation`: drop questions the whole pool answers identically (or, with
//!   `min_disagreement`, on which too few models leave the plurality);
//! - `dedup`: near-duplicates by embedding cosine (the first one is kept);
//! - `balance`: at most `max_per_subject` questions per subject (a seeded sample).

/// The training-data diagnostics (in `rgd-diagnostics`, shared with the experiment).
pub use rgd_diagnostics::diagnostics;
pub use rgd_diagnostics::{
    EXACT_MAX, SAMPLE, cosine, near_duplicates, near_duplicates_sampled, plurality,
};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rgd_core::{Context, Filter, FilterOutcome, Split};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// A parameter is out of range.
    #[error("{0}")]
    Invalid(String),
    /// The split lacks what the filter reads.
    #[error("{0}")]
    Missing(String),
}

rgd_core::component_error!(FilterError, "filter");

fn outcome(n: usize) -> FilterOutcome {
    FilterOutcome {
        keep: vec![true; n],
        removed: BTreeMap::new(),
    }
}

fn remove(o: &mut FilterOutcome, q: usize, reason: &str) {
    if o.keep[q] {
        o.keep[q] = false;
        *o.removed.entry(reason.to_string()).or_default() += 1;
    }
}

/// Format checks: the number of options, distinct non-empty options, a key among them, and
/// length bounds on the question and the options.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Validity {
    /// Required number of options (0: any of 2..=20).
    pub options: usize,
    /// Minimum question length, in characters.
    pub min_question_chars: usize,
    /// Maximum question length, in characters.
    pub max_question_chars: usize,
    /// Maximum option length, in characters.
    pub max_option_chars: usize,
}

impl Default for Validity {
    fn default() -> Self {
        Validity {
            options: 4,
            min_question_chars: 10,
            max_question_chars: 2000,
            max_option_chars: 400,
        }
    }
}

impl Filter for Validity {
    fn filter(&self, split: &Split, _: &[String], _: &Context) -> rgd_core::Result<FilterOutcome> {
        let mut o = outcome(split.len());
        for (i, q) in split.questions.iter().enumerate() {
            let n = q.options.len();
            let norm: Vec<String> = q.options.iter().map(|s| s.trim().to_lowercase()).collect();
            let distinct: BTreeSet<&String> = norm.iter().collect();
            let chars = q.text.trim().chars().count();
            let reason = if (self.options > 0 && n != self.options) || !(2..=20).contains(&n) {
                Some("wrong number of options")
            } else if norm.iter().any(|s| s.is_empty()) {
                Some("empty option")
            } else if distinct.len() < n {
                Some("duplicate options")
            } else if q.answer.is_none_or(|a| a.index() >= n) {
                Some("no valid key")
            } else if chars < self.min_question_chars {
                Some("question too short")
            } else if chars > self.max_question_chars {
                Some("question too long")
            } else if q
                .options
                .iter()
                .any(|s| s.chars().count() > self.max_option_chars)
            {
                Some("option too long")
            } else {
                None
            };
            if let Some(r) = reason {
                remove(&mut o, i, r);
            }
        }
        Ok(o)
    }
}

/// Keep a question when the generator, re-answering it as a pool member would, agrees with
/// its own key (needs the split's generator answers: `[generate]` records them).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SelfAnswer {}

impl Filter for SelfAnswer {
    fn filter(&self, split: &Split, _: &[String], _: &Context) -> rgd_core::Result<FilterOutcome> {
        let Some(ga) = &split.generator_answer else {
            return Err(FilterError::Missing(
                "self_answer: the training questions carry no generator answers; generate them with [generate] (self_answer = true), or use a data source that records them".into(),
            )
            .into());
        };
        let mut o = outcome(split.len());
        for (i, q) in split.questions.iter().enumerate() {
            match (ga[i], q.answer) {
                (None, _) => remove(&mut o, i, "generator abstained"),
                (_, None) => remove(&mut o, i, "no key"),
                (Some(a), Some(k)) if a != k => {
                    remove(&mut o, i, "generator disagrees with its key")
                }
                _ => {}
            }
        }
        Ok(o)
    }
}

/// Drop questions that do not separate the pool: by default those every answering model
/// answers identically; with `min_disagreement`, those on which fewer than that share of the
/// answering models leave the plurality answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Differentiation {
    /// Minimum share of models off the plurality answer (e.g. 0.25); unset: only unanimous
    /// questions are dropped.
    pub min_disagreement: Option<f64>,
}

impl Filter for Differentiation {
    fn filter(&self, split: &Split, _: &[String], _: &Context) -> rgd_core::Result<FilterOutcome> {
        if let Some(m) = self.min_disagreement
            && !(0.0..=1.0).contains(&m)
        {
            return Err(FilterError::Invalid(format!(
                "differentiation: min_disagreement must be in [0, 1], got {m}"
            ))
            .into());
        }
        let mut o = outcome(split.len());
        for i in 0..split.len() {
            let (top, answered) = plurality(split, i);
            if answered == 0 {
                remove(&mut o, i, "no model answered");
                continue;
            }
            let off = (answered - top) as f64 / answered as f64;
            match self.min_disagreement {
                None if top == answered => remove(&mut o, i, "the whole pool answers identically"),
                Some(m) if off < m - 1e-12 => remove(&mut o, i, "too little disagreement"),
                _ => {}
            }
        }
        Ok(o)
    }
}

/// Drop near-duplicates by embedding cosine; the first of each group is kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Dedup {
    /// Cosine at or above which two questions are duplicates.
    pub threshold: f32,
    /// Compare only questions of the same subject.
    pub within_subject: bool,
}

impl Default for Dedup {
    fn default() -> Self {
        Dedup {
            threshold: 0.95,
            within_subject: true,
        }
    }
}

impl Filter for Dedup {
    fn filter(&self, split: &Split, _: &[String], _: &Context) -> rgd_core::Result<FilterOutcome> {
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(FilterError::Invalid(format!(
                "dedup: threshold must be in (0, 1], got {}",
                self.threshold
            ))
            .into());
        }
        let mut o = outcome(split.len());
        for (i, d) in near_duplicates(split, self.threshold, self.within_subject)
            .into_iter()
            .enumerate()
        {
            if d {
                remove(&mut o, i, "near-duplicate");
            }
        }
        Ok(o)
    }
}

/// At most `max_per_subject` questions per subject, a seeded sample of each.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Balance {
    /// Cap per subject (required, >= 1).
    pub max_per_subject: usize,
    /// Sampling seed.
    pub seed: u64,
}

impl Filter for Balance {
    fn filter(&self, split: &Split, _: &[String], _: &Context) -> rgd_core::Result<FilterOutcome> {
        if self.max_per_subject == 0 {
            return Err(
                FilterError::Invalid("balance: max_per_subject must be >= 1".into()).into(),
            );
        }
        let mut o = outcome(split.len());
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        for (_, mut g) in split.by_subject() {
            if g.len() > self.max_per_subject {
                g.shuffle(&mut rng);
                for &i in &g[self.max_per_subject..] {
                    remove(&mut o, i, "over the subject's cap");
                }
            }
        }
        Ok(o)
    }
}

rgd_core::register!(filter, "validity", Validity);
rgd_core::register!(filter, "self_answer", SelfAnswer);
rgd_core::register!(filter, "differentiation", Differentiation);
rgd_core::register!(filter, "dedup", Dedup);
rgd_core::register!(filter, "balance", Balance);

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rgd_core::{Letter, Question, Responses};

    fn q(id: usize, subject: &str, options: &[&str], key: Option<usize>) -> Question {
        Question {
            id: id.to_string(),
            subject: subject.into(),
            text: format!("A question long enough number {id}?"),
            options: options.iter().map(|s| s.to_string()).collect(),
            answer: key.and_then(Letter::from_index),
            source: None,
        }
    }

    fn split(questions: Vec<Question>, choices: &[&[Option<usize>]], emb: &[[f32; 2]]) -> Split {
        let n = questions.len();
        let m = choices.first().map(|c| c.len()).unwrap_or(1);
        Split {
            name: "train".into(),
            questions,
            responses: Responses {
                choice: Array2::from_shape_fn((n, m), |(i, j)| {
                    choices
                        .get(i)
                        .and_then(|c| c[j])
                        .and_then(Letter::from_index)
                }),
                confidence: Array2::from_elem((n, m), -0.5),
                latency: None,
                correct: None,
                cost: None,
            },
            embeddings: Array2::from_shape_fn((n, 2), |(i, k)| {
                emb.get(i).map(|e| e[k]).unwrap_or(1.0)
            }),
            generator_answer: None,
            call_failures: Default::default(),
        }
    }

    fn ctx() -> Context {
        Context::new(".")
    }

    #[test]
    fn validity_names_each_reason() {
        let abcd = ["a", "b", "c", "d"];
        let mut short = q(5, "s", &abcd, Some(0));
        short.text = "Why?".into();
        let s = split(
            vec![
                q(0, "s", &abcd, Some(1)),
                q(1, "s", &["a", "b", "c"], Some(0)),
                q(2, "s", &["a", "b", "B ", "d"], Some(0)),
                q(3, "s", &["a", "", "c", "d"], Some(0)),
                q(4, "s", &abcd, None),
                short,
            ],
            &[],
            &[],
        );
        let o = Validity::default().filter(&s, &[], &ctx()).unwrap();
        assert_eq!(o.keep, [true, false, false, false, false, false]);
        for r in [
            "wrong number of options",
            "duplicate options",
            "empty option",
            "no valid key",
            "question too short",
        ] {
            assert_eq!(o.removed[r], 1, "{r}: {:?}", o.removed);
        }
    }

    #[test]
    fn self_answer_keeps_agreement_only_and_needs_generator_answers() {
        let abcd = ["a", "b", "c", "d"];
        let mut s = split(
            vec![
                q(0, "s", &abcd, Some(1)),
                q(1, "s", &abcd, Some(2)),
                q(2, "s", &abcd, Some(0)),
            ],
            &[],
            &[],
        );
        let e = SelfAnswer {}
            .filter(&s, &[], &ctx())
            .unwrap_err()
            .to_string();
        assert!(e.contains("generator answers"), "{e}");
        s.generator_answer = Some(vec![Letter::from_index(1), Letter::from_index(0), None]);
        let o = SelfAnswer {}.filter(&s, &[], &ctx()).unwrap();
        assert_eq!(o.keep, [true, false, false]);
        assert_eq!(o.removed["generator disagrees with its key"], 1);
        assert_eq!(o.removed["generator abstained"], 1);
    }

    #[test]
    fn differentiation_drops_unanimous_and_low_disagreement() {
        let abcd = ["a", "b", "c", "d"];
        let qs = (0..4).map(|i| q(i, "s", &abcd, Some(0))).collect();
        let s = split(
            qs,
            &[
                &[Some(0), Some(0), Some(0), Some(0)],
                &[Some(0), Some(0), Some(0), Some(1)],
                &[Some(0), Some(1), Some(2), Some(1)],
                &[Some(2), None, Some(2), None],
            ],
            &[],
        );
        let o = Differentiation::default().filter(&s, &[], &ctx()).unwrap();
        assert_eq!(o.keep, [false, true, true, false]);
        let o = Differentiation {
            min_disagreement: Some(0.5),
        }
        .filter(&s, &[], &ctx())
        .unwrap();
        assert_eq!(o.keep, [false, false, true, false]);
        assert_eq!(o.removed["too little disagreement"], 3);
    }

    #[test]
    fn dedup_and_balance() {
        let abcd = ["a", "b", "c", "d"];
        let qs = vec![
            q(0, "s", &abcd, Some(0)),
            q(1, "s", &abcd, Some(0)),
            q(2, "t", &abcd, Some(0)),
            q(3, "s", &abcd, Some(0)),
        ];
        let s = split(qs, &[], &[[1.0, 0.0], [0.99, 0.05], [1.0, 0.0], [0.0, 1.0]]);
        let o = Dedup::default().filter(&s, &[], &ctx()).unwrap();
        // 1 duplicates 0; 2 is the same vector but another subject
        assert_eq!(o.keep, [true, false, true, true]);
        let o = Dedup {
            within_subject: false,
            ..Default::default()
        }
        .filter(&s, &[], &ctx())
        .unwrap();
        assert_eq!(o.keep, [true, false, false, true]);
        let o = Balance {
            max_per_subject: 2,
            seed: 1,
        }
        .filter(&s, &[], &ctx())
        .unwrap();
        assert_eq!(o.keep.iter().filter(|k| **k).count(), 3);
        assert_eq!(o.removed["over the subject's cap"], 1);
        assert!(Balance::default().filter(&s, &[], &ctx()).is_err());
    }

    /// The one-pair-at-a-time definition the blocked version must agree with.
    fn near_duplicates_naive(split: &Split, threshold: f32) -> Vec<bool> {
        let mut dup = vec![false; split.len()];
        for (_, g) in split.by_subject() {
            let mut kept: Vec<usize> = Vec::new();
            for &i in &g {
                if kept
                    .iter()
                    .any(|&k| cosine(split.embedding(i), split.embedding(k)) >= threshold)
                {
                    dup[i] = true;
                } else {
                    kept.push(i);
                }
            }
        }
        dup
    }

    #[test]
    fn blocked_near_duplicates_equal_the_pairwise_definition_across_blocks() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        // 1,300 questions in 2 subjects (blocks of 512 cut through each), 16-d, with
        // near-copies of earlier questions, chains of copies and exact repeats
        let (n, d) = (1300, 16);
        let mut e = ndarray::Array2::<f32>::zeros((n, d));
        for i in 0..n {
            if i > 10 && rng.random_bool(0.3) {
                let src = rng.random_range(0..i);
                let noise = if rng.random_bool(0.2) { 0.0 } else { 0.15 };
                for k in 0..d {
                    e[[i, k]] = e[[src, k]] + noise * (rng.random::<f32>() - 0.5);
                }
            } else {
                for k in 0..d {
                    e[[i, k]] = rng.random::<f32>() - 0.5;
                }
            }
        }
        let qs: Vec<Question> = (0..n)
            .map(|i| q(i, if i % 3 == 0 { "a" } else { "b" }, &["x", "y"], Some(0)))
            .collect();
        let mut s = split(qs, &[], &[]);
        s.embeddings = e;
        for t in [0.9, 0.95, 0.99] {
            let fast = near_duplicates(&s, t, true);
            assert_eq!(fast, near_duplicates_naive(&s, t), "threshold {t}");
            assert!(fast.iter().any(|d| *d), "threshold {t} found no duplicate");
        }
    }
}

#[cfg(test)]
mod sampled_tests {
    use super::*;
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};
    use rgd_core::{Question, Responses};

    /// `n` questions of one subject in 16-d: random directions, a share of them copies (with
    /// a tiny perturbation) of an earlier one.
    fn world(n: usize, dup_share: f64, seed: u64) -> Split {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut e = Array2::<f32>::zeros((n, 16));
        for i in 0..n {
            if i > 0 && rng.random_bool(dup_share) {
                let j = rng.random_range(0..i);
                let src = e.row(j).to_owned();
                for k in 0..16 {
                    e[[i, k]] = src[k] + 0.001 * rng.random::<f32>();
                }
            } else {
                for k in 0..16 {
                    e[[i, k]] = rng.random::<f32>() - 0.5;
                }
            }
        }
        Split {
            name: "train".into(),
            questions: (0..n)
                .map(|i| Question {
                    id: i.to_string(),
                    subject: "s".into(),
                    text: String::new(),
                    options: vec![],
                    answer: None,
                    source: None,
                })
                .collect(),
            responses: Responses::letters(
                Array2::from_elem((n, 1), None),
                Array2::from_elem((n, 1), f64::NAN),
            ),
            embeddings: e,
            generator_answer: None,
            call_failures: Default::default(),
        }
    }

    #[test]
    fn the_sampled_near_duplicate_rate_is_within_three_points_of_the_exact_one() {
        for (share, seed) in [(0.02, 1), (0.1, 2), (0.3, 3)] {
            let s = world(20_000, share, seed);
            let exact = near_duplicates(&s, 0.95, true);
            let exact_rate = exact.iter().filter(|&&d| d).count() as f64 / s.len() as f64;
            let sampled = near_duplicates_sampled(&s, 0.95, EXACT_MAX, SAMPLE, 0);
            let checked: Vec<bool> = sampled.iter().flatten().copied().collect();
            assert_eq!(checked.len(), SAMPLE);
            let est = checked.iter().filter(|&&d| d).count() as f64 / checked.len() as f64;
            eprintln!("share {share}: exact {exact_rate:.4}, sampled {est:.4}");
            // the standard error of a rate on 1,024 draws is at most 1.6 points
            assert!(
                (est - exact_rate).abs() < 0.03,
                "share {share}: exact {exact_rate:.4}, sampled {est:.4}"
            );
        }
    }

    #[test]
    fn small_subjects_get_the_exact_answer() {
        let s = world(3_000, 0.2, 9);
        let exact = near_duplicates(&s, 0.95, true);
        let sampled = near_duplicates_sampled(&s, 0.95, EXACT_MAX, SAMPLE, 0);
        assert_eq!(sampled, exact.into_iter().map(Some).collect::<Vec<_>>());
    }
}
