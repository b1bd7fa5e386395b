//! CASCAL (docs/cascal.md): consensus scores, per-model weighted spherical k-means on the
//! questions each model "shows proficiency" on, centroid merging and pruning, per-cluster model
//! rankings, and two-stage inference (subject, then nearest clusters) with a global fallback.
//! `cascal_gt` is the same router learning from correctness against the answer key.
//!
//! Deviations from the authors' code, all deterministic where theirs is random:
//! an unparseable answer abstains (no vote, consensus 0) instead of becoming a random letter;
//! centroid order after dropping empty clusters keeps creation order (theirs follows Python
//! set order); exact score ties rank the model listed first in the pool.

mod kmeans;

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use rgd_core::stats::LocScale;
use rgd_core::{Context, Labeler, Query, Router, Split, Supervision, TrainedRouter};
use rgd_labelers::{Consensus, Correctness};
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

impl From<CascalError> for rgd_core::Error {
    fn from(e: CascalError) -> Self {
        rgd_core::Error::component("cascal", e)
    }
}

/// Which labels the rankings average.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LabelSource {
    /// Consensus scores (query-only; no answer key used).
    Consensus,
    /// Correctness against the answer key (query-answer; "CASCAL-GT").
    Correctness,
}

/// CASCAL, the query-only router of RGD: consensus scores + skill clusters, two-stage routing.
/// Every threshold and temperature has the authors' default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Cascal {
    /// Labels the cluster rankings average: `consensus` (query-only) or `correctness` (uses
    /// the key); unset: `consensus` for `cascal`, `correctness` for `cascal_gt`.
    pub labels: Option<LabelSource>,
    /// Consensus scoring parameters (tau, z_scale, weight_min, weight_max).
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
    /// Number of nearest clusters combined.
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

/// CASCAL-GT: CASCAL whose rankings average correctness against the generator's answer key
/// instead of consensus (the paper's query-answer variant).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct CascalGt(pub Cascal);

impl Default for CascalGt {
    fn default() -> Self {
        CascalGt(Cascal {
            labels: Some(LabelSource::Correctness),
            ..Cascal::default()
        })
    }
}

impl CascalGt {
    fn resolved(&self) -> Cascal {
        Cascal {
            labels: Some(self.0.labels.unwrap_or(LabelSource::Correctness)),
            ..self.0.clone()
        }
    }
}

fn round_to(x: f64, decimals: i32) -> f64 {
    if decimals < 0 {
        return x;
    }
    let p = 10f64.powi(decimals);
    (x * p).round_ties_even() / p
}

/// L2-normalize each row in place (rows of norm 0 stay 0; eps as the authors' 1e-9).
fn normalize_rows(mut x: Array2<f32>) -> Array2<f32> {
    for mut r in x.rows_mut() {
        let n = r.dot(&r).sqrt().max(1e-9);
        r.mapv_inplace(|v| v / n);
    }
    x
}

fn normalized(v: ArrayView1<f32>) -> Array1<f32> {
    let n = v.dot(&v).sqrt().max(1e-9);
    v.mapv(|x| x / n)
}

/// FNV-1a, for stable per-(subject, model) seeds independent of thread scheduling.
fn fnv(parts: &[&str], seed: u64) -> u64 {
    let mut h = 0xcbf29ce484222325u64 ^ seed;
    for p in parts {
        for b in p.bytes().chain([0xff]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}

/// One cluster of a subject.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    /// `subject::model=M::cJ` of the centroid that founded it.
    pub id: String,
    /// Unit centroid.
    pub centroid: Vec<f32>,
    /// Mean label per model (rounded), pool order.
    pub scores: Vec<f64>,
    /// Training questions assigned.
    pub size: usize,
}

/// A subject's clusters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubjectModel {
    /// Subject name.
    pub name: String,
    /// Unit representative (mean of its centroids).
    pub representative: Vec<f32>,
    /// Its clusters (may be empty: the subject then routes by the global ranking).
    pub clusters: Vec<Cluster>,
}

/// Inference parameters kept in the artifact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct InferParams {
    two_stage: bool,
    k_nearest: usize,
    distance_temperature: f64,
    sharpen: bool,
    scoring_temperature: f64,
    fallback: bool,
    fallback_distance: f64,
    fallback_width: f64,
}

/// A trained CASCAL router (saved as an artifact by `rgd train`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainedCascal {
    /// Pool models.
    pub models: Vec<String>,
    /// Per-subject clusters.
    pub subjects: Vec<SubjectModel>,
    /// Global mean label per model (fallback).
    pub global: Vec<f64>,
    /// Training-split confidence statistics per model.
    pub train_stats: Vec<LocScale>,
    params: InferParams,
    /// Lookup tables derived from the above (built on first use, also after loading).
    #[serde(skip)]
    derived: std::sync::OnceLock<Derived>,
}

/// Per-subject `(unit centroids [k, d], sharpened scores [k, M], usable flags)`.
type Table = (Array2<f32>, Array2<f64>, Vec<bool>);

#[derive(Clone, Debug)]
struct Derived {
    /// Unit subject representatives `[S, d]` (None without subjects).
    reps: Option<Array2<f32>>,
    tables: Vec<Table>,
}

/// Questions each model shows proficiency on: (question index, weight) per model.
fn proficient(
    split: &Split,
    idx: &[usize],
    min_agreement: f64,
    weighted: bool,
) -> Vec<Vec<(usize, f64)>> {
    let m = split.n_models();
    let mut out = vec![Vec::new(); m];
    let mut counts = [0usize; rgd_core::N_LETTERS];
    for &q in idx {
        counts.fill(0);
        for j in 0..m {
            if let Some(c) = split.responses.choice[[q, j]] {
                counts[c.index()] += 1;
            }
        }
        let max = *counts.iter().max().unwrap_or(&0);
        if max == 0 {
            continue;
        }
        let in_plurality =
            |j: usize| split.responses.choice[[q, j]].is_some_and(|c| counts[c.index()] == max);
        let agreeing = (0..m).filter(|&j| in_plurality(j)).count();
        let agreement = agreeing as f64 / m as f64;
        if agreement < min_agreement {
            continue;
        }
        for (j, set) in out.iter_mut().enumerate() {
            if in_plurality(j) {
                set.push((q, if weighted { agreement } else { 1.0 }));
            }
        }
    }
    out
}

impl Cascal {
    fn check(&self) -> Result<(), CascalError> {
        let pos = [
            ("distance_temperature", self.distance_temperature),
            ("scoring_temperature", self.scoring_temperature),
            ("fallback_width", self.fallback_width),
        ];
        for (k, v) in pos {
            if !(v > 0.0 && v.is_finite()) {
                return Err(CascalError::Invalid(format!(
                    "{k} must be a finite number > 0, got {v}"
                )));
            }
        }
        // cosine distances lie in 0..=2; shares and similarities in their natural ranges
        let ranges = [
            ("fallback_distance", self.fallback_distance, 0.0, 2.0),
            ("merge_threshold", self.merge_threshold, 0.0, 2.0),
            ("min_agreement", self.min_agreement, 0.0, 1.0),
            ("prune_jaccard", self.prune_jaccard, 0.0, 1.0),
            ("silhouette_threshold", self.silhouette_threshold, -1.0, 1.0),
            ("kmeans_tol", self.kmeans_tol, 0.0, 1.0),
        ];
        for (k, v, lo, hi) in ranges {
            if !(v >= lo && v <= hi) {
                return Err(CascalError::Invalid(format!(
                    "{k} must be in {lo}..={hi}, got {v}"
                )));
            }
        }
        // f64 has about 15 significant decimals: more is no rounding at all
        for (k, v) in [
            ("score_decimals", self.score_decimals),
            ("global_decimals", self.global_decimals),
        ] {
            if v > 15 {
                return Err(CascalError::Invalid(format!(
                    "{k} must be at most 15 (negative: no rounding), got {v}"
                )));
            }
        }
        if self.k_nearest == 0 {
            return Err(CascalError::Invalid("k_nearest must be >= 1".into()));
        }
        if self.k_min == 0 || self.k_max > 64 || self.kmeans_max_iter == 0 {
            return Err(CascalError::Invalid(format!(
                "k_min must be >= 1, k_max at most 64 and kmeans_max_iter >= 1 (got {}, {}, {})",
                self.k_min, self.k_max, self.kmeans_max_iter
            )));
        }
        self.consensus
            .check()
            .map_err(|e| CascalError::Invalid(format!("consensus: {e}")))?;
        if self.k_min > self.k_max {
            return Err(CascalError::Invalid(format!(
                "k_min ({}) > k_max ({})",
                self.k_min, self.k_max
            )));
        }
        Ok(())
    }

    /// Auto-k weighted k-means on the unit rows `xn`: (unit centroids, labels).
    fn auto_kmeans(&self, xn: ArrayView2<f32>, w: &[f64], seed: u64) -> (Array2<f32>, Vec<usize>) {
        let n = xn.nrows();
        let single = |wn: &[f64]| {
            let mut c = Array1::<f64>::zeros(xn.ncols());
            for (i, r) in xn.rows().into_iter().enumerate() {
                c.scaled_add(wn[i], &r.mapv(|v| v as f64));
            }
            let c = c.mapv(|v| v as f32);
            (normalize_rows(c.insert_axis(Axis(0))), vec![0usize; n])
        };
        if n <= 1 {
            return single(&vec![1.0; n]);
        }
        let wsum: f64 = w.iter().sum();
        let wn: Vec<f64> = if wsum > 0.0 {
            w.iter().map(|v| v * n as f64 / wsum).collect()
        } else {
            vec![1.0; n]
        };
        // distinct rows, counted only up to k_max + 1 (all that the choice of k needs)
        let cap = self.k_max + 1;
        let mut distinct: Vec<ArrayView1<f32>> = Vec::with_capacity(cap);
        for r in xn.rows() {
            if distinct.len() >= cap {
                break;
            }
            if !distinct.contains(&r) {
                distinct.push(r);
            }
        }
        let n_unique = distinct.len();
        if n_unique == 1 {
            return single(&vec![1.0; n]);
        }
        let max_k = self.k_max.min(n - 1).min(n_unique - 1).max(1);
        let mut best: Option<(f64, usize, Vec<usize>)> = None;
        let tol = kmeans::scaled_tol(xn, self.kmeans_tol);
        for k in self.k_min.max(2)..=max_k {
            let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(k as u64));
            let (_, labels) = kmeans(xn, &wn, k, self.kmeans_max_iter, tol, &mut rng);
            let s = silhouette_cosine(xn, &labels, k);
            if best.as_ref().is_none_or(|(bs, _, _)| s > *bs) {
                best = Some((s, k, labels));
            }
        }
        match best {
            Some((s, k, labels)) if s >= self.silhouette_threshold => {
                let mut c = Array2::<f64>::zeros((k, xn.ncols()));
                for (i, &l) in labels.iter().enumerate() {
                    c.row_mut(l)
                        .scaled_add(wn[i], &xn.row(i).mapv(|v| v as f64));
                }
                (normalize_rows(c.mapv(|v| v as f32)), labels)
            }
            _ => single(&wn),
        }
    }

    /// Train the clusters of one subject.
    fn train_subject(
        &self,
        split: &Split,
        xn: &Array2<f32>,
        labels: &Array2<f64>,
        models: &[String],
        subject: &str,
        idx: &[usize],
    ) -> SubjectModel {
        let m = models.len();
        let sets = proficient(split, idx, self.min_agreement, self.weighted);
        // per-model centroids
        let mut cents: Vec<(String, Array1<f32>, usize)> = Vec::new();
        for (j, set) in sets.iter().enumerate() {
            if set.is_empty() {
                continue;
            }
            let rows: Vec<usize> = set.iter().map(|(q, _)| *q).collect();
            let w: Vec<f64> = set.iter().map(|(_, w)| *w).collect();
            let x = xn.select(Axis(0), &rows);
            let seed = fnv(&[subject, &models[j]], self.seed);
            let (c, lab) = self.auto_kmeans(x.view(), &w, seed);
            let mut counts = vec![0usize; c.nrows()];
            for l in lab {
                counts[l] += 1;
            }
            for (k, row) in c.rows().into_iter().enumerate() {
                cents.push((
                    format!("{subject}::model={}::c{k}", models[j]),
                    row.to_owned(),
                    counts[k],
                ));
            }
        }
        // greedy merge of close centroids (the authors' order and chain rules)
        if self.merge_threshold > 0.0 && cents.len() > 1 {
            let nc = cents.len();
            let mut merged_into: Vec<Option<usize>> = vec![None; nc];
            for i in 0..nc {
                if merged_into[i].is_some() {
                    continue;
                }
                let c1 = normalized(cents[i].1.view());
                for j in i + 1..nc {
                    if merged_into[j].is_some() {
                        continue;
                    }
                    let c2 = normalized(cents[j].1.view());
                    if 1.0 - (c1.dot(&c2) as f64) < self.merge_threshold {
                        if cents[j].2 > cents[i].2 {
                            merged_into[i] = Some(j);
                            break;
                        } else {
                            merged_into[j] = Some(i);
                        }
                    }
                }
            }
            let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
            for i in 0..nc {
                let mut t = i;
                while let Some(n) = merged_into[t] {
                    t = n;
                }
                match groups.iter_mut().find(|(g, _)| *g == t) {
                    Some((_, members)) => members.push(i),
                    None => groups.push((t, vec![i])),
                }
            }
            cents = groups
                .into_iter()
                .map(|(t, members)| {
                    if members.len() == 1 {
                        return cents[t].clone();
                    }
                    let total: usize = members.iter().map(|&i| cents[i].2).sum();
                    let mut v = Array1::<f32>::zeros(xn.ncols());
                    for &i in &members {
                        v.scaled_add(cents[i].2 as f32, &cents[i].1);
                    }
                    let v = v.mapv(|x| x / total.max(1) as f32);
                    (cents[t].0.clone(), normalized(v.view()), total)
                })
                .collect();
        }
        // assign every question of the subject to its nearest centroid; drop empty clusters
        let assign = |cents: &[(String, Array1<f32>, usize)]| -> Vec<Vec<usize>> {
            let mut members = vec![Vec::new(); cents.len()];
            if cents.is_empty() {
                return members;
            }
            let mut c = Array2::zeros((cents.len(), xn.ncols()));
            for (k, (_, v, _)) in cents.iter().enumerate() {
                c.row_mut(k).assign(&normalized(v.view()));
            }
            let x = xn.select(Axis(0), idx);
            let sims = x.dot(&c.t());
            for (r, &q) in idx.iter().enumerate() {
                let row = sims.row(r);
                let mut best = 0;
                for k in 1..row.len() {
                    if row[k] > row[best] {
                        best = k;
                    }
                }
                members[best].push(q);
            }
            members
        };
        let members = assign(&cents);
        let mut clusters: Vec<(String, Array1<f32>, Vec<usize>)> = cents
            .into_iter()
            .zip(members)
            .filter(|(_, mem)| !mem.is_empty())
            .map(|((id, v, _), mem)| (id, v, mem))
            .collect();
        let score = |mem: &[usize]| -> Vec<f64> {
            (0..m)
                .map(|j| {
                    let s: f64 = mem.iter().map(|&q| labels[[q, j]]).sum();
                    round_to(s / mem.len() as f64, self.score_decimals)
                })
                .collect()
        };
        let top = |scores: &[f64]| -> Vec<usize> {
            let mut o: Vec<usize> = (0..m).collect();
            o.sort_by(|&a, &b| {
                scores[b]
                    .total_cmp(&scores[a])
                    .then(models[a].cmp(&models[b]))
            });
            o.truncate(self.prune_top);
            o
        };
        if self.prune && clusters.len() > 1 {
            let tops: Vec<Vec<usize>> = clusters.iter().map(|c| top(&score(&c.2))).collect();
            let nc = clusters.len();
            let mut keep = vec![true; nc];
            for i in 0..nc {
                if !keep[i] {
                    continue;
                }
                for j in i + 1..nc {
                    if !keep[j] {
                        continue;
                    }
                    let inter = tops[i].iter().filter(|x| tops[j].contains(x)).count();
                    let union = tops[i].len() + tops[j].len() - inter;
                    let sim = if union == 0 {
                        0.0
                    } else {
                        inter as f64 / union as f64
                    };
                    if sim >= self.prune_jaccard {
                        if clusters[j].2.len() > clusters[i].2.len() {
                            keep[i] = false;
                            let moved = std::mem::take(&mut clusters[i].2);
                            clusters[j].2.extend(moved);
                            break;
                        } else {
                            keep[j] = false;
                            let moved = std::mem::take(&mut clusters[j].2);
                            clusters[i].2.extend(moved);
                        }
                    }
                }
            }
            clusters = clusters
                .into_iter()
                .zip(keep)
                .filter(|(_, k)| *k)
                .map(|(mut c, _)| {
                    // reset the centroid to the normalized mean of its questions
                    let x = xn.select(Axis(0), &c.2);
                    let mean = x.mean_axis(Axis(0)).expect("non-empty cluster");
                    c.1 = normalized(mean.view());
                    c
                })
                .collect();
        }
        let clusters: Vec<Cluster> = clusters
            .into_iter()
            .map(|(id, v, mem)| Cluster {
                id,
                centroid: v.to_vec(),
                scores: score(&mem),
                size: mem.len(),
            })
            .collect();
        let representative = if clusters.is_empty() {
            // the authors average the raw embeddings here; the unit rows give the same
            // direction up to the rows' norms
            let x = xn.select(Axis(0), idx);
            normalized(x.mean_axis(Axis(0)).expect("subject has questions").view())
        } else {
            let mut v = Array1::<f32>::zeros(xn.ncols());
            for c in &clusters {
                v += &ArrayView1::from(&c.centroid[..]);
            }
            normalized(v.view())
        };
        SubjectModel {
            name: subject.to_string(),
            representative: representative.to_vec(),
            clusters,
        }
    }
}

impl TrainedCascal {
    fn d(&self) -> &Derived {
        self.derived.get_or_init(|| self.build_derived())
    }

    fn build_derived(&self) -> Derived {
        let d = self
            .subjects
            .first()
            .map(|s| s.representative.len())
            .unwrap_or(0);
        let mut reps = Array2::zeros((self.subjects.len(), d));
        let tables = self
            .subjects
            .iter()
            .enumerate()
            .map(|(i, s)| {
                reps.row_mut(i)
                    .assign(&ArrayView1::from(&s.representative[..]));
                let m = self.models.len();
                let mut c = Array2::zeros((s.clusters.len(), d));
                let mut sharp = Array2::zeros((s.clusters.len(), m));
                let mut ok = vec![true; s.clusters.len()];
                for (k, cl) in s.clusters.iter().enumerate() {
                    c.row_mut(k).assign(&ArrayView1::from(&cl.centroid[..]));
                    let raw = &cl.scores;
                    let sum: f64 = raw.iter().sum();
                    let finite = raw.iter().all(|v| v.is_finite());
                    let row: Vec<f64> = if !self.params.sharpen || sum <= 0.0 || !finite {
                        raw.clone()
                    } else {
                        let mx = raw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        let e: Vec<f64> = raw
                            .iter()
                            .map(|v| ((v - mx) / self.params.scoring_temperature).exp())
                            .collect();
                        let es: f64 = e.iter().sum();
                        e.into_iter().map(|v| v / es).collect()
                    };
                    let rs: f64 = row.iter().sum();
                    ok[k] = row.iter().all(|v| v.is_finite()) && rs > 0.0;
                    sharp.row_mut(k).assign(&ArrayView1::from(&row[..]));
                }
                (normalize_rows(c), sharp, ok)
            })
            .collect();
        Derived {
            reps: (!self.subjects.is_empty()).then(|| normalize_rows(reps)),
            tables,
        }
    }

    /// Route from precomputed similarities: subject choice and centroid similarities.
    fn combine(&self, subject: usize, sims: ArrayView1<f32>, out: &mut [f64]) -> (usize, f64) {
        out.iter_mut().for_each(|v| *v = 0.0);
        let (_, sharp, ok) = &self.d().tables[subject];
        let p = &self.params;
        if sims.is_empty() {
            out.copy_from_slice(&self.global);
            return (0, f64::NAN);
        }
        // k nearest by distance = 1 - sim (stable: ties keep centroid order)
        let mut near: Vec<(usize, f64)> = Vec::with_capacity(p.k_nearest + 1);
        for (k, &s) in sims.iter().enumerate() {
            let d = 1.0 - s as f64;
            let pos = near.partition_point(|&(_, nd)| nd <= d);
            if pos < p.k_nearest {
                near.insert(pos, (k, d));
                near.truncate(p.k_nearest);
            }
        }
        let d0 = near[0].1;
        let mut w: Vec<f64> = near
            .iter()
            .map(|(_, d)| -d / p.distance_temperature)
            .collect();
        if w.len() == 1 {
            w[0] = 1.0;
        } else {
            let mx = w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            w.iter_mut().for_each(|v| *v = (*v - mx).exp());
            let s: f64 = w.iter().sum();
            w.iter_mut().for_each(|v| *v /= s);
        }
        for ((k, _), wi) in near.iter().zip(&w) {
            if !ok[*k] {
                continue;
            }
            for (o, s) in out.iter_mut().zip(sharp.row(*k)) {
                *o += wi * s;
            }
        }
        if p.fallback && d0 > p.fallback_distance {
            let alpha = ((d0 - p.fallback_distance) / p.fallback_width).min(1.0);
            let ps: f64 = out.iter().sum();
            let gs: f64 = self.global.iter().sum();
            for (o, g) in out.iter_mut().zip(&self.global) {
                let pn = if ps > 0.0 { *o / ps } else { 0.0 };
                let gn = if gs > 0.0 { g / gs } else { *g };
                *o = (1.0 - alpha) * pn + alpha * gn;
            }
        }
        (near[0].0, d0)
    }

    fn pick_subject(&self, v: ArrayView1<f32>) -> Option<(usize, f64)> {
        let reps = self.d().reps.as_ref()?;
        if self.params.two_stage {
            let mut best: Option<(usize, f64)> = None;
            for (i, r) in reps.rows().into_iter().enumerate() {
                let d = 1.0 - r.dot(&v) as f64;
                if best.is_none_or(|(_, bd)| d < bd) {
                    best = Some((i, d));
                }
            }
            best
        } else {
            // nearest centroid of any subject
            let mut best: Option<(usize, f64)> = None;
            for (i, (c, _, _)) in self.d().tables.iter().enumerate() {
                for r in c.rows() {
                    let d = 1.0 - r.dot(&v) as f64;
                    if best.is_none_or(|(_, bd)| d < bd) {
                        best = Some((i, d));
                    }
                }
            }
            best
        }
    }
}

impl Router for Cascal {
    fn check(&self) -> rgd_core::Result<()> {
        Ok(Cascal::check(self)?)
    }
    fn train(
        &self,
        train: &Split,
        models: &[String],
        _ctx: &Context,
    ) -> rgd_core::Result<Box<dyn TrainedRouter>> {
        Ok(Box::new(self.fit(train, models)?))
    }
    fn supervision(&self) -> Supervision {
        match self.label_source() {
            LabelSource::Consensus => Supervision::QueryOnly,
            LabelSource::Correctness => Supervision::QueryAnswer,
        }
    }
}

impl Router for CascalGt {
    fn check(&self) -> rgd_core::Result<()> {
        Ok(self.resolved().check()?)
    }
    fn train(
        &self,
        train: &Split,
        models: &[String],
        ctx: &Context,
    ) -> rgd_core::Result<Box<dyn TrainedRouter>> {
        self.resolved().train(train, models, ctx)
    }
    fn supervision(&self) -> Supervision {
        self.resolved().supervision()
    }
}

impl Cascal {
    /// The labels used (unset = consensus).
    pub fn label_source(&self) -> LabelSource {
        self.labels.unwrap_or(LabelSource::Consensus)
    }

    /// Train CASCAL on a split.
    pub fn fit(&self, train: &Split, models: &[String]) -> Result<TrainedCascal, CascalError> {
        self.check()?;
        if train.is_empty() {
            return Err(CascalError::Train(
                "the training split has no question".into(),
            ));
        }
        if models.is_empty() {
            return Err(CascalError::Train("the pool has no model".into()));
        }
        let labels = match self.label_source() {
            LabelSource::Consensus => self.consensus.label(train),
            LabelSource::Correctness => Correctness::default().label(train),
        }
        .map_err(|e| CascalError::Train(e.to_string()))?
        .values;
        let xn = normalize_rows(train.embeddings.clone());
        let groups = train.by_subject();
        let subjects: Vec<SubjectModel> = groups
            .par_iter()
            .map(|(s, idx)| self.train_subject(train, &xn, &labels, models, s, idx))
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

#[typetag::serde(name = "cascal")]
impl TrainedRouter for TrainedCascal {
    fn models(&self) -> &[String] {
        &self.models
    }
    fn validate(&self) -> rgd_core::Result<()> {
        use rgd_core::artifact;
        let m = self.models.len();
        artifact::models(&self.models)?;
        artifact::len("global", self.global.len(), m, "one per model")?;
        artifact::finite("global", &self.global)?;
        if !self.train_stats.is_empty() {
            artifact::len("train_stats", self.train_stats.len(), m, "one per model")?;
        }
        let d = self.subjects.first().map(|s| s.representative.len());
        if d == Some(0) {
            return Err(rgd_core::Error::Data(
                "artifact field `subjects[0].representative`: empty".into(),
            ));
        }
        for (i, s) in self.subjects.iter().enumerate() {
            let d = d.unwrap_or_default();
            let f = |x: &str| format!("subjects[{i}].{x}");
            artifact::len(
                &f("representative"),
                s.representative.len(),
                d,
                "the embedding dimension",
            )?;
            artifact::finite(&f("representative"), &s.representative)?;
            for (k, c) in s.clusters.iter().enumerate() {
                let f = |x: &str| format!("subjects[{i}].clusters[{k}].{x}");
                artifact::len(
                    &f("centroid"),
                    c.centroid.len(),
                    d,
                    "the embedding dimension",
                )?;
                artifact::finite(&f("centroid"), &c.centroid)?;
                artifact::len(&f("scores"), c.scores.len(), m, "one per model")?;
                artifact::finite(&f("scores"), &c.scores)?;
            }
        }
        let p = &self.params;
        artifact::range("params.k_nearest", p.k_nearest as f64, 1.0, f64::MAX)?;
        artifact::positive("params.distance_temperature", p.distance_temperature)?;
        artifact::positive("params.scoring_temperature", p.scoring_temperature)?;
        artifact::range("params.fallback_distance", p.fallback_distance, 0.0, 2.0)?;
        artifact::positive("params.fallback_width", p.fallback_width)
    }

    fn score(&self, query: &Query<'_>, out: &mut [f64]) -> rgd_core::Result<()> {
        let e = query.embedding;
        let d = self.d().reps.as_ref().map(|r| r.ncols()).unwrap_or(e.len());
        if e.len() != d {
            return Err(CascalError::Route {
                id: query.id.to_string(),
                msg: format!(
                    "embedding has {} values, the router was trained on {d}",
                    e.len()
                ),
            }
            .into());
        }
        let v = normalized(e);
        match self.pick_subject(v.view()) {
            None => out.copy_from_slice(&self.global),
            Some((s, _)) => {
                let sims = self.d().tables[s].0.dot(&v);
                self.combine(s, sims.view(), out);
            }
        }
        Ok(())
    }

    fn score_split(&self, split: &Split) -> rgd_core::Result<Array2<f64>> {
        let m = self.models.len();
        let n = split.len();
        let mut out = Array2::zeros((n, m));
        let Some(reps) = self.d().reps.as_ref() else {
            for mut r in out.rows_mut() {
                r.assign(&ArrayView1::from(&self.global[..]));
            }
            return Ok(out);
        };
        if split.embeddings.ncols() != reps.ncols() && n > 0 {
            return Err(CascalError::Route {
                id: split.questions[0].id.clone(),
                msg: format!(
                    "embeddings have {} values, the router was trained on {}",
                    split.embeddings.ncols(),
                    reps.ncols()
                ),
            }
            .into());
        }
        if !self.params.two_stage {
            return rgd_core::score_each(self, split);
        }
        let qn = normalize_rows(split.embeddings.clone());
        let rs = qn.dot(&reps.t());
        let mut by_subject: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, row) in rs.rows().into_iter().enumerate() {
            let mut best = 0;
            for k in 1..row.len() {
                if 1.0 - row[k] < 1.0 - row[best] {
                    best = k;
                }
            }
            by_subject.entry(best).or_default().push(i);
        }
        let mut buf = vec![0.0; m];
        for (s, rows) in by_subject {
            let sims = qn.select(Axis(0), &rows).dot(&self.d().tables[s].0.t());
            for (r, &i) in rows.iter().enumerate() {
                self.combine(s, sims.row(r), &mut buf);
                out.row_mut(i).assign(&ArrayView1::from(&buf[..]));
            }
        }
        Ok(out)
    }

    fn explain(&self, query: &Query<'_>) -> Option<String> {
        let v = normalized(query.embedding);
        let (s, ds) = self.pick_subject(v.view())?;
        let subj = &self.subjects[s];
        if subj.clusters.is_empty() {
            return Some(format!(
                "subject `{}` has no cluster: global ranking",
                subj.name
            ));
        }
        let sims = self.d().tables[s].0.dot(&v);
        let mut buf = vec![0.0; self.models.len()];
        let (k, d0) = self.combine(s, sims.view(), &mut buf);
        let fb = if self.params.fallback && d0 > self.params.fallback_distance {
            format!(
                ", global fallback weight {:.2}",
                ((d0 - self.params.fallback_distance) / self.params.fallback_width).min(1.0)
            )
        } else {
            String::new()
        };
        Some(format!(
            "subject `{}` (distance {ds:.3}), nearest cluster `{}` (distance {d0:.3}, {} training questions){fb}",
            subj.name, subj.clusters[k].id, subj.clusters[k].size
        ))
    }
}

rgd_core::register!(router, "cascal", Cascal);
rgd_core::register!(router, "cascal_gt", CascalGt);

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
            },
            embeddings: emb,
            generator_answer: None,
            call_failures: Default::default(),
        };
        (split, models)
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
            labels: Some(LabelSource::Correctness),
            ..Default::default()
        };
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<Cascal>(&text).unwrap(), c);
        assert_eq!(
            toml::from_str::<CascalGt>("")
                .unwrap()
                .resolved()
                .label_source(),
            LabelSource::Correctness
        );
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
