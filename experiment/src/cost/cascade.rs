//! The cascade baseline (FrugalGPT/AutoMix style).

use super::curve::{dedup_sorted, quantiles};
use super::*;

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
        grid.iter()
            .map(|&t| self.decisions(split, gold, costs, t).point(t))
            .collect()
    }

    /// The cascade's outcome per question at threshold `t`.
    pub fn decisions(
        &self,
        split: &Split,
        gold: &[Option<Letter>],
        costs: &[f64],
        t: f64,
    ) -> Decisions {
        let mut d = Decisions::default();
        for (q, g) in gold.iter().enumerate().take(split.len()) {
            let (m, paid) = self.decide(split, q, costs, t);
            d.cost.push(paid);
            d.correct.push(split.responses.is_correct(q, m, *g));
        }
        d
    }
}
