//! The cost–quality analysis of `rgd run` when the pipeline has a `[costs]` table: every
//! router's curve, AIQ and calibrated operating points, the single models, the zero router,
//! the cascade and the oracle (see [`crate::cost`]).

use crate::cost::{
    self, CalibrateOn, CalibrationScores, Cascade, CostSettings, Costs, Decisions, Point, Rule,
    Target, accuracy_at, cost_to_reach, gold_answers, single_accuracy,
};
use crate::error::Result;
use ndarray::Array2;
use rgd_core::stats::LocScale;
use rgd_core::{Context, Dataset, Letter, Router, Split, Supervision, TrainedRouter};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A calibrated operating point: the parameter chosen on training data, applied to the test.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Calibrated {
    /// What was aimed at.
    pub target: String,
    /// Whether some setting met the target on training data (if not, the closest is used:
    /// the most accurate for an accuracy share).
    pub reached: bool,
    /// The parameter (lambda, delta or threshold); `null` for +infinity.
    pub param: Option<f64>,
    /// Training split: average cost per query and accuracy (against the calibration answers).
    pub train_cost: f64,
    /// Training accuracy against the calibration answers.
    pub train_accuracy: f64,
    /// Test split: average cost per query.
    pub test_cost: f64,
    /// Test accuracy.
    pub test_accuracy: f64,
    /// 1 - test cost / the best single model's cost.
    pub cost_saving: f64,
    /// Test accuracy minus the best single model's.
    pub accuracy_change: f64,
    /// Paired 95% bootstrap interval of the accuracy change (the same resampled test
    /// questions for the router and the best single model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_change_ci95: Option<[f64; 2]>,
    /// 95% bootstrap interval of the cost saving over the same resampled test questions (the
    /// best single model costs the same on every question).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_saving_ci95: Option<[f64; 2]>,
}

/// A router's (or the cascade's) cost–quality detail.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CurveDetail {
    /// Parameter values swept (ascending; `null` for +infinity, -infinity shown as `null` too).
    pub params: Vec<Option<f64>>,
    /// Which answers the training-split calibration scored against.
    pub calibrated_on: String,
    /// Which router scores of the training questions it read (out-of-fold or in-sample).
    #[serde(default)]
    pub calibration_scores: String,
    /// Calibrated operating points.
    pub calibrated: Vec<Calibrated>,
    /// Cheapest test cost reaching 95% and 100% of the best single model's test accuracy.
    pub cost_to_reach: BTreeMap<String, Option<f64>>,
    /// Best test accuracy within each reported budget.
    pub accuracy_at_budget: Vec<(f64, Option<f64>)>,
    /// The top-3 vote's (cost, accuracy): it pays for three models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top3_vote: Option<[f64; 2]>,
}

/// A router's curve, AIQ and detail.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RouterCost {
    /// Area under the non-decreasing convex hull of the curve, normalized over the single
    /// models' cost range.
    pub aiq: f64,
    /// `[cost, accuracy]` on the test split, one per parameter value.
    pub curve: Vec<[f64; 2]>,
    /// The rest.
    pub detail: CurveDetail,
}

/// One model's cost and accuracy.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelCost {
    /// Cost per query.
    pub cost: f64,
    /// Where it came from.
    pub source: String,
    /// Test accuracy.
    pub accuracy: f64,
}

/// The oracle as a cost–quality point.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OraclePoint {
    /// Share of test questions some model answers correctly.
    pub accuracy: f64,
    /// What that would be if the models' errors were independent.
    pub oracle_if_independent: f64,
    /// Its cost: the cheapest right model per question (the cheapest model when none is).
    pub cost: f64,
}

/// The global part of the analysis (`results.json` key `costs`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CostsOut {
    /// The unit of every cost.
    pub unit: String,
    /// The decision rule swept.
    pub rule: Rule,
    /// Each model's cost and test accuracy.
    pub per_model: BTreeMap<String, ModelCost>,
    /// The single models' cost range (AIQ is normalized over it).
    pub cost_range: [f64; 2],
    /// The best single model on the test split: `[cost, accuracy]` and its name.
    pub best_single: (String, [f64; 2]),
    /// The zero router (the convex hull of the single models): its AIQ and hull.
    pub zero_router: (f64, Vec<[f64; 2]>),
    /// The cascade: its chain (cheapest first), AIQ, curve and detail.
    pub cascade: (Vec<String>, RouterCost),
    /// The oracle.
    pub oracle: OraclePoint,
    /// Seconds the analysis took (all routers).
    pub seconds: f64,
}

/// Everything the per-router analysis needs, computed once per run.
pub struct Analysis {
    settings: CostSettings,
    /// Model costs.
    pub costs: Costs,
    test_gold: Vec<Option<Letter>>,
    train_key: Vec<Option<Letter>>,
    train_plurality: Vec<Option<Letter>>,
    key_share: f64,
    lo: f64,
    hi: f64,
    best: (usize, f64),
    /// The best single model's correctness per test question (paired intervals).
    best_correct: Vec<bool>,
    seed: u64,
}

fn opt(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

impl Analysis {
    /// Resolve costs and the answers to score against; `seed` seeds the out-of-fold split and
    /// the bootstrap.
    pub fn new(
        settings: &CostSettings,
        ds: &Dataset,
        train_stats: &[LocScale],
        seed: u64,
    ) -> Result<Self> {
        let costs = settings.resolve(&ds.models, &ds.train)?;
        let test_gold: Vec<Option<Letter>> = ds.test.questions.iter().map(|q| q.answer).collect();
        let acc = single_accuracy(&ds.test, &test_gold);
        let best = rgd_core::rank(&acc)
            .first()
            .map(|&j| (j, acc[j]))
            .unwrap_or((0, 0.0));
        let c = &costs.per_model;
        let best_correct = (0..ds.test.len())
            .map(|q| ds.test.responses.is_correct(q, best.0, test_gold[q]))
            .collect();
        Ok(Analysis {
            best_correct,
            seed,
            settings: settings.clone(),
            lo: c.iter().copied().fold(f64::INFINITY, f64::min),
            hi: c.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            test_gold,
            key_share: ds
                .train
                .questions
                .iter()
                .filter(|q| q.answer.is_some())
                .count() as f64
                / ds.train.len().max(1) as f64,
            train_key: gold_answers(&ds.train, true, train_stats),
            train_plurality: gold_answers(&ds.train, false, train_stats),
            costs,
            best,
        })
    }

    /// The training answers a calibration scores against, and their description.
    fn calibration_gold(&self, supervision: Supervision) -> (&[Option<Letter>], &'static str) {
        let key = match self.settings.calibrate_on {
            CalibrateOn::Key => true,
            CalibrateOn::Plurality => false,
            CalibrateOn::Auto => self.key_share >= 0.5 || supervision == Supervision::QueryAnswer,
        };
        if key {
            (&self.train_key, "answer key of the training questions")
        } else {
            (
                &self.train_plurality,
                "pool's plurality answer on the training questions (no key)",
            )
        }
    }

    fn best_cost(&self) -> f64 {
        self.costs.per_model[self.best.0]
    }

    fn targets(&self) -> Vec<Target> {
        let mut t = Vec::new();
        if let Some(b) = self.settings.budget {
            t.push(Target::Budget(b));
        }
        if let Some(s) = self.settings.accuracy_share {
            t.push(Target::AccuracyShare(s));
        }
        t
    }

    fn calibrations(
        &self,
        train_points: &[Point],
        train_gold: &[Option<Letter>],
        ds: &Dataset,
        on_test: impl Fn(f64) -> Decisions,
    ) -> Vec<Calibrated> {
        let train_best = single_accuracy(&ds.train, train_gold)
            .into_iter()
            .fold(0.0, f64::max);
        self.targets()
            .into_iter()
            .filter_map(|t| {
                let p = cost::calibrate(train_points, t, train_best)?;
                let reached = match t {
                    Target::Budget(b) => p.cost <= b + 1e-12,
                    Target::AccuracyShare(s) => p.accuracy >= s * train_best - 1e-12,
                };
                let d = on_test(p.param);
                let test = d.point(p.param);
                let best_cost = self.best_cost();
                let cost_ci = rgd_core::eval::bootstrap_mean_ci(&d.cost, 1000, self.seed);
                Some(Calibrated {
                    accuracy_change_ci95: Some(rgd_core::eval::paired_bootstrap_ci(
                        &d.correct,
                        &self.best_correct,
                        1000,
                        self.seed,
                    )),
                    cost_saving_ci95: (best_cost > 0.0)
                        .then(|| [1.0 - cost_ci[1] / best_cost, 1.0 - cost_ci[0] / best_cost]),
                    target: t.label(&self.costs.unit),
                    reached,
                    param: opt(p.param),
                    train_cost: p.cost,
                    train_accuracy: p.accuracy,
                    test_cost: test.cost,
                    test_accuracy: test.accuracy,
                    cost_saving: if self.best_cost() > 0.0 {
                        1.0 - test.cost / self.best_cost()
                    } else {
                        0.0
                    },
                    accuracy_change: test.accuracy - self.best.1,
                })
            })
            .collect()
    }

    fn detail(
        &self,
        test_points: &[Point],
        calibrated_on: &str,
        calibration_scores: String,
        calibrated: Vec<Calibrated>,
        top3_vote: Option<[f64; 2]>,
    ) -> RouterCost {
        let curve: Vec<[f64; 2]> = test_points.iter().map(|p| [p.cost, p.accuracy]).collect();
        RouterCost {
            aiq: cost::aiq(&curve, self.lo, self.hi),
            curve,
            detail: CurveDetail {
                params: test_points.iter().map(|p| opt(p.param)).collect(),
                calibrated_on: calibrated_on.to_string(),
                calibration_scores,
                calibrated,
                cost_to_reach: [("95%", 0.95), ("100%", 1.0)]
                    .into_iter()
                    .map(|(k, s)| (k.to_string(), cost_to_reach(test_points, s * self.best.1)))
                    .collect(),
                accuracy_at_budget: self
                    .settings
                    .budgets
                    .iter()
                    .map(|&b| (b, accuracy_at(test_points, b)))
                    .collect(),
                top3_vote,
            },
        }
    }

    /// The router's scores of the training questions that calibration reads, and what they
    /// are: out-of-fold (the training split in folds per subject, seeded; each fold scored by
    /// `router` trained on the others) or `trained`'s in-sample scores. When a fold cannot be
    /// trained (too few questions, say), the in-sample scores are used and the label says why.
    pub fn training_scores(
        &self,
        router: &dyn Router,
        trained: &dyn TrainedRouter,
        ds: &Dataset,
        ctx: &Context,
    ) -> rgd_core::Result<(Array2<f64>, String)> {
        let in_sample = |why: Option<String>| -> rgd_core::Result<(Array2<f64>, String)> {
            let label = CalibrationScores::InSample.label();
            Ok((
                trained.score_split(&ds.train)?,
                match why {
                    Some(why) => format!("{label} (out-of-fold training failed: {why})"),
                    None => label,
                },
            ))
        };
        let CalibrationScores::OutOfFold { folds } = self.settings.calibrate_scores else {
            return in_sample(None);
        };
        match out_of_fold_scores(router, &ds.train, &ds.models, folds, self.seed, ctx) {
            Ok(s) => Ok((s, self.settings.calibrate_scores.label())),
            Err(rgd_core::Error::Interrupted) => Err(rgd_core::Error::Interrupted),
            Err(e) => in_sample(Some(e.to_string())),
        }
    }

    /// One router: sweep its scores on the test split, calibrate on its scores of the training
    /// split (`train_scores`, described by `scored`: see [`Analysis::training_scores`]) against
    /// the generator's key for routers that learn from it, otherwise against the pool's
    /// plurality answer, so a query-only router stays query-only.
    pub fn router(
        &self,
        ds: &Dataset,
        supervision: Supervision,
        (train_scores, scored): (&Array2<f64>, String),
        test_scores: &Array2<f64>,
        top3_accuracy: f64,
    ) -> RouterCost {
        let c = &self.costs.per_model;
        let rule = self.settings.rule;
        let n = self.settings.points;
        let (train_gold, on) = self.calibration_gold(supervision);
        let test_grid = cost::parameter_grid(test_scores, c, rule, n);
        let test_points = cost::sweep(&ds.test, &self.test_gold, test_scores, c, rule, &test_grid);
        let train_grid = cost::parameter_grid(train_scores, c, rule, n);
        let train_points = cost::sweep(&ds.train, train_gold, train_scores, c, rule, &train_grid);
        let calibrated = self.calibrations(&train_points, train_gold, ds, |param| {
            Decisions::of_router(&ds.test, &self.test_gold, test_scores, c, rule, param)
        });
        let top3 = [cost::vote_cost(test_scores, c, 3), top3_accuracy];
        self.detail(&test_points, on, scored, calibrated, Some(top3))
    }

    /// The single models, zero router, cascade and oracle.
    pub fn global(
        &self,
        ds: &Dataset,
        train_stats: &[LocScale],
        oracle: f64,
        oracle_if_independent: f64,
        seconds: f64,
    ) -> CostsOut {
        let c = &self.costs.per_model;
        let acc = single_accuracy(&ds.test, &self.test_gold);
        let singles: Vec<[f64; 2]> = c.iter().zip(&acc).map(|(c, a)| [*c, *a]).collect();
        let (train_gold, on) = self.calibration_gold(Supervision::QueryOnly);
        let cascade = Cascade::fit(
            &ds.train,
            train_gold,
            c,
            train_stats,
            self.settings.points,
            self.lo,
            self.hi,
        );
        let test_grid = cascade.grid(&ds.test, self.settings.points);
        let test_points = cascade.sweep(&ds.test, &self.test_gold, c, &test_grid);
        let train_grid = cascade.grid(&ds.train, self.settings.points);
        let train_points = cascade.sweep(&ds.train, train_gold, c, &train_grid);
        let calibrated = self.calibrations(&train_points, train_gold, ds, |t| {
            cascade.decisions(&ds.test, &self.test_gold, c, t)
        });
        // the cascade learns only each model's confidence scale: nothing to memorise
        let scored = "the cascade's thresholds on the training split".to_string();
        let cascade_out = self.detail(&test_points, on, scored, calibrated, None);
        let oracle_cost = (0..ds.test.len())
            .map(|q| {
                (0..c.len())
                    .filter(|&j| ds.test.responses.is_correct(q, j, self.test_gold[q]))
                    .map(|j| c[j])
                    .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.min(x))))
                    .unwrap_or(self.lo)
            })
            .sum::<f64>()
            / ds.test.len().max(1) as f64;
        CostsOut {
            unit: self.costs.unit.clone(),
            rule: self.settings.rule,
            per_model: ds
                .models
                .iter()
                .enumerate()
                .map(|(j, m)| {
                    (
                        m.clone(),
                        ModelCost {
                            cost: c[j],
                            source: self.costs.source[j].clone(),
                            accuracy: acc[j],
                        },
                    )
                })
                .collect(),
            cost_range: [self.lo, self.hi],
            best_single: (
                ds.models[self.best.0].clone(),
                [self.best_cost(), self.best.1],
            ),
            zero_router: (cost::aiq(&singles, self.lo, self.hi), cost::hull(&singles)),
            cascade: (
                cascade
                    .chain
                    .iter()
                    .map(|&j| ds.models[j].clone())
                    .collect(),
                cascade_out,
            ),
            oracle: OraclePoint {
                accuracy: oracle,
                oracle_if_independent,
                cost: oracle_cost,
            },
            seconds,
        }
    }
}

/// Each training question scored by `router` trained without its fold: the questions of each
/// subject ordered by a seeded hash of their id and dealt into `folds` folds, so every fold
/// holds every subject's share.
pub fn out_of_fold_scores(
    router: &dyn Router,
    train: &Split,
    models: &[String],
    folds: usize,
    seed: u64,
    ctx: &Context,
) -> rgd_core::Result<Array2<f64>> {
    let mut fold = vec![0usize; train.len()];
    for (_, mut idx) in train.by_subject() {
        idx.sort_by_key(|&q| {
            (
                rgd_core::data::fnv(&format!("{seed}:{}", train.questions[q].id)),
                q,
            )
        });
        for (k, q) in idx.into_iter().enumerate() {
            fold[q] = k % folds;
        }
    }
    let mut out = Array2::from_elem((train.len(), models.len()), f64::NAN);
    for f in 0..folds {
        ctx.check_interrupt()?;
        let (held, fit): (Vec<usize>, Vec<usize>) = (0..train.len()).partition(|&q| fold[q] == f);
        if held.is_empty() {
            continue;
        }
        let trained = router.train(&train.select(&fit), models, ctx)?;
        let s = trained.score_split(&train.select(&held))?;
        for (r, &q) in held.iter().enumerate() {
            out.row_mut(q).assign(&s.row(r));
        }
    }
    Ok(out)
}
