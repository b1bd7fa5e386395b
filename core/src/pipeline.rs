//! The pipeline file: which data source, which routers (keyed tables), and run settings.
//!
//! Parsing is two-phase: serde reads the file keeping each component table's position, then
//! [`Pipeline::build`] turns every table into a component through the [`Registry`], so an error
//! names the file, the table and its line.

use indexmap::IndexMap;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

use crate::registry::Registry;
use crate::traits::{Context, DataSource, Router};
use crate::{Error, Result};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    data: Spanned<toml::Table>,
    #[serde(default)]
    routers: IndexMap<String, Spanned<toml::Table>>,
    #[serde(default)]
    seed: u64,
}

/// A component's TOML table and where it stands (for error messages).
#[derive(Clone, Debug)]
pub struct Located {
    /// The table, `type` included.
    pub table: toml::Table,
    /// `file:line [table]`.
    pub context: String,
}

/// A parsed pipeline file.
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// The file it was read from.
    pub path: PathBuf,
    /// The folder relative paths resolve against.
    pub base_dir: PathBuf,
    /// `[data]`.
    pub data: Located,
    /// `[routers.NAME]`, in file order.
    pub routers: Vec<(String, Located)>,
    /// Run seed (`seed = N` at top level; default 0).
    pub seed: u64,
}

/// A pipeline whose components are built.
#[derive(Debug)]
pub struct BuiltPipeline {
    /// The data source.
    pub data: Box<dyn DataSource>,
    /// Routers by their table name.
    pub routers: Vec<(String, Box<dyn Router>)>,
    /// The context to run them with.
    pub ctx: Context,
}

fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())].matches('\n').count() + 1
}

impl Pipeline {
    /// Read and parse a pipeline file.
    pub fn from_file(path: &Path) -> Result<Pipeline> {
        let src = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let base = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    p.to_path_buf()
                }
            })
            .unwrap_or_else(|| PathBuf::from("."));
        Pipeline::parse(&src, path, &base)
    }

    /// Parse pipeline text; `path` is only used in messages, `base_dir` for relative paths.
    pub fn parse(src: &str, path: &Path, base_dir: &Path) -> Result<Pipeline> {
        let file = path.display().to_string();
        let raw: RawPipeline = toml::from_str(src).map_err(|e| Error::Config {
            context: file.clone(),
            msg: e.to_string().trim_end().to_string(),
        })?;
        let locate = |t: Spanned<toml::Table>, name: &str| {
            let line = line_of(src, t.span().start);
            Located {
                table: t.into_inner(),
                context: format!("{file}:{line} [{name}]"),
            }
        };
        Ok(Pipeline {
            path: path.to_path_buf(),
            base_dir: base_dir.to_path_buf(),
            data: locate(raw.data, "data"),
            routers: raw
                .routers
                .into_iter()
                .map(|(k, t)| {
                    let l = locate(t, &format!("routers.{k}"));
                    (k, l)
                })
                .collect(),
            seed: raw.seed,
        })
    }

    /// Build every component through the registry.
    pub fn build(&self, registry: &Registry, quiet: bool) -> Result<BuiltPipeline> {
        let data = registry.build_data_source(self.data.table.clone(), &self.data.context)?;
        let routers = self
            .routers
            .iter()
            .map(|(name, l)| {
                Ok((
                    name.clone(),
                    registry.build_router(l.table.clone(), &l.context)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(BuiltPipeline {
            data,
            routers,
            ctx: Context {
                base_dir: self.base_dir.clone(),
                seed: self.seed,
                quiet,
            },
        })
    }
}
