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

/// Per-subject EM estimates of each model's accuracy from the pool's agreement (the
/// `dawid_skene` labeler's EM), routed to the nearest subject's most accurate model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct DawidSkene(pub rgd_labelers::DawidSkene);

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
    let e = rgd_labelers::estimate(split, idx, &cfg.0);
    (e.accuracy, e.iterations)
}

impl Router for DawidSkene {
    fn check(&self) -> rgd_core::Result<()> {
        Ok(self.0.check()?)
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

rgd_core::register!(
    router,
    "dawid_skene",
    DawidSkene,
    Box::new,
    doc = "Per-subject Dawid–Skene estimates of each model's accuracy from the pool's agreement (no key), routed to the nearest subject's most accurate model."
);

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
