//! The kNN router. A query's score for a model is the mean training label of the model on the
//! query's `k` most similar training questions (cosine of the embeddings). The labels come from
//! its labeler (`labels`, default `key`: correctness against the answer key); `consensus_knn`
//! is `knn` with `labels = "consensus"` (CASCAL's consensus scores, query-only). With `k = 0`, `k` is chosen by cross-validation on the training data:
//! the candidate whose held-out routing picks the model with the best label most often.

use candle_core::{Device, Tensor};
use ndarray::{Array2, Axis};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use rgd_core::{Context, Query, Router, Split, TrainedRouter};
// the built-in labelers `labels = "TYPE"` names are registered wherever this router is linked
use rgd_labelers as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum KnnError {
    /// Training is impossible.
    #[error("cannot train: {0}")]
    Train(String),
    /// Scoring queries failed.
    #[error("cannot score: {0}")]
    Score(String),
}

rgd_core::component_error!(KnnError, "knn router");

/// The kNN router's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct KnnConfig {
    /// The labels it averages: a `[labelers.NAME]` or a labeler type (unset: `key` for `knn`,
    /// `consensus` for `consensus_knn`).
    pub labels: Option<String>,
    /// Neighbours (0: choose among `candidates` by cross-validation).
    pub k: usize,
    /// Candidate values of k for cross-validation.
    pub candidates: Vec<usize>,
    /// Cross-validation folds.
    pub folds: usize,
    /// At most this many training questions take part in cross-validation (a seeded sample).
    pub cv_max: usize,
    /// Seed of the folds.
    pub seed: u64,
}

impl Default for KnnConfig {
    fn default() -> Self {
        KnnConfig {
            labels: None,
            k: 0,
            candidates: vec![1, 3, 5, 10, 20, 40, 80],
            folds: 5,
            cv_max: 4000,
            seed: 0,
        }
    }
}

/// kNN: the mean label of the `k` most similar training questions (labels from its labeler;
/// default `key`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Knn(pub KnnConfig);

impl Knn {
    /// `consensus_knn`: `knn` whose labels default to `consensus` (query-only: no key).
    pub fn consensus(mut self) -> Knn {
        self.0.labels.get_or_insert_with(|| "consensus".into());
        self
    }
}

/// A trained kNN router: the unit training embeddings, their labels and k.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainedKnn {
    models: Vec<String>,
    k: usize,
    /// Cross-validated routing score per candidate k (empty when k was given).
    pub cv: Vec<(usize, f64)>,
    embeddings: Array2<f32>,
    labels: Array2<f64>,
    ids: Vec<String>,
}

fn normalize(mut e: Array2<f32>) -> Array2<f32> {
    for mut r in e.rows_mut() {
        let n = r.dot(&r).sqrt();
        if n > 0.0 {
            r.mapv_inplace(|x| x / n);
        }
    }
    e
}

/// Indices of the `k` largest values of `sims` (ties: lower index), best first.
fn top_k(sims: &[f32], k: usize, skip: Option<usize>) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..sims.len()).filter(|&i| Some(i) != skip).collect();
    let k = k.min(idx.len());
    if k == 0 {
        return Vec::new();
    }
    let cmp = |a: &usize, b: &usize| sims[*b].total_cmp(&sims[*a]).then(a.cmp(b));
    idx.select_nth_unstable_by(k - 1, cmp);
    idx.truncate(k);
    idx.sort_by(cmp);
    idx
}

/// Offer training row `i` with similarity `s` to the `k` best kept in `best` (sorted best
/// first). Rows come in increasing `i`, so a tie with a kept row loses, as in [`top_k`].
fn keep_best(best: &mut Vec<(f32, usize)>, k: usize, s: f32, i: usize) {
    if k == 0 {
        return;
    }
    if best.len() == k && s.total_cmp(&best[k - 1].0) != std::cmp::Ordering::Greater {
        return;
    }
    let at = best.partition_point(|(b, _)| b.total_cmp(&s) != std::cmp::Ordering::Less);
    best.insert(at, (s, i));
    best.truncate(k);
}

fn product_error(e: impl std::fmt::Display) -> rgd_core::Error {
    KnnError::Score(format!("similarity product: {e}")).into()
}

/// Mean label per model over `nbrs`.
fn mean_labels(labels: &Array2<f64>, nbrs: &[usize], out: &mut [f64]) {
    out.iter_mut().for_each(|o| *o = 0.0);
    for &i in nbrs {
        for (o, l) in out.iter_mut().zip(labels.row(i)) {
            *o += l;
        }
    }
    let n = nbrs.len().max(1) as f64;
    out.iter_mut().for_each(|o| *o /= n);
}

fn train_knn(
    cfg: &KnnConfig,
    train: &Split,
    models: &[String],
    labels: Array2<f64>,
) -> rgd_core::Result<TrainedKnn> {
    if train.is_empty() {
        return Err(KnnError::Train("the training split has no question".into()).into());
    }
    let embeddings = normalize(train.embeddings.clone());
    let mut cv = Vec::new();
    let k = if cfg.k > 0 {
        cfg.k
    } else if train.len() < 4 {
        // too few questions to cross-validate: every neighbour there is
        train.len()
    } else {
        // cross-validation on a seeded sample: for each held-out question, the neighbours
        // among the other folds; score = the chosen model's label, averaged
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(cfg.seed));
        order.truncate(cfg.cv_max.max(2));
        let folds = cfg.folds.max(2).min(order.len());
        let kmax = cfg.candidates.iter().copied().max().unwrap_or(1);
        // the similarities of every sampled pair: n² f32
        let n = order.len() as u64;
        rgd_core::memory::check(
            &format!(
                "kNN's cross-validation on {n} questions (`cv_max` = {}: their {n} x {n} similarities)",
                cfg.cv_max
            ),
            n * n * 4,
        )?;
        let sub = embeddings.select(Axis(0), &order);
        let sims = sub.dot(&sub.t());
        let per_q: Vec<Vec<f64>> = (0..order.len())
            .into_par_iter()
            .map(|a| {
                let fold = a % folds;
                let row: Vec<f32> = (0..order.len())
                    .map(|b| {
                        if b % folds == fold {
                            f32::NEG_INFINITY
                        } else {
                            sims[[a, b]]
                        }
                    })
                    .collect();
                let nbrs = top_k(&row, kmax, Some(a));
                let mut buf = vec![0.0; models.len()];
                cfg.candidates
                    .iter()
                    .map(|&k| {
                        let ks: Vec<usize> = nbrs.iter().take(k).map(|&i| order[i]).collect();
                        mean_labels(&labels, &ks, &mut buf);
                        let best = rgd_core::rank(&buf)[0];
                        labels[[order[a], best]]
                    })
                    .collect()
            })
            .collect();
        for (c, &k) in cfg.candidates.iter().enumerate() {
            let m = per_q.iter().map(|v| v[c]).sum::<f64>() / per_q.len().max(1) as f64;
            cv.push((k, m));
        }
        cv.iter()
            .fold(None::<(usize, f64)>, |best, &(k, m)| match best {
                Some((_, bm)) if bm >= m => best,
                _ => Some((k, m)),
            })
            .map(|b| b.0)
            .unwrap_or(1)
    };
    Ok(TrainedKnn {
        models: models.to_vec(),
        k,
        cv,
        embeddings,
        labels,
        ids: train.questions.iter().map(|q| q.id.clone()).collect(),
    })
}

impl TrainedKnn {
    fn neighbours(&self, q: &Query<'_>) -> rgd_core::Result<Vec<usize>> {
        let d = self.embeddings.ncols();
        rgd_core::check_dim(q, d)?;
        let n = q.embedding.dot(&q.embedding).sqrt().max(1e-12);
        let sims: Vec<f32> = self
            .embeddings
            .dot(&q.embedding)
            .iter()
            .map(|s| s / n)
            .collect();
        Ok(top_k(&sims, self.k, None))
    }
}

#[typetag::serde(name = "knn")]
impl TrainedRouter for TrainedKnn {
    fn models(&self) -> &[String] {
        &self.models
    }
    fn validate(&self) -> rgd_core::Result<()> {
        use rgd_core::artifact;
        artifact::models(&self.models)?;
        let n = self.embeddings.nrows();
        if n == 0 || self.embeddings.ncols() == 0 {
            return Err(rgd_core::Error::Data(
                "artifact field `embeddings`: empty".into(),
            ));
        }
        artifact::len(
            "labels (rows)",
            self.labels.nrows(),
            n,
            "one per training question",
        )?;
        artifact::len(
            "labels (columns)",
            self.labels.ncols(),
            self.models.len(),
            "one per model",
        )?;
        artifact::len("ids", self.ids.len(), n, "one per training question")?;
        artifact::range("k", self.k as f64, 1.0, n as f64)?;
        artifact::finite("embeddings", &self.embeddings)?;
        // labels come from a labeler: numbers in [0, 1]
        for &l in &self.labels {
            artifact::range("labels", l, 0.0, 1.0)?;
        }
        Ok(())
    }
    fn score(&self, query: &Query<'_>, out: &mut [f64]) -> rgd_core::Result<()> {
        let nbrs = self.neighbours(query)?;
        mean_labels(&self.labels, &nbrs, out);
        Ok(())
    }
    fn score_split(&self, split: &Split) -> rgd_core::Result<Array2<f64>> {
        let d = self.embeddings.ncols();
        if split.embeddings.ncols() != d {
            return rgd_core::score_each(self, split);
        }
        let test = normalize(split.embeddings.clone());
        let n_train = self.embeddings.nrows();
        // Each task takes QUERIES test rows and streams the training rows through it in
        // products of TRAIN rows, keeping each query's k best so far: memory stays at one
        // QUERIES x TRAIN block per core however large the training set, and both cores work.
        // The products are candle's (the `gemm` crate's AVX-512 kernels where the CPU has
        // them; ndarray's were AVX2). Same neighbours, same order as `top_k`: best first, ties
        // to the lower index.
        const QUERIES: usize = 256;
        const TRAIN: usize = 32_768;
        let flat = self
            .embeddings
            .as_slice()
            .ok_or_else(|| KnnError::Score("training embeddings not contiguous".into()))?;
        let chunks: Vec<(usize, Tensor)> = (0..n_train)
            .step_by(TRAIN)
            .map(|t0| {
                let t1 = (t0 + TRAIN).min(n_train);
                Tensor::from_slice(&flat[t0 * d..t1 * d], (t1 - t0, d), &Device::Cpu)
                    .map(|t| (t0, t))
            })
            .collect::<candle_core::Result<_>>()
            .map_err(product_error)?;
        let starts: Vec<usize> = (0..split.len()).step_by(QUERIES).collect();
        let blocks: Vec<Vec<Vec<f64>>> = starts
            .into_par_iter()
            .map(|start| -> rgd_core::Result<Vec<Vec<f64>>> {
                let end = (start + QUERIES).min(split.len());
                let q = test.slice_axis(Axis(0), ndarray::Slice::from(start..end));
                let q = q.as_standard_layout();
                let q = Tensor::from_slice(
                    q.as_slice().expect("standard layout"),
                    (end - start, d),
                    &Device::Cpu,
                )
                .map_err(product_error)?;
                let mut best: Vec<Vec<(f32, usize)>> =
                    vec![Vec::with_capacity(self.k + 1); end - start];
                for (t0, e) in &chunks {
                    let sims = e.t().and_then(|et| q.matmul(&et)).map_err(product_error)?;
                    let (storage, layout) = sims.storage_and_layout();
                    let candle_core::Storage::Cpu(cpu) = &*storage else {
                        return Err(product_error("not on the CPU"));
                    };
                    let all = cpu.as_slice::<f32>().map_err(product_error)?;
                    let cols = e.dims()[0];
                    let from = layout.start_offset();
                    let rows = all[from..from + (end - start) * cols].chunks_exact(cols);
                    for (b, row) in best.iter_mut().zip(rows) {
                        for (j, &s) in row.iter().enumerate() {
                            keep_best(b, self.k, s, t0 + j);
                        }
                    }
                }
                Ok(best
                    .into_iter()
                    .map(|b| {
                        let nbrs: Vec<usize> = b.into_iter().map(|(_, i)| i).collect();
                        let mut buf = vec![0.0; self.models.len()];
                        mean_labels(&self.labels, &nbrs, &mut buf);
                        buf
                    })
                    .collect())
            })
            .collect::<rgd_core::Result<_>>()?;
        let mut out = Array2::zeros((split.len(), self.models.len()));
        for (i, r) in blocks.into_iter().flatten().enumerate() {
            out.row_mut(i).assign(&ndarray::ArrayView1::from(&r[..]));
        }
        Ok(out)
    }
    fn explain(&self, query: &Query<'_>) -> Option<String> {
        let nbrs = self.neighbours(query).ok()?;
        Some(format!(
            "mean label of the {} nearest training questions (k = {}): {}",
            nbrs.len(),
            self.k,
            nbrs.iter()
                .take(5)
                .map(|&i| self.ids[i].clone())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// The ceiling of `k` and of each candidate: more neighbours than this is never a useful
/// router, and its buffers could not be allocated.
pub const MAX_K: usize = 1_000_000;

impl KnnConfig {
    /// Check the settings: with `k = 0`, non-empty `candidates`, each >= 1; `folds` >= 2.
    pub fn check(&self) -> rgd_core::Result<()> {
        let bad = |msg: &str| Err(rgd_core::Error::Data(msg.into()));
        if self.k == 0 && self.candidates.is_empty() {
            return bad(
                "`k = 0` chooses k among `candidates` by cross-validation, and `candidates` is empty",
            );
        }
        if self.k == 0 && self.candidates.contains(&0) {
            return bad("every value of `candidates` must be >= 1");
        }
        if self.folds < 2 {
            return bad("`folds` must be >= 2");
        }
        if self.k == 0 && self.cv_max < 2 {
            return bad("`cv_max` must be >= 2 (questions that take part in cross-validation)");
        }
        if self.k > MAX_K || self.candidates.iter().any(|&c| c > MAX_K) {
            return bad(&format!(
                "`k` and every value of `candidates` must be at most {MAX_K} (neighbours)"
            ));
        }
        Ok(())
    }
}

impl Router for Knn {
    fn check(&self) -> rgd_core::Result<()> {
        self.0.check()
    }
    fn labels(&self) -> Option<&str> {
        Some(self.0.labels.as_deref().unwrap_or("key"))
    }
    fn train(
        &self,
        train: &Split,
        models: &[String],
        ctx: &Context,
    ) -> rgd_core::Result<Box<dyn TrainedRouter>> {
        let labels = ctx.labels(self.labels().expect("always set"), train)?;
        Ok(Box::new(train_knn(&self.0, train, models, labels.values)?))
    }
}

fn consensus_knn(k: Knn) -> Box<dyn Router> {
    Box::new(k.consensus())
}

rgd_core::register!(router, "knn", Knn);
rgd_core::register!(
    router,
    "consensus_knn",
    Knn,
    consensus_knn,
    doc = "Alias of `knn` with `labels = \"consensus\"` (CASCAL's consensus scores: query-only, no key)."
);

#[cfg(test)]
mod tests {
    use super::*;
    use rgd_core::{Labeler, Letter, Question, Responses};

    #[test]
    fn streaming_the_k_best_gives_top_k_exactly_ties_included() {
        use rand::Rng;
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for k in [0, 1, 3, 10, 200] {
            // few distinct values: many ties
            let sims: Vec<f32> = (0..150)
                .map(|_| rng.random_range(0..8) as f32 / 8.0)
                .collect();
            let mut best = Vec::new();
            for (i, &s) in sims.iter().enumerate() {
                keep_best(&mut best, k, s, i);
            }
            let streamed: Vec<usize> = best.into_iter().map(|(_, i)| i).collect();
            assert_eq!(streamed, top_k(&sims, k, None), "k = {k}");
        }
    }

    /// Two regions of embedding space; model 0 is right in the first, model 1 in the second.
    fn world(n: usize, seed: u64) -> Split {
        use rand::Rng;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut emb = Array2::zeros((n, 3));
        let mut choice = Array2::from_elem((n, 3), None);
        let mut qs = Vec::new();
        for i in 0..n {
            let region = i % 2;
            emb[[i, region]] = 1.0;
            emb[[i, 2]] = rng.random_range(-0.3..0.3);
            for m in 0..3 {
                let right = if m == 2 {
                    rng.random::<f64>() < 0.5
                } else {
                    m == region
                };
                choice[[i, m]] = Letter::from_index(if right { 0 } else { 1 + m % 3 });
            }
            qs.push(Question {
                id: i.to_string(),
                subject: "s".into(),
                text: String::new(),
                options: vec!["a".into(); 4],
                answer: Letter::from_index(0),
                source: None,
            });
        }
        Split {
            name: "t".into(),
            questions: qs,
            responses: Responses {
                choice,
                confidence: Array2::from_elem((n, 3), -0.5),
                latency: None,
                correct: None,
                cost: None,
            },
            embeddings: emb,
            generator_answer: None,
            call_failures: Default::default(),
        }
    }

    #[test]
    fn routes_each_region_to_its_model_and_cross_validates_k() {
        let train = world(200, 1);
        let test = world(50, 2);
        let models: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let t = train_knn(
            &KnnConfig::default(),
            &train,
            &models,
            rgd_labelers::Correctness::default()
                .label(&train)
                .unwrap()
                .values,
        )
        .unwrap();
        assert_eq!(t.cv.len(), 7);
        assert!(t.cv.iter().all(|(_, m)| *m > 0.95), "{:?}", t.cv);
        let scores = t.score_split(&test).unwrap();
        let each = rgd_core::score_each(&t, &test).unwrap();
        for i in 0..test.len() {
            assert_eq!(rgd_core::rank(&scores.row(i).to_vec())[0], i % 2);
            for m in 0..3 {
                assert!((scores[[i, m]] - each[[i, m]]).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn consensus_knn_routes_without_the_key() {
        // no key at all: only the pool's agreement can route
        let mut train = world(200, 1);
        train.questions.iter_mut().for_each(|q| q.answer = None);
        let test = world(50, 2);
        let models: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let t = Knn::default()
            .consensus()
            .train(&train, &models, &Context::new("."))
            .unwrap();
        let scores = t.score_split(&test).unwrap();
        for i in 0..test.len() {
            assert_eq!(
                rgd_core::rank(&scores.row(i).to_vec())[0],
                i % 2,
                "query {i}"
            );
        }
        // the key-based kNN cannot train without a key, and says so
        let e = Knn::default()
            .train(&train, &models, &Context::new("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("key") || e.contains("Key"), "{e}");
    }
}
