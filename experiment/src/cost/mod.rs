//! Cost-aware routing: model costs, decision rules that trade a router's scores against cost,
//! cost–quality curves, their non-decreasing convex hull and AIQ (RouterBench), calibration
//! of the trade-off on training data, and the cascade baseline (FrugalGPT/AutoMix style).
//!
//! Every router's `[question, model]` scores become a family of decisions indexed by one
//! parameter: `penalty` picks the model maximizing `score - lambda x cost`; `within` picks the
//! cheapest model whose score is within `delta` of the best. The parameter values swept are
//! the points where some query's decision changes (quantiles of them), so curves are evenly
//! spread whatever the scale of a router's scores.

mod cascade;
mod curve;

pub use cascade::Cascade;
#[cfg(test)]
use curve::switch_points;
pub use curve::*;
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use rgd_core::eval::vote;
use rgd_core::stats::LocScale;
use rgd_core::{Error, Result};
use rgd_core::{Letter, Split, rank};

/// How a router's scores are traded against cost.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Pick the model maximizing `score - lambda x cost`.
    #[default]
    Penalty,
    /// Pick the cheapest model whose score is within `delta` of the best score.
    Within,
}

/// Which training answers calibrations score against.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CalibrateOn {
    /// The answer key of the training questions when most have one (generated questions
    /// always do), else the pool's plurality answer.
    #[default]
    Auto,
    /// The answer key.
    Key,
    /// The pool's plurality answer (no key needed).
    Plurality,
}

/// Which router scores of the training questions a calibration reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalibrationScores {
    /// Cross-fitted: the training questions in `folds` folds (per subject, seeded); each fold
    /// scored by the router trained on the others. Routers that memorise their training data
    /// (kNN, MLP, …) look perfect on it; their scores of unseen questions do not.
    OutOfFold {
        /// Number of folds (2 to 20).
        folds: usize,
    },
    /// The router trained on the whole training split, scoring the same questions.
    InSample,
}

impl CalibrationScores {
    /// How the report says it.
    pub fn label(&self) -> String {
        match self {
            CalibrationScores::OutOfFold { folds } => {
                format!("out-of-fold scores ({folds} folds of the training split)")
            }
            CalibrationScores::InSample => "in-sample scores of the training split".into(),
        }
    }
}

/// Where the cost per model comes from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CostFrom {
    /// The pipeline's `[costs]` table (model name = cost per query).
    #[default]
    Table,
    /// Mean seconds per question measured by the run (training split).
    Latency,
    /// Mean cost per answer recorded in the data (training split), e.g. RouterBench's
    /// `{model}|total_cost`.
    Data,
}

/// The `[costs]` table of a pipeline: model costs and how to analyse them.
///
/// ```toml
/// [costs]
/// from = "latency"        # or "data" (costs recorded in the data), or "table" (default)
/// unit = "s"              # how costs are stated in the report
/// rule = "penalty"        # or "within"
/// points = 50             # parameter values swept per router
/// budget = 0.5            # calibrate on training data to this average cost per query
/// accuracy_share = 0.99   # ... and to this share of the best single model's accuracy
/// budgets = [0.3, 0.6]    # report accuracy at these budgets
/// calibrate_on = "auto"   # or "key" / "plurality": training answers calibration scores against
/// calibrate_scores = "out_of_fold"  # or "in_sample": which router scores calibration reads
/// folds = 5               # folds of the out-of-fold scores
///
/// [costs.models]
/// M0 = 1.0                # model name = cost per query (overrides a measured cost)
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostSettings {
    /// Where costs come from.
    pub from: CostFrom,
    /// Unit shown in the report.
    pub unit: String,
    /// Costs given per model (all of them for `from = "table"`; overrides otherwise).
    pub given: BTreeMap<String, f64>,
    /// Decision rule.
    pub rule: Rule,
    /// Parameter values swept per router.
    pub points: usize,
    /// Target average cost per query for calibration.
    pub budget: Option<f64>,
    /// Target share of the best single model's accuracy for calibration.
    pub accuracy_share: Option<f64>,
    /// Budgets at which accuracy is reported.
    pub budgets: Vec<f64>,
    /// Which training answers calibrations score against.
    pub calibrate_on: CalibrateOn,
    /// Which router scores of the training questions calibrations read.
    pub calibrate_scores: CalibrationScores,
    /// `file:line [costs]`, for messages.
    pub context: String,
}

/// Which router scores of the training questions calibrations read (`calibrate_scores`).
#[derive(Clone, Copy, Debug, serde::Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CalibrationScoresName {
    /// Each training question scored by the router trained without its fold.
    OutOfFold,
    /// Each training question scored by the router trained on it.
    InSample,
}

fn default_points() -> u64 {
    50
}

/// `[costs]`: model costs and the cost–quality analysis (see [`CostSettings`]). Typed: a wrong
/// type or an unknown value names its key (`models.M0`, `rule`).
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CostsTable {
    /// `"table"` (default: every model's cost in `[costs.models]`), `"latency"` (mean
    /// measured seconds per training question) or `"data"` (mean recorded cost per training
    /// answer, from a response matrix's `cost`).
    #[serde(default)]
    pub from: CostFrom,
    /// How costs are stated in the report (default `s` for latency, else `cost units`).
    #[serde(default)]
    pub unit: Option<String>,
    /// `[costs.models]`: pool model name = cost per query (overrides a measured cost).
    #[serde(default)]
    pub models: BTreeMap<String, f64>,
    /// `"penalty"` (default: argmax score - lambda x cost) or `"within"` (the cheapest model
    /// whose score is within delta of the best).
    #[serde(default)]
    pub rule: Rule,
    /// Parameter values swept per router (2 to 100000; default 50).
    #[serde(default = "default_points")]
    pub points: u64,
    /// Calibrate on training data to this average cost per query.
    #[serde(default)]
    pub budget: Option<f64>,
    /// ... and to this share of the best single model's accuracy (default 0.99 without a
    /// budget).
    #[serde(default)]
    pub accuracy_share: Option<f64>,
    /// Report the best test accuracy within these budgets.
    #[serde(default)]
    pub budgets: Vec<f64>,
    /// `"auto"` (default), `"key"` or `"plurality"`: the training answers calibration scores
    /// against.
    #[serde(default)]
    pub calibrate_on: CalibrateOn,
    /// `"out_of_fold"` (default: each training question scored by the router trained without
    /// its fold) or `"in_sample"` (by the router trained on it).
    #[serde(default)]
    pub calibrate_scores: Option<CalibrationScoresName>,
    /// Folds of the out-of-fold scores (2 to 20; default 5).
    #[serde(default)]
    pub folds: Option<u64>,
}

impl CostSettings {
    /// Read a `[costs]` table; `context` (`file:line [costs]`) goes into every message.
    pub fn parse(table: &toml::Table, context: &str) -> Result<CostSettings> {
        let err = |msg: String| Error::Config {
            context: context.to_string(),
            msg,
        };
        let t: CostsTable = rgd_core::registry::from_table(table.clone()).map_err(&err)?;
        // ranges serde cannot state: checked here, naming the key
        let nonneg = |key: &str, x: f64| -> Result<f64> {
            if x.is_finite() && x >= 0.0 {
                Ok(x)
            } else {
                Err(err(format!(
                    "`{key}` must be a finite number >= 0, got {x}"
                )))
            }
        };
        let int_in = |key: &str, v: u64, lo: u64, hi: u64| -> Result<usize> {
            if (lo..=hi).contains(&v) {
                Ok(v as usize)
            } else {
                Err(err(format!(
                    "`{key}` must be an integer in {lo}..={hi}, got {v}"
                )))
            }
        };
        let calibrate_scores = match (t.calibrate_scores, t.folds) {
            (None | Some(CalibrationScoresName::OutOfFold), folds) => {
                CalibrationScores::OutOfFold {
                    folds: int_in("folds", folds.unwrap_or(5), 2, 20)?,
                }
            }
            (Some(CalibrationScoresName::InSample), None) => CalibrationScores::InSample,
            (Some(CalibrationScoresName::InSample), Some(_)) => {
                return Err(err(
                    "`folds` is for `calibrate_scores = \"out_of_fold\"`, not \"in_sample\"".into(),
                ));
            }
        };
        let unit = t.unit.unwrap_or_else(|| match t.from {
            CostFrom::Latency => "s".into(),
            CostFrom::Table | CostFrom::Data => "cost units".into(),
        });
        let points = int_in("points", t.points, 2, 100_000)?;
        let budget = t.budget.map(|x| nonneg("budget", x)).transpose()?;
        if let Some(s) = t.accuracy_share
            && !(s > 0.0 && s <= 1.5)
        {
            return Err(err(format!(
                "`accuracy_share` must be in (0, 1.5], got {s}"
            )));
        }
        let budgets = t
            .budgets
            .iter()
            .map(|&x| nonneg("budgets", x))
            .collect::<Result<_>>()?;
        let mut given = BTreeMap::new();
        for (k, v) in t.models {
            let v = nonneg(&format!("models.{k}"), v)?;
            given.insert(k, v);
        }
        Ok(CostSettings {
            from: t.from,
            unit,
            given,
            rule: t.rule,
            points,
            budget,
            accuracy_share: t
                .accuracy_share
                .or(if budget.is_none() { Some(0.99) } else { None }),
            budgets,
            calibrate_on: t.calibrate_on,
            calibrate_scores,
            context: context.to_string(),
        })
    }

    /// The cost of every pool model (in `models` order), from the table or measured on the
    /// training split.
    pub fn resolve(&self, models: &[String], train: &Split) -> Result<Costs> {
        let err = |msg: String| Error::Config {
            context: self.context.clone(),
            msg,
        };
        if let Some(unknown) = self.given.keys().find(|k| !models.contains(k)) {
            return Err(err(format!(
                "`{unknown}` is not a pool model (the pool: {})",
                models.join(", ")
            )));
        }
        let measured = match self.from {
            CostFrom::Table => None,
            CostFrom::Latency => Some(mean_latency(train).ok_or_else(|| {
                err("`from = \"latency\"`: this run's data records no latency; give each model's cost instead in [costs.models] (model name = cost per query)".into())
            })?),
            CostFrom::Data => Some(train.responses.cost.as_ref().map(column_means).ok_or_else(|| {
                err("`from = \"data\"`: this run's data records no cost per answer (a response matrix's `cost` column); give each model's cost in [costs.models]".into())
            })?),
        };
        let what = match self.from {
            CostFrom::Data => ("cost", "mean recorded cost per training answer"),
            _ => ("latency", "mean seconds per training question, measured"),
        };
        let mut per_model = Vec::with_capacity(models.len());
        let mut source = Vec::with_capacity(models.len());
        for (j, m) in models.iter().enumerate() {
            if let Some(c) = self.given.get(m) {
                per_model.push(*c);
                source.push("[costs.models]".to_string());
            } else if let Some(lat) = &measured {
                if !lat[j].is_finite() {
                    return Err(err(format!(
                        "no {} recorded for model `{m}`: each cell of its column in the training data is empty or unreadable (the data warnings count them); give its cost in [costs.models] (`{m} = ...`)",
                        what.0
                    )));
                }
                per_model.push(lat[j]);
                source.push(what.1.to_string());
            } else {
                return Err(err(format!(
                    "no cost for model `{m}`: give every pool model a cost in [costs.models] (`{m} = ...`) or set `from = \"latency\"`"
                )));
            }
        }
        Ok(Costs {
            models: models.to_vec(),
            per_model,
            source,
            unit: self.unit.clone(),
        })
    }
}

/// Mean latency per model over a split (`None` without latency; NaN cells are skipped).
pub fn mean_latency(split: &Split) -> Option<Vec<f64>> {
    split.responses.latency.as_ref().map(column_means)
}

/// Mean of each column over its finite cells (NaN for a column with none). A running mean, so
/// that cells near f64::MAX do not overflow a sum into an infinite (unrecorded-looking) cost.
fn column_means(a: &ndarray::Array2<f64>) -> Vec<f64> {
    a.columns()
        .into_iter()
        .map(|c| {
            let mut mean = f64::NAN;
            for (k, x) in c.iter().copied().filter(|x| x.is_finite()).enumerate() {
                mean = if k == 0 {
                    x
                } else {
                    mean + (x - mean) / (k + 1) as f64
                };
            }
            mean
        })
        .collect()
}

/// The cost per query of each pool model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Costs {
    /// Model names.
    pub models: Vec<String>,
    /// Cost per query, aligned with `models`.
    pub per_model: Vec<f64>,
    /// Where each cost came from.
    pub source: Vec<String>,
    /// The unit.
    pub unit: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mean_of_huge_costs_does_not_overflow_into_an_unrecorded_cost() {
        let a = ndarray::array![[1e308, f64::NAN], [1.7e308, f64::NAN], [f64::NAN, f64::NAN]];
        let m = column_means(&a);
        assert!((m[0] - 1.35e308).abs() < 1e295, "{}", m[0]);
        assert!(m[1].is_nan());
        let b = ndarray::array![[1.0], [2.0], [6.0]];
        assert_eq!(column_means(&b), vec![3.0]);
    }

    #[test]
    fn decision_rules() {
        let s = [0.9, 0.85, 0.2];
        let c = [10.0, 1.0, 0.1];
        assert_eq!(choose(&s, &c, Rule::Penalty, 0.0), 0);
        assert_eq!(choose(&s, &c, Rule::Penalty, 0.01), 1);
        assert_eq!(choose(&s, &c, Rule::Penalty, f64::INFINITY), 2);
        assert_eq!(choose(&s, &c, Rule::Within, 0.0), 0);
        assert_eq!(choose(&s, &c, Rule::Within, 0.06), 1);
        assert_eq!(choose(&s, &c, Rule::Within, 1.0), 2);
        // equal scores: the cheaper one
        assert_eq!(choose(&[0.5, 0.5], &[2.0, 1.0], Rule::Penalty, 0.0), 1);
    }

    #[test]
    fn switch_points_are_where_the_decision_changes() {
        let s = [0.9, 0.85, 0.2];
        let c = [10.0, 1.0, 0.1];
        let mut pts = Vec::new();
        switch_points(&s, &c, Rule::Penalty, &mut pts);
        assert_eq!(pts.len(), 2);
        for &l in &pts {
            let before = choose(&s, &c, Rule::Penalty, l * (1.0 - 1e-6));
            let after = choose(&s, &c, Rule::Penalty, l * (1.0 + 1e-6));
            assert_ne!(before, after, "lambda {l}");
        }
    }

    #[test]
    fn hull_and_aiq() {
        // (1, .5) (2, .6) (3, .55) dominated, (4, .9)
        let pts = [[1.0, 0.5], [2.0, 0.6], [3.0, 0.55], [4.0, 0.9]];
        let h = hull(&pts);
        // (2, .6) lies under the chord from (1,.5) to (4,.9) (0.633 at 2)
        assert_eq!(h, vec![[1.0, 0.5], [4.0, 0.9]]);
        assert!((aiq(&pts, 1.0, 4.0) - 0.7).abs() < 1e-12);
        // flat past the last point
        assert!((aiq(&[[1.0, 0.5]], 1.0, 3.0) - 0.5).abs() < 1e-12);
        assert!((hull_at(&h, 2.5) - 0.7).abs() < 1e-12);
        assert_eq!(hull_at(&h, 0.5), 0.0);
    }

    #[test]
    fn calibration_and_reach() {
        let p = |cost, accuracy| Point {
            param: 0.0,
            cost,
            accuracy,
        };
        let pts = [p(1.0, 0.5), p(2.0, 0.7), p(3.0, 0.8), p(4.0, 0.81)];
        assert_eq!(calibrate(&pts, Target::Budget(2.5), 0.8).unwrap().cost, 2.0);
        assert_eq!(
            calibrate(&pts, Target::AccuracyShare(0.95), 0.8)
                .unwrap()
                .cost,
            3.0
        );
        // unreachable share: the most accurate point
        assert_eq!(
            calibrate(&pts, Target::AccuracyShare(1.0), 0.9)
                .unwrap()
                .cost,
            4.0
        );
        assert_eq!(cost_to_reach(&pts, 0.8), Some(3.0));
        assert_eq!(cost_to_reach(&pts, 0.9), None);
        assert_eq!(accuracy_at(&pts, 2.0), Some(0.7));
        assert_eq!(accuracy_at(&pts, 0.5), None);
    }

    #[test]
    fn settings_parse_with_clear_errors() {
        let t: toml::Table = toml::from_str("models = { M0 = 1, M1 = 0.5 }\nbudget = 0.7").unwrap();
        let s = CostSettings::parse(&t, "p.toml:3 [costs]").unwrap();
        assert_eq!(s.given.len(), 2);
        assert_eq!(s.budget, Some(0.7));
        assert_eq!(s.accuracy_share, None);
        let t: toml::Table = toml::from_str("models = { M0 = \"cheap\" }").unwrap();
        let e = CostSettings::parse(&t, "p.toml:3 [costs]").unwrap_err();
        assert!(e.to_string().contains("p.toml:3 [costs]"), "{e}");
        assert!(e.to_string().contains("M0"), "{e}");
        let t: toml::Table = toml::from_str("models = { M0 = -1 }").unwrap();
        assert!(CostSettings::parse(&t, "x").is_err());
        let t: toml::Table = toml::from_str("from = \"tokens\"").unwrap();
        assert!(
            CostSettings::parse(&t, "x")
                .unwrap_err()
                .to_string()
                .contains("latency")
        );
    }
}
