//! What rgd measures about training data, shared by the filters and the experiment: the
//! near-duplicate kernel (exact with blocked matrix products, sampled above a size) and the
//! generator diagnostics of docs/rgd.md.

pub mod diagnostics;

use rgd_core::{Letter, Split};
use std::collections::BTreeMap;

pub use diagnostics::{Diagnostics, GroupDiagnostics, diagnose};

/// The plurality answer's count and the number of models that answered.
pub fn plurality(split: &Split, q: usize) -> (usize, usize) {
    let mut counts: BTreeMap<Letter, usize> = BTreeMap::new();
    let mut answered = 0;
    for c in split.responses.choice.row(q).iter().flatten() {
        *counts.entry(*c).or_default() += 1;
        answered += 1;
    }
    (counts.values().copied().max().unwrap_or(0), answered)
}

/// Cosine similarity of two rows (embeddings are usually unit-normed; this does not assume it).
pub fn cosine(a: ndarray::ArrayView1<'_, f32>, b: ndarray::ArrayView1<'_, f32>) -> f32 {
    let (mut ab, mut aa, mut bb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b.iter()) {
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa <= 0.0 || bb <= 0.0 {
        0.0
    } else {
        ab / (aa.sqrt() * bb.sqrt())
    }
}

/// The embeddings of questions `g`, scaled to unit length (a zero row stays zero).
fn unit_rows(split: &Split, g: &[usize]) -> ndarray::Array2<f32> {
    let mut x = ndarray::Array2::<f32>::zeros((g.len(), split.embeddings.ncols()));
    for (r, &i) in g.iter().enumerate() {
        let e = split.embedding(i);
        let n = e.dot(&e).sqrt();
        if n > 0.0 {
            x.row_mut(r).assign(&e.mapv(|v| v / n));
        }
    }
    x
}

/// For each question, whether it is a near-duplicate (cosine >= `threshold`) of an earlier
/// question kept (within its subject, or across the split).
///
/// Exact, with the cost of matrix products: the unit embeddings of a group are multiplied in
/// blocks of rows against every earlier row (ndarray's GEMM), and a pair that the product puts
/// within 1e-4 of the threshold is confirmed with [`cosine`] — so the answer is the one the
/// one-pair-at-a-time definition gives, at a small fraction of its cost.
pub fn near_duplicates(split: &Split, threshold: f32, within_subject: bool) -> Vec<bool> {
    let mut dup = vec![false; split.len()];
    let groups: Vec<Vec<usize>> = if within_subject {
        split.by_subject().into_iter().map(|(_, g)| g).collect()
    } else {
        vec![(0..split.len()).collect()]
    };
    for g in groups {
        for (&i, d) in g.iter().zip(near_duplicates_in(split, &g, threshold)) {
            dup[i] = d;
        }
    }
    dup
}

/// [`near_duplicates`] within one group of questions `g`: a flag per member, in `g`'s order.
fn near_duplicates_in(split: &Split, g: &[usize], threshold: f32) -> Vec<bool> {
    const BLOCK: usize = 512;
    let x = unit_rows(split, g);
    let mut kept = vec![false; g.len()];
    let mut dup = vec![false; g.len()];
    for b0 in (0..g.len()).step_by(BLOCK) {
        let b1 = (b0 + BLOCK).min(g.len());
        // similarities of the block's rows with every row up to the block's end
        // (`slice_axis`, not `s![]`: the macro expands to unsafe code, forbidden here)
        let rows =
            |r: std::ops::Range<usize>| x.slice_axis(ndarray::Axis(0), ndarray::Slice::from(r));
        let sims = rows(b0..b1).dot(&rows(0..b1).t());
        for r in b0..b1 {
            let row = sims.row(r - b0);
            let e = split.embedding(g[r]);
            let is_dup = (0..r).any(|c| {
                kept[c]
                    && row[c] >= threshold - 1e-4
                    && cosine(e, split.embedding(g[c])) >= threshold
            });
            if is_dup {
                dup[r] = true;
            } else {
                kept[r] = true;
            }
        }
    }
    dup
}

/// Groups of at most this many questions get the exact near-duplicate diagnostic; larger ones
/// a sampled estimate (see [`near_duplicates_sampled`]).
pub const EXACT_MAX: usize = 4_096;
/// Questions sampled per group above [`EXACT_MAX`].
pub const SAMPLE: usize = 1_024;

/// Near-duplicate flags for the training-data diagnostics, linear in the group's size: the
/// exact [`near_duplicates`] answer for groups (subjects) of at most `exact_max` questions;
/// for a larger group, a seeded sample of `sample` questions, each checked against every
/// earlier question of its group (one matrix product of the sample against the group), and
/// `None` for the questions not sampled. A sampled question counts when any earlier question
/// is within the threshold (the exact rule counts only earlier questions that were kept;
/// chains of near-duplicates are where the two differ). The estimate's error against the
/// exact answer is measured in this crate's tests.
pub fn near_duplicates_sampled(
    split: &Split,
    threshold: f32,
    exact_max: usize,
    sample: usize,
    seed: u64,
) -> Vec<Option<bool>> {
    use rand::SeedableRng;
    use rand::seq::index;
    use rayon::prelude::*;
    // subjects are independent: one per core
    let per_subject: Vec<Vec<(usize, bool)>> = split
        .by_subject()
        .into_par_iter()
        .map(|(subject, g)| {
            if g.len() <= exact_max.max(sample) {
                let dup = near_duplicates_in(split, &g, threshold);
                return g.iter().copied().zip(dup).collect();
            }
            let x = unit_rows(split, &g);
            let mut rng =
                rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ rgd_core::data::fnv(&subject));
            let mut picked = index::sample(&mut rng, g.len(), sample).into_vec();
            picked.sort_unstable();
            let s = x.select(ndarray::Axis(0), &picked);
            let sims = s.dot(&x.t());
            picked
                .iter()
                .enumerate()
                .map(|(k, &r)| {
                    let row = sims.row(k);
                    let e = split.embedding(g[r]);
                    let dup = (0..r).any(|c| {
                        row[c] >= threshold - 1e-4 && cosine(e, split.embedding(g[c])) >= threshold
                    });
                    (g[r], dup)
                })
                .collect()
        })
        .collect();
    let mut out = vec![None; split.len()];
    for (i, dup) in per_subject.into_iter().flatten() {
        out[i] = Some(dup);
    }
    out
}
