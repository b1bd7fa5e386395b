//! The one train → score → evaluate step, used by the main run, training seeds, training
//! sources, the filter ablation, sweeps and benchmarks.

use ndarray::Array2;
use rgd_core::eval::{RouterEval, bootstrap_ci, evaluate};
use rgd_core::stats::LocScale;
use rgd_core::{Context, Router, Split, TrainedRouter};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// A router trained on one split and scored on another.
#[derive(Debug)]
pub struct Evaluated {
    /// The trained router.
    pub trained: Box<dyn TrainedRouter>,
    /// Its `[question, model]` scores on the evaluated split.
    pub scores: Array2<f64>,
    /// Top-1 and top-3-vote accuracy, per subject and per question.
    pub eval: RouterEval,
    /// Seconds spent training.
    pub train_seconds: f64,
    /// Seconds spent scoring the evaluated split.
    pub route_seconds: f64,
}

/// Top-1 and top-3-vote accuracy with 95% bootstrap intervals: one cell of a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Top-1 accuracy.
    pub top1: f64,
    /// Its 95% interval.
    pub top1_ci95: [f64; 2],
    /// Top-3 vote accuracy.
    pub top3_vote: f64,
    /// Its 95% interval.
    pub top3_vote_ci95: [f64; 2],
}

impl Evaluated {
    /// The accuracy cell, with intervals from 1,000 bootstrap resamples under `seed`.
    pub fn cell(&self, seed: u64) -> Cell {
        Cell {
            top1: self.eval.overall.top1,
            top1_ci95: bootstrap_ci(&self.eval.top1_correct, 1000, seed),
            top3_vote: self.eval.overall.top3_vote,
            top3_vote_ci95: bootstrap_ci(&self.eval.top3_correct, 1000, seed),
        }
    }
}

/// Train `router` on `train`, score `test` and evaluate the scores against `test`'s answers;
/// `train_stats` are the pool's confidence statistics on the training split (the top-3 vote's
/// tie-break).
pub fn train_and_evaluate(
    router: &dyn Router,
    train: &Split,
    test: &Split,
    models: &[String],
    train_stats: &[LocScale],
    ctx: &Context,
) -> rgd_core::Result<Evaluated> {
    // a router that takes labels has its labeler's needs checked where it asks for them
    if router.labels().is_none()
        && router.supervision() == rgd_core::Supervision::QueryOnly
        && !train.responses.has_letters()
    {
        return Err(rgd_core::Error::Data(format!(
            "this router learns from the letters the pool chose, but split `{}` records only whether each answer was right; on such data run routers that learn from correctness (knn, mlp, mf, ranker, best_single)",
            train.name
        )));
    }
    let t0 = Instant::now();
    let trained = router.train(train, models, ctx)?;
    let train_seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let (scores, eval) = evaluate_trained(trained.as_ref(), test, models, train_stats)?;
    let route_seconds = t1.elapsed().as_secs_f64();
    Ok(Evaluated {
        trained,
        scores,
        eval,
        train_seconds,
        route_seconds,
    })
}

/// Score `test` with a router already trained and evaluate the scores against `test`'s
/// answers (`train_stats` as in [`train_and_evaluate`]).
pub fn evaluate_trained(
    trained: &dyn TrainedRouter,
    test: &Split,
    models: &[String],
    train_stats: &[LocScale],
) -> rgd_core::Result<(Array2<f64>, RouterEval)> {
    let scores = trained.score_split(test)?;
    let eval = evaluate(test, models, &scores, train_stats);
    Ok((scores, eval))
}

/// Mean and sample standard deviation.
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, var.sqrt())
}

/// [`train_and_evaluate`] on a dataset's own splits: trained on `train`, evaluated on `test`.
pub fn on_dataset(
    router: &dyn Router,
    ds: &rgd_core::Dataset,
    train_stats: &[LocScale],
    ctx: &Context,
) -> rgd_core::Result<Evaluated> {
    train_and_evaluate(router, &ds.train, &ds.test, &ds.models, train_stats, ctx)
}
