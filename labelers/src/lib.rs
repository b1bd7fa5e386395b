//! The built-in labelers (`[labelers.NAME] type = "..."`, or `labels = "TYPE"` on a router):
//! `key` (correct against the answer key: query-answer), and three query-only ones that read
//! only the pool's answers — `consensus` (CASCAL's confidence-weighted vote, docs/cascal.md
//! section A), `plurality` (agrees with the pool's most chosen letter) and `dawid_skene` (the
//! posterior probability that the model is right, by one-coin Dawid–Skene EM per subject).

mod dawid_skene;
mod plurality;

pub use dawid_skene::{DawidSkene, estimate, posteriors};
pub use plurality::Plurality;

use ndarray::Array2;
use rgd_core::stats::LocScale;
use rgd_core::{Labeler, Labels, N_LETTERS, Needs, Split};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    /// Correctness labels need an answer key on every question.
    #[error("question `{0}` has no answer key, so correctness labels cannot be computed")]
    MissingKey(String),
    /// A parameter is out of range.
    #[error("invalid parameter: {0}")]
    Invalid(String),
}

rgd_core::component_error!(LabelError, "labeler");

/// Consensus scores: each model's vote is weighted by its confidence z-score (median/MAD per
/// model over the split), votes become a softmax over the letters, and a model's score on a
/// question is the probability of the letter it chose. Abstaining models do not vote and get 0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Consensus {
    /// Softmax temperature over the summed vote weights.
    pub tau: f64,
    /// Steepness of the sigmoid mapping a z-score to a vote weight.
    pub z_scale: f64,
    /// Lower clamp of a vote weight.
    pub weight_min: f64,
    /// Upper clamp of a vote weight.
    pub weight_max: f64,
}

impl Default for Consensus {
    fn default() -> Self {
        Consensus {
            tau: 1.0,
            z_scale: 1.0,
            weight_min: 0.01,
            weight_max: 0.99,
        }
    }
}

/// Everything consensus scoring computes on a split.
#[derive(Clone, Debug, PartialEq)]
pub struct ConsensusOutput {
    /// `[question, model]` consensus scores (0 for an abstention).
    pub scores: Array2<f64>,
    /// `[question, model]` confidence z-scores (NaN where the confidence is unknown).
    pub z: Array2<f64>,
    /// Per-model (mu, sigma) of the confidences on this split.
    pub stats: Vec<LocScale>,
}

impl Consensus {
    /// Check the parameters: `tau` a finite number > 0, `z_scale` finite, `0 <= weight_min <=
    /// weight_max <= 1`.
    pub fn check(&self) -> Result<(), LabelError> {
        if !(self.tau > 0.0 && self.tau.is_finite()) {
            return Err(LabelError::Invalid(format!(
                "tau must be a finite number > 0, got {}",
                self.tau
            )));
        }
        if !self.z_scale.is_finite() {
            return Err(LabelError::Invalid(format!(
                "z_scale must be finite, got {}",
                self.z_scale
            )));
        }
        if !(0.0 <= self.weight_min && self.weight_min <= self.weight_max && self.weight_max <= 1.0)
        {
            return Err(LabelError::Invalid(format!(
                "need 0 <= weight_min <= weight_max <= 1, got {} and {}",
                self.weight_min, self.weight_max
            )));
        }
        Ok(())
    }

    /// Score a split.
    pub fn compute(&self, split: &Split) -> Result<ConsensusOutput, LabelError> {
        self.check()?;
        let (n, m) = split.responses.choice.dim();
        let stats = rgd_core::eval::confidence_stats(split);
        let mut z = Array2::from_elem((n, m), f64::NAN);
        let mut scores = Array2::zeros((n, m));
        let tau = self.tau.max(1e-6);
        let mut raw = [0f64; N_LETTERS];
        for q in 0..n {
            raw.fill(0.0);
            for j in 0..m {
                let zz = stats[j].z(split.responses.confidence[[q, j]]);
                z[[q, j]] = zz;
                if let Some(c) = split.responses.choice[[q, j]] {
                    // a model with an unknown confidence votes with weight 0.5 (z = 0)
                    let zv = if zz.is_nan() { 0.0 } else { zz };
                    let w = 1.0 / (1.0 + (-self.z_scale * zv).exp());
                    raw[c.index()] += w.clamp(self.weight_min, self.weight_max);
                }
            }
            let mx = raw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mut p = [0f64; N_LETTERS];
            let mut sum = 0.0;
            for (pi, r) in p.iter_mut().zip(raw.iter()) {
                *pi = ((r - mx) / tau).exp();
                sum += *pi;
            }
            for j in 0..m {
                if let Some(c) = split.responses.choice[[q, j]] {
                    scores[[q, j]] = p[c.index()] / sum;
                }
            }
        }
        Ok(ConsensusOutput { scores, z, stats })
    }
}

impl Labeler for Consensus {
    fn label(&self, split: &Split) -> rgd_core::Result<Labels> {
        Ok(Labels {
            kind: "consensus".into(),
            values: self.compute(split)?.scores,
        })
    }
    fn needs(&self) -> Needs {
        Needs {
            key: false,
            letters: true,
        }
    }
    fn check(&self) -> rgd_core::Result<()> {
        Ok(Consensus::check(self)?)
    }
}

/// Correct against the answer key: 1 when the model's letter equals the key (the generator's
/// key on generated data, the gold one on real data), else 0; an abstention is 0. Needs a key
/// on every question, or recorded correctness.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Key {}

/// The `key` labeler's name in code written before labelers were a kind.
pub type Correctness = Key;

impl Key {
    /// Label a split.
    pub fn compute(&self, split: &Split) -> Result<Array2<f64>, LabelError> {
        let (n, m) = split.responses.choice.dim();
        if let Some(c) = &split.responses.correct {
            return Ok(c.mapv(|r| f64::from(r as u8)));
        }
        let mut out = Array2::zeros((n, m));
        for (q, question) in split.questions.iter().enumerate() {
            let key = question
                .answer
                .ok_or_else(|| LabelError::MissingKey(question.id.clone()))?;
            for j in 0..m {
                out[[q, j]] = f64::from(split.responses.is_correct(q, j, Some(key)) as u8);
            }
        }
        Ok(out)
    }
}

impl Labeler for Key {
    fn label(&self, split: &Split) -> rgd_core::Result<Labels> {
        Ok(Labels {
            kind: "key".into(),
            values: self.compute(split)?,
        })
    }
    fn needs(&self) -> Needs {
        Needs {
            key: true,
            letters: false,
        }
    }
}

rgd_core::register!(labeler, "key", Key);
rgd_core::register!(
    labeler,
    "correctness",
    Key,
    Box::new,
    doc = "Alias of `key` (its name before labelers were a kind: `labels = \"correctness\"`)."
);
rgd_core::register!(labeler, "consensus", Consensus);
rgd_core::register!(labeler, "plurality", Plurality);
rgd_core::register!(labeler, "dawid_skene", DawidSkene);

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rgd_core::{Letter, Question, Responses};

    fn split(choice: Vec<Option<usize>>, conf: Vec<f64>, key: Option<usize>) -> Split {
        let m = choice.len();
        Split {
            name: "t".into(),
            questions: vec![Question {
                id: "q".into(),
                subject: "s".into(),
                text: String::new(),
                options: vec![],
                answer: key.and_then(Letter::from_index),
                source: None,
            }],
            responses: Responses {
                choice: Array2::from_shape_fn((1, m), |(_, j)| {
                    choice[j].and_then(Letter::from_index)
                }),
                confidence: Array2::from_shape_fn((1, m), |(_, j)| conf[j]),
                latency: None,
                correct: None,
                cost: None,
            },
            embeddings: Array2::zeros((1, 2)),
            generator_answer: None,
            call_failures: Default::default(),
        }
    }

    #[test]
    fn agreeing_models_share_a_score_and_abstainers_get_zero() {
        let s = split(vec![Some(0), Some(0), Some(1), None], vec![-0.5; 4], None);
        let out = Consensus::default().compute(&s).unwrap();
        // one question: z = 0 for everyone, weight 0.5 each; raw A = 1.0, B = 0.5
        let e = |x: f64| x.exp();
        let denom = e(1.0) + e(0.5) + 18.0;
        assert!((out.scores[[0, 0]] - e(1.0) / denom).abs() < 1e-12);
        assert_eq!(out.scores[[0, 0]], out.scores[[0, 1]]);
        assert!((out.scores[[0, 2]] - e(0.5) / denom).abs() < 1e-12);
        assert_eq!(out.scores[[0, 3]], 0.0);
    }

    #[test]
    fn correctness_needs_a_key() {
        let s = split(vec![Some(0), Some(1)], vec![-0.5; 2], Some(1));
        assert_eq!(
            Correctness::default().compute(&s).unwrap().row(0).to_vec(),
            vec![0.0, 1.0]
        );
        let s = split(vec![Some(0)], vec![-0.5], None);
        assert!(
            Correctness::default()
                .compute(&s)
                .unwrap_err()
                .to_string()
                .contains("no answer key")
        );
    }
}
