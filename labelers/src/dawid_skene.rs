//! One-coin Dawid–Skene (Dawid & Skene 1979): within each subject, EM alternates between the
//! posterior over each question's true letter and each model's accuracy (a wrong answer is
//! any other option, uniformly). No answer key is read.

use ndarray::Array2;
use rgd_core::{Labeler, Labels, Needs, Split};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::LabelError;

/// The posterior probability that the model's answer is right, by one-coin Dawid–Skene EM on
/// the pool's answers within each subject (an abstention is 0). Query-only: no key is read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DawidSkene {
    /// EM iterations at most.
    pub iterations: usize,
    /// Stop when no accuracy moves more than this.
    pub tolerance: f64,
    /// Beta(prior, prior) smoothing of each accuracy estimate.
    pub prior: f64,
}

impl Default for DawidSkene {
    fn default() -> Self {
        DawidSkene {
            iterations: 100,
            tolerance: 1e-6,
            prior: 1.0,
        }
    }
}

impl DawidSkene {
    /// Check the parameters: `prior` and `tolerance` finite and >= 0, `iterations` >= 1.
    pub fn check(&self) -> Result<(), LabelError> {
        let bad = |msg: String| Err(LabelError::Invalid(msg));
        if !(self.prior >= 0.0 && self.prior.is_finite()) {
            return bad(format!(
                "`prior` (Beta smoothing) must be a finite number >= 0, got {}",
                self.prior
            ));
        }
        if !(self.tolerance >= 0.0 && self.tolerance.is_finite()) {
            return bad(format!(
                "`tolerance` must be a finite number >= 0, got {}",
                self.tolerance
            ));
        }
        if self.iterations == 0 {
            return bad("`iterations` must be >= 1".into());
        }
        Ok(())
    }
}

/// What EM found on a set of questions.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    /// Estimated accuracy per model.
    pub accuracy: Vec<f64>,
    /// EM iterations run.
    pub iterations: usize,
    /// Per question (in the order given), the posterior over its letters.
    pub posterior: Vec<Vec<f64>>,
}

/// One-coin Dawid–Skene on the questions `idx` of `split`.
pub fn estimate(split: &Split, idx: &[usize], cfg: &DawidSkene) -> Estimate {
    let m = split.n_models();
    let ch = &split.responses.choice;
    // letters per question: its options, at least the highest letter answered
    let n_letters: Vec<usize> = idx
        .iter()
        .map(|&q| {
            let hi = ch
                .row(q)
                .iter()
                .flatten()
                .map(|l| l.index() + 1)
                .max()
                .unwrap_or(1);
            split.questions[q].options.len().max(hi).max(2)
        })
        .collect();
    // start from the plurality vote
    let mut post: Vec<Vec<f64>> = idx
        .iter()
        .zip(&n_letters)
        .map(|(&q, &l)| {
            let mut p = vec![0.0; l];
            for c in ch.row(q).iter().flatten() {
                p[c.index()] += 1.0;
            }
            let s: f64 = p.iter().sum();
            if s > 0.0 {
                p.iter_mut().for_each(|x| *x /= s);
            } else {
                p.iter_mut().for_each(|x| *x = 1.0 / l as f64);
            }
            p
        })
        .collect();
    let mut acc = vec![0.5; m];
    let mut iters = 0;
    for it in 0..cfg.iterations.max(1) {
        iters = it + 1;
        // M-step: accuracy = expected share of a model's answers that are the true letter
        let mut new = vec![0.0; m];
        for (j, a) in new.iter_mut().enumerate() {
            let (mut hit, mut n) = (0.0, 0.0);
            for (k, &q) in idx.iter().enumerate() {
                if let Some(c) = ch[[q, j]] {
                    hit += post[k][c.index()];
                    n += 1.0;
                }
            }
            *a = (hit + cfg.prior) / (n + 2.0 * cfg.prior);
        }
        let moved = new
            .iter()
            .zip(&acc)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        acc = new;
        // E-step (uniform prior over letters)
        for (k, &q) in idx.iter().enumerate() {
            let l = n_letters[k];
            let mut logp = vec![0.0f64; l];
            for (j, a) in acc.iter().enumerate() {
                if let Some(c) = ch[[q, j]] {
                    let a = a.clamp(1e-6, 1.0 - 1e-6);
                    let wrong = ((1.0 - a) / (l - 1) as f64).ln();
                    for (t, lp) in logp.iter_mut().enumerate() {
                        *lp += if t == c.index() { a.ln() } else { wrong };
                    }
                }
            }
            let mx = logp.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = logp.iter().map(|x| (x - mx).exp()).sum();
            post[k] = logp.iter().map(|x| (x - mx).exp() / z).collect();
        }
        if moved < cfg.tolerance {
            break;
        }
    }
    Estimate {
        accuracy: acc,
        iterations: iters,
        posterior: post,
    }
}

/// `[question, model]`: the posterior probability of the letter each model chose (0 for an
/// abstention), EM run per subject of `split`.
pub fn posteriors(split: &Split, cfg: &DawidSkene) -> Array2<f64> {
    let mut out = Array2::zeros((split.len(), split.n_models()));
    for (_, idx) in split.by_subject() {
        let e = estimate(split, &idx, cfg);
        for (k, &q) in idx.iter().enumerate() {
            for j in 0..split.n_models() {
                if let Some(c) = split.responses.choice[[q, j]] {
                    out[[q, j]] = e.posterior[k].get(c.index()).copied().unwrap_or(0.0);
                }
            }
        }
    }
    out
}

impl Labeler for DawidSkene {
    fn label(&self, split: &Split) -> rgd_core::Result<Labels> {
        self.check()?;
        Ok(Labels {
            kind: "dawid_skene".into(),
            values: posteriors(split, self),
        })
    }
    fn needs(&self) -> Needs {
        Needs {
            key: false,
            letters: true,
        }
    }
    fn check(&self) -> rgd_core::Result<()> {
        Ok(DawidSkene::check(self)?)
    }
}
