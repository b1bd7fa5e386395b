//! CASCAL (docs/cascal.md): consensus scores, per-model weighted spherical k-means on the
//! questions each model "shows proficiency" on, centroid merging and pruning, per-cluster model
//! rankings, and two-stage inference (subject, then nearest clusters) with a global fallback.
//! Its labels come from its own consensus scoring unless `labels` names a labeler; `cascal_gt`
//! is `cascal` with `labels = "key"` (correctness against the answer key).
//!
//! Deviations from the authors' code, all deterministic where theirs is random:
//! an unparseable answer abstains (no vote, consensus 0) instead of becoming a random letter;
//! centroid order after dropping empty clusters keeps creation order (theirs follows Python
//! set order); exact score ties rank the model listed first in the pool.

mod kmeans;
mod train;
mod trained;

/// The ceiling of `k_nearest`, in the config and in an artifact: far beyond any pool's number
/// of clusters, and small enough that its buffers can always be allocated.
pub const MAX_K_NEAREST: usize = 10_000;
use train::*;
use trained::*;
pub use trained::{Cluster, SubjectModel, TrainedCascal};

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use rgd_core::stats::LocScale;
use rgd_core::{Context, Labeler, Query, Router, Split, TrainedRouter};
use rgd_labelers::Consensus;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use kmeans::{kmeans, scaled_tol, silhouette_cosine};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum CascalError {
    /// The training split cannot be used.
    #[error("cannot train: {0}")]
    Train(String),
    /// A query cannot be routed.
    #[error("cannot route query `{id}`: {msg}")]
    Route {
        /// The query id.
        id: String,
        /// Why.
        msg: String,
    },
    /// A parameter is out of range.
    #[error("invalid parameter: {0}")]
    Invalid(String),
}

rgd_core::component_error!(CascalError, "cascal");

/// CASCAL, the query-only router of RGD: consensus scores + skill clusters, two-stage routing.
/// Every threshold and temperature has the authors' default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Cascal {
    /// Labels the cluster rankings average: a `[labelers.NAME]` or a labeler type (`key` reads
    /// the answer key); unset: its own consensus scores (`consensus` below) for `cascal`,
    /// `key` for `cascal_gt`.
    pub labels: Option<String>,
    /// Consensus scoring parameters (tau, z_scale, weight_min, weight_max) of its own labels
    /// (used when `labels` is unset).
    pub consensus: Consensus,
    /// Skip questions whose plurality share of the pool is below this.
    pub min_agreement: f64,
    /// Weight proficient questions by their agreement (false: weight 1).
    pub weighted: bool,
    /// Smallest k tried by the k-means.
    pub k_min: usize,
    /// Largest k tried by the k-means.
    pub k_max: usize,
    /// Below this best cosine silhouette a model gets one centroid.
    pub silhouette_threshold: f64,
    /// k-means iteration cap.
    pub kmeans_max_iter: usize,
    /// k-means tolerance (scaled by the data's mean variance, as in scikit-learn).
    pub kmeans_tol: f64,
    /// A model's proficient questions of one subject beyond this many: k (and the centroids)
    /// are fitted on a seeded sample of this size, then every question is assigned to its
    /// nearest centroid (0: always all of them). Exact below it; see BENCHMARKS.md's scale
    /// section for the error above it.
    pub kmeans_max_points: usize,
    /// Centroids closer than this cosine distance merge (0 disables merging).
    pub merge_threshold: f64,
    /// Fold clusters whose top models coincide.
    pub prune: bool,
    /// Jaccard similarity of two clusters' top models at or above which they fold.
    pub prune_jaccard: f64,
    /// How many top models pruning compares.
    pub prune_top: usize,
    /// Decimals cluster scores are rounded to (the authors round to 3; negative: no rounding).
    pub score_decimals: i32,
    /// Decimals the global fallback scores are rounded to (the authors: 4; negative: none).
    pub global_decimals: i32,
    /// Route to the nearest subject first (false: nearest centroid of any subject).
    pub two_stage: bool,
    /// Number of nearest clusters combined (1 to 10,000).
    pub k_nearest: usize,
    /// Softmax temperature over negative cluster distances.
    pub distance_temperature: f64,
    /// Sharpen each cluster's scores with a softmax at this temperature.
    pub sharpen: bool,
    /// Temperature of the sharpening softmax.
    pub scoring_temperature: f64,
    /// Blend in the global ranking when the query is far from every centroid.
    pub fallback: bool,
    /// Distance to the nearest centroid beyond which the fallback starts.
    pub fallback_distance: f64,
    /// Distance over which the fallback weight grows from 0 to 1.
    pub fallback_width: f64,
    /// k-means seed.
    pub seed: u64,
}

impl Default for Cascal {
    fn default() -> Self {
        Cascal {
            labels: None,
            consensus: Consensus::default(),
            min_agreement: 0.5,
            weighted: true,
            k_min: 2,
            k_max: 5,
            silhouette_threshold: 0.05,
            kmeans_max_iter: 200,
            kmeans_tol: 1e-4,
            kmeans_max_points: 4096,
            merge_threshold: 0.15,
            prune: true,
            prune_jaccard: 0.95,
            prune_top: 3,
            score_decimals: 3,
            global_decimals: 4,
            two_stage: true,
            k_nearest: 3,
            distance_temperature: 0.1,
            sharpen: true,
            scoring_temperature: 0.1,
            fallback: true,
            fallback_distance: 0.5,
            fallback_width: 0.2,
            seed: 0,
        }
    }
}

impl Router for Cascal {
    fn check(&self) -> rgd_core::Result<()> {
        Ok(Cascal::check(self)?)
    }
    fn labels(&self) -> Option<&str> {
        Some(self.labels.as_deref().unwrap_or("consensus"))
    }
    fn train(
        &self,
        train: &Split,
        models: &[String],
        ctx: &Context,
    ) -> rgd_core::Result<Box<dyn TrainedRouter>> {
        let labels = match &self.labels {
            None => self.own_labels(train)?,
            Some(name) => ctx.labels(name, train)?.values,
        };
        Ok(Box::new(self.fit_labeled(train, models, &labels)?))
    }
}

/// `cascal_gt`: CASCAL-GT, the paper's query-answer variant (`labels` defaults to `key`).
fn cascal_gt(mut c: Cascal) -> Box<dyn Router> {
    c.labels.get_or_insert_with(|| "key".into());
    Box::new(c)
}

impl Cascal {
    /// Its own consensus labels of `train` (when `labels` is unset).
    fn own_labels(&self, train: &Split) -> Result<Array2<f64>, CascalError> {
        Ok(self
            .consensus
            .label(train)
            .map_err(|e| CascalError::Train(e.to_string()))?
            .values)
    }

    /// Train CASCAL on a split, with the labels `labels` names resolved among the built-in
    /// labeler types (the pipeline resolves `[labelers.NAME]` tables through the context).
    pub fn fit(&self, train: &Split, models: &[String]) -> Result<TrainedCascal, CascalError> {
        let labels = match &self.labels {
            None => self.own_labels(train)?,
            Some(name) => {
                Context::new(".")
                    .labels(name, train)
                    .map_err(|e| CascalError::Train(e.to_string()))?
                    .values
            }
        };
        self.fit_labeled(train, models, &labels)
    }

    /// Train CASCAL on a split with the given `[question, model]` labels.
    pub fn fit_labeled(
        &self,
        train: &Split,
        models: &[String],
        labels: &Array2<f64>,
    ) -> Result<TrainedCascal, CascalError> {
        self.check()?;
        if train.is_empty() {
            return Err(CascalError::Train(
                "the training split has no question".into(),
            ));
        }
        if models.is_empty() {
            return Err(CascalError::Train("the pool has no model".into()));
        }
        if labels.dim() != (train.len(), models.len()) {
            return Err(CascalError::Train(format!(
                "{:?} labels for {} questions and {} models",
                labels.dim(),
                train.len(),
                models.len()
            )));
        }
        let xn = normalize_rows(train.embeddings.clone());
        let groups = train.by_subject();
        let subjects: Vec<SubjectModel> = groups
            .par_iter()
            .map(|(s, idx)| self.train_subject(train, &xn, labels, models, s, idx))
            .collect();
        let n = train.len() as f64;
        let global = (0..models.len())
            .map(|j| round_to(labels.column(j).sum() / n, self.global_decimals))
            .collect();
        let t = TrainedCascal {
            models: models.to_vec(),
            subjects,
            global,
            train_stats: rgd_core::eval::confidence_stats(train),
            params: InferParams {
                two_stage: self.two_stage,
                k_nearest: self.k_nearest,
                distance_temperature: self.distance_temperature,
                sharpen: self.sharpen,
                scoring_temperature: self.scoring_temperature,
                fallback: self.fallback,
                fallback_distance: self.fallback_distance,
                fallback_width: self.fallback_width,
            },
            derived: std::sync::OnceLock::new(),
        };
        t.d();
        Ok(t)
    }
}

rgd_core::register!(router, "cascal", Cascal);
rgd_core::register!(
    router,
    "cascal_gt",
    Cascal,
    cascal_gt,
    doc =
        "CASCAL-GT: alias of `cascal` with `labels = \"key\"` (the paper's query-answer variant)."
);

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rgd_core::{Letter, Question, Responses};

    /// Two subjects on orthogonal axes; in subject `a` model 0 agrees with the majority, in
    /// subject `b` model 1 does. A query near each axis must go to that subject's model.
    fn world() -> (Split, Vec<String>) {
        let models: Vec<String> = ["m0", "m1", "m2"].iter().map(|s| s.to_string()).collect();
        let n = 40;
        let mut questions = Vec::new();
        let mut choice = Array2::from_elem((n, 3), None);
        let mut confidence = Array2::from_elem((n, 3), -0.5);
        let mut emb = Array2::<f32>::zeros((n, 4));
        for q in 0..n {
            let subj = if q < 20 { "a" } else { "b" };
            emb[[q, if q < 20 { 0 } else { 1 }]] = 1.0;
            emb[[q, 2 + q % 2]] = 0.1 * (q % 5) as f32;
            let good = if q < 20 { 0 } else { 1 };
            for j in 0..3 {
                let l = if j == good || j == 2 { 0 } else { 1 + q % 3 };
                choice[[q, j]] = Letter::from_index(l);
                confidence[[q, j]] = if j == good { -0.1 } else { -0.9 };
            }
            questions.push(Question {
                id: q.to_string(),
                subject: subj.into(),
                text: format!("q{q}"),
                options: vec!["x".into(); 4],
                answer: Letter::from_index(0),
                source: None,
            });
        }
        let split = Split {
            name: "train".into(),
            questions,
            responses: Responses {
                choice,
                confidence,
                latency: None,
                correct: None,
                cost: None,
            },
            embeddings: emb,
            generator_answer: None,
            call_failures: Default::default(),
        };
        (split, models)
    }

    #[test]
    fn k_means_on_a_sample_finds_the_clusters_of_all_the_points() {
        use rand::Rng;
        // 3 clusters of 2,000 noisy unit vectors in 16-d, beyond a sample cap of 600
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let n = 6000;
        let mut x = Array2::<f32>::zeros((n, 16));
        for (i, mut r) in x.rows_mut().into_iter().enumerate() {
            r[i % 3] = 1.0;
            r.mapv_inplace(|v| v + rng.random_range(-0.25..0.25));
        }
        let x = normalize_rows(x);
        let rows: Vec<usize> = (0..n).collect();
        let w = vec![1.0; n];
        let fit = |cap: usize| {
            let c = Cascal {
                kmeans_max_points: cap,
                ..Cascal::default()
            };
            c.auto_kmeans(x.view(), &rows, &w, 9)
        };
        let (c_all, l_all) = fit(0);
        let (c_s, l_s) = fit(600);
        assert_eq!((c_all.nrows(), c_s.nrows()), (3, 3));
        // the same partition (labels may be permuted): each sampled label maps to one exact one
        let mut pairs = std::collections::HashMap::new();
        for (a, b) in l_all.iter().zip(&l_s) {
            *pairs.entry((*a, *b)).or_insert(0usize) += 1;
        }
        let agree: usize = (0..3)
            .map(|b| {
                (0..3)
                    .map(|a| pairs.get(&(a, b)).copied().unwrap_or(0))
                    .max()
                    .unwrap()
            })
            .sum();
        assert!(agree as f64 >= 0.99 * n as f64, "{agree} of {n} agree");
        // every point goes to its own generating cluster
        for (i, &l) in l_s.iter().enumerate() {
            assert_eq!(l, l_s[i % 3], "point {i}");
        }
    }

    #[test]
    fn routes_each_subject_to_the_model_that_agrees_with_the_majority() {
        let (split, models) = world();
        let t = Cascal::default().fit(&split, &models).unwrap();
        assert_eq!(t.subjects.len(), 2);
        let mut out = vec![0.0; 3];
        for (axis, want) in [(0usize, 0usize), (1, 1)] {
            let mut e = ndarray::Array1::<f32>::zeros(4);
            e[axis] = 1.0;
            let q = Query {
                id: "t",
                text: "t",
                embedding: e.view(),
            };
            t.score(&q, &mut out).unwrap();
            assert_eq!(rgd_core::rank(&out)[0], want, "axis {axis}: {out:?}");
            assert!(
                t.explain(&q)
                    .unwrap()
                    .contains(if axis == 0 { "`a`" } else { "`b`" })
            );
        }
        // batched and one-by-one scoring agree
        let batch = t.score_split(&split).unwrap();
        let each = rgd_core::score_each(&t, &split).unwrap();
        assert!((batch - each).mapv(f64::abs).iter().all(|d| *d < 1e-9));
    }

    #[test]
    fn artifact_round_trips_and_config_round_trips() {
        let (split, models) = world();
        let t: Box<dyn TrainedRouter> = Box::new(Cascal::default().fit(&split, &models).unwrap());
        let json = serde_json::to_string(&t).unwrap();
        let back: Box<dyn TrainedRouter> = serde_json::from_str(&json).unwrap();
        assert_eq!(
            t.score_split(&split).unwrap(),
            back.score_split(&split).unwrap()
        );
        let c = Cascal {
            k_nearest: 2,
            labels: Some("key".into()),
            ..Default::default()
        };
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<Cascal>(&text).unwrap(), c);
    }

    #[test]
    fn bad_parameters_are_refused() {
        let (split, models) = world();
        let e = Cascal {
            k_nearest: 0,
            ..Default::default()
        }
        .fit(&split, &models)
        .unwrap_err();
        assert!(e.to_string().contains("k_nearest"));
        let e = Cascal {
            scoring_temperature: f64::NAN,
            ..Default::default()
        }
        .fit(&split, &models)
        .unwrap_err();
        assert!(e.to_string().contains("scoring_temperature"));
    }
}
