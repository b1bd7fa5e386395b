//! Generator diagnostics (docs/rgd.md): how well the generator's data can train a router — parse
//! failures, self-answer accuracy, the pool's accuracy against the generator's key and its
//! spread, the share of questions on which the pool disagrees, the near-duplicate rate —
//! overall and per subject.

use rgd_core::{GenerationStats, Split};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::{EXACT_MAX, SAMPLE, near_duplicates_sampled, plurality};

/// Parse counts of a generator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ParseDiagnostics {
    /// Generator calls.
    pub calls: usize,
    /// Replies with no tagged block.
    pub replies_without_blocks: usize,
    /// Blocks found.
    pub blocks: usize,
    /// Blocks parsed.
    pub parsed: usize,
    /// Share of blocks that failed to parse.
    pub failure_rate: f64,
    /// Reason -> blocks dropped.
    pub dropped: BTreeMap<String, usize>,
}

/// Diagnostics of one set of generated questions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupDiagnostics {
    /// Questions (after parsing, before filters).
    pub n: usize,
    /// Parse counts (when the questions came from a generator in this run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parse: Option<ParseDiagnostics>,
    /// Share of its questions the generator answers as its key says (when known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub self_answer_accuracy: Option<f64>,
    /// Each pool model's accuracy against the generator's key.
    pub model_accuracy: BTreeMap<String, f64>,
    /// Best minus worst model accuracy against the key.
    pub accuracy_spread: f64,
    /// Standard deviation of the models' accuracies against the key.
    pub accuracy_sd: f64,
    /// Share of questions on which the answering models do not all agree.
    pub disagreement_share: f64,
    /// Share of questions that near-duplicate (cosine >= 0.95) an earlier one of the subject
    /// (exact up to 4,096 questions per subject; above, estimated on 1,024 sampled questions).
    pub near_duplicate_rate: f64,
}

/// Diagnostics overall and per subject.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Diagnostics {
    /// All questions.
    pub overall: GroupDiagnostics,
    /// Per subject.
    pub per_subject: BTreeMap<String, GroupDiagnostics>,
}

fn parse_diag(s: &GenerationStats) -> ParseDiagnostics {
    ParseDiagnostics {
        calls: s.calls,
        replies_without_blocks: s.replies_without_blocks,
        blocks: s.blocks,
        parsed: s.parsed,
        failure_rate: if s.blocks == 0 {
            if s.calls > 0 { 1.0 } else { 0.0 }
        } else {
            1.0 - s.parsed as f64 / s.blocks as f64
        },
        dropped: s.dropped.clone(),
    }
}

fn group(
    split: &Split,
    models: &[String],
    idx: &[usize],
    dup: &[Option<bool>],
) -> GroupDiagnostics {
    let n = idx.len();
    let frac = |k: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    let acc: Vec<f64> = (0..models.len())
        .map(|j| {
            frac(
                idx.iter()
                    .filter(|&&q| split.responses.is_correct(q, j, split.questions[q].answer))
                    .count(),
            )
        })
        .collect();
    let mean = acc.iter().sum::<f64>() / acc.len().max(1) as f64;
    let sd = (acc.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / acc.len().max(1) as f64).sqrt();
    let (mx, mn) = acc
        .iter()
        .fold((f64::NEG_INFINITY, f64::INFINITY), |(a, b), &x| {
            (a.max(x), b.min(x))
        });
    GroupDiagnostics {
        n,
        parse: None,
        self_answer_accuracy: split.generator_answer.as_ref().map(|g| {
            frac(
                idx.iter()
                    .filter(|&&q| g[q].is_some() && g[q] == split.questions[q].answer)
                    .count(),
            )
        }),
        model_accuracy: models.iter().cloned().zip(acc.iter().copied()).collect(),
        accuracy_spread: if acc.is_empty() { 0.0 } else { mx - mn },
        accuracy_sd: sd,
        disagreement_share: frac(
            idx.iter()
                .filter(|&&q| {
                    let (top, answered) = plurality(split, q);
                    answered > 0 && top < answered
                })
                .count(),
        ),
        near_duplicate_rate: {
            // each subject's rate over its questions checked (all of a small subject, a sample
            // of a large one), weighted by the subject's size
            let mut per: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
            for &q in idx {
                let e = per.entry(split.questions[q].subject.as_str()).or_default();
                e.0 += 1;
                if let Some(d) = dup[q] {
                    e.1 += 1;
                    e.2 += d as usize;
                }
            }
            let rate: f64 = per
                .values()
                .filter(|(_, checked, _)| *checked > 0)
                .map(|&(n, checked, dups)| n as f64 * dups as f64 / checked as f64)
                .sum();
            if idx.is_empty() {
                0.0
            } else {
                rate / idx.len() as f64
            }
        },
    }
}

/// Diagnose a training split (before filters); `stats` are the generator's parse counts per
/// subject when it ran in this pipeline.
pub fn diagnose(
    split: &Split,
    models: &[String],
    stats: Option<&BTreeMap<String, GenerationStats>>,
) -> Diagnostics {
    let dup = near_duplicates_sampled(split, 0.95, EXACT_MAX, SAMPLE, 0);
    let all: Vec<usize> = (0..split.len()).collect();
    let mut overall = group(split, models, &all, &dup);
    let mut per_subject: BTreeMap<String, GroupDiagnostics> = split
        .by_subject()
        .into_iter()
        .map(|(s, idx)| {
            let g = group(split, models, &idx, &dup);
            (s, g)
        })
        .collect();
    if let Some(stats) = stats {
        let mut total = GenerationStats::default();
        for (s, st) in stats {
            total.add(st);
            per_subject
                .entry(s.clone())
                .or_insert_with(|| GroupDiagnostics {
                    model_accuracy: models.iter().map(|m| (m.clone(), 0.0)).collect(),
                    ..Default::default()
                })
                .parse = Some(parse_diag(st));
        }
        overall.parse = Some(parse_diag(&total));
    }
    Diagnostics {
        overall,
        per_subject,
    }
}
