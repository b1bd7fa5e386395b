//! `rgd sweep`: the arguments of the paper's central experiment on simulated worlds (the
//! sweep itself is `rgd_experiment::sweep`, its outputs `rgd_report::sweep`).

use anyhow::Result;
use rgd_experiment::sweep::{Cell, Grid};
use std::path::PathBuf;

/// Sweep options.
#[derive(clap::Args, Debug, Clone)]
pub struct SweepArgs {
    /// A pipeline whose `[data]` is `type = "simulated"`.
    pub pipeline: PathBuf,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Key accuracies of the generator.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1.0,0.9,0.8,0.7,0.6,0.5,0.4"
    )]
    pub key_accuracy: Vec<f64>,
    /// Shares of generated questions every model answers alike (the second axis: how little
    /// the questions separate the pool).
    #[arg(long, value_delimiter = ',', default_value = "0.0,0.5")]
    pub easy_share: Vec<f64>,
    /// World seeds.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub seeds: Vec<u64>,
}

/// Run the sweep and write its outputs.
pub fn sweep(registry: &rgd_core::Registry, a: &SweepArgs, quiet: bool) -> Result<Vec<Cell>> {
    let pipeline = rgd_core::Pipeline::from_file(&a.pipeline)?;
    let grid = Grid {
        key_accuracy: a.key_accuracy.clone(),
        easy_share: a.easy_share.clone(),
        seeds: a.seeds.clone(),
    };
    std::fs::create_dir_all(&a.out)?;
    let cells = rgd_experiment::sweep::sweep(
        registry,
        &pipeline,
        &grid,
        Some(&a.out),
        &mut |done, total, ka, es, seed| {
            if !quiet {
                eprintln!(
                    "  sweep {done}/{total}: key accuracy {ka}, easy share {es}, seed {seed}"
                );
            }
        },
    )?;
    rgd_report::sweep::write(&a.out, &cells, &a.easy_share, a.seeds.len())?;
    Ok(cells)
}
