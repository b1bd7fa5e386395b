//! `results.json`: the contract other tools read; it serializes and deserializes.

use rgd_core::eval::{Accuracy, ReferenceScores};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Calls to pool models per query of each decision rule.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Calls {
    /// Top-1 asks one model.
    pub top1: usize,
    /// The top-3 vote asks three (or the whole pool if smaller).
    pub top3_vote: usize,
}

/// A router retrained with several seeds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OverSeeds {
    /// The seeds.
    pub seeds: Vec<u64>,
    /// Top-1 per seed.
    pub top1: Vec<f64>,
    /// Mean top-1.
    pub top1_mean: f64,
    /// Sample sd of top-1.
    pub top1_sd: f64,
    /// Mean top-3 vote.
    pub top3_vote_mean: f64,
    /// Sample sd of the top-3 vote.
    pub top3_vote_sd: f64,
}

/// 95% intervals of the two accuracies.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ci95 {
    /// Top-1.
    pub top1: [f64; 2],
    /// Top-3 vote.
    pub top3_vote: [f64; 2],
}

/// Share of the gap between best single model and oracle a router closes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GapClosed {
    /// For top-1 (None when oracle = best single).
    pub top1: Option<f64>,
    /// For the top-3 vote.
    pub top3_vote: Option<f64>,
}

/// One router's outcome.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RouterResult {
    /// Its `type`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// What it learned from.
    pub supervision: rgd_core::Supervision,
    /// The labeler it learned from (`labels = "NAME"`), when it takes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<String>,
    /// Top-1 accuracy on the test split.
    pub top1: f64,
    /// Top-3 vote accuracy.
    pub top3_vote: f64,
    /// 95% bootstrap intervals over test questions (1,000 resamples, seeded).
    pub ci95: Ci95,
    /// Calls per query.
    pub calls_per_query: Calls,
    /// Share of the oracle gap closed.
    pub oracle_gap_closed: GapClosed,
    /// Top-1 against the best single model in hindsight, on the same test questions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vs_best_single: Option<PairedDiff>,
    /// Training and routing seconds.
    pub seconds: BTreeMap<String, f64>,
    /// Per subject accuracies.
    pub per_subject: BTreeMap<String, Accuracy>,
    /// Share of queries on which each model ranks first.
    pub top1_share: BTreeMap<String, f64>,
    /// Where the trained artifact was written.
    pub artifact: Option<String>,
    /// Mean and sd over `training_seeds` (routers with a `seed` field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over_seeds: Option<OverSeeds>,
    /// AIQ of its cost–quality curve (with `[costs]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aiq: Option<f64>,
    /// Its cost–quality curve, `[cost, accuracy]` per swept parameter (with `[costs]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curve: Option<Vec<[f64; 2]>>,
    /// Calibrated points and the rest of the cost analysis (with `[costs]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<crate::costs::CurveDetail>,
}

/// A router's top-1 minus a model's, with a paired bootstrap interval.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PairedDiff {
    /// The model compared with (the best single model in hindsight).
    pub model: String,
    /// Router top-1 minus the model's accuracy.
    pub top1: f64,
    /// Its 95% paired bootstrap interval (the same resampled questions for both; 1,000
    /// resamples, seeded).
    pub top1_ci95: [f64; 2],
}

/// A router that failed, with why.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RouterFailure {
    /// Its `type`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The error.
    pub error: String,
}

/// References (the contract's keys plus per-subject detail).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReferencesOut {
    /// Best single model's accuracy in hindsight (on the test split).
    pub best_single: f64,
    /// Which model that is.
    pub best_single_model: String,
    /// Share of questions some model answers correctly.
    pub oracle: f64,
    /// What the oracle would be if the models' errors were independent.
    pub oracle_if_independent: f64,
    /// Expected accuracy of uniformly random routing.
    pub random: f64,
    /// Accuracy of the whole pool's plurality vote (M calls per query).
    pub majority_vote: f64,
    /// Each model's accuracy.
    pub single: BTreeMap<String, f64>,
    /// The same per subject.
    pub per_subject: BTreeMap<String, ReferenceScores>,
}

/// The whole `results.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunResults {
    /// rgd version.
    pub rgd_version: String,
    /// The pipeline file.
    pub pipeline: String,
    /// Task name.
    pub task: String,
    /// Pool models.
    pub models: Vec<String>,
    /// The routers' names in the pipeline's order (reports list them so).
    #[serde(default)]
    pub order: Vec<String>,
    /// Training questions.
    pub n_train: usize,
    /// Test questions.
    pub n_test: usize,
    /// Routers that ran, by their table name.
    pub routers: BTreeMap<String, RouterResult>,
    /// Routers that failed.
    pub failed: BTreeMap<String, RouterFailure>,
    /// Reference points.
    pub references: ReferencesOut,
    /// Seconds spent loading the data.
    pub load_seconds: f64,
    /// Every router on every training source (with `[sources.NAME]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<crate::sources::SourcesOut>,
    /// Every router without each ablated filter (with `ablate_filters`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_ablation: Option<crate::ablation::AblationOut>,
    /// Training data: generation, diagnostics and filters.
    pub training_data: crate::training::TrainingData,
    /// The cost–quality analysis (with `[costs]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub costs: Option<crate::costs::CostsOut>,
    /// Model calls of the data stage (when a pool answered through the cache).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls: Option<Calls2>,
    /// Pool calls that failed (abstentions), per split and model: how many and the first
    /// reason. A rerun retries them (failures are not cached).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub call_failures: BTreeMap<String, BTreeMap<String, (usize, String)>>,
    /// Legal but suspicious data (said on stderr as the run goes, too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// For each labeler the routers learned from, its labels' agreement with the key on every
    /// split that has one.
    #[serde(default)]
    pub label_quality: Vec<rgd_core::LabelQuality>,
}

/// Call statistics of the data stage.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Calls2 {
    /// The cache file.
    pub cache: String,
    /// Calls served from the cache.
    pub cache_hits: u64,
    /// Calls that ran a model.
    pub model_calls: u64,
}
