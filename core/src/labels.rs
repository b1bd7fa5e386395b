//! Labelers, the fourth component kind: what a router learns from. A labeler turns a split
//! (questions, the pool's answers, maybe a key) into per-(question, model) labels in [0, 1];
//! a router that takes `labels = "NAME"` learns from the labels of the `[labelers.NAME]` table
//! (or of the labeler type `NAME` with its defaults). The pipeline resolves every router's
//! labeler before training ([`resolve_router_labels`]), checks that the data has what the
//! labeler reads ([`Needs::check`]), and reports how well each labeler's labels agree with
//! the key ([`quality`]).

use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::sync::Arc;

use crate::data::{Labels, Split};
use crate::traits::{Context, Router, Supervision};
use crate::{Error, Result};

/// What a labeler reads besides the questions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Needs {
    /// The answer key (or recorded correctness): such labels are query-answer supervision.
    pub key: bool,
    /// The letters the pool chose (not only whether each answer was right).
    pub letters: bool,
}

impl Needs {
    /// What a router learning from these labels learns from.
    pub fn supervision(self) -> Supervision {
        if self.key {
            Supervision::QueryAnswer
        } else {
            Supervision::QueryOnly
        }
    }

    /// Whether `split` has what these needs name; the message says what is missing.
    pub fn check(self, split: &Split) -> std::result::Result<(), String> {
        if self.key && split.responses.correct.is_none() {
            let unkeyed = split
                .questions
                .iter()
                .filter(|q| q.answer.is_none())
                .count();
            if unkeyed > 0 {
                let first = &split
                    .questions
                    .iter()
                    .find(|q| q.answer.is_none())
                    .expect("counted")
                    .id;
                return Err(format!(
                    "it reads the answer key, and {unkeyed} of the {} questions of split `{}` have none (first: `{first}`); use a query-only labeler (consensus, plurality, dawid_skene)",
                    split.len(),
                    split.name
                ));
            }
        }
        if self.letters && !split.responses.has_letters() {
            return Err(format!(
                "it reads the letters the pool chose, and split `{}` records only whether each answer was right; use `key`",
                split.name
            ));
        }
        Ok(())
    }
}

/// Turns a split (questions + pool responses, maybe a key) into per-(question, model) labels.
pub trait Labeler: Send + Sync + Debug {
    /// Compute the labels: `[question, model]` values in [0, 1], higher = better.
    fn label(&self, split: &Split) -> Result<Labels>;
    /// What it reads besides the questions (checked against the data before training).
    fn needs(&self) -> Needs {
        Needs::default()
    }
    /// Check the parameters (the registry calls it when the labeler is built from its table).
    fn check(&self) -> Result<()> {
        Ok(())
    }
}

/// Check labels a labeler returned for `split`: one row per question, one column per model,
/// every value a number in [0, 1]. The message names the labeler and the first bad cell.
pub fn check_labels(labels: &Labels, split: &Split, labeler: &str) -> Result<()> {
    let want = (split.len(), split.n_models());
    let bad = |msg: String| {
        Err(Error::Data(format!(
            "labeler `{labeler}` on split `{}`: {msg}",
            split.name
        )))
    };
    if labels.values.dim() != want {
        return bad(format!(
            "returned {:?} labels, expected {want:?} (one per question and model)",
            labels.values.dim()
        ));
    }
    if let Some(((q, m), v)) = labels
        .values
        .indexed_iter()
        .find(|(_, v)| !(0.0..=1.0).contains(*v))
    {
        return bad(format!(
            "label {v} for question `{}` and model {m} is not a number in [0, 1]",
            split.questions[q].id
        ));
    }
    Ok(())
}

impl Context {
    /// The labeler a router's `labels = "NAME"` names: the pipeline's `[labelers.NAME]` (or
    /// the type it resolved for it), else the built-in labeler type `NAME` with its defaults.
    pub fn labeler(&self, name: &str) -> Result<Arc<dyn Labeler>> {
        if let Some(l) = self.labelers.get(name) {
            return Ok(l.clone());
        }
        let registry = crate::Registry::builtin()?;
        build_default(&registry, name, "labels").map(Arc::from)
    }

    /// The labels of labeler `name` on `split`, checked ([`check_labels`]) and after its
    /// needs were checked against the split.
    pub fn labels(&self, name: &str, split: &Split) -> Result<Labels> {
        let l = self.labeler(name)?;
        l.needs()
            .check(split)
            .map_err(|msg| Error::Data(format!("labeler `{name}`: {msg}")))?;
        let labels = l.label(split)?;
        check_labels(&labels, split, name)?;
        Ok(labels)
    }

    /// What `router` learns from: its labeler's supervision when it takes labels.
    pub fn supervision_of(&self, router: &dyn Router) -> Supervision {
        match router.labels() {
            Some(name) => self
                .labeler(name)
                .map(|l| l.needs().supervision())
                .unwrap_or(router.supervision()),
            None => router.supervision(),
        }
    }
}

/// Build the labeler type `name` with its defaults.
fn build_default(
    registry: &crate::Registry,
    name: &str,
    context: &str,
) -> Result<Box<dyn Labeler>> {
    if registry.get(crate::Kind::Labeler, name).is_none() {
        let known: Vec<&str> = registry
            .entries(crate::Kind::Labeler)
            .map(|e| e.type_name.as_str())
            .collect();
        return Err(Error::Config {
            context: context.to_string(),
            msg: format!(
                "`labels = \"{name}\"` names no [labelers.{name}] table and no labeler type (types: {})",
                if known.is_empty() {
                    "(none linked)".to_string()
                } else {
                    known.join(", ")
                }
            ),
        });
    }
    let mut t = toml::Table::new();
    t.insert("type".into(), toml::Value::String(name.to_string()));
    registry.build_labeler(t, context)
}

/// Give `ctx` every labeler the `routers` name that the pipeline has no `[labelers.NAME]`
/// table for (the labeler type `NAME` with its defaults), so a name that means nothing is an
/// error naming the router's table before any data loads. `routers` are (context, router).
pub fn resolve_router_labels<'a>(
    registry: &crate::Registry,
    ctx: &mut Context,
    routers: impl IntoIterator<Item = (&'a str, &'a dyn Router)>,
) -> Result<()> {
    for (context, router) in routers {
        let Some(name) = router.labels() else {
            continue;
        };
        if ctx.labelers.contains_key(name) {
            continue;
        }
        let built = build_default(registry, name, context)?;
        ctx.labelers.insert(name.to_string(), Arc::from(built));
    }
    Ok(())
}

/// How well a labeler's labels agree with the key on one split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelQuality {
    /// The labeler's name (`[labelers.NAME]` or its type).
    pub labeler: String,
    /// The split (`train`, `test`).
    pub split: String,
    /// Share of (question, model) cells where `label >= 0.5` equals "the model was right".
    pub agreement: f64,
    /// Mean squared difference between the label and correctness (0 or 1): the Brier score.
    pub brier: f64,
    /// Cells compared.
    pub cells: usize,
}

/// The agreement of `labels` with the key of `split` (`None` when the split has no key on
/// some question and no recorded correctness).
pub fn quality(labels: &Labels, split: &Split, labeler: &str) -> Option<LabelQuality> {
    if split.responses.correct.is_none() && split.questions.iter().any(|q| q.answer.is_none()) {
        return None;
    }
    let (n, m) = labels.values.dim();
    if n == 0 || m == 0 || n != split.len() {
        return None;
    }
    let (mut agree, mut sq) = (0usize, 0.0);
    for q in 0..n {
        let key = split.questions[q].answer;
        for j in 0..m {
            let right = split.responses.is_correct(q, j, key);
            let v = labels.values[[q, j]];
            agree += usize::from((v >= 0.5) == right);
            sq += (v - f64::from(u8::from(right))).powi(2);
        }
    }
    let cells = n * m;
    Some(LabelQuality {
        labeler: labeler.to_string(),
        split: split.name.clone(),
        agreement: agree as f64 / cells as f64,
        brier: sq / cells as f64,
        cells,
    })
}
