//! The data stage of a pipeline: a `[data]` source, or questions answered by a pool of
//! models through the call cache and embedded.

use crate::error::{Result, ResultExt as _, bail};
use crate::session::Session;
use rgd_cache::{CachedBackend, CachedEmbedder, CallCache};
use rgd_core::pipeline::{DataSpec, GenerateSpec, Located, TrainSpec};
use rgd_core::{Context, Dataset, Pipeline, Registry};
use rgd_core::{Embedder, Generated, Generator, LlmBackend, Question};
use rgd_pool::PoolMember;
use serde::Deserialize;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// How a pool member answers (`mode`).
#[derive(Clone, Copy, Debug, Default, serde::Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModeName {
    /// Letter log-probabilities, one forward pass.
    #[default]
    Score,
    /// Each option's log-likelihood as the continuation.
    Cloze,
    /// Free-text reasoning, the answer extracted.
    Generate,
}

/// How a `cloze` member normalizes an option's log-likelihood (`cloze_norm`).
#[derive(Clone, Copy, Debug, Default, serde::Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClozeNormName {
    /// Per character of the option text.
    #[default]
    Chars,
    /// Per token.
    Tokens,
    /// The plain sum.
    None,
}

fn default_max_tokens() -> u64 {
    512
}

/// The keys of a `[pool.NAME]` table that rgd reads itself; the others configure the backend
/// named by `type`, whose own fields `rgd plugins` lists.
#[derive(Deserialize, schemars::JsonSchema)]
pub struct MemberTable {
    /// `"score"` (default: letter log-probabilities, one forward pass), `"cloze"` (each
    /// option's log-likelihood as the continuation) or `"generate"` (free-text reasoning, the
    /// answer extracted).
    #[serde(default)]
    pub mode: ModeName,
    /// How a `cloze` member normalizes an option's log-likelihood: `"chars"` (default),
    /// `"tokens"` or `"none"`.
    #[serde(default)]
    pub cloze_norm: ClozeNormName,
    /// Tokens a `generate` member may write (1 to 100000; default 512).
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u64,
    /// Divide the member's letter probabilities by its mean letter prior (position bias).
    #[serde(default)]
    pub prior_correction: bool,
    /// The backend's own table (`type` and its fields).
    #[serde(flatten)]
    #[schemars(skip)]
    pub backend: toml::Table,
}

fn member(registry: &Registry, name: &str, l: &Located, cache: &CallCache) -> Result<PoolMember> {
    let bad = |msg: String| rgd_core::Error::Config {
        context: l.context.clone(),
        msg,
    };
    let t: MemberTable = rgd_core::registry::from_table(l.table.clone()).map_err(bad)?;
    if !(1..=100_000).contains(&t.max_tokens) {
        return Err(bad(format!(
            "`max_tokens` must be an integer in 1..=100000, found {}",
            t.max_tokens
        ))
        .into());
    }
    let norm = match t.cloze_norm {
        ClozeNormName::Chars => rgd_pool::ClozeNorm::Chars,
        ClozeNormName::Tokens => rgd_pool::ClozeNorm::Tokens,
        ClozeNormName::None => rgd_pool::ClozeNorm::None,
    };
    let mode = match t.mode {
        ModeName::Score => rgd_pool::AnswerMode::Score,
        ModeName::Cloze => rgd_pool::AnswerMode::Cloze { norm },
        ModeName::Generate => rgd_pool::AnswerMode::Generate {
            max_tokens: t.max_tokens as usize,
        },
    };
    let backend = registry.build_backend(t.backend, &l.context)?;
    Ok(PoolMember {
        mode,
        name: name.to_string(),
        backend: Box::new(CachedBackend {
            inner: backend,
            cache: cache.clone(),
        }),
        prior_correction: t.prior_correction,
    })
}

/// The pipeline's `[pool.NAME]` members, each behind `cache` (what `rgd serve` answers with).
pub fn pool_members(
    registry: &Registry,
    p: &Pipeline,
    cache: &CallCache,
) -> Result<Vec<PoolMember>> {
    match &p.data {
        DataSpec::Answered { pool, .. } => pool
            .iter()
            .map(|(n, l)| member(registry, n, l, cache))
            .collect(),
        DataSpec::Source { .. } => Err(crate::Error::Invalid(format!(
            "{}: this pipeline has no [pool] (its data comes from a data source); serve with a pipeline whose [pool.NAME] tables name the models",
            p.path.display()
        ))),
    }
}

/// A subject's hand-written description next to the one derived from examples.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DescriptionRow {
    /// The subject.
    pub subject: String,
    /// From the descriptions file.
    pub hand_written: Option<String>,
    /// Written by the describe stage from example questions.
    pub derived: Option<String>,
}

/// What the generation stage did (results.json `training_data.generation`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GenerationReport {
    /// The generator's `type` and backend.
    pub generator: String,
    /// The descriptions file.
    pub descriptions_file: Option<String>,
    /// Described subjects the test set does not have (skipped).
    pub unknown_subjects: Vec<String>,
    /// Test subjects without a description (no training questions).
    pub undescribed_subjects: Vec<String>,
    /// Descriptions used (and derived ones, with `[generate.describe]`).
    pub descriptions: Vec<DescriptionRow>,
    /// Which descriptions the generator wrote from.
    pub used: String,
    /// Calls, parsing and records.
    #[serde(skip)]
    pub generated: Generated,
}

/// Reports of the data stage.
#[derive(Clone, Debug, Default)]
pub struct DataReport {
    /// With `[generate]`.
    pub generation: Option<GenerationReport>,
    /// What the components said while loading (rows skipped and counted, abstentions), each
    /// already shown through the session.
    pub warnings: Vec<String>,
}

/// Build the pipeline's named backends (each behind the call cache).
pub fn named_backends(
    registry: &Registry,
    p: &Pipeline,
    cache: &CallCache,
) -> Result<BTreeMap<String, Arc<dyn LlmBackend>>> {
    let mut out = BTreeMap::new();
    for (name, l) in &p.backends {
        let inner = registry.build_backend(l.table.clone(), &l.context)?;
        let b: Arc<dyn LlmBackend> = Arc::new(CachedBackend {
            inner,
            cache: cache.clone(),
        });
        out.insert(name.clone(), b);
    }
    Ok(out)
}

/// The generator's own answer to each generated question.
type SelfAnswers = Vec<Option<rgd_core::Letter>>;

/// The generation stage: descriptions (from the file and/or derived from examples), the
/// generator, and the generator's answers to its own questions.
fn generate(
    registry: &Registry,
    built: Option<&dyn Generator>,
    g: &GenerateSpec,
    ctx: &Context,
    test_subjects: &[String],
) -> Result<(Vec<Question>, Option<SelfAnswers>, GenerationReport)> {
    let files: Vec<std::path::PathBuf> = g.descriptions.iter().map(|d| ctx.resolve(d)).collect();
    let mut hand: indexmap::IndexMap<String, String> = Default::default();
    let mut from: BTreeMap<String, String> = BTreeMap::new();
    for f in &files {
        let one = rgd_core::descriptions::load(f).with_context(|| g.context.clone())?;
        for (subject, text) in one {
            if let Some(first) = from.get(&subject) {
                bail!(
                    "{}: subject `{subject}` is described in both {first} and {}",
                    g.context,
                    f.display()
                );
            }
            from.insert(subject.clone(), f.display().to_string());
            hand.insert(subject, text);
        }
    }
    let mut derived: indexmap::IndexMap<String, String> = Default::default();
    if let Some(d) = &g.describe {
        let src = registry.build_questions(d.source.table.clone(), &d.source.context)?;
        let examples = src
            .questions(ctx)
            .with_context(|| format!("{}: loading example questions", d.source.context))?;
        let backend = ctx.backend(&d.backend)?;
        let mut by_subject: indexmap::IndexMap<String, Vec<Question>> = Default::default();
        for q in examples {
            by_subject.entry(q.subject.clone()).or_default().push(q);
        }
        for (subject, qs) in by_subject {
            if !g.subjects.is_empty() && !g.subjects.contains(&subject) {
                continue;
            }
            let n = d.examples.min(qs.len());
            let text = rgd_core::descriptions::describe(backend.as_ref(), &subject, &qs[..n])?;
            ctx.info(format!("  described {subject}: {text}"));
            derived.insert(subject, text);
        }
    }
    let use_derived = g.describe.as_ref().is_some_and(|d| d.use_derived);
    let map = if use_derived { &derived } else { &hand };
    let file_name = if files.is_empty() {
        "[generate.describe]".to_string()
    } else {
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sel = rgd_core::descriptions::select(map, &g.subjects, test_subjects, &file_name)?;
    let own;
    let generator: &dyn Generator = match built {
        Some(b) => b,
        None => {
            own = registry.build_generator(g.generator.table.clone(), &g.generator.context)?;
            own.as_ref()
        }
    };
    let generated = generator
        .generate(&sel.chosen, ctx)
        .with_context(|| g.generator.context.clone())?;
    if generated.questions.is_empty() {
        let mut total = rgd_core::GenerationStats::default();
        for s in generated.stats.values() {
            total.add(s);
        }
        bail!(
            "{}: the generator produced no parseable question ({} calls, {} replies without a tagged block, {} blocks dropped: {:?})",
            g.generator.context,
            total.calls,
            total.replies_without_blocks,
            total.blocks - total.parsed,
            total.dropped
        );
    }
    let self_answers = match (g.self_answer, generator.backend_name()) {
        (true, Some(b)) => {
            let member = PoolMember {
                name: format!("generator `{b}`"),
                backend: Box::new(ctx.backend(b)?),
                prior_correction: false,
                mode: Default::default(),
            };
            let (r, _) = rgd_pool::answer(&generated.questions, &[member], &mut |_, _, _| {})?;
            Some(r.choice.column(0).to_vec())
        }
        _ => None,
    };
    let mut subjects: Vec<String> = hand.keys().cloned().collect();
    for s in derived.keys() {
        if !subjects.contains(s) {
            subjects.push(s.clone());
        }
    }
    let report = GenerationReport {
        generator: format!(
            "{} (backend {})",
            g.generator
                .table
                .get("type")
                .and_then(|t| t.as_str())
                .unwrap_or("?"),
            generator.backend_name().unwrap_or("–")
        ),
        descriptions_file: (!g.descriptions.is_empty()).then(|| {
            g.descriptions
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }),
        unknown_subjects: sel.unknown,
        undescribed_subjects: sel.undescribed,
        descriptions: subjects
            .into_iter()
            .filter(|s| sel.chosen.iter().any(|c| &c.subject == s) || derived.contains_key(s))
            .map(|s| DescriptionRow {
                hand_written: hand.get(&s).cloned(),
                derived: derived.get(&s).cloned(),
                subject: s,
            })
            .collect(),
        used: if use_derived {
            "derived from example questions".into()
        } else {
            "hand-written".into()
        },
        generated: generated.clone(),
    };
    Ok((generated.questions, self_answers, report))
}

/// Embed the questions of a split that a data source gave without embeddings (a split whose
/// embedding matrix has no column), in batches through the call cache.
pub(crate) fn embed_missing(
    split: &mut rgd_core::Split,
    emb: &dyn rgd_core::Embedder,
    ctx: &Context,
) -> Result<()> {
    if split.is_empty() || split.embeddings.ncols() > 0 {
        return Ok(());
    }
    let texts: Vec<&str> = split.questions.iter().map(|q| q.text.as_str()).collect();
    let mut rows = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(256) {
        ctx.check_interrupt()?;
        rows.push(
            emb.embed(chunk)
                .with_context(|| format!("embedding the questions of split `{}`", split.name))?,
        );
    }
    let views: Vec<_> = rows.iter().map(|r| r.view()).collect();
    split.embeddings = ndarray::concatenate(ndarray::Axis(0), &views)
        .map_err(|e| crate::Error::Invalid(format!("split `{}`: embeddings: {e}", split.name)))?;
    Ok(())
}

/// Load the data of `p`. `generator` is the pipeline's generator when already built (a run
/// builds it once, before any data loads); otherwise it is built here (a training source).
/// The warnings the components record while loading are shown through `session` and
/// returned in the report.
pub fn load(
    registry: &Registry,
    p: &Pipeline,
    ctx: &Context,
    session: &Session,
    generator: Option<&dyn Generator>,
) -> Result<(Dataset, Option<CallCache>, DataReport)> {
    // a load that failed earlier may have left some behind
    ctx.take_warnings();
    let (ds, cache, mut report) = load_parts(registry, p, ctx, session, generator)?;
    report.warnings = ctx.take_warnings();
    for w in &report.warnings {
        session.warn(w);
    }
    Ok((ds, cache, report))
}

fn load_parts(
    registry: &Registry,
    p: &Pipeline,
    ctx: &Context,
    session: &Session,
    generator: Option<&dyn Generator>,
) -> Result<(Dataset, Option<CallCache>, DataReport)> {
    match &p.data {
        DataSpec::Source { data, embedder } => {
            let src = registry.build_data_source(data.table.clone(), &data.context)?;
            let mut ds = src.load(ctx)?;
            let Some(embedder) = embedder else {
                return Ok((ds, None, DataReport::default()));
            };
            let cache = session.open_cache(p, ctx)?;
            let emb = CachedEmbedder {
                inner: registry.build_embedder(embedder.table.clone(), &embedder.context)?,
                cache: cache.clone(),
            };
            crate::recording::check_components(
                session,
                &cache,
                vec![("embedder".into(), emb.identity(), embedder.table.clone())],
            )?;
            for split in [&mut ds.train, &mut ds.test] {
                embed_missing(split, &emb, ctx)?;
            }
            Ok((ds, Some(cache), DataReport::default()))
        }
        DataSpec::Answered {
            train,
            test,
            pool,
            embedder,
        } => {
            let cache = session.open_cache(p, ctx)?;
            let mut ctx = ctx.clone();
            ctx.backends = named_backends(registry, p, &cache)?;
            let ctx = &ctx;
            // every component first: a replay refuses other model files before any call
            let members = pool
                .iter()
                .map(|(n, l)| member(registry, n, l, &cache))
                .collect::<Result<Vec<_>>>()?;
            let emb = CachedEmbedder {
                inner: registry.build_embedder(embedder.table.clone(), &embedder.context)?,
                cache: cache.clone(),
            };
            let mut components: Vec<(String, String, toml::Table)> = members
                .iter()
                .zip(pool)
                .map(|(m, (n, l))| (format!("pool.{n}"), m.backend.identity(), l.table.clone()))
                .collect();
            for (n, l) in &p.backends {
                if let Some(b) = ctx.backends.get(n) {
                    components.push((format!("backends.{n}"), b.identity(), l.table.clone()));
                }
            }
            components.push(("embedder".into(), emb.identity(), embedder.table.clone()));
            crate::recording::check_components(session, &cache, components)?;
            let sq = registry.build_questions(test.table.clone(), &test.context)?;
            let test_qs = sq
                .questions(ctx)
                .with_context(|| "loading the test questions".to_string())?;
            let mut report = DataReport::default();
            let mut self_answers = None;
            let train_qs = match train {
                TrainSpec::Questions(l) => registry
                    .build_questions(l.table.clone(), &l.context)?
                    .questions(ctx)
                    .with_context(|| "loading the train questions".to_string())?,
                TrainSpec::Generated(g) => {
                    let mut subjects: Vec<String> = Vec::new();
                    for q in &test_qs {
                        if !subjects.contains(&q.subject) {
                            subjects.push(q.subject.clone());
                        }
                    }
                    let (qs, sa, r) = generate(registry, generator, g, ctx, &subjects)?;
                    self_answers = sa;
                    report.generation = Some(r);
                    qs
                }
            };
            let progress = session.progress();
            let mut splits = Vec::new();
            for (name, qs) in [("train", train_qs), ("test", test_qs)] {
                let mut on_call = |model: &str, done: usize, total: usize| {
                    progress.items(&format!("{name} {model}"), done, total);
                };
                splits.push(rgd_pool::build_split(
                    name,
                    qs,
                    &members,
                    &emb,
                    ctx,
                    &mut on_call,
                )?);
            }
            progress.items_done();
            let test = splits.pop().expect("two splits");
            let mut train = splits.pop().expect("two splits");
            train.generator_answer = self_answers;
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
                report,
            ))
        }
    }
}
