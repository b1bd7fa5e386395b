//! Reference routers: `best_single` (always the model best on the training labels) and
//! `random` (a uniformly random model per query, deterministic for a seed).

use rgd_core::{Context, Query, Router, Split, Supervision, TrainedRouter};
// the built-in labelers `labels = "TYPE"` names are registered wherever this router is linked
use rgd_labelers as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// Training is impossible.
    #[error("cannot train: {0}")]
    Train(String),
}

rgd_core::component_error!(BaselineError, "baseline router");

/// Always routes to the model with the best mean label on the training data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BestSingle {
    /// The labels it averages: a `[labelers.NAME]` or a labeler type (`key`: correct against
    /// the key; `consensus`, `plurality`, `dawid_skene`: no key).
    pub labels: String,
}

impl Default for BestSingle {
    fn default() -> Self {
        BestSingle {
            labels: "key".into(),
        }
    }
}

/// A fixed score per model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FixedScores {
    models: Vec<String>,
    scores: Vec<f64>,
}

#[typetag::serde(name = "fixed_scores")]
impl TrainedRouter for FixedScores {
    fn models(&self) -> &[String] {
        &self.models
    }
    fn score(&self, _query: &Query<'_>, out: &mut [f64]) -> rgd_core::Result<()> {
        out.copy_from_slice(&self.scores);
        Ok(())
    }
    fn explain(&self, _query: &Query<'_>) -> Option<String> {
        Some("the same ranking for every query (mean training label per model)".into())
    }
    fn validate(&self) -> rgd_core::Result<()> {
        use rgd_core::artifact;
        artifact::models(&self.models)?;
        artifact::len(
            "scores",
            self.scores.len(),
            self.models.len(),
            "one per model",
        )?;
        artifact::finite("scores", &self.scores)
    }
}

impl Router for BestSingle {
    fn train(
        &self,
        train: &Split,
        models: &[String],
        ctx: &Context,
    ) -> rgd_core::Result<Box<dyn TrainedRouter>> {
        if train.is_empty() {
            return Err(BaselineError::Train("the training split has no question".into()).into());
        }
        let labels = ctx.labels(&self.labels, train)?;
        let scores = labels
            .values
            .columns()
            .into_iter()
            .map(|c| c.mean().unwrap_or(0.0))
            .collect();
        Ok(Box::new(FixedScores {
            models: models.to_vec(),
            scores,
        }))
    }
    fn labels(&self) -> Option<&str> {
        Some(&self.labels)
    }
}

/// Routes each query to a uniformly random model (seeded; the same query always gets the same
/// draw). Its expected accuracy is also reported as the `random` reference.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Random {
    /// Seed of the per-query draws.
    pub seed: u64,
}

/// The trained random router.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainedRandom {
    models: Vec<String>,
    seed: u64,
}

/// SplitMix64 of (seed, query id, model): a stable per-query draw without global state.
fn draw(seed: u64, id: &str, m: usize) -> u64 {
    let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
    for b in id.bytes().chain((m as u64).to_le_bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[typetag::serde(name = "random")]
impl TrainedRouter for TrainedRandom {
    fn models(&self) -> &[String] {
        &self.models
    }
    fn score(&self, query: &Query<'_>, out: &mut [f64]) -> rgd_core::Result<()> {
        for (m, o) in out.iter_mut().enumerate() {
            *o = (draw(self.seed, query.id, m) >> 11) as f64 / (1u64 << 53) as f64;
        }
        Ok(())
    }
}

impl Router for Random {
    fn train(
        &self,
        _train: &Split,
        models: &[String],
        _ctx: &Context,
    ) -> rgd_core::Result<Box<dyn TrainedRouter>> {
        Ok(Box::new(TrainedRandom {
            models: models.to_vec(),
            seed: self.seed,
        }))
    }
    fn supervision(&self) -> Supervision {
        Supervision::None
    }
}

rgd_core::register!(router, "best_single", BestSingle);
rgd_core::register!(router, "random", Random);

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rgd_core::{Letter, Question, Responses};

    fn split() -> Split {
        // model 1 matches the key on 3 of 4 questions, model 0 on 1
        let ch = [[0, 1], [1, 1], [2, 1], [0, 0]];
        Split {
            name: "t".into(),
            questions: (0..4)
                .map(|i| Question {
                    id: i.to_string(),
                    subject: "s".into(),
                    text: String::new(),
                    options: vec![],
                    answer: Letter::from_index(1),
                    source: None,
                })
                .collect(),
            responses: Responses {
                choice: Array2::from_shape_fn((4, 2), |(q, m)| Letter::from_index(ch[q][m])),
                confidence: Array2::from_elem((4, 2), -0.5),
                latency: None,
                correct: None,
                cost: None,
            },
            embeddings: Array2::zeros((4, 2)),
            generator_answer: None,
            call_failures: Default::default(),
        }
    }

    #[test]
    fn best_single_picks_the_model_best_on_the_key() {
        let models = vec!["a".to_string(), "b".to_string()];
        let t = BestSingle::default()
            .train(&split(), &models, &Context::new("."))
            .unwrap();
        let s = t.score_split(&split()).unwrap();
        assert!(s.rows().into_iter().all(|r| r[1] > r[0]));
        assert_eq!(s[[0, 1]], 0.75);
    }

    #[test]
    fn random_is_deterministic_per_query_and_spreads() {
        let models: Vec<String> = (0..4).map(|i| i.to_string()).collect();
        let t = Random { seed: 7 }
            .train(&split(), &models, &Context::new("."))
            .unwrap();
        let mut counts = [0usize; 4];
        let mut a = vec![0.0; 4];
        let mut b = vec![0.0; 4];
        let e = ndarray::Array1::<f32>::zeros(2);
        for i in 0..4000 {
            let id = i.to_string();
            let q = Query {
                id: &id,
                text: "",
                embedding: e.view(),
            };
            t.score(&q, &mut a).unwrap();
            t.score(&q, &mut b).unwrap();
            assert_eq!(a, b);
            counts[rgd_core::rank(&a)[0]] += 1;
        }
        assert!(
            counts.iter().all(|&c| (850..1150).contains(&c)),
            "{counts:?}"
        );
    }
}
