//! Evaluation on the test split (docs/cascal.md E): top-1, top-3 vote, single models, best single,
//! oracle and random routing, overall and per subject.

use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::data::{Letter, Split, rank};
use crate::stats::LocScale;

/// Accuracy of one router on a set of questions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// Number of questions.
    pub n: usize,
    /// Accuracy of the top-ranked model's answer.
    pub top1: f64,
    /// Accuracy of the top-3 majority vote.
    pub top3_vote: f64,
}

/// A router's evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouterEval {
    /// Over the whole test split.
    pub overall: Accuracy,
    /// Per subject.
    pub per_subject: BTreeMap<String, Accuracy>,
    /// Share of test questions on which each model was ranked first.
    pub top1_share: BTreeMap<String, f64>,
    /// Per question: was the top-1 answer correct (for intervals and paired comparisons).
    pub top1_correct: Vec<bool>,
    /// Per question: was the top-3 vote correct.
    pub top3_correct: Vec<bool>,
    /// Per question: the model ranked first (its index in the pool). Not written out.
    #[serde(skip)]
    pub top1_model: Vec<usize>,
}

/// The plurality letter of `ballots` (`(letter, tie key)`, in rank order); when several
/// letters tie, the letter of the tied ballot with the highest key wins (the better-ranked
/// one when keys are equal; a NaN key counts as the lowest). `None` without a ballot. The one
/// vote rule of rgd: the offline top-3 metric keys ballots by confidence z-score, `rgd serve`
/// by rank (a live free-text reply carries no calibrated confidence).
pub fn plurality(ballots: &[(Letter, f64)]) -> Option<Letter> {
    let mut counts: BTreeMap<Letter, usize> = BTreeMap::new();
    for (l, _) in ballots {
        *counts.entry(*l).or_default() += 1;
    }
    let max = *counts.values().max()?;
    let tied: Vec<Letter> = counts
        .iter()
        .filter(|(_, n)| **n == max)
        .map(|(l, _)| *l)
        .collect();
    if tied.len() == 1 {
        return Some(tied[0]);
    }
    let mut best: Option<(f64, Letter)> = None;
    for &(c, key) in ballots {
        if !tied.contains(&c) {
            continue;
        }
        let key = if key.is_nan() { f64::NEG_INFINITY } else { key };
        if best.is_none_or(|(bk, _)| key > bk) {
            best = Some((key, c));
        }
    }
    best.map(|(_, c)| c)
}

/// The letter the top-k vote answers: the [`plurality`] letter of the `k` best-ranked models,
/// ties going to the tied model with the highest confidence z-score under its training-split
/// (mu, sigma). Abstentions do not vote.
pub fn vote(
    split: &Split,
    q: usize,
    ranked: &[usize],
    k: usize,
    train_stats: &[LocScale],
) -> Option<Letter> {
    let ballots: Vec<(Letter, f64)> = ranked[..k.min(ranked.len())]
        .iter()
        .filter_map(|&m| {
            let c = split.responses.choice[[q, m]]?;
            Some((c, train_stats[m].z(split.responses.confidence[[q, m]])))
        })
        .collect();
    plurality(&ballots)
}

fn frac(hits: usize, n: usize) -> f64 {
    if n == 0 { 0.0 } else { hits as f64 / n as f64 }
}

/// Evaluate a router's `[question, model]` scores on the test split. `train_stats` are the
/// pool's confidence statistics on the training split (for the top-3 tie-break).
pub fn evaluate(
    test: &Split,
    models: &[String],
    scores: &Array2<f64>,
    train_stats: &[LocScale],
) -> RouterEval {
    let n = test.len();
    let mut t1 = vec![false; n];
    let mut t3 = vec![false; n];
    let mut first = vec![0usize; models.len()];
    let mut picks = Vec::with_capacity(n);
    for q in 0..n {
        let row = scores.row(q);
        let ranked = rank(row.as_slice().unwrap_or(&row.to_vec()));
        let gold = test.questions[q].answer;
        first[ranked[0]] += 1;
        picks.push(ranked[0]);
        t1[q] = test.responses.is_correct(q, ranked[0], gold);
        t3[q] = gold.is_some() && vote(test, q, &ranked, 3, train_stats) == gold;
    }
    let acc = |idx: &[usize]| Accuracy {
        n: idx.len(),
        top1: frac(idx.iter().filter(|&&q| t1[q]).count(), idx.len()),
        top3_vote: frac(idx.iter().filter(|&&q| t3[q]).count(), idx.len()),
    };
    let all: Vec<usize> = (0..n).collect();
    RouterEval {
        overall: acc(&all),
        per_subject: test
            .by_subject()
            .into_iter()
            .map(|(s, idx)| (s, acc(&idx)))
            .collect(),
        top1_share: models
            .iter()
            .zip(&first)
            .map(|(m, c)| (m.clone(), frac(*c, n)))
            .collect(),
        top1_correct: t1,
        top3_correct: t3,
        top1_model: picks,
    }
}

/// Accuracy of the whole pool's plurality vote (every model asked; ties broken by confidence
/// z-score as in the top-3 vote): the `majority_vote` reference, at M calls per query.
pub fn majority_vote(test: &Split, train_stats: &[LocScale]) -> f64 {
    let all: Vec<usize> = (0..test.n_models()).collect();
    let hits = (0..test.len())
        .filter(|&q| {
            let gold = test.questions[q].answer;
            gold.is_some() && vote(test, q, &all, all.len(), train_stats) == gold
        })
        .count();
    frac(hits, test.len())
}

/// A 95% percentile-bootstrap interval of the mean of `correct` (resampling questions with
/// replacement, `resamples` times, deterministic for `seed`).
pub fn bootstrap_ci(correct: &[bool], resamples: usize, seed: u64) -> [f64; 2] {
    let v: Vec<f64> = correct.iter().map(|&c| if c { 1.0 } else { 0.0 }).collect();
    bootstrap_mean_ci(&v, resamples, seed)
}

/// A 95% *paired* bootstrap interval of mean(`a`) − mean(`b`) over the same questions: each
/// resample draws questions once and scores both on them, so what the two share (easy and
/// hard questions) cancels out of the difference.
pub fn paired_bootstrap_ci(a: &[bool], b: &[bool], resamples: usize, seed: u64) -> [f64; 2] {
    let v: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(u8::from(x)) - f64::from(u8::from(y)))
        .collect();
    bootstrap_mean_ci(&v, resamples, seed)
}

/// The 95% percentile-bootstrap interval of the mean of `v` (questions drawn with
/// replacement, `resamples` times, deterministic for `seed`).
pub fn bootstrap_mean_ci(v: &[f64], resamples: usize, seed: u64) -> [f64; 2] {
    let n = v.len();
    if n == 0 {
        return [0.0, 0.0];
    }
    // SplitMix64: a few lines of a well-known generator instead of a `rand` dependency in core
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut means: Vec<f64> = (0..resamples.max(1))
        .map(|_| (0..n).map(|_| v[(next() % n as u64) as usize]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |p: f64| means[((p * (means.len() - 1) as f64).round() as usize).min(means.len() - 1)];
    [at(0.025), at(0.975)]
}

/// Reference points on one set of questions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReferenceScores {
    /// Number of questions.
    pub n: usize,
    /// Accuracy of each single model.
    pub single: BTreeMap<String, f64>,
    /// The best single model in hindsight (on these questions).
    pub best_single_model: String,
    /// Its accuracy.
    pub best_single: f64,
    /// Share of questions some model answers correctly.
    pub oracle: f64,
    /// The oracle that the single models' accuracies would give if their errors were
    /// independent, 1 - prod(1 - acc): read the oracle next to it, not alone.
    pub oracle_if_independent: f64,
    /// Expected accuracy of routing uniformly at random (the mean of the single models).
    pub random: f64,
}

/// Reference points overall and per subject.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct References {
    /// Over the whole test split.
    pub overall: ReferenceScores,
    /// Per subject.
    pub per_subject: BTreeMap<String, ReferenceScores>,
}

fn reference_scores(test: &Split, models: &[String], idx: &[usize]) -> ReferenceScores {
    let n = idx.len();
    let m = models.len();
    let mut correct = vec![0usize; m];
    let mut oracle = 0;
    for &q in idx {
        let gold = test.questions[q].answer;
        let mut any = false;
        for (j, c) in correct.iter_mut().enumerate() {
            if test.responses.is_correct(q, j, gold) {
                *c += 1;
                any = true;
            }
        }
        oracle += any as usize;
    }
    let single: Vec<f64> = correct.iter().map(|&c| frac(c, n)).collect();
    let best = rank(&single).first().copied().unwrap_or(0);
    ReferenceScores {
        n,
        single: models.iter().cloned().zip(single.iter().copied()).collect(),
        best_single_model: models.get(best).cloned().unwrap_or_default(),
        best_single: single.get(best).copied().unwrap_or(0.0),
        oracle: frac(oracle, n),
        oracle_if_independent: 1.0 - single.iter().map(|a| 1.0 - a).product::<f64>(),
        random: if m == 0 {
            0.0
        } else {
            single.iter().sum::<f64>() / m as f64
        },
    }
}

/// Compute the references on the test split.
pub fn references(test: &Split, models: &[String]) -> References {
    let all: Vec<usize> = (0..test.len()).collect();
    References {
        overall: reference_scores(test, models, &all),
        per_subject: test
            .by_subject()
            .into_iter()
            .map(|(s, idx)| {
                let r = reference_scores(test, models, &idx);
                (s, r)
            })
            .collect(),
    }
}

/// Confidence statistics (median, 1.4826 x MAD) of each model over a split.
pub fn confidence_stats(split: &Split) -> Vec<LocScale> {
    split
        .responses
        .confidence
        .columns()
        .into_iter()
        .map(|c| LocScale::robust(&c.to_vec()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Question, Responses};
    use ndarray::Array2;

    fn split(choices: &[[Option<usize>; 3]], conf: &[[f64; 3]], gold: usize) -> Split {
        let n = choices.len();
        Split {
            name: "test".into(),
            questions: (0..n)
                .map(|i| Question {
                    id: i.to_string(),
                    subject: if i % 2 == 0 { "s0" } else { "s1" }.into(),
                    text: String::new(),
                    options: vec![],
                    answer: Letter::from_index(gold),
                    source: None,
                })
                .collect(),
            responses: Responses {
                choice: Array2::from_shape_fn((n, 3), |(q, m)| {
                    choices[q][m].and_then(Letter::from_index)
                }),
                confidence: Array2::from_shape_fn((n, 3), |(q, m)| conf[q][m]),
                latency: None,
                correct: None,
                cost: None,
            },
            embeddings: Array2::zeros((n, 1)),
            generator_answer: None,
            call_failures: Default::default(),
        }
    }

    #[test]
    fn top3_vote_majority_then_highest_z() {
        let stats = vec![
            LocScale {
                mu: 0.0,
                sigma: 1.0
            };
            3
        ];
        // two of three agree on A (gold)
        let s = split(&[[Some(0), Some(1), Some(0)]], &[[-1.0, -0.1, -1.0]], 0);
        assert_eq!(vote(&s, 0, &[0, 1, 2], 3, &stats), Letter::from_index(0));
        // all differ: the most confident (by z) wins
        let s = split(&[[Some(0), Some(1), Some(2)]], &[[-1.0, -0.1, -2.0]], 0);
        assert_eq!(vote(&s, 0, &[0, 1, 2], 3, &stats), Letter::from_index(1));
        // z uses each model's own training (mu, sigma)
        let stats2 = vec![
            LocScale {
                mu: -2.0,
                sigma: 0.5,
            },
            LocScale {
                mu: 0.0,
                sigma: 1.0,
            },
            LocScale {
                mu: 0.0,
                sigma: 1.0,
            },
        ];
        assert_eq!(vote(&s, 0, &[0, 1, 2], 3, &stats2), Letter::from_index(0));
        // abstentions do not vote
        let s = split(&[[None, None, Some(3)]], &[[0.0, 0.0, -5.0]], 3);
        assert_eq!(vote(&s, 0, &[0, 1, 2], 3, &stats), Letter::from_index(3));
    }

    #[test]
    fn the_paired_interval_is_exact_at_the_extremes_and_narrower_than_the_unpaired_one() {
        let n = 400;
        let a: Vec<bool> = (0..n).map(|i| i % 3 != 0).collect();
        assert_eq!(paired_bootstrap_ci(&a, &a, 500, 1), [0.0, 0.0]);
        let right = vec![true; n];
        let wrong = vec![false; n];
        assert_eq!(paired_bootstrap_ci(&right, &wrong, 500, 1), [1.0, 1.0]);
        // b is a right on the same questions, plus 20 more: a difference of -0.05 that the
        // pairing sees exactly where unpaired intervals overlap widely
        let b: Vec<bool> = (0..n).map(|i| a[i] || i % 20 == 0).collect();
        let d = paired_bootstrap_ci(&a, &b, 1000, 2);
        let extra = b.iter().zip(&a).filter(|(x, y)| **x && !**y).count() as f64 / n as f64;
        assert!(
            d[0] <= -extra && -extra <= d[1] && d[1] < 0.0,
            "{d:?}, {extra}"
        );
        let (ia, ib) = (bootstrap_ci(&a, 1000, 2), bootstrap_ci(&b, 1000, 2));
        assert!(
            ia[1] > ib[0],
            "the unpaired intervals overlap: {ia:?} {ib:?}"
        );
        assert!(d[1] - d[0] < 0.5 * (ia[1] - ia[0]), "{d:?} vs {ia:?}");
    }

    #[test]
    fn bootstrap_interval_covers_the_mean_and_shrinks_with_n() {
        let small: Vec<bool> = (0..100).map(|i| i % 4 != 0).collect();
        let big: Vec<bool> = (0..10_000).map(|i| i % 4 != 0).collect();
        let [a, b] = bootstrap_ci(&small, 1000, 1);
        assert!(a < 0.75 && 0.75 < b, "{a} {b}");
        // binomial sd at n = 100 is 0.043: the interval is about +-0.085
        assert!((b - a - 0.17).abs() < 0.04, "{a} {b}");
        let [c, d] = bootstrap_ci(&big, 1000, 1);
        assert!(d - c < 0.03 && c < 0.75 && 0.75 < d);
        assert_eq!(bootstrap_ci(&small, 1000, 1), [a, b]);
    }

    #[test]
    fn references_and_router_accuracy() {
        let s = split(
            &[
                [Some(0), Some(1), Some(1)],
                [Some(1), Some(0), Some(1)],
                [Some(1), Some(1), Some(1)],
                [Some(0), Some(0), Some(1)],
            ],
            &[[-1.0; 3]; 4],
            0,
        );
        let models: Vec<String> = ["a", "b", "c"].iter().map(|m| m.to_string()).collect();
        let r = references(&s, &models);
        assert_eq!(r.overall.single["a"], 0.5);
        assert_eq!(r.overall.single["b"], 0.5);
        assert_eq!(r.overall.best_single_model, "a"); // tie goes to the first model
        assert_eq!(r.overall.oracle, 0.75);
        let indep = 1.0 - 0.5 * 0.5 * 1.0; // c is never right
        assert!((r.overall.oracle_if_independent - indep).abs() < 1e-12);
        assert!((r.overall.random - 1.0 / 3.0).abs() < 1e-12);
        // a router that always prefers b, then a
        let scores = Array2::from_shape_fn((4, 3), |(_, m)| [0.5, 1.0, 0.0][m]);
        let ev = evaluate(
            &s,
            &models,
            &scores,
            &[LocScale {
                mu: 0.0,
                sigma: 1.0,
            }; 3],
        );
        assert_eq!(ev.overall.top1, 0.5);
        assert_eq!(ev.per_subject["s1"].top1, 1.0);
        assert_eq!(ev.per_subject["s0"].top1, 0.0);
        assert_eq!(ev.top1_share["b"], 1.0);
    }
}
