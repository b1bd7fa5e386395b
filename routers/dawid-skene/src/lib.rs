//! `dawid_skene`: the classical label-free estimator of annotator accuracy (Dawid & Skene
//! 1979, in its one-coin form) applied to the pool. Within each training subject, EM alternates
//! between the posterior over each question's true letter and each model's accuracy (a wrong
//! answer is any other option, uniformly). No answer key is read. A query is routed to the
//! training subject with the nearest centroid (cosine of the mean embedding), and the models
//! are ranked by their estimated accuracy there.

use rgd_core::{Context, Query, Router, Split, Supervision, TrainedRouter};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum DsError {
    /// Training is impossible.
    #[error("cannot train: {0}")]
    Train(String),
}

rgd_core::component_error!(DsError, "dawid_skene router");

/// Per-subject EM estimates of each model's accuracy from the pool's agreement.
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

/// One subject's estimates.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubjectEstimate {
    /// The subject.
    pub subject: String,
    /// Unit mean embedding of its training questions.
    pub centroid: Vec<f32>,
    /// Estimated accuracy per model.
    pub accuracy: Vec<f64>,
    /// EM iterations run.
    pub iterations: usize,
}

/// The trained router.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainedDawidSkene {
    models: Vec<String>,
    /// Per subject.
    pub subjects: Vec<SubjectEstimate>,
}

/// One-coin Dawid–Skene on the questions `idx` of `split`: (accuracy per model, iterations).
pub fn estimate(split: &Split, idx: &[usize], cfg: &DawidSkene) -> (Vec<f64>, usize) {
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
    (acc, iters)
}

impl Router for DawidSkene {
    fn check(&self) -> rgd_core::Result<()> {
        let bad = |msg: String| Err(rgd_core::Error::Data(msg));
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
    fn train(
        &self,
        train: &Split,
        models: &[String],
        _ctx: &Context,
    ) -> rgd_core::Result<Box<dyn TrainedRouter>> {
        if train.is_empty() {
            return Err(DsError::Train("the training split has no question".into()).into());
        }
        let d = train.embeddings.ncols();
        let subjects = train
            .by_subject()
            .into_iter()
            .map(|(subject, idx)| {
                let (accuracy, iterations) = estimate(train, &idx, self);
                let mut c = vec![0f32; d];
                for &q in &idx {
                    for (x, e) in c.iter_mut().zip(train.embedding(q)) {
                        *x += e;
                    }
                }
                let n = c.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                c.iter_mut().for_each(|x| *x /= n);
                SubjectEstimate {
                    subject,
                    centroid: c,
                    accuracy,
                    iterations,
                }
            })
            .collect();
        Ok(Box::new(TrainedDawidSkene {
            models: models.to_vec(),
            subjects,
        }))
    }
    fn supervision(&self) -> Supervision {
        Supervision::QueryOnly
    }
}

impl TrainedDawidSkene {
    fn nearest(&self, q: &Query<'_>) -> rgd_core::Result<(usize, f32)> {
        let d = self.subjects.first().map(|s| s.centroid.len()).unwrap_or(0);
        rgd_core::check_dim(q, d)?;
        let mut best = (0, f32::NEG_INFINITY);
        for (i, s) in self.subjects.iter().enumerate() {
            let c: f32 = s
                .centroid
                .iter()
                .zip(q.embedding.iter())
                .map(|(a, b)| a * b)
                .sum();
            if c > best.1 {
                best = (i, c);
            }
        }
        Ok(best)
    }
}

#[typetag::serde(name = "dawid_skene")]
impl TrainedRouter for TrainedDawidSkene {
    fn models(&self) -> &[String] {
        &self.models
    }
    fn validate(&self) -> rgd_core::Result<()> {
        use rgd_core::artifact;
        artifact::models(&self.models)?;
        let d = self.subjects.first().map(|s| s.centroid.len()).unwrap_or(0);
        if d == 0 {
            return Err(rgd_core::Error::Data(
                "artifact field `subjects`: no subject with a centroid".into(),
            ));
        }
        for (i, s) in self.subjects.iter().enumerate() {
            let f = |x: &str| format!("subjects[{i}].{x}");
            artifact::len(
                &f("centroid"),
                s.centroid.len(),
                d,
                "the embedding dimension",
            )?;
            artifact::finite(&f("centroid"), &s.centroid)?;
            artifact::len(
                &f("accuracy"),
                s.accuracy.len(),
                self.models.len(),
                "one per model",
            )?;
            for &a in &s.accuracy {
                artifact::range(&f("accuracy"), a, 0.0, 1.0)?;
            }
        }
        Ok(())
    }
    fn score(&self, query: &Query<'_>, out: &mut [f64]) -> rgd_core::Result<()> {
        let (i, _) = self.nearest(query)?;
        out.copy_from_slice(&self.subjects[i].accuracy);
        Ok(())
    }
    fn explain(&self, query: &Query<'_>) -> Option<String> {
        let (i, c) = self.nearest(query).ok()?;
        let s = &self.subjects[i];
        Some(format!(
            "nearest training subject `{}` (cosine {c:.2}); estimated accuracies {}",
            s.subject,
            self.models
                .iter()
                .zip(&s.accuracy)
                .map(|(m, a)| format!("{m} {a:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

rgd_core::register!(router, "dawid_skene", DawidSkene);

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rgd_core::{Letter, Question, Responses};

    #[test]
    fn recovers_accuracies_without_a_key() {
        // deterministic pseudo-random answers: true accuracies 0.9, 0.6, 0.4, 0.35, 0.3
        let truth = [0.9, 0.6, 0.4, 0.35, 0.3];
        let n = 2000;
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut choice = Array2::from_elem((n, 5), None);
        for q in 0..n {
            for (j, a) in truth.iter().enumerate() {
                let c = if next() < *a {
                    0
                } else {
                    1 + (next() * 3.0) as usize % 3
                };
                choice[[q, j]] = Letter::from_index(c);
            }
        }
        let split = Split {
            name: "t".into(),
            questions: (0..n)
                .map(|i| Question {
                    id: i.to_string(),
                    subject: "s".into(),
                    text: String::new(),
                    options: vec!["x".into(); 4],
                    answer: None,
                    source: None,
                })
                .collect(),
            responses: Responses {
                choice,
                confidence: Array2::from_elem((n, 5), -1.0),
                latency: None,
                correct: None,
                cost: None,
            },
            embeddings: Array2::from_elem((n, 2), 1.0),
            generator_answer: None,
            call_failures: Default::default(),
        };
        let idx: Vec<usize> = (0..n).collect();
        let (acc, _) = estimate(&split, &idx, &DawidSkene::default());
        for (a, t) in acc.iter().zip(truth) {
            assert!((a - t).abs() < 0.04, "{acc:?}");
        }
        let models: Vec<String> = (0..5).map(|m| format!("m{m}")).collect();
        let r = DawidSkene::default()
            .train(&split, &models, &Context::new("."))
            .unwrap();
        let scores = r.score_split(&split).unwrap();
        assert_eq!(rgd_core::rank(&scores.row(0).to_vec())[0], 0);
    }
}
