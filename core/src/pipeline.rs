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
use crate::traits::{Context, Filter, Router};
use crate::{Error, Result};

/// How a table is documented in `rgd plugins`: an object of keys.
type Doc = std::collections::BTreeMap<String, serde_json::Value>;

/// The top level of a pipeline file: its tables and settings.
#[derive(Default, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawPipeline {
    /// `[data]`: a data source (questions with the pool's answers), instead of a pool.
    #[schemars(with = "Option<Doc>")]
    data: Option<Spanned<toml::Table>>,
    /// `[questions.train]` and `[questions.test]`: question sources the pool answers.
    #[schemars(with = "Doc")]
    questions: IndexMap<String, Spanned<toml::Table>>,
    /// `[pool.NAME]`: the models routed between (an LLM backend each).
    #[schemars(with = "Doc")]
    pool: IndexMap<String, Spanned<toml::Table>>,
    /// `[embedder]`: embeds questions and queries.
    #[schemars(with = "Option<Doc>")]
    embedder: Option<Spanned<toml::Table>>,
    /// `[cache]`: the call cache or the recording replayed.
    #[schemars(with = "Option<Doc>")]
    cache: Option<Spanned<toml::Table>>,
    /// `[routers.NAME]`: the routers compared.
    #[schemars(with = "Doc")]
    routers: IndexMap<String, Spanned<toml::Table>>,
    /// `[costs]`: the cost–quality analysis.
    #[schemars(with = "Option<Doc>")]
    costs: Option<Spanned<toml::Table>>,
    /// `[backends.NAME]`: LLMs used by the generator and the describe stage.
    #[schemars(with = "Doc")]
    backends: IndexMap<String, Spanned<toml::Table>>,
    /// `[generate]`: generated training questions.
    #[schemars(with = "Option<Doc>")]
    generate: Option<Spanned<toml::Table>>,
    /// `[filters.NAME]`: filters of the training questions, in order.
    #[schemars(with = "Doc")]
    filters: IndexMap<String, Spanned<toml::Table>>,
    /// `[labelers.NAME]`: label sources routers learn from (`labels = "NAME"`).
    #[schemars(with = "Doc")]
    labelers: IndexMap<String, Spanned<toml::Table>>,
    /// `[sources.NAME]`: other training data every router is also trained on (a question
    /// source, or `type = "generate"`; `filters = [...]` names the filters it keeps).
    #[schemars(with = "Doc")]
    sources: IndexMap<String, Spanned<toml::Table>>,
    /// The source the report measures drops from (`main` or a `[sources.NAME]`).
    reference_source: Option<String>,
    /// Retrain each router with a `seed` field under these seeds (mean and sd reported).
    training_seeds: Vec<u64>,
    /// Retrain every router without each of these filters.
    ablate_filters: Vec<String>,
    /// Plugin libraries to load (relative to the pipeline).
    plugins: Vec<PathBuf>,
    /// The run's seed (bootstrap intervals, components' defaults).
    seed: u64,
    /// The test split's subjects differ from the training split's on purpose (routing to
    /// subjects never trained on); without it a run whose splits share no subject stops.
    disjoint_subjects: bool,
}

/// Longest name of a `[KIND.NAME]` table.
pub const MAX_NAME_LEN: usize = 64;

/// Check the name of a `[KIND.NAME]` table (a router, pool member, filter, source, backend).
/// Names become file names (`routers/NAME.json`) and report keys, so they are 1 to
/// [`MAX_NAME_LEN`] characters of ASCII letters, digits, `_`, `-` and `.`, start with a letter,
/// a digit or `_`, and never contain `..`: no separator, no absolute path, no way out of the
/// output folder.
pub fn check_name(name: &str) -> std::result::Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || !first_ok
        || !name.chars().all(ok_char)
        || name.contains("..")
    {
        return Err(format!(
            "the name `{}` is not allowed: use 1 to {MAX_NAME_LEN} ASCII letters, digits, `_`, `-` or `.`, starting with a letter, digit or `_` (names become file names)",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// Where the dataset comes from.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // built once per run
pub enum DataSpec {
    /// `[data]`: a data source that provides the questions and the pool's responses, and the
    /// embeddings unless `[embedder]` is given: then the questions the source left without an
    /// embedding are embedded by it (through the call cache).
    Source {
        /// The `[data]` table.
        data: Located,
        /// The `[embedder]` table, when given.
        embedder: Option<Located>,
    },
    /// Questions answered by a pool of models and embedded here:
    /// `[questions.train]` (or `[generate]`), `[questions.test]`, `[pool.NAME]`...,
    /// `[embedder]`.
    Answered {
        /// Training questions.
        train: TrainSpec,
        /// Test questions.
        test: Located,
        /// Pool models, in file order.
        pool: Vec<(String, Located)>,
        /// The embedder.
        embedder: Located,
    },
}

/// Where the training questions come from.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // built once per run
pub enum TrainSpec {
    /// `[questions.train]`: a question source.
    Questions(Located),
    /// `[generate]`: a generator writes them from subject descriptions.
    Generated(GenerateSpec),
}

/// The `[generate]` table: a generator (`[generate.generator]`), the descriptions it writes
/// from, and optionally descriptions derived from example questions (`[generate.describe]`).
#[derive(Clone, Debug)]
pub struct GenerateSpec {
    /// The descriptions files (TOML or JSON: subject -> description; a path or a list of
    /// paths, merged), resolved against the pipeline's folder; optional when `describe`
    /// derives them.
    pub descriptions: Vec<PathBuf>,
    /// Subjects to generate for (empty: every subject of the file).
    pub subjects: Vec<String>,
    /// Whether the generator re-answers its own questions (for `self_answer` and the
    /// diagnostics; default true).
    pub self_answer: bool,
    /// The generator component.
    pub generator: Located,
    /// `[generate.describe]`: derive descriptions from example questions.
    pub describe: Option<DescribeSpec>,
    /// `file:line [generate]`.
    pub context: String,
}

/// `[generate.describe]`: an LLM writes each subject's description from a few unlabeled
/// example questions; the report shows it next to the hand-written one.
#[derive(Clone, Debug)]
pub struct DescribeSpec {
    /// The backend that writes (`[backends.NAME]`).
    pub backend: String,
    /// Example questions per subject.
    pub examples: usize,
    /// Generate from the derived descriptions instead of the file's.
    pub use_derived: bool,
    /// Where the examples come from (a question source table, e.g. a benchmark's heldout
    /// part).
    pub source: Located,
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
    pub costs: Option<Located>,
    /// `[backends.NAME]`: named LLM backends components refer to, in file order.
    pub backends: Vec<(String, Located)>,
    /// `[filters.NAME]`: filters applied to the training split, in file order.
    pub filters: Vec<(String, Located)>,
    /// `[labelers.NAME]`: labelers routers name with `labels = "NAME"`, in file order.
    pub labelers: Vec<(String, Located)>,
    /// `[sources.NAME]`: more training sources; every router is also trained on each and
    /// tested on the same test split (a data source table for `[data]` pipelines; a question
    /// source, or `type = "generate"` with `[generate]`'s fields, otherwise).
    pub sources: Vec<(String, Located)>,
    /// The source the others' drop is measured from (`reference_source = "NAME"`; `main` is the
    /// pipeline's own training data).
    pub reference_source: Option<String>,
    /// `training_seeds = [..]`: retrain every router that has a `seed` field once per seed
    /// and report mean and sd of its accuracy.
    pub training_seeds: Vec<u64>,
    /// `ablate_filters = ["self_answer", ...]`: names of `[filters.NAME]` whose effect the run
    /// measures — every router retrained on every training source without each of them, and
    /// without all of them.
    pub ablate_filters: Vec<String>,
    /// `plugins = ["path/to/librouter.so"]`: dynamic-library plugins to load before the
    /// components are built (resolved against the pipeline's folder).
    pub plugins: Vec<PathBuf>,
    /// `disjoint_subjects = true`: train and test share no subject on purpose (routing to
    /// unseen subjects); otherwise splits without a common subject are an error.
    pub disjoint_subjects: bool,
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
    pub costs: Option<Located>,
    /// Filters by their table name, in order.
    pub filters: Vec<(String, Box<dyn Filter>)>,
}

/// Read `[generate]` (its nested `generator` and `describe` tables have no spans of their own,
/// so their messages name `[generate.generator]` / `[generate.describe]` at the parent's line).
/// Deserialize a framework table (`deny_unknown_fields`): a wrong or unknown key is an error
/// naming the key and the table's place.
pub fn parse_table<T: serde::de::DeserializeOwned>(l: &Located) -> Result<T> {
    crate::registry::from_table(l.table.clone()).map_err(|msg| Error::Config {
        context: l.context.clone(),
        msg,
    })
}

/// `[generate]`: training questions written by a generator LLM from subject descriptions.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateTable {
    /// The descriptions file(s): TOML or JSON `subject = description`, a path or a list of
    /// paths (merged); required unless `[generate.describe]` has `use_derived = true`.
    #[serde(default)]
    #[schemars(with = "Option<Vec<PathBuf>>")]
    descriptions: Option<toml::Value>,
    /// Subjects to generate for (default: every subject of the test split that is described).
    #[serde(default)]
    subjects: Vec<String>,
    /// The generator re-answers its own questions (for the `self_answer` filter and the
    /// diagnostics).
    #[serde(default = "yes")]
    self_answer: bool,
    /// `[generate.generator]`: the generator component (e.g. `type = "llm"`, `backend = "NAME"`).
    #[schemars(with = "Option<std::collections::BTreeMap<String, serde_json::Value>>")]
    generator: Option<toml::Table>,
    /// `[generate.describe]`: derive descriptions from example questions.
    #[serde(default)]
    describe: Option<DescribeTable>,
}

fn yes() -> bool {
    true
}

fn five() -> usize {
    5
}

/// `[generate.describe]`: an LLM writes each subject's description from example questions.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DescribeTable {
    /// The backend that writes (`[backends.NAME]`).
    backend: String,
    /// Example questions per subject (1 to 50).
    #[serde(default = "five")]
    examples: usize,
    /// Generate from the derived descriptions instead of the file's.
    #[serde(default)]
    use_derived: bool,
    /// `[generate.describe.source]`: where the examples come from (a question source table).
    #[schemars(with = "Option<std::collections::BTreeMap<String, serde_json::Value>>")]
    source: Option<toml::Table>,
}

fn parse_generate(l: Located) -> Result<GenerateSpec> {
    let ctx = l.context.clone();
    let err = |context: &str, msg: &str| Error::Config {
        context: context.to_string(),
        msg: msg.to_string(),
    };
    let sub = |name: &str| ctx.replace("[generate]", &format!("[generate.{name}]"));
    let t: GenerateTable = parse_table(&l)?;
    let generator = Located {
        table: t.generator.ok_or_else(|| {
            err(
                &ctx,
                "missing [generate.generator] (e.g. type = \"llm\", backend = \"NAME\")",
            )
        })?,
        context: sub("generator"),
    };
    let describe = match t.describe {
        None => None,
        Some(d) => {
            let dctx = sub("describe");
            if !(1..=50).contains(&d.examples) {
                return Err(err(
                    &dctx,
                    &format!(
                        "`examples` must be an integer in 1..=50, got {}",
                        d.examples
                    ),
                ));
            }
            let source = d.source.ok_or_else(|| {
                err(
                    &dctx,
                    "missing [generate.describe.source] (a question source, e.g. type = \"benchmark\")",
                )
            })?;
            Some(DescribeSpec {
                backend: d.backend,
                examples: d.examples,
                use_derived: d.use_derived,
                source: Located {
                    table: source,
                    context: dctx.replace("[generate.describe]", "[generate.describe.source]"),
                },
            })
        }
    };
    // checked here rather than by serde, so the message says what was found
    let descriptions = match t.descriptions {
        None => Vec::new(),
        Some(toml::Value::String(p)) => vec![PathBuf::from(p)],
        Some(toml::Value::Array(a)) => a
            .into_iter()
            .map(|v| match v {
                toml::Value::String(p) => Ok(PathBuf::from(p)),
                v => Err(err(
                    &ctx,
                    &format!(
                        "`descriptions` must be a path or a list of paths, found {} in the list",
                        v.type_str()
                    ),
                )),
            })
            .collect::<Result<Vec<_>>>()?,
        Some(v) => {
            return Err(err(
                &ctx,
                &format!(
                    "`descriptions` must be a path or a list of paths, got {}",
                    v.type_str()
                ),
            ));
        }
    };
    if descriptions.is_empty() && !describe.as_ref().is_some_and(|d| d.use_derived) {
        return Err(err(
            &ctx,
            "`descriptions` (a file of subject = description) is required unless [generate.describe] has use_derived = true",
        ));
    }
    Ok(GenerateSpec {
        descriptions,
        subjects: t.subjects,
        self_answer: t.self_answer,
        generator,
        describe,
        context: ctx.clone(),
    })
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
        // `[KIND.NAME]` tables: the name checked (it becomes a file name and a report key)
        let keyed = |map: IndexMap<String, Spanned<toml::Table>>, kind: &str| {
            map.into_iter()
                .map(|(k, t)| {
                    let l = locate(t, &format!("{kind}.{k}"));
                    check_name(&k).map_err(|msg| Error::Config {
                        context: l.context.clone(),
                        msg,
                    })?;
                    Ok((k, l))
                })
                .collect::<Result<Vec<_>>>()
        };
        let mut questions: IndexMap<String, Located> =
            keyed(raw.questions, "questions")?.into_iter().collect();
        let pool = keyed(raw.pool, "pool")?;
        if let Some(k) = questions.keys().find(|k| *k != "train" && *k != "test") {
            return Err(err(format!(
                "[questions.{k}]: question tables must be named `train` or `test`"
            )));
        }
        let generate = raw
            .generate
            .map(|g| {
                let l = locate(g, "generate");
                parse_generate(l)
            })
            .transpose()?;
        let answered_keys = !questions.is_empty() || !pool.is_empty() || generate.is_some();
        let data = match (raw.data, answered_keys) {
            (Some(d), false) => DataSpec::Source {
                data: locate(d, "data"),
                embedder: raw.embedder.map(|e| locate(e, "embedder")),
            },
            (Some(_), true) => {
                return Err(err(
                    "give either [data] (with an optional [embedder]) or [questions.train] + [questions.test] + [pool.NAME] + [embedder], not both"
                        .into(),
                ));
            }
            (None, _) => {
                if generate.is_some() && questions.contains_key("train") {
                    return Err(err(
                        "give either [questions.train] or [generate] (generated training questions), not both".into(),
                    ));
                }
                let missing: Vec<&str> = [
                    (!questions.contains_key("train") && generate.is_none())
                        .then_some("[questions.train] (or [generate])"),
                    (!questions.contains_key("test")).then_some("[questions.test]"),
                    pool.is_empty().then_some("[pool.NAME]"),
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
                    train: match generate {
                        Some(g) => TrainSpec::Generated(g),
                        None => {
                            TrainSpec::Questions(questions.shift_remove("train").expect("checked"))
                        }
                    },
                    test: questions.shift_remove("test").expect("checked"),
                    pool,
                    embedder: locate(raw.embedder.expect("checked"), "embedder"),
                }
            }
        };
        Ok(Pipeline {
            path: path.to_path_buf(),
            base_dir: base_dir.to_path_buf(),
            data,
            cache: raw.cache.map(|c| locate(c, "cache")),
            routers: keyed(raw.routers, "routers")?,
            seed: raw.seed,
            sources: keyed(raw.sources, "sources")?,
            reference_source: raw.reference_source,
            training_seeds: raw.training_seeds,
            ablate_filters: raw.ablate_filters,
            plugins: raw.plugins.iter().map(|p| base_dir.join(p)).collect(),
            disjoint_subjects: raw.disjoint_subjects,
            backends: keyed(raw.backends, "backends")?,
            filters: keyed(raw.filters, "filters")?,
            labelers: keyed(raw.labelers, "labelers")?,
            costs: raw.costs.map(|c| locate(c, "costs")),
        })
    }

    /// This pipeline with its training data replaced by a `[sources.NAME]` table.
    pub fn with_train(&self, source: &Located) -> Result<Pipeline> {
        let mut p = self.clone();
        p.data = match &self.data {
            DataSpec::Source { embedder, .. } => DataSpec::Source {
                data: source.clone(),
                embedder: embedder.clone(),
            },
            DataSpec::Answered {
                test,
                pool,
                embedder,
                ..
            } => {
                let is_generate =
                    source.table.get("type").and_then(|t| t.as_str()) == Some("generate");
                let train = if is_generate {
                    let mut t = source.table.clone();
                    t.remove("type");
                    TrainSpec::Generated(parse_generate(Located {
                        table: t,
                        context: source.context.clone(),
                    })?)
                } else {
                    TrainSpec::Questions(source.clone())
                };
                DataSpec::Answered {
                    train,
                    test: test.clone(),
                    pool: pool.clone(),
                    embedder: embedder.clone(),
                }
            }
        };
        Ok(p)
    }

    /// Build the routers through the registry (and check the data stage's types exist).
    pub fn build(&self, registry: &Registry, quiet: bool) -> Result<BuiltPipeline> {
        for n in &self.ablate_filters {
            if !self.filters.iter().any(|(k, _)| k == n) {
                return Err(Error::Config {
                    context: format!("{} ablate_filters", self.path.display()),
                    msg: format!(
                        "`{n}` is not a [filters.NAME] of this pipeline (its filters: {})",
                        self.filters
                            .iter()
                            .map(|(k, _)| k.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        }
        fn build_all<T: crate::registry::Built>(
            registry: &Registry,
            specs: &[(String, Located)],
        ) -> Result<Vec<(String, T)>> {
            specs
                .iter()
                .map(|(name, l)| {
                    Ok((
                        name.clone(),
                        registry.build_as(l.table.clone(), &l.context)?,
                    ))
                })
                .collect()
        }
        let routers: Vec<(String, Box<dyn Router>)> = build_all(registry, &self.routers)?;
        let labelers: Vec<(String, Box<dyn crate::Labeler>)> = build_all(registry, &self.labelers)?;
        let mut ctx = Context {
            base_dir: self.base_dir.clone(),
            seed: self.seed,
            quiet,
            labelers: labelers
                .into_iter()
                .map(|(n, l)| (n, std::sync::Arc::from(l)))
                .collect(),
            ..Context::new(&self.base_dir)
        };
        crate::labels::resolve_router_labels(
            registry,
            &mut ctx,
            self.routers
                .iter()
                .zip(&routers)
                .map(|((_, l), (_, r))| (l.context.as_str(), r.as_ref())),
        )?;
        Ok(BuiltPipeline {
            routers,
            filters: build_all(registry, &self.filters)?,
            ctx,
            costs: self.costs.clone(),
        })
    }
}
