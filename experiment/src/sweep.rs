//! The paper's central experiment on simulated worlds: every router of a pipeline as the
//! generator's key gets worse (and as its questions separate the pool less), over several
//! world seeds. Each cell is the resolved pipeline with its `[data]` table changed — never
//! TOML rewritten to disk.

use crate::error::{Result, bail};
use crate::evaluate::mean_sd;
use crate::resolve::Resolved;
use crate::session::Session;
use rgd_core::pipeline::DataSpec;
use rgd_core::{Pipeline, Registry};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The grid of a sweep.
#[derive(Clone, Debug)]
pub struct Grid {
    /// Key accuracies of the generator.
    pub key_accuracy: Vec<f64>,
    /// Shares of generated questions every model answers alike.
    pub easy_share: Vec<f64>,
    /// World seeds.
    pub seeds: Vec<u64>,
}

/// One cell of the sweep.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cell {
    /// Key accuracy.
    pub key_accuracy: f64,
    /// Easy share.
    pub easy_share: f64,
    /// Router (or `best single in hindsight`).
    pub router: String,
    /// What it learns from.
    pub learns_from: String,
    /// Mean top-1 over seeds.
    pub top1_mean: f64,
    /// Standard deviation over seeds.
    pub top1_sd: f64,
    /// Per seed.
    pub top1: Vec<f64>,
}

/// Run the sweep of `pipeline` (whose `[data]` is `type = "simulated"`); each run's trained
/// routers go to `out/runs/ka{K}_es{E}_seed{S}/routers`. `on_run` hears of each finished run.
pub fn sweep(
    registry: &Registry,
    pipeline: &Pipeline,
    grid: &Grid,
    out: Option<&Path>,
    on_run: &mut dyn FnMut(usize, usize, f64, f64, u64),
) -> Result<Vec<Cell>> {
    let data = match &pipeline.data {
        DataSpec::Source { data: l, .. }
            if l.table.get("type").and_then(|t| t.as_str()) == Some("simulated") =>
        {
            l
        }
        _ => bail!(
            "{}: rgd sweep needs [data] type = \"simulated\" (it varies the generator's key accuracy and easy_share)",
            pipeline.path.display()
        ),
    };
    let mut acc: BTreeMap<(u64, u64, String), (String, Vec<f64>)> = BTreeMap::new();
    let key = |x: f64| (x * 1e6).round() as u64;
    let total = grid.key_accuracy.len() * grid.easy_share.len() * grid.seeds.len();
    let mut done = 0;
    for &ka in &grid.key_accuracy {
        for &es in &grid.easy_share {
            for &seed in &grid.seeds {
                let mut p = pipeline.clone();
                // the sweep's own seeds vary the world; retraining per seed would multiply it
                p.training_seeds.clear();
                let mut d = data.clone();
                d.table.insert("key_accuracy".into(), ka.into());
                d.table.insert("easy_share".into(), es.into());
                d.table.insert("seed".into(), (seed as i64).into());
                if let DataSpec::Source { data, .. } = &mut p.data {
                    *data = d;
                }
                let resolved = Resolved::new(registry, p, true)?;
                let dir = out.map(|o| o.join(format!("runs/ka{ka}_es{es}_seed{seed}")));
                let r = crate::run(&resolved, &Session::default(), dir.as_deref())?;
                for (name, x) in &r.routers {
                    acc.entry((key(ka), key(es), name.clone()))
                        .or_insert_with(|| (x.supervision.label().to_string(), Vec::new()))
                        .1
                        .push(x.top1);
                }
                acc.entry((key(ka), key(es), "best single in hindsight".into()))
                    .or_insert_with(|| ("test answers".into(), Vec::new()))
                    .1
                    .push(r.references.best_single);
                done += 1;
                on_run(done, total, ka, es, seed);
            }
        }
    }
    Ok(acc
        .into_iter()
        .map(|((ka, es, router), (learns_from, v))| {
            let (m, sd) = mean_sd(&v);
            Cell {
                key_accuracy: ka as f64 / 1e6,
                easy_share: es as f64 / 1e6,
                router,
                learns_from,
                top1_mean: m,
                top1_sd: sd,
                top1: v,
            }
        })
        .collect())
}
