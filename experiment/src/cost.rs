//! Cost-aware routing: model costs, decision rules that trade a router's scores against cost,
//! cost–quality curves, their non-decreasing convex hull and AIQ (RouterBench), calibration
//! of the trade-off on training data, and the cascade baseline (FrugalGPT/AutoMix style).
//!
//! Every router's `[question, model]` scores become a family of decisions indexed by one
//! parameter: `penalty` picks the model maximizing `score - lambda x cost`; `within` picks the
//! cheapest model whose score is within `delta` of the best. The parameter values swept are
//! the points where some query's decision changes (quantiles of them), so curves are evenly
//! spread whatever the scale of a router's scores.

use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use rgd_core::eval::vote;
use rgd_core::stats::LocScale;
use rgd_core::{Error, Result};
use rgd_core::{Letter, Split, rank};

/// How a router's scores are traded against cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Pick the model maximizing `score - lambda x cost`.
    #[default]
    Penalty,
    /// Pick the cheapest model whose score is within `delta` of the best score.
    Within,
}

/// Which training answers calibrations score against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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

/// Where the cost per model comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostFrom {
    /// The pipeline's `[costs]` table (model name = cost per query).
    Table,
    /// Mean seconds per question measured by the run (training split).
    Latency,
}

/// The `[costs]` table of a pipeline: model costs and how to analyse them.
///
/// ```toml
/// [costs]
/// from = "latency"        # or "table" (default): give every model's cost below
/// unit = "s"              # how costs are stated in the report
/// rule = "penalty"        # or "within"
/// points = 50             # parameter values swept per router
/// budget = 0.5            # calibrate on training data to this average cost per query
/// accuracy_share = 0.99   # ... and to this share of the best single model's accuracy
/// budgets = [0.3, 0.6]    # report accuracy at these budgets
/// calibrate_on = "auto"   # or "key" / "plurality": training answers calibration scores against
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
    /// `file:line [costs]`, for messages.
    pub context: String,
}

/// `[costs]`: model costs and the cost–quality analysis (see [`CostSettings`]).
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CostsTable {
    /// `"table"` (default: every model's cost in `[costs.models]`) or `"latency"` (mean
    /// measured seconds per training question).
    #[serde(default)]
    pub from: Option<String>,
    /// How costs are stated in the report (default `s` for latency, else `cost units`).
    #[serde(default)]
    pub unit: Option<String>,
    /// `[costs.models]`: pool model name = cost per query (overrides a measured cost).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, f64>")]
    pub models: BTreeMap<String, toml::Value>,
    /// `"penalty"` (default: argmax score - lambda x cost) or `"within"` (the cheapest model
    /// whose score is within delta of the best).
    #[serde(default)]
    pub rule: Option<String>,
    /// Parameter values swept per router (2 to 100000; default 50).
    #[serde(default)]
    #[schemars(with = "Option<u64>")]
    pub points: Option<toml::Value>,
    /// Calibrate on training data to this average cost per query.
    #[serde(default)]
    #[schemars(with = "Option<f64>")]
    pub budget: Option<toml::Value>,
    /// ... and to this share of the best single model's accuracy (default 0.99 without a
    /// budget).
    #[serde(default)]
    #[schemars(with = "Option<f64>")]
    pub accuracy_share: Option<toml::Value>,
    /// Report the best test accuracy within these budgets.
    #[serde(default)]
    #[schemars(with = "Vec<f64>")]
    pub budgets: Option<toml::Value>,
    /// `"auto"` (default), `"key"` or `"plurality"`: the training answers calibration scores
    /// against.
    #[serde(default)]
    pub calibrate_on: Option<String>,
}

impl CostSettings {
    /// Read a `[costs]` table; `context` (`file:line [costs]`) goes into every message.
    pub fn parse(table: &toml::Table, context: &str) -> Result<CostSettings> {
        let err = |msg: String| Error::Config {
            context: context.to_string(),
            msg,
        };
        let t: CostsTable = rgd_core::registry::from_table(table.clone()).map_err(&err)?;
        // numbers are checked here rather than by serde so the message names the key
        let num = |key: &str, v: &toml::Value| -> Result<f64> {
            match v {
                toml::Value::Float(f) => Ok(*f),
                toml::Value::Integer(i) => Ok(*i as f64),
                other => Err(err(format!(
                    "`{key}` must be a number, got {}",
                    other.type_str()
                ))),
            }
        };
        let nonneg = |key: &str, x: f64| -> Result<f64> {
            if x.is_finite() && x >= 0.0 {
                Ok(x)
            } else {
                Err(err(format!(
                    "`{key}` must be a finite number >= 0, got {x}"
                )))
            }
        };
        let from = match t.from.as_deref() {
            None | Some("table") => CostFrom::Table,
            Some("latency") => CostFrom::Latency,
            Some(other) => {
                return Err(err(format!(
                    "`from` must be \"table\" or \"latency\", got \"{other}\""
                )));
            }
        };
        let rule = match t.rule.as_deref() {
            None | Some("penalty") => Rule::Penalty,
            Some("within") => Rule::Within,
            Some(other) => {
                return Err(err(format!(
                    "`rule` must be \"penalty\" or \"within\", got \"{other}\""
                )));
            }
        };
        let calibrate_on = match t.calibrate_on.as_deref() {
            None | Some("auto") => CalibrateOn::Auto,
            Some("key") => CalibrateOn::Key,
            Some("plurality") => CalibrateOn::Plurality,
            Some(other) => {
                return Err(err(format!(
                    "`calibrate_on` must be \"auto\", \"key\" or \"plurality\", got \"{other}\""
                )));
            }
        };
        let unit = t.unit.unwrap_or_else(|| match from {
            CostFrom::Latency => "s".into(),
            CostFrom::Table => "cost units".into(),
        });
        let points = match &t.points {
            None => 50,
            Some(toml::Value::Integer(i)) if (2..=100_000).contains(i) => *i as usize,
            Some(v) => {
                return Err(err(format!(
                    "`points` must be an integer in 2..=100000, got {v}"
                )));
            }
        };
        let budget = t
            .budget
            .as_ref()
            .map(|v| num("budget", v).and_then(|x| nonneg("budget", x)))
            .transpose()?;
        let accuracy_share = t
            .accuracy_share
            .as_ref()
            .map(|v| num("accuracy_share", v))
            .transpose()?;
        if let Some(s) = accuracy_share
            && !(s > 0.0 && s <= 1.5)
        {
            return Err(err(format!(
                "`accuracy_share` must be in (0, 1.5], got {s}"
            )));
        }
        let budgets = match &t.budgets {
            None => Vec::new(),
            Some(toml::Value::Array(a)) => a
                .iter()
                .map(|v| num("budgets", v).and_then(|x| nonneg("budgets", x)))
                .collect::<Result<_>>()?,
            Some(v) => {
                return Err(err(format!(
                    "`budgets` must be an array of numbers, got {}",
                    v.type_str()
                )));
            }
        };
        let mut given = BTreeMap::new();
        for (k, v) in &t.models {
            given.insert(k.clone(), nonneg(k, num(k, v)?)?);
        }
        Ok(CostSettings {
            from,
            unit,
            given,
            rule,
            points,
            budget,
            accuracy_share: accuracy_share.or(if budget.is_none() { Some(0.99) } else { None }),
            budgets,
            calibrate_on,
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
                        "no latency measured for model `{m}`; give its cost in [costs.models] (`{m} = ...`)"
                    )));
                }
                per_model.push(lat[j]);
                source.push("mean seconds per training question, measured".to_string());
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
    let lat = split.responses.latency.as_ref()?;
    Some(
        lat.columns()
            .into_iter()
            .map(|c| {
                let v: Vec<f64> = c.iter().copied().filter(|x| x.is_finite()).collect();
                if v.is_empty() {
                    f64::NAN
                } else {
                    v.iter().sum::<f64>() / v.len() as f64
                }
            })
            .collect(),
    )
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

/// Decide one query under a rule and parameter: the model index to call.
/// Ties go to the cheaper model, then to the lower index.
pub fn choose(scores: &[f64], costs: &[f64], rule: Rule, param: f64) -> usize {
    let better = |j: usize, v: f64, best: Option<(usize, f64)>| match best {
        None => true,
        Some((b, bv)) => v > bv || (v == bv && costs[j] < costs[b]),
    };
    match rule {
        Rule::Penalty => {
            let mut best: Option<(usize, f64)> = None;
            for (j, (&s, &c)) in scores.iter().zip(costs).enumerate() {
                let v = if param.is_infinite() {
                    -c
                } else {
                    s - param * c
                };
                let v = if v.is_nan() { f64::NEG_INFINITY } else { v };
                if better(j, v, best) {
                    best = Some((j, v));
                }
            }
            best.map(|b| b.0).unwrap_or(0)
        }
        Rule::Within => {
            let top = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mut best: Option<usize> = None;
            for (j, &s) in scores.iter().enumerate() {
                if s >= top - param && best.is_none_or(|b| costs[j] < costs[b]) {
                    best = Some(j);
                }
            }
            best.unwrap_or(0)
        }
    }
}

/// The parameter values at which one query's decision changes.
fn switch_points(scores: &[f64], costs: &[f64], rule: Rule, out: &mut Vec<f64>) {
    match rule {
        Rule::Penalty => {
            // walk the upper envelope of the lines s_j - lambda c_j from lambda = 0 upwards
            let mut cur = choose(scores, costs, Rule::Penalty, 0.0);
            loop {
                let mut next: Option<(f64, usize)> = None;
                for j in 0..scores.len() {
                    if costs[j] < costs[cur] {
                        let l = (scores[cur] - scores[j]) / (costs[cur] - costs[j]);
                        let l = l.max(0.0);
                        if l.is_finite()
                            && next
                                .is_none_or(|(nl, nj)| l < nl || (l == nl && costs[j] < costs[nj]))
                        {
                            next = Some((l, j));
                        }
                    }
                }
                match next {
                    Some((l, j)) => {
                        out.push(l);
                        cur = j;
                    }
                    None => break,
                }
            }
        }
        Rule::Within => {
            let top = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            out.extend(
                scores
                    .iter()
                    .map(|s| top - s)
                    .filter(|d| d.is_finite() && *d > 0.0),
            );
        }
    }
}

/// The values of `sorted` (ascending) at `n` evenly spaced quantiles.
fn quantiles(sorted: &[f64], n: usize) -> Vec<f64> {
    if sorted.is_empty() || n == 0 {
        return Vec::new();
    }
    (0..n)
        .map(|i| {
            let pos = if n == 1 {
                0.0
            } else {
                i as f64 * (sorted.len() - 1) as f64 / (n - 1) as f64
            };
            sorted[pos.round() as usize]
        })
        .collect()
}

fn dedup_sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v.dedup_by(|a, b| {
        a == b || (a.is_finite() && b.is_finite() && (*a - *b).abs() <= 1e-12 * b.abs().max(1.0))
    });
    v
}

/// `n` parameter values for a router's scores: 0 (pure score), the quantiles of the points
/// where decisions change (just past each, so the change has happened), and a value at
/// which every query goes to the cheapest model.
pub fn parameter_grid(scores: &Array2<f64>, costs: &[f64], rule: Rule, n: usize) -> Vec<f64> {
    let mut pts = Vec::new();
    for row in scores.rows() {
        let r = row.to_vec();
        switch_points(&r, costs, rule, &mut pts);
    }
    pts.sort_by(f64::total_cmp);
    let mut grid = vec![0.0];
    grid.extend(
        quantiles(&pts, n.saturating_sub(2))
            .into_iter()
            .map(|x| x * (1.0 + 1e-9) + 1e-12),
    );
    grid.push(f64::INFINITY);
    dedup_sorted(grid)
}

/// One decision setting's outcome on a split.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// The rule's parameter (lambda, delta or the cascade's threshold).
    pub param: f64,
    /// Average cost per query.
    pub cost: f64,
    /// Accuracy against the gold (or pseudo-gold) answers.
    pub accuracy: f64,
}

/// The answers to score against: the split's key, or the pool's plurality answer
/// (query-only: no key needed; ties broken by confidence z as in the top-3 vote).
pub fn gold_answers(split: &Split, use_key: bool, stats: &[LocScale]) -> Vec<Option<Letter>> {
    if use_key {
        return split.questions.iter().map(|q| q.answer).collect();
    }
    let all: Vec<usize> = (0..split.n_models()).collect();
    (0..split.len())
        .map(|q| vote(split, q, &all, all.len(), stats))
        .collect()
}

/// Accuracy and average cost of a router's scores at each parameter value.
pub fn sweep(
    split: &Split,
    gold: &[Option<Letter>],
    scores: &Array2<f64>,
    costs: &[f64],
    rule: Rule,
    grid: &[f64],
) -> Vec<Point> {
    let n = split.len().max(1) as f64;
    grid.iter()
        .map(|&param| {
            let (mut cost, mut hits) = (0.0, 0usize);
            for (q, row) in scores.rows().into_iter().enumerate() {
                let r = row
                    .as_slice()
                    .map(<[f64]>::to_vec)
                    .unwrap_or_else(|| row.to_vec());
                let j = choose(&r, costs, rule, param);
                cost += costs[j];
                hits += split.responses.is_correct(q, j, gold[q]) as usize;
            }
            Point {
                param,
                cost: cost / n,
                accuracy: hits as f64 / n,
            }
        })
        .collect()
}

/// The non-decreasing upper convex hull of `(cost, accuracy)` points (RouterBench): the best
/// accuracy reachable at each cost by mixing decisions. Sorted by cost.
pub fn hull(points: &[[f64; 2]]) -> Vec<[f64; 2]> {
    let mut p: Vec<[f64; 2]> = points
        .iter()
        .copied()
        .filter(|x| x[0].is_finite() && x[1].is_finite())
        .collect();
    p.sort_by(|a, b| a[0].total_cmp(&b[0]).then(b[1].total_cmp(&a[1])));
    // keep only points that improve on every cheaper one (non-decreasing)
    let mut mono: Vec<[f64; 2]> = Vec::new();
    for x in p {
        if mono.last().is_none_or(|l| x[1] > l[1]) {
            mono.push(x);
        }
    }
    // upper hull (monotone chain)
    let mut h: Vec<[f64; 2]> = Vec::new();
    for x in mono {
        while h.len() >= 2 {
            let (a, b) = (h[h.len() - 2], h[h.len() - 1]);
            let cross = (b[0] - a[0]) * (x[1] - a[1]) - (b[1] - a[1]) * (x[0] - a[0]);
            if cross >= 0.0 {
                h.pop();
            } else {
                break;
            }
        }
        h.push(x);
    }
    h
}

/// The hull's accuracy at cost `c` (0 below its cheapest point, flat past its last).
pub fn hull_at(h: &[[f64; 2]], c: f64) -> f64 {
    let Some(first) = h.first() else { return 0.0 };
    if c < first[0] {
        return 0.0;
    }
    for w in h.windows(2) {
        if c <= w[1][0] {
            let t = if w[1][0] > w[0][0] {
                (c - w[0][0]) / (w[1][0] - w[0][0])
            } else {
                1.0
            };
            return w[0][1] + t * (w[1][1] - w[0][1]);
        }
    }
    h.last().map(|l| l[1]).unwrap_or(0.0)
}

/// AIQ (RouterBench): the area under the non-decreasing convex hull of `points` over
/// `[lo, hi]` (the single models' cost range), divided by `hi - lo`. With `lo == hi` it is the
/// hull's accuracy at that cost.
pub fn aiq(points: &[[f64; 2]], lo: f64, hi: f64) -> f64 {
    let h = hull(points);
    if !(hi > lo) {
        return hull_at(&h, lo);
    }
    // exact integral of a piecewise-linear function: integrate between its knots
    let mut xs: Vec<f64> = vec![lo, hi];
    xs.extend(h.iter().map(|p| p[0]).filter(|&x| x > lo && x < hi));
    xs.sort_by(f64::total_cmp);
    let mut area = 0.0;
    for w in xs.windows(2) {
        let (a, b) = (w[0], w[1]);
        if b <= a {
            continue;
        }
        // 0 left of the hull's cheapest point (a knot, so no piece straddles it)
        if h.first().is_none_or(|f| b <= f[0]) {
            continue;
        }
        area += 0.5 * (hull_at(&h, a) + hull_at(&h, b)) * (b - a);
    }
    area / (hi - lo)
}

/// The cheapest point reaching `target` accuracy, if any.
pub fn cost_to_reach(points: &[Point], target: f64) -> Option<f64> {
    points
        .iter()
        .filter(|p| p.accuracy >= target - 1e-12)
        .map(|p| p.cost)
        .min_by(f64::total_cmp)
}

/// The best accuracy among points costing at most `budget`, if any.
pub fn accuracy_at(points: &[Point], budget: f64) -> Option<f64> {
    points
        .iter()
        .filter(|p| p.cost <= budget + 1e-12)
        .map(|p| p.accuracy)
        .max_by(f64::total_cmp)
}

/// What a calibration aims at.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Best accuracy at an average cost per query no higher than this.
    Budget(f64),
    /// Cheapest setting reaching this share of the best single model's accuracy.
    AccuracyShare(f64),
}

impl Target {
    /// A short label.
    pub fn label(&self, unit: &str) -> String {
        match self {
            Target::Budget(b) => format!("budget {b} {unit}/query"),
            Target::AccuracyShare(s) => format!("{:.0}% of best single", 100.0 * s),
        }
    }
}

/// Pick the parameter meeting `target` among training-split points (for an accuracy share no
/// point reaches, the most accurate point). `best_single` is the best
/// single model's accuracy on the same split and gold.
pub fn calibrate(train_points: &[Point], target: Target, best_single: f64) -> Option<Point> {
    match target {
        Target::Budget(b) => train_points
            .iter()
            .filter(|p| p.cost <= b + 1e-12)
            .max_by(|x, y| {
                x.accuracy
                    .total_cmp(&y.accuracy)
                    .then(y.cost.total_cmp(&x.cost))
            })
            .copied(),
        Target::AccuracyShare(s) => {
            let goal = s * best_single;
            // when no setting reaches the goal on training data, the most accurate one (the
            // closest to it), cheapest among equals
            train_points
                .iter()
                .filter(|p| p.accuracy >= goal - 1e-12)
                .min_by(|x, y| x.cost.total_cmp(&y.cost))
                .or_else(|| {
                    train_points.iter().max_by(|x, y| {
                        x.accuracy
                            .total_cmp(&y.accuracy)
                            .then(y.cost.total_cmp(&x.cost))
                    })
                })
                .copied()
        }
    }
}

/// Each model's accuracy against `gold` on a split.
pub fn single_accuracy(split: &Split, gold: &[Option<Letter>]) -> Vec<f64> {
    let n = split.len().max(1) as f64;
    (0..split.n_models())
        .map(|j| {
            (0..split.len())
                .filter(|&q| split.responses.is_correct(q, j, gold[q]))
                .count() as f64
                / n
        })
        .collect()
}

/// The cascade baseline: ask the models of `chain` from the cheapest; accept an answer when
/// its confidence z-score (under the model's training statistics) reaches the threshold,
/// otherwise escalate; the last model's answer is always accepted. Each model asked is paid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cascade {
    /// Model indices, cheapest first.
    pub chain: Vec<usize>,
    /// Confidence statistics per pool model (training split).
    pub stats: Vec<LocScale>,
}

impl Cascade {
    /// Choose the chain on training data. Candidates are the models on the cost–accuracy
    /// frontier (sorted by cost, each more accurate against `gold` than every cheaper one);
    /// every chain of up to three of them ending with the most accurate is swept, and the one
    /// with the highest training AIQ over `[lo, hi]` wins (FrugalGPT searches chains the same
    /// way; three keeps the search small and a fourth model rarely pays for itself).
    #[allow(clippy::too_many_arguments)]
    pub fn fit(
        train: &Split,
        gold: &[Option<Letter>],
        costs: &[f64],
        stats: &[LocScale],
        points: usize,
        lo: f64,
        hi: f64,
    ) -> Cascade {
        let acc = single_accuracy(train, gold);
        let mut order: Vec<usize> = (0..costs.len()).collect();
        order.sort_by(|&a, &b| {
            costs[a]
                .total_cmp(&costs[b])
                .then(acc[b].total_cmp(&acc[a]))
        });
        let mut frontier: Vec<usize> = Vec::new();
        for j in order {
            if frontier.last().is_none_or(|&l| acc[j] > acc[l]) {
                frontier.push(j);
            }
        }
        let Some((&last, rest)) = frontier.split_last() else {
            return Cascade {
                chain: Vec::new(),
                stats: stats.to_vec(),
            };
        };
        let mut candidates: Vec<Vec<usize>> = vec![vec![last]];
        for (i, &a) in rest.iter().enumerate() {
            candidates.push(vec![a, last]);
            for &b in &rest[i + 1..] {
                candidates.push(vec![a, b, last]);
            }
        }
        let mut best: Option<(f64, Cascade)> = None;
        for chain in candidates {
            let c = Cascade {
                chain,
                stats: stats.to_vec(),
            };
            let grid = c.grid(train, points.min(25));
            let curve: Vec<[f64; 2]> = c
                .sweep(train, gold, costs, &grid)
                .iter()
                .map(|p| [p.cost, p.accuracy])
                .collect();
            let score = aiq(&curve, lo, hi);
            if best.as_ref().is_none_or(|(s, _)| score > *s + 1e-12) {
                best = Some((score, c));
            }
        }
        best.map(|b| b.1).expect("at least one candidate")
    }

    /// The model whose answer is accepted for question `q`, and the cost paid.
    pub fn decide(&self, split: &Split, q: usize, costs: &[f64], threshold: f64) -> (usize, f64) {
        let mut paid = 0.0;
        for (i, &m) in self.chain.iter().enumerate() {
            paid += costs[m];
            if i + 1 == self.chain.len() {
                return (m, paid);
            }
            if split.responses.choice[[q, m]].is_some() {
                let z = self.stats[m].z(split.responses.confidence[[q, m]]);
                if z >= threshold {
                    return (m, paid);
                }
            }
        }
        (0, paid)
    }

    /// Thresholds to sweep: -inf (always the cheapest), quantiles of the escalating models'
    /// confidence z on `split`, +inf (always the last model).
    pub fn grid(&self, split: &Split, n: usize) -> Vec<f64> {
        let mut z = Vec::new();
        for &m in self.chain.iter().take(self.chain.len().saturating_sub(1)) {
            for q in 0..split.len() {
                let v = self.stats[m].z(split.responses.confidence[[q, m]]);
                if v.is_finite() {
                    z.push(v);
                }
            }
        }
        z.sort_by(f64::total_cmp);
        let mut g = vec![f64::NEG_INFINITY];
        g.extend(quantiles(&z, n.saturating_sub(2)));
        g.push(f64::INFINITY);
        dedup_sorted(g)
    }

    /// Accuracy and cost at each threshold.
    pub fn sweep(
        &self,
        split: &Split,
        gold: &[Option<Letter>],
        costs: &[f64],
        grid: &[f64],
    ) -> Vec<Point> {
        let n = split.len().max(1) as f64;
        grid.iter()
            .map(|&t| {
                let (mut cost, mut hits) = (0.0, 0usize);
                for (q, g) in gold.iter().enumerate().take(split.len()) {
                    let (m, paid) = self.decide(split, q, costs, t);
                    cost += paid;
                    hits += split.responses.is_correct(q, m, *g) as usize;
                }
                Point {
                    param: t,
                    cost: cost / n,
                    accuracy: hits as f64 / n,
                }
            })
            .collect()
    }
}

/// Average cost of the top-k vote (the k best-ranked models are all asked).
pub fn vote_cost(scores: &Array2<f64>, costs: &[f64], k: usize) -> f64 {
    let n = scores.nrows().max(1) as f64;
    scores
        .rows()
        .into_iter()
        .map(|row| {
            let r = rank(&row.to_vec());
            r.iter().take(k).map(|&j| costs[j]).sum::<f64>()
        })
        .sum::<f64>()
        / n
}

#[cfg(test)]
mod tests {
    use super::*;

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
