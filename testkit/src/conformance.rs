//! The conformance check every component runs with one line:
//!
//! ```ignore
//! #[test]
//! fn conformance() {
//!     rgd_testkit::check_router(&rgd_core::Registry::builtin().unwrap(), "type = \"knn\"").unwrap();
//! }
//! ```
//!
//! A router must: train on a tiny split without panicking; give finite scores of the right
//! shape, the same from `score` and `score_split`; reload from its artifact (typetag JSON, as
//! `rgd train` writes it) with identical scores; give identical scores when trained twice from
//! the same config (its randomness comes from its seed); refuse an artifact whose pool was
//! edited; answer an empty or one-question training split with a clear error or a valid router,
//! never a panic; and document every config field (what `rgd plugins` shows). A filter and a
//! data source pass the checks that apply to them.

use crate::World;
use ndarray::Array2;
use rgd_core::registry::Kind;
use rgd_core::{Context, Dataset, Query, Registry, Split, TrainedRouter};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

/// A check a component failed: which component, which check, what happened.
#[derive(Debug, thiserror::Error)]
#[error("conformance of `{component}`: {check}: {msg}")]
pub struct Failure {
    /// The component's table (`type = "..."`).
    pub component: String,
    /// The check that failed.
    pub check: &'static str,
    /// What happened.
    pub msg: String,
}

/// Run `f`, turning a panic into its message.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".into())
    })
}

struct Checker<'a> {
    registry: &'a Registry,
    table: toml::Table,
    component: String,
}

impl Checker<'_> {
    fn new<'a>(registry: &'a Registry, kind: Kind, table: &str) -> Result<Checker<'a>, Failure> {
        let fail = |msg: String| Failure {
            component: table.to_string(),
            check: "config",
            msg,
        };
        let t: toml::Table = toml::from_str(table).map_err(|e| fail(e.to_string()))?;
        let name = t
            .get("type")
            .and_then(|v| v.as_str())
            .ok_or_else(|| fail("the table has no `type`".into()))?
            .to_string();
        let c = Checker {
            registry,
            table: t,
            component: name.clone(),
        };
        let entry = registry
            .get(kind, &name)
            .ok_or_else(|| c.fail("registered", format!("no {kind} `{name}` is registered")))?;
        if entry.doc.trim().is_empty() {
            return Err(c.fail("documented", "the config struct has no doc comment".into()));
        }
        if let Some(f) = entry.fields.iter().find(|f| f.doc.trim().is_empty()) {
            return Err(c.fail(
                "documented",
                format!(
                    "field `{}` has no doc comment (`rgd plugins` shows it)",
                    f.name
                ),
            ));
        }
        Ok(c)
    }

    fn fail(&self, check: &'static str, msg: String) -> Failure {
        Failure {
            component: self.component.clone(),
            check,
            msg,
        }
    }
}

/// Finite scores of shape `[questions, models]`, or what is wrong.
fn check_scores(scores: &Array2<f64>, split: &Split, n_models: usize) -> Result<(), String> {
    if scores.dim() != (split.len(), n_models) {
        return Err(format!(
            "scores are {:?} for {} questions x {n_models} models",
            scores.dim(),
            split.len()
        ));
    }
    if let Some(((q, m), v)) = scores.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(format!("score of question {q}, model {m} is {v}"));
    }
    Ok(())
}

/// The first array in `v` (depth first) equal to `want`: where an artifact keeps its pool,
/// also inside a wrapper (a plugin's guarded router keeps the library's state under `inner`).
fn find_array<'a>(
    v: &'a mut serde_json::Value,
    want: &[serde_json::Value],
) -> Option<&'a mut Vec<serde_json::Value>> {
    if v.as_array().is_some_and(|a| a.as_slice() == want) {
        return v.as_array_mut();
    }
    match v {
        serde_json::Value::Array(a) => a.iter_mut().find_map(|x| find_array(x, want)),
        serde_json::Value::Object(o) => o.values_mut().find_map(|x| find_array(x, want)),
        _ => None,
    }
}

/// Check a router given as its TOML table (`type = "knn"`, plus any fields) against every
/// conformance rule (see the module docs).
pub fn check_router(registry: &Registry, table: &str) -> Result<(), Failure> {
    let c = Checker::new(registry, Kind::Router, table)?;
    let ds = World::new().seed(11).dataset();
    let ctx = {
        let mut ctx = Context::new(".");
        ctx.quiet = true;
        ctx
    };
    let build = || {
        registry
            .build_router(c.table.clone(), "conformance")
            .map_err(|e| c.fail("builds from its table", e.to_string()))
    };
    let train = |split: &Split| -> Result<_, Failure> {
        let router = build()?;
        guarded(|| router.train(split, &ds.models, &ctx))
            .map_err(|p| c.fail("never panics", format!("train panicked: {p}")))
    };
    let score = |trained: &dyn TrainedRouter, what: &'static str| -> Result<Array2<f64>, Failure> {
        let s = guarded(|| trained.score_split(&ds.test))
            .map_err(|p| {
                c.fail(
                    "never panics",
                    format!("score_split panicked ({what}): {p}"),
                )
            })?
            .map_err(|e| c.fail("scores the test split", format!("{what}: {e}")))?;
        check_scores(&s, &ds.test, ds.models.len())
            .map_err(|m| c.fail("finite scores of the right shape", format!("{what}: {m}")))?;
        Ok(s)
    };

    // trains on a tiny split, finite scores of the right shape, `score` agrees
    let trained = train(&ds.train)?.map_err(|e| c.fail("trains on a tiny split", e.to_string()))?;
    let scores = score(trained.as_ref(), "trained")?;
    let mut out = vec![0.0; ds.models.len()];
    for q in [0, ds.test.len() - 1] {
        let query = Query {
            id: &ds.test.questions[q].id,
            text: &ds.test.questions[q].text,
            embedding: ds.test.embedding(q),
        };
        guarded(|| trained.score(&query, &mut out))
            .map_err(|p| c.fail("never panics", format!("score panicked: {p}")))?
            .map_err(|e| c.fail("scores one query", e.to_string()))?;
        let row = scores.row(q);
        if let Some(m) =
            (0..out.len()).find(|&m| (out[m] - row[m]).abs() > 1e-9 * (1.0 + row[m].abs()))
        {
            return Err(c.fail(
                "score agrees with score_split",
                format!("question {q}, model {m}: {} vs {}", out[m], row[m]),
            ));
        }
    }

    // the artifact round trip: the same scores, and validate accepts it
    let json =
        serde_json::to_value(&trained).map_err(|e| c.fail("writes its artifact", e.to_string()))?;
    let back: Box<dyn TrainedRouter> = serde_json::from_value(json.clone())
        .map_err(|e| c.fail("reloads from its artifact", e.to_string()))?;
    back.validate().map_err(|e| {
        c.fail(
            "reloads from its artifact",
            format!("validate refused it: {e}"),
        )
    })?;
    if score(back.as_ref(), "reloaded")? != scores {
        return Err(c.fail(
            "reloads from its artifact",
            "the reloaded router scores differently".into(),
        ));
    }

    // deterministic under its seed: a second training gives the same scores
    let again = train(&ds.train)?
        .map_err(|e| c.fail("trains on a tiny split", format!("second training: {e}")))?;
    if score(again.as_ref(), "trained again")? != scores {
        return Err(c.fail(
            "deterministic under its seed",
            "two trainings from the same config and data score differently".into(),
        ));
    }

    // an artifact whose pool was edited (one model fewer): refused by `validate`, or, for a
    // router without per-model state, a consistent router over the smaller pool — never a
    // panic or scores of the old shape
    let mut edited = json;
    let names: Vec<serde_json::Value> = ds.models.iter().map(|m| m.as_str().into()).collect();
    let models = find_array(&mut edited, &names).ok_or_else(|| {
        c.fail(
            "refuses an edited artifact",
            "the artifact holds no list of the pool's models".into(),
        )
    })?;
    models.pop();
    if let Ok(r) = serde_json::from_value::<Box<dyn TrainedRouter>>(edited) {
        match guarded(|| r.validate()) {
            Err(p) => return Err(c.fail("never panics", format!("validate panicked: {p}"))),
            Ok(Err(_)) => {}
            Ok(Ok(())) => {
                let s = guarded(|| r.score_split(&ds.test)).map_err(|p| {
                    c.fail(
                        "refuses an edited artifact",
                        format!("validate accepted an artifact with one model removed, then scoring panicked: {p}"),
                    )
                })?;
                if let Ok(s) = s {
                    check_scores(&s, &ds.test, ds.models.len() - 1).map_err(|m| {
                        c.fail(
                            "refuses an edited artifact",
                            format!("validate accepted an artifact with one model removed: {m}"),
                        )
                    })?;
                }
            }
        }
    }

    // an empty or one-question training split: an error, or a router that scores validly
    for keep in [&[][..], &[0][..]] {
        let tiny = ds.train.select(keep);
        if let Ok(t) = train(&tiny)? {
            score(
                t.as_ref(),
                if keep.is_empty() {
                    "trained on no question"
                } else {
                    "trained on one question"
                },
            )?;
        }
    }
    Ok(())
}

/// Check a filter given as its TOML table: it never panics, keeps a flag per question and
/// counts every removed one under a reason, decides the same twice, and takes an empty or
/// one-question split.
pub fn check_filter(registry: &Registry, table: &str) -> Result<(), Failure> {
    let c = Checker::new(registry, Kind::Filter, table)?;
    let ds = World::new().seed(12).dataset();
    let mut ctx = Context::new(".");
    ctx.quiet = true;
    let run = |split: &Split| -> Result<_, Failure> {
        let f = c
            .registry
            .build_filter(c.table.clone(), "conformance")
            .map_err(|e| c.fail("builds from its table", e.to_string()))?;
        let out = guarded(|| f.filter(split, &ds.models, &ctx))
            .map_err(|p| c.fail("never panics", format!("filter panicked: {p}")))?;
        if let Ok(o) = &out {
            if o.keep.len() != split.len() {
                return Err(c.fail(
                    "one flag per question",
                    format!("{} flags for {} questions", o.keep.len(), split.len()),
                ));
            }
            let dropped = o.keep.iter().filter(|k| !**k).count();
            let counted: usize = o.removed.values().sum();
            if dropped != counted {
                return Err(c.fail(
                    "counts what it removes",
                    format!("{dropped} questions removed, {counted} counted under a reason"),
                ));
            }
        }
        Ok(out)
    };
    let first = run(&ds.train)?.map_err(|e| c.fail("filters a tiny split", e.to_string()))?;
    let second = run(&ds.train)?.map_err(|e| c.fail("filters a tiny split", e.to_string()))?;
    if first.keep != second.keep {
        return Err(c.fail(
            "deterministic",
            "two runs on the same split keep different questions".into(),
        ));
    }
    for keep in [&[][..], &[0][..]] {
        let _ = run(&ds.train.select(keep))?;
    }
    Ok(())
}

/// Check a labeler given as its TOML table: it never panics, labels a tiny split with one
/// number in [0, 1] per question and model, gives the same labels twice, takes an empty or
/// one-question split, and keeps its word on what it reads: a labeler that says it needs no
/// key labels the split with every key removed, and one that reads the key refuses to label
/// (through the context) where there is none.
pub fn check_labeler(registry: &Registry, table: &str) -> Result<(), Failure> {
    let c = Checker::new(registry, Kind::Labeler, table)?;
    let ds = World::new().seed(13).dataset();
    let l = c
        .registry
        .build_labeler(c.table.clone(), "conformance")
        .map_err(|e| c.fail("builds from its table", e.to_string()))?;
    let label = |split: &Split| -> Result<_, Failure> {
        guarded(|| l.label(split))
            .map_err(|p| c.fail("never panics", format!("labeler panicked: {p}")))
    };
    let first = label(&ds.train)?.map_err(|e| c.fail("labels a tiny split", e.to_string()))?;
    rgd_core::labels::check_labels(&first, &ds.train, &c.component)
        .map_err(|e| c.fail("one label in [0, 1] per question and model", e.to_string()))?;
    let second = label(&ds.train)?.map_err(|e| c.fail("labels a tiny split", e.to_string()))?;
    if first.values != second.values {
        return Err(c.fail(
            "deterministic",
            "two calls on the same split give different labels".into(),
        ));
    }
    for keep in [&[][..], &[0][..]] {
        let sub = ds.train.select(keep);
        if let Ok(labels) = label(&sub)? {
            rgd_core::labels::check_labels(&labels, &sub, &c.component)
                .map_err(|e| c.fail("one label in [0, 1] per question and model", e.to_string()))?;
        }
    }
    let mut unkeyed = ds.train.clone();
    unkeyed.questions.iter_mut().for_each(|q| q.answer = None);
    let mut ctx = Context::new(".");
    ctx.labelers
        .insert(c.component.clone(), std::sync::Arc::from(l));
    let l = ctx.labelers[&c.component].clone();
    if l.needs().key {
        if ctx.labels(&c.component, &unkeyed).is_ok() {
            return Err(c.fail(
                "reads only what it says",
                "it says it reads the key, and labeled a split without one".into(),
            ));
        }
    } else {
        let labels = ctx.labels(&c.component, &unkeyed).map_err(|e| {
            c.fail(
                "reads only what it says",
                format!("it says it needs no key, and a split without one fails: {e}"),
            )
        })?;
        if labels.values != first.values {
            return Err(c.fail(
                "reads only what it says",
                "it says it needs no key, and its labels change when the key is removed".into(),
            ));
        }
    }
    Ok(())
}

/// Check a data source given as its TOML table, relative paths resolving against `base_dir`:
/// it never panics, its dataset passes [`Dataset::validate`], and two loads give the same
/// dataset. Returns the dataset for further checks.
pub fn check_data_source(
    registry: &Registry,
    table: &str,
    base_dir: &Path,
) -> Result<Dataset, Failure> {
    let c = Checker::new(registry, Kind::DataSource, table)?;
    let mut ctx = Context::new(base_dir);
    ctx.quiet = true;
    let load = || -> Result<Dataset, Failure> {
        let s = c
            .registry
            .build_data_source(c.table.clone(), "conformance")
            .map_err(|e| c.fail("builds from its table", e.to_string()))?;
        let ds = guarded(|| s.load(&ctx))
            .map_err(|p| c.fail("never panics", format!("load panicked: {p}")))?
            .map_err(|e| c.fail("loads", e.to_string()))?;
        // data that carries no embeddings gets them from the pipeline's [embedder]: check the
        // rest with a stand-in dimension
        let mut checked = ds.clone();
        for split in [&mut checked.train, &mut checked.test] {
            if split.embeddings.ncols() == 0 {
                split.embeddings = Array2::zeros((split.len(), 1));
            }
        }
        checked
            .validate()
            .map_err(|e| c.fail("a valid dataset", e.to_string()))?;
        Ok(ds)
    };
    let ds = load()?;
    // compared as JSON: an unknown confidence is NaN, which is never equal to itself
    let json = |d: &Dataset| serde_json::to_string(d).unwrap_or_default();
    if json(&load()?) != json(&ds) {
        return Err(c.fail(
            "deterministic",
            "two loads of the same table give different datasets".into(),
        ));
    }
    Ok(ds)
}

/// Check a question source given as its TOML table, relative paths resolving against
/// `base_dir`: it never panics, gives questions with unique ids, subjects and at least two
/// options whose key (when given) is one of them, and gives the same questions twice.
pub fn check_questions(
    registry: &Registry,
    table: &str,
    base_dir: &Path,
) -> Result<Vec<rgd_core::Question>, Failure> {
    let c = Checker::new(registry, Kind::Questions, table)?;
    let mut ctx = Context::new(base_dir);
    ctx.quiet = true;
    let load = || -> Result<Vec<rgd_core::Question>, Failure> {
        let s = c
            .registry
            .build_questions(c.table.clone(), "conformance")
            .map_err(|e| c.fail("builds from its table", e.to_string()))?;
        guarded(|| s.questions(&ctx))
            .map_err(|p| c.fail("never panics", format!("questions panicked: {p}")))?
            .map_err(|e| c.fail("loads", e.to_string()))
    };
    let qs = load()?;
    let mut ids = std::collections::HashSet::new();
    for q in &qs {
        if !ids.insert(q.id.as_str()) {
            return Err(c.fail("valid questions", format!("id `{}` twice", q.id)));
        }
        if q.subject.is_empty() || q.options.len() < 2 {
            return Err(c.fail(
                "valid questions",
                format!(
                    "question `{}`: subject `{}`, {} options",
                    q.id,
                    q.subject,
                    q.options.len()
                ),
            ));
        }
        if let Some(a) = q.answer.filter(|a| a.index() >= q.options.len()) {
            return Err(c.fail(
                "valid questions",
                format!(
                    "question `{}`: key `{a}` beyond its {} options",
                    q.id,
                    q.options.len()
                ),
            ));
        }
    }
    if load()? != qs {
        return Err(c.fail(
            "deterministic",
            "two loads of the same table give different questions".into(),
        ));
    }
    Ok(qs)
}
