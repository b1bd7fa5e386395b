//! The pipeline file: which data source, which routers (keyed tables), and run settings.
//!
//! Parsing is two-phase: serde reads the file keeping each component table's position, then
//! [`Pipeline::build`] turns every table into a component through the [`Registry`], so an error
//! names the file, the table and its line.

use indexmap::IndexMap;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

use crate::cost::CostSettings;
use crate::registry::Registry;
use crate::traits::{Context, Router};
use crate::{Error, Result};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    #[serde(default)]
    data: Option<Spanned<toml::Table>>,
    #[serde(default)]
    questions: IndexMap<String, Spanned<toml::Table>>,
    #[serde(default)]
    pool: IndexMap<String, Spanned<toml::Table>>,
    #[serde(default)]
    embedder: Option<Spanned<toml::Table>>,
    #[serde(default)]
    cache: Option<Spanned<toml::Table>>,
    #[serde(default)]
    routers: IndexMap<String, Spanned<toml::Table>>,
    #[serde(default)]
    costs: Option<Spanned<toml::Table>>,
    #[serde(default)]
    seed: u64,
}

/// Where the dataset comes from.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // built once per run
pub enum DataSpec {
    /// `[data]`: a data source that provides everything (questions, responses, embeddings).
    Source(Located),
    /// Questions answered by a pool of models and embedded here:
    /// `[questions.train]`, `[questions.test]`, `[pool.NAME]`..., `[embedder]`.
    Answered {
        /// Training questions.
        train: Located,
        /// Test questions.
        test: Located,
        /// Pool models, in file order.
        pool: Vec<(String, Located)>,
        /// The embedder.
        embedder: Located,
    },
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
    /// Where the data comes from.
    pub data: DataSpec,
    /// `[cache]`, if given (`path`, `mode`).
    pub cache: Option<Located>,
    /// `[routers.NAME]`, in file order.
    pub routers: Vec<(String, Located)>,
    /// Run seed (`seed = N` at top level; default 0).
    pub seed: u64,
    /// `[costs]`: model costs and the cost–quality analysis settings, if given.
    pub costs: Option<CostSettings>,
}

/// A pipeline whose routers are built (the data stage is built by the runner, which knows
/// the call cache).
#[derive(Debug)]
pub struct BuiltPipeline {
    /// Routers by their table name.
    pub routers: Vec<(String, Box<dyn Router>)>,
    /// The context to run them with.
    pub ctx: Context,
    /// `[costs]`, if given.
    pub costs: Option<CostSettings>,
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
        let err = |msg: String| Error::Config {
            context: file.clone(),
            msg,
        };
        let mut questions: IndexMap<String, Located> = raw
            .questions
            .into_iter()
            .map(|(k, t)| {
                let l = locate(t, &format!("questions.{k}"));
                (k, l)
            })
            .collect();
        if let Some(k) = questions.keys().find(|k| *k != "train" && *k != "test") {
            return Err(err(format!(
                "[questions.{k}]: question tables must be named `train` or `test`"
            )));
        }
        let answered_keys = !questions.is_empty() || !raw.pool.is_empty() || raw.embedder.is_some();
        let data = match (raw.data, answered_keys) {
            (Some(d), false) => DataSpec::Source(locate(d, "data")),
            (Some(_), true) => {
                return Err(err(
                    "give either [data] or [questions.train] + [questions.test] + [pool.NAME] + [embedder], not both"
                        .into(),
                ));
            }
            (None, _) => {
                let missing: Vec<&str> = [
                    (!questions.contains_key("train")).then_some("[questions.train]"),
                    (!questions.contains_key("test")).then_some("[questions.test]"),
                    raw.pool.is_empty().then_some("[pool.NAME]"),
                    raw.embedder.is_none().then_some("[embedder]"),
                ]
                .into_iter()
                .flatten()
                .collect();
                if missing.len() == 4 {
                    return Err(err("missing [data] (or questions answered by a pool: [questions.train], [questions.test], [pool.NAME], [embedder])".into()));
                }
                if !missing.is_empty() {
                    return Err(err(format!("missing {}", missing.join(", "))));
                }
                DataSpec::Answered {
                    train: questions.shift_remove("train").expect("checked"),
                    test: questions.shift_remove("test").expect("checked"),
                    pool: raw
                        .pool
                        .into_iter()
                        .map(|(k, t)| {
                            let l = locate(t, &format!("pool.{k}"));
                            (k, l)
                        })
                        .collect(),
                    embedder: locate(raw.embedder.expect("checked"), "embedder"),
                }
            }
        };
        Ok(Pipeline {
            path: path.to_path_buf(),
            base_dir: base_dir.to_path_buf(),
            data,
            cache: raw.cache.map(|c| locate(c, "cache")),
            routers: raw
                .routers
                .into_iter()
                .map(|(k, t)| {
                    let l = locate(t, &format!("routers.{k}"));
                    (k, l)
                })
                .collect(),
            seed: raw.seed,
            costs: raw
                .costs
                .map(|c| {
                    let l = locate(c, "costs");
                    CostSettings::parse(&l.table, &l.context)
                })
                .transpose()?,
        })
    }

    /// Build the routers through the registry (and check the data stage's types exist).
    pub fn build(&self, registry: &Registry, quiet: bool) -> Result<BuiltPipeline> {
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
            routers,
            ctx: Context {
                base_dir: self.base_dir.clone(),
                seed: self.seed,
                quiet,
            },
            costs: self.costs.clone(),
        })
    }
}
