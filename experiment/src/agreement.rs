//! Two embedders side by side on one pipeline's data: how close their vectors are and what
//! routing makes of the difference (`rgd bench embed --precision int8 --routing`). The data
//! loads once; each embedder embeds every question of both splits (any embeddings the data
//! carried are replaced), and every router of the pipeline trains and tests on each; the one
//! trained on the first's vectors also scores the second's test questions.

use crate::error::Result;
use crate::evaluate::{evaluate_trained, on_dataset};
use crate::resolve::Resolved;
use crate::session::Session;
use rgd_core::eval::confidence_stats;
use rgd_core::{Dataset, Embedder};

/// One router under the two embedders.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RouterAgreement {
    /// Its name in the pipeline.
    pub name: String,
    /// Test top-1 accuracy with the first embedder's vectors.
    pub top1_a: f64,
    /// Test top-1 accuracy with the second's.
    pub top1_b: f64,
    /// Share of test questions on which both runs picked the same model.
    pub same_pick: f64,
    /// Share of test questions on which the router trained on the first embedder's vectors
    /// picks the same model when its test questions come in the second's: what changing the
    /// embedder at routing time alone does (as a server would, keeping a router trained on
    /// the first), where [`Self::same_pick`] also retrains on the second's vectors.
    pub same_pick_test_only: f64,
    /// With [`Self::same_pick_test_only`]: the test top-1 accuracy of the router trained on the
    /// first embedder's vectors and tested on the second's.
    pub top1_test_only: f64,
    /// The router's own reference, for routers with a `seed` field: the share of test
    /// questions on which it picks the same model, on the first embedder's vectors, when
    /// retrained under another seed ([`OTHER_SEED`]). A share of identical picks between the
    /// embedders at or above it is within what the router's seed alone changes.
    pub same_pick_other_seed: Option<f64>,
    /// With [`Self::same_pick_other_seed`]: the test top-1 accuracy of that retrained router
    /// (on the first embedder's vectors): how far the router's seed alone moves its accuracy.
    pub top1_other_seed: Option<f64>,
}

/// The seed a seeded router is retrained under for [`RouterAgreement::same_pick_other_seed`]
/// (one more than its configured seed, or this one when it has none configured).
pub const OTHER_SEED: u64 = 1_000_003;

/// The comparison: vectors, then routers.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EmbedderAgreement {
    /// Questions embedded (both splits).
    pub questions: usize,
    /// Least cosine between the two embeddings of a question.
    pub cosine_min: f64,
    /// Mean of those cosines.
    pub cosine_mean: f64,
    /// Seconds each embedder took for all the questions.
    pub seconds: [f64; 2],
    /// Every router that trained under both (in the pipeline's order); a router that fails
    /// under either is left out and named in `failed`.
    pub routers: Vec<RouterAgreement>,
    /// Routers that failed, with the error.
    pub failed: Vec<(String, String)>,
}

/// Compare embedders `a` and `b` on the data and routers of `r`.
pub fn compare_embedders(
    r: &Resolved,
    session: &Session,
    a: &dyn Embedder,
    b: &dyn Embedder,
) -> Result<EmbedderAgreement> {
    let (ds, _, _) = crate::run::load_data(r, session)?;
    let embedded = |e: &dyn Embedder| -> Result<(Dataset, f64)> {
        let mut d = ds.clone();
        let t = std::time::Instant::now();
        for split in [&mut d.train, &mut d.test] {
            split.embeddings = ndarray::Array2::zeros((split.len(), 0));
            crate::data::embed_missing(split, e, &r.ctx)?;
        }
        Ok((d, t.elapsed().as_secs_f64()))
    };
    let (da, sa) = embedded(a)?;
    let (db, sb) = embedded(b)?;
    let mut cos = cosines(&da.train.embeddings, &db.train.embeddings);
    cos.extend(cosines(&da.test.embeddings, &db.test.embeddings));
    let train_stats = confidence_stats(&ds.train);
    let mut routers = Vec::new();
    let mut failed = Vec::new();
    for router in &r.routers {
        r.ctx.check_interrupt()?;
        let stage = session.stage(format!("router {} (both embeddings)", router.name));
        let ea = on_dataset(router.value.as_ref(), &da, &train_stats, &r.ctx);
        let eb = on_dataset(router.value.as_ref(), &db, &train_stats, &r.ctx);
        match (ea, eb) {
            (Ok(ea), Ok(eb)) => {
                let (pa, pb) = (&ea.eval.top1_model, &eb.eval.top1_model);
                // the router trained on the first's vectors, scoring the second's test split
                let (_, served) =
                    evaluate_trained(ea.trained.as_ref(), &db.test, &ds.models, &train_stats)?;
                let other_seed = if r.is_seeded(router) {
                    let seed = match router.spec.table.get("seed") {
                        Some(toml::Value::Integer(s)) => (*s as u64).wrapping_add(1),
                        _ => OTHER_SEED,
                    };
                    let reseeded = r.router_with_seed(router, seed)?;
                    let es = on_dataset(reseeded.as_ref(), &da, &train_stats, &r.ctx)?;
                    Some((same_share(pa, &es.eval.top1_model), es.eval.overall.top1))
                } else {
                    None
                };
                let agreement = RouterAgreement {
                    name: router.name.clone(),
                    top1_a: ea.eval.overall.top1,
                    top1_b: eb.eval.overall.top1,
                    same_pick: same_share(pa, pb),
                    same_pick_test_only: same_share(pa, &served.top1_model),
                    top1_test_only: served.overall.top1,
                    same_pick_other_seed: other_seed.map(|o| o.0),
                    top1_other_seed: other_seed.map(|o| o.1),
                };
                stage.done(&format!(
                    "top-1 {:.1}% and {:.1}%, same pick on {:.1}%",
                    100.0 * agreement.top1_a,
                    100.0 * agreement.top1_b,
                    100.0 * agreement.same_pick
                ));
                routers.push(agreement);
            }
            (Err(rgd_core::Error::Interrupted), _) | (_, Err(rgd_core::Error::Interrupted)) => {
                return Err(rgd_core::Error::Interrupted.into());
            }
            (Err(e), _) | (_, Err(e)) => {
                stage.done(&format!("FAILED: {e}"));
                failed.push((router.name.clone(), e.to_string()));
            }
        }
    }
    let (cosine_min, cosine_mean) = min_mean(&cos);
    Ok(EmbedderAgreement {
        questions: cos.len(),
        cosine_min,
        cosine_mean,
        seconds: [sa, sb],
        routers,
        failed,
    })
}

/// The share of positions at which two runs' picks are the same.
fn same_share(a: &[usize], b: &[usize]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len().max(1) as f64
}

/// The least and the mean of `v` (`(inf, 0)` when it is empty).
pub fn min_mean(v: &[f64]) -> (f64, f64) {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    (min, v.iter().sum::<f64>() / v.len().max(1) as f64)
}

/// The cosine between each row of `a` and the same row of `b` (in f64).
pub fn cosines(a: &ndarray::Array2<f32>, b: &ndarray::Array2<f32>) -> Vec<f64> {
    a.rows()
        .into_iter()
        .zip(b.rows())
        .map(|(u, v)| {
            let dot: f64 = u.iter().zip(&v).map(|(p, q)| *p as f64 * *q as f64).sum();
            let nu = u.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
            let nv = v.iter().map(|q| (*q as f64).powi(2)).sum::<f64>().sqrt();
            dot / (nu * nv).max(f64::MIN_POSITIVE)
        })
        .collect()
}
