//! `rgd assets` and `rgd cache`: the asset store and the call cache from the command line.

use crate::plugins::emit;
use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum AssetsCmd {
    /// Download, unpack and verify assets (all when none is named); idempotent.
    Fetch {
        /// Asset names (see `rgd assets list`).
        names: Vec<String>,
    },
    /// Show every asset and whether it is present.
    List,
    /// Re-hash the files of present assets (all when none is named).
    Verify {
        /// Asset names.
        names: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum CacheCmd {
    /// Number of stored calls.
    Stats {
        /// The cache file.
        cache: PathBuf,
    },
    /// Write the calls as a gzip JSON-lines recording.
    Export {
        /// The cache file.
        cache: PathBuf,
        /// The recording to write (`.jsonl.gz`).
        #[arg(long)]
        out: PathBuf,
    },
    /// Add the calls of a recording to a cache.
    Import {
        /// The cache file.
        cache: PathBuf,
        /// The recording to read.
        recording: PathBuf,
    },
}

/// The named assets (all when none is named).
pub fn selected(names: &[String]) -> Result<Vec<&'static rgd_assets::AssetSpec>> {
    if names.is_empty() {
        return Ok(rgd_assets::ASSETS.iter().collect());
    }
    names
        .iter()
        .map(|n| rgd_assets::spec(n).map_err(Into::into))
        .collect()
}

/// `rgd assets fetch|list|verify`.
pub fn assets(what: &AssetsCmd, quiet: bool) -> Result<()> {
    match what {
        AssetsCmd::List => {
            let mut o = format!("assets folder: {}\n", rgd_assets::assets_dir().display());
            for a in rgd_assets::ASSETS {
                let size: u64 = a.files.iter().map(|f| f.size).sum();
                let state = if rgd_assets::present(a) {
                    "present"
                } else {
                    "missing"
                };
                o.push_str(&format!(
                    "  {:<20} {:<8} {:>8.1} MB  {}\n",
                    a.name,
                    state,
                    size as f64 / 1e6,
                    a.description
                ));
            }
            emit(&o)
        }
        AssetsCmd::Fetch { names } => {
            for a in selected(names)? {
                let bar = (!quiet).then(|| {
                    let b = indicatif::ProgressBar::new(a.packages.len() as u64);
                    b.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{prefix:>20} [{bar:30}] {pos}/{len} {msg}",
                        )
                        .expect("static template"),
                    );
                    b.set_prefix(a.name);
                    b
                });
                let dir = rgd_assets::fetch(a, &|done, _total, msg| {
                    if let Some(b) = &bar {
                        b.set_position(done as u64);
                        b.set_message(msg.to_string());
                    }
                })?;
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
                if !quiet {
                    eprintln!("{:>20} ok: {}", a.name, dir.display());
                }
            }
            Ok(())
        }
        AssetsCmd::Verify { names } => {
            for a in selected(names)? {
                if rgd_assets::present(a) {
                    rgd_assets::verify(a)?;
                    println!("{:>20} verified", a.name);
                }
            }
            Ok(())
        }
    }
}

/// `rgd cache stats|export|import`.
pub fn cache(what: &CacheCmd) -> Result<()> {
    use rgd_cache::{CacheMode, CallCache};
    match what {
        CacheCmd::Stats { cache } => {
            let c = CallCache::open(cache, CacheMode::ReadOnly)?;
            println!("{}: {} calls", cache.display(), c.len()?);
        }
        CacheCmd::Export { cache, out } => {
            let c = CallCache::open(cache, CacheMode::ReadOnly)?;
            let n = c.export(out, None)?;
            println!("wrote {n} calls to {}", out.display());
        }
        CacheCmd::Import { cache, recording } => {
            let c = CallCache::open(cache, CacheMode::ReadWrite)?;
            let n = c.import(recording)?;
            println!("imported {n} calls into {}", cache.display());
        }
    }
    Ok(())
}
