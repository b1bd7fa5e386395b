//! Cost–quality curves: the decision of one query under a rule and parameter, the parameter
//! grid, sweeps, the convex hull and AIQ, calibration on training data.

use super::*;

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
pub(crate) fn switch_points(scores: &[f64], costs: &[f64], rule: Rule, out: &mut Vec<f64>) {
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
pub(crate) fn quantiles(sorted: &[f64], n: usize) -> Vec<f64> {
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

pub(crate) fn dedup_sorted(mut v: Vec<f64>) -> Vec<f64> {
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
    grid.iter()
        .map(|&param| Decisions::of_router(split, gold, scores, costs, rule, param).point(param))
        .collect()
}

/// One decision setting per question of a split: whether the chosen model was right, and
/// what it cost (what paired intervals resample).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decisions {
    /// Per question: the chosen model answered right.
    pub correct: Vec<bool>,
    /// Per question: the cost paid.
    pub cost: Vec<f64>,
}

impl Decisions {
    /// A router's decisions under `rule` at `param`.
    pub fn of_router(
        split: &Split,
        gold: &[Option<Letter>],
        scores: &Array2<f64>,
        costs: &[f64],
        rule: Rule,
        param: f64,
    ) -> Decisions {
        let mut d = Decisions::default();
        for (q, row) in scores.rows().into_iter().enumerate() {
            let r = row
                .as_slice()
                .map(<[f64]>::to_vec)
                .unwrap_or_else(|| row.to_vec());
            let j = choose(&r, costs, rule, param);
            d.cost.push(costs[j]);
            d.correct.push(split.responses.is_correct(q, j, gold[q]));
        }
        d
    }

    /// Their mean cost and accuracy.
    pub fn point(&self, param: f64) -> Point {
        let n = self.correct.len().max(1) as f64;
        Point {
            param,
            cost: self.cost.iter().sum::<f64>() / n,
            accuracy: self.correct.iter().filter(|&&c| c).count() as f64 / n,
        }
    }
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
