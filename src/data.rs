//! The data stage of a pipeline: a `[data]` source, or questions answered by a pool of
//! models through the call cache and embedded.

use anyhow::{Context as _, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rgd_cache::{CacheMode, CachedBackend, CachedEmbedder, CallCache};
use rgd_core::pipeline::{DataSpec, Located};
use rgd_core::{Context, Dataset, Pipeline, Registry};
use rgd_pool::PoolMember;
use serde::Deserialize;
use std::path::PathBuf;

/// Call-cache options from the command line (they override `[cache]`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CacheArgs {
    /// The call cache file (default: `[cache] path`, else `$RGD_CACHE_DIR/calls.sqlite`,
    /// else `~/.cache/rgd/calls.sqlite`).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// `read_write` (default), `read_only` (replay: a missing call is an error) or `off`.
    #[arg(long, value_parser = parse_mode)]
    pub cache_mode: Option<CacheMode>,
}

fn parse_mode(s: &str) -> Result<CacheMode, String> {
    match s {
        "read_write" => Ok(CacheMode::ReadWrite),
        "read_only" => Ok(CacheMode::ReadOnly),
        "off" => Ok(CacheMode::Off),
        _ => Err(format!("`{s}`: expected read_write, read_only or off")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheTable {
    #[serde(default)]
    path: Option<PathBuf>,
    #[serde(default)]
    mode: Option<CacheMode>,
}

/// The default cache file.
pub fn default_cache_path() -> PathBuf {
    std::env::var_os("RGD_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(rgd_assets::cache_root)
        .join("calls.sqlite")
}

/// Open the call cache the pipeline and flags ask for.
pub fn open_cache(p: &Pipeline, ctx: &Context, args: &CacheArgs) -> Result<CallCache> {
    let table: CacheTable = match &p.cache {
        Some(l) => rgd_core::registry::from_table(l.table.clone()).map_err(|msg| {
            rgd_core::Error::Config {
                context: l.context.clone(),
                msg,
            }
        })?,
        None => CacheTable {
            path: None,
            mode: None,
        },
    };
    let mode = args.cache_mode.or(table.mode).unwrap_or_default();
    if mode == CacheMode::Off {
        return Ok(CallCache::off());
    }
    let path = args
        .cache
        .clone()
        .or(table.path.map(|p| ctx.resolve(&p)))
        .unwrap_or_else(default_cache_path);
    Ok(CallCache::open(&path, mode)?)
}

fn member(registry: &Registry, name: &str, l: &Located, cache: &CallCache) -> Result<PoolMember> {
    let mut t = l.table.clone();
    let prior_correction = match t.remove("prior_correction") {
        None => false,
        Some(toml::Value::Boolean(b)) => b,
        Some(v) => {
            return Err(rgd_core::Error::Config {
                context: l.context.clone(),
                msg: format!(
                    "`prior_correction` must be true or false, found {}",
                    v.type_str()
                ),
            }
            .into());
        }
    };
    let backend = registry.build_backend(t, &l.context)?;
    Ok(PoolMember {
        name: name.to_string(),
        backend: Box::new(CachedBackend {
            inner: backend,
            cache: cache.clone(),
        }),
        prior_correction,
    })
}

/// Load or build the dataset.
pub fn load(
    registry: &Registry,
    p: &Pipeline,
    ctx: &Context,
    cache_args: &CacheArgs,
    quiet: bool,
) -> Result<(Dataset, Option<CallCache>)> {
    match &p.data {
        DataSpec::Source(l) => {
            let src = registry.build_data_source(l.table.clone(), &l.context)?;
            Ok((src.load(ctx)?, None))
        }
        DataSpec::Answered {
            train,
            test,
            pool,
            embedder,
        } => {
            let cache = open_cache(p, ctx, cache_args)?;
            let tq = registry.build_questions(train.table.clone(), &train.context)?;
            let sq = registry.build_questions(test.table.clone(), &test.context)?;
            let members = pool
                .iter()
                .map(|(n, l)| member(registry, n, l, &cache))
                .collect::<Result<Vec<_>>>()?;
            let emb = CachedEmbedder {
                inner: registry.build_embedder(embedder.table.clone(), &embedder.context)?,
                cache: cache.clone(),
            };
            let bar = (!quiet).then(|| {
                let b = ProgressBar::new(0);
                b.set_style(
                    ProgressStyle::with_template(
                        "  {prefix} {msg:<28} [{bar:30}] {pos}/{len} ({elapsed})",
                    )
                    .expect("static template"),
                );
                b
            });
            let mut splits = Vec::new();
            for (name, src) in [("train", &tq), ("test", &sq)] {
                let qs = src
                    .questions(ctx)
                    .with_context(|| format!("loading the {name} questions"))?;
                if let Some(b) = &bar {
                    b.set_prefix(name.to_string());
                }
                let mut progress = |model: &str, done: usize, total: usize| {
                    if let Some(b) = &bar {
                        b.set_length(total as u64);
                        b.set_position(done as u64);
                        b.set_message(model.to_string());
                    }
                };
                splits.push(rgd_pool::build_split(
                    name,
                    qs,
                    &members,
                    &emb,
                    ctx,
                    &mut progress,
                )?);
            }
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            let test = splits.pop().expect("two splits");
            let train = splits.pop().expect("two splits");
            let task = p
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "pipeline".into());
            Ok((
                Dataset {
                    task,
                    models: members.iter().map(|m| m.name.clone()).collect(),
                    train,
                    test,
                },
                Some(cache),
            ))
        }
    }
}
