//! `plurality`: agreement with the pool's most chosen letter.

use ndarray::Array2;
use rgd_core::{Labeler, Labels, N_LETTERS, Needs, Split};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// 1 when the model chose the letter most of the pool chose, else 0; when `t` letters tie for
/// the most votes, each of them gets 1/t (no arbitrary tie-break); an abstention is 0.
/// Query-only: no key is read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Plurality {}

impl Plurality {
    /// Label a split.
    pub fn compute(&self, split: &Split) -> Array2<f64> {
        let (n, m) = split.responses.choice.dim();
        let mut out = Array2::zeros((n, m));
        for q in 0..n {
            let mut votes = [0usize; N_LETTERS];
            for c in split.responses.choice.row(q).iter().flatten() {
                votes[c.index()] += 1;
            }
            let top = votes.iter().copied().max().unwrap_or(0);
            if top == 0 {
                continue;
            }
            let tied = votes.iter().filter(|&&v| v == top).count() as f64;
            for j in 0..m {
                if let Some(c) = split.responses.choice[[q, j]]
                    && votes[c.index()] == top
                {
                    out[[q, j]] = 1.0 / tied;
                }
            }
        }
        out
    }
}

impl Labeler for Plurality {
    fn label(&self, split: &Split) -> rgd_core::Result<Labels> {
        Ok(Labels {
            kind: "plurality".into(),
            values: self.compute(split),
        })
    }
    fn needs(&self) -> Needs {
        Needs {
            key: false,
            letters: true,
        }
    }
}
