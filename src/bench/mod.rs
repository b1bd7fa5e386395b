//! `rgd bench`: the benchmarks behind the figures of BENCHMARKS.md, one module per concern.

mod data;
mod models;
mod routing;

pub use data::EmbedBenchArgs;
pub use models::{GenerateBenchArgs, PoolBenchArgs};
pub use routing::{BenchArgs, CostBenchArgs};

/// A benchmark whose components this build leaves out: an error naming the feature, or the
/// benchmark itself when the feature is on.
macro_rules! gated {
    ($feature:literal, $arg:expr, $e:expr) => {{
        #[cfg(feature = $feature)]
        {
            $e
        }
        #[cfg(not(feature = $feature))]
        {
            let _ = $arg;
            Err(anyhow::anyhow!(
                "this rgd was built without the `{}` feature (build with `--features {}`)",
                $feature,
                $feature
            ))
        }
    }};
}

use anyhow::Result;
use std::time::Instant;

/// A command-line count within `lo..=hi` (a bench's sizes have ceilings: a typo such as
/// `--questions 1e12` is an error naming the flag, never an allocation that aborts).
pub(crate) fn count(lo: u64, hi: u64) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(lo..=hi)
}

/// At most this many embedding values in a bench's simulated world or written matrix (1 GB of
/// f32), so a world that the flags allow still fits in memory.
#[cfg(any(feature = "routers", feature = "files"))]
pub(crate) const MAX_VALUES: usize = 250_000_000;

pub(crate) fn time<T>(repeats: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], last.expect("at least one run"))
}

/// `rgd bench` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum BenchCmd {
    /// CASCAL consensus, training and inference times on a simulated world.
    Cascal(BenchArgs),
    /// The local pool on real MMLU questions: accuracy (raw and prior-corrected), speed.
    Pool(PoolBenchArgs),
    /// Embedder throughput on MMLU question texts.
    Embed(EmbedBenchArgs),
    /// Overhead of a call-cache hit.
    Cache,
    /// The cost–quality sweep of every router on the CASCAL-sized simulated world.
    Cost(CostBenchArgs),
    /// The `llm` generator on a local model: tokens/s, questions/minute, parse success.
    Generate(GenerateBenchArgs),
    /// Loading a wide Parquet response matrix (written here first) through `rgd run`.
    Matrix {
        /// Questions in the file.
        #[arg(long, default_value_t = 100_000, value_parser = count(1, 10_000_000))]
        questions: usize,
        /// Models (columns `m{i}|choice`, `m{i}|confidence`).
        #[arg(long, default_value_t = 10, value_parser = count(1, 1000))]
        models: usize,
        /// Embedding dimension stored in the file.
        #[arg(long, default_value_t = 384, value_parser = count(1, 4096))]
        dim: usize,
        /// Timed runs (the best is reported).
        #[arg(long, default_value_t = 3, value_parser = count(1, 100))]
        repeats: usize,
    },
    /// Each stage's time and peak memory on simulated worlds of growing training data.
    Scale {
        /// Training questions of each world (14 subjects, 6 models, 384-d, 7,000 test queries):
        /// 14 (one per subject) to 2,500,000 (a world's values stay under the simulator's 1e9).
        #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000", value_parser = count(14, 2_500_000))]
        sizes: Vec<usize>,
        /// Router types to run.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "cascal,knn,mlp,best_single"
        )]
        routers: Vec<String>,
    },
}

/// Run the benchmark asked for.
pub fn run(registry: &rgd_core::Registry, what: &BenchCmd) -> Result<()> {
    match what {
        BenchCmd::Cascal(a) => gated!("routers", a, routing::bench_cascal(a)),
        BenchCmd::Pool(a) => gated!("llamacpp", a, models::bench_pool(a)),
        BenchCmd::Embed(a) => gated!("benchmarks", a, data::bench_embed(a)),
        BenchCmd::Cache => data::bench_cache(),
        BenchCmd::Cost(a) => routing::bench_cost(registry, a),
        BenchCmd::Generate(a) => gated!("llamacpp", a, models::bench_generate(a)),
        BenchCmd::Matrix {
            questions,
            models,
            dim,
            repeats,
        } => gated!(
            "files",
            (registry, questions, models, dim, repeats),
            data::bench_matrix(registry, *questions, *models, *dim, *repeats)
        ),
        BenchCmd::Scale { sizes, routers } => {
            let rows = rgd_experiment::scale::scale(registry, sizes, routers, &mut |r| {
                let top1 = r
                    .top1
                    .map_or(String::new(), |t| format!(", top-1 {:.2} %", 100.0 * t));
                eprintln!(
                    "  {} train, {}: {:.2} s{top1}",
                    r.n_train, r.stage, r.seconds
                )
            })?;
            print!("{}", rgd_experiment::scale::table(&rows));
            Ok(())
        }
    }
}
