//! A dynamic-library rgd plugin to copy: a router, a filter and a labeler, exported in one line.
//!
//! Build it (`cargo build --release -p rgd-plugin-template`), then name the library in a
//! pipeline: `plugins = ["target/release/librgd_plugin_template.so"]` and use its types:
//! `[routers.centroid] type = "centroid"`. The library must be built by the same rustc and
//! against the same rgd-core version as the `rgd` that loads it (checked at load).

use ndarray::{Array1, Array2};
use rgd_core::{
    Context, Filter, FilterOutcome, Labeler, Labels, Needs, Query, Result, Router, Split,
    Supervision, TrainedRouter, check_dim,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Nearest centroid: each model's score is the cosine between the query and the mean
/// embedding of the training questions it answered with the majority of the pool (no key
/// needed), plus `prior` times its overall agreement with the majority.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Centroid {
    /// Weight of a model's overall agreement with the pool's majority.
    pub prior: f64,
}

impl Default for Centroid {
    fn default() -> Self {
        Centroid { prior: 0.5 }
    }
}

/// The pool's plurality answer to each question (ties: the first letter).
fn plurality(split: &Split) -> Vec<Option<rgd_core::Letter>> {
    (0..split.len())
        .map(|q| {
            let mut counts: BTreeMap<rgd_core::Letter, usize> = BTreeMap::new();
            for c in split.responses.choice.row(q).iter().flatten() {
                *counts.entry(*c).or_default() += 1;
            }
            let best = counts.values().copied().max()?;
            counts.into_iter().find(|(_, n)| *n == best).map(|(l, _)| l)
        })
        .collect()
}

fn unit(v: Array1<f64>) -> Array1<f64> {
    let n = v.dot(&v).sqrt();
    if n > 0.0 { v / n } else { v }
}

impl Router for Centroid {
    fn train(
        &self,
        train: &Split,
        models: &[String],
        _ctx: &Context,
    ) -> Result<Box<dyn TrainedRouter>> {
        let majority = plurality(train);
        let d = train.embeddings.ncols();
        let mut centroids = Array2::<f64>::zeros((models.len(), d));
        let mut agreement = vec![0.0; models.len()];
        for (m, mut row) in centroids.rows_mut().into_iter().enumerate() {
            let mut sum = Array1::<f64>::zeros(d);
            let mut n = 0usize;
            for (q, maj) in majority.iter().enumerate() {
                if maj.is_some() && train.responses.choice[[q, m]] == *maj {
                    sum += &train.embedding(q).mapv(f64::from);
                    n += 1;
                }
            }
            agreement[m] = n as f64 / train.len().max(1) as f64;
            row.assign(&unit(sum));
        }
        Ok(Box::new(TrainedCentroid {
            models: models.to_vec(),
            centroids,
            prior: agreement.iter().map(|a| self.prior * a).collect(),
        }))
    }
    fn supervision(&self) -> Supervision {
        Supervision::QueryOnly
    }
}

/// A trained [`Centroid`] router.
#[derive(Debug, Serialize, Deserialize)]
pub struct TrainedCentroid {
    models: Vec<String>,
    centroids: Array2<f64>,
    prior: Vec<f64>,
}

#[typetag::serde(name = "centroid")]
impl TrainedRouter for TrainedCentroid {
    fn models(&self) -> &[String] {
        &self.models
    }
    fn validate(&self) -> Result<()> {
        use rgd_core::artifact;
        artifact::models(&self.models)?;
        artifact::len(
            "centroids (rows)",
            self.centroids.nrows(),
            self.models.len(),
            "one per model",
        )?;
        artifact::len(
            "prior",
            self.prior.len(),
            self.models.len(),
            "one per model",
        )?;
        artifact::finite("centroids", &self.centroids)?;
        artifact::finite("prior", &self.prior)
    }
    fn score(&self, query: &Query<'_>, out: &mut [f64]) -> Result<()> {
        check_dim(query, self.centroids.ncols())?;
        let q = unit(query.embedding.mapv(f64::from));
        for (m, o) in out.iter_mut().enumerate() {
            *o = self.centroids.row(m).dot(&q) + self.prior[m];
        }
        Ok(())
    }
}

/// Drops training questions shorter than `min_words` words.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MinWords {
    /// Minimum number of words in a question's text.
    pub min_words: usize,
}

impl Default for MinWords {
    fn default() -> Self {
        MinWords { min_words: 4 }
    }
}

impl Filter for MinWords {
    fn filter(&self, split: &Split, _models: &[String], _ctx: &Context) -> Result<FilterOutcome> {
        let keep: Vec<bool> = split
            .questions
            .iter()
            .map(|q| q.text.split_whitespace().count() >= self.min_words)
            .collect();
        let dropped = keep.iter().filter(|k| !**k).count();
        Ok(FilterOutcome {
            keep,
            removed: BTreeMap::from([("too short".to_string(), dropped)]),
        })
    }
}

/// A model's label on a question is the share of the other models that chose the same letter
/// (0 for an abstention): query-only, no key.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PeerShare {}

impl Labeler for PeerShare {
    fn label(&self, split: &Split) -> Result<Labels> {
        let choice = &split.responses.choice;
        let (n, m) = choice.dim();
        let others = (m.max(2) - 1) as f64;
        let values = Array2::from_shape_fn((n, m), |(q, j)| match choice[[q, j]] {
            None => 0.0,
            Some(c) => {
                let same = (0..m)
                    .filter(|&k| k != j && choice[[q, k]] == Some(c))
                    .count();
                same as f64 / others
            }
        });
        Ok(Labels {
            kind: "peer_share".into(),
            values,
        })
    }
    fn needs(&self) -> Needs {
        Needs {
            key: false,
            letters: true,
        }
    }
}

rgd_core::export_plugin!(router "centroid" => Centroid, filter "min_words" => MinWords, labeler "peer_share" => PeerShare);
