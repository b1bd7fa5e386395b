//! The training-data stage of `rgd run`: generator diagnostics, the filters, and the
//! generated questions and calls written next to the results.

use crate::error::{Result, ResultExt as _, bail};
use rgd_core::{Context, Dataset, Filter};
use rgd_diagnostics::diagnose;
pub use rgd_diagnostics::{Diagnostics, GroupDiagnostics};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use crate::data::{DataReport, GenerationReport};
use crate::resolve::Named;

/// What one filter did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FilterStep {
    /// Its table name.
    pub name: String,
    /// Its `type`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Training questions before it.
    pub before: usize,
    /// After it.
    pub after: usize,
    /// Reason -> questions removed.
    pub removed: BTreeMap<String, usize>,
}

/// results.json `training_data`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainingData {
    /// Training questions before the filters.
    pub n_before_filters: usize,
    /// The generation stage (with `[generate]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<GenerationReport>,
    /// Diagnostics of the training questions before the filters (against their key).
    pub diagnostics: Diagnostics,
    /// The filters, in order.
    pub filters: Vec<FilterStep>,
}

fn write_jsonl<T: Serialize>(path: &Path, items: impl Iterator<Item = T>) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?,
    );
    for it in items {
        serde_json::to_writer(&mut f, &it)?;
        f.write_all(b"\n")?;
    }
    f.flush()?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Diagnose the training split, write what the generator made into `out/generated/`, then
/// apply the filters in order (replacing `ds.train` by what they keep).
pub fn process(
    ds: &mut Dataset,
    report: DataReport,
    filters: &[Named<Box<dyn Filter>>],
    skip: &[String],
    ctx: &Context,
    out: Option<&Path>,
) -> Result<TrainingData> {
    let stats = report.generation.as_ref().map(|g| &g.generated.stats);
    let diagnostics = diagnose(&ds.train, &ds.models, stats);
    if let (Some(g), Some(out)) = (&report.generation, out) {
        let dir = out.join("generated");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        #[derive(Serialize)]
        struct Item<'a> {
            #[serde(flatten)]
            question: &'a rgd_core::Question,
            generator_answer: Option<String>,
        }
        let ga = ds.train.generator_answer.as_ref();
        write_jsonl(
            &dir.join("questions.jsonl"),
            ds.train.questions.iter().enumerate().map(|(i, q)| Item {
                question: q,
                generator_answer: ga.and_then(|g| g[i]).map(|l| l.to_string()),
            }),
        )?;
        write_jsonl(&dir.join("calls.jsonl"), g.generated.records.iter())?;
        let derived: toml::Table = g
            .descriptions
            .iter()
            .filter_map(|d| Some((d.subject.clone(), toml::Value::String(d.derived.clone()?))))
            .collect();
        if !derived.is_empty() {
            std::fs::write(
                dir.join("derived-descriptions.toml"),
                format!(
                    "# written by the describe stage of {} from example questions\n{}",
                    out.display(),
                    toml::to_string(&derived)?
                ),
            )?;
        }
    }
    let n_before = ds.train.len();
    let steps = apply_filters(&mut ds.train, &ds.models, filters, skip, ctx)?;
    Ok(TrainingData {
        n_before_filters: n_before,
        generation: report.generation,
        diagnostics,
        filters: steps,
    })
}

/// Apply the pipeline's filters in order, except those named in `skip`.
pub fn apply_filters(
    train: &mut rgd_core::Split,
    models: &[String],
    filters: &[Named<Box<dyn Filter>>],
    skip: &[String],
    ctx: &Context,
) -> Result<Vec<FilterStep>> {
    let mut steps = Vec::new();
    for Named {
        name,
        type_name,
        value: f,
        ..
    } in filters
    {
        if skip.contains(name) {
            continue;
        }
        let before = train.len();
        let o = f
            .filter(train, models, ctx)
            .with_context(|| format!("filter `{name}` (type `{type_name}`)"))?;
        if o.keep.len() != before {
            bail!(
                "filter `{name}` returned {} decisions for {before} questions",
                o.keep.len()
            );
        }
        let kept: Vec<usize> = (0..before).filter(|&i| o.keep[i]).collect();
        if kept.is_empty() {
            bail!(
                "filter `{name}` (type `{type_name}`) removed every training question ({:?})",
                o.removed
            );
        }
        *train = train.select(&kept);
        ctx.info(format!(
            "  filter {name}: {before} -> {} training questions",
            kept.len()
        ));
        steps.push(FilterStep {
            name: name.clone(),
            type_name: type_name.clone(),
            before,
            after: kept.len(),
            removed: o.removed,
        });
    }
    Ok(steps)
}
