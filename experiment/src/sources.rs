//! Training sources side by side: every router trained on each `[sources.NAME]` (and on the
//! pipeline's own training data, `main`) and tested on the same test split — the paper's
//! comparison of generators against real labeled data, with the drop from a reference source.

use crate::error::{Result, ResultExt as _, bail};
use crate::evaluate::{Cell, train_and_evaluate};
use crate::resolve::Resolved;
use rgd_core::Dataset;
use rgd_core::eval::confidence_stats;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

use crate::session::Session;

/// One router trained on one source.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SourceCell {
    /// Top-1 accuracy on the test split.
    pub top1: f64,
    /// Its 95% bootstrap interval.
    pub top1_ci95: [f64; 2],
    /// Top-3 vote accuracy.
    pub top3_vote: f64,
    /// Its 95% bootstrap interval.
    pub top3_vote_ci95: [f64; 2],
    /// Top-1 minus the reference source's top-1 (when a reference is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_from_reference: Option<f64>,
}

/// results.json `sources`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SourcesOut {
    /// Source names in order (`main` first).
    pub order: Vec<String>,
    /// The reference source, if any.
    pub reference: Option<String>,
    /// Training questions per source (after filters).
    pub n_train: BTreeMap<String, usize>,
    /// router -> source -> result.
    pub results: BTreeMap<String, BTreeMap<String, SourceCell>>,
    /// router -> source -> why it failed.
    pub failed: BTreeMap<String, BTreeMap<String, String>>,
    /// Each extra source's training data: generation, diagnostics, filters.
    pub training_data: BTreeMap<String, crate::training::TrainingData>,
}

/// The main run's accuracies of one router.
/// Run every training source (`[sources.NAME]`): reload the training data as each says, apply
/// the pipeline's filters (those it keeps), train every router on it and evaluate on the main
/// test split. `main_results` are the routers' cells on the pipeline's own training data.
pub fn run_sources(
    r: &Resolved,
    session: &Session,
    main: &Dataset,
    main_results: &BTreeMap<String, Cell>,
    out: Option<&Path>,
    mut ablation: Option<&mut crate::ablation::AblationOut>,
) -> Result<SourcesOut> {
    let pipeline = &r.pipeline;
    let ctx = &r.ctx;
    let mut order = vec!["main".to_string()];
    let mut n_train = BTreeMap::from([("main".to_string(), main.train.len())]);
    let mut results: BTreeMap<String, BTreeMap<String, SourceCell>> = BTreeMap::new();
    let mut failed: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut training_data = BTreeMap::new();
    for (name, m) in main_results {
        results
            .entry(name.clone())
            .or_default()
            .insert("main".into(), SourceCell::from(*m));
    }
    let test_ids: Vec<&str> = main.test.questions.iter().map(|q| q.id.as_str()).collect();
    for (sname, loc) in &pipeline.sources {
        ctx.check_interrupt()?;
        if sname == "main" {
            bail!(
                "{}: `main` names the pipeline's own training data; pick another name",
                loc.context
            );
        }
        order.push(sname.clone());
        // `filters = [...]`: which of the pipeline's filters apply to this source (default all)
        let mut loc = loc.clone();
        let skip: Vec<String> = match loc.table.remove("filters") {
            None => Vec::new(),
            Some(v) => {
                let names: Vec<String> = match v.as_array() {
                    Some(a) if a.iter().all(|x| x.is_str()) => a
                        .iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect(),
                    _ => bail!(
                        "{}: `filters` must be a list of [filters.NAME] names",
                        loc.context
                    ),
                };
                let all = r.filter_names();
                for n in &names {
                    if !all.contains(n) {
                        bail!(
                            "{}: `filters` names `{n}`, not a [filters.NAME] of this pipeline (its filters: {})",
                            loc.context,
                            all.join(", ")
                        );
                    }
                }
                all.into_iter().filter(|k| !names.contains(k)).collect()
            }
        };
        let p = pipeline.with_train(&loc)?;
        let (mut ds, _, report) = crate::data::load(&r.registry, &p, ctx, session, None)
            .with_context(|| format!("training source `{sname}` ({})", loc.context))?;
        ds.validate()?;
        let ids: Vec<&str> = ds.test.questions.iter().map(|q| q.id.as_str()).collect();
        if ids != test_ids || ds.models != main.models {
            bail!(
                "{}: source `{sname}` changes the test split or the pool; a source may only change the training data",
                loc.context
            );
        }
        let dir = out.map(|o| o.join("sources").join(sname));
        let unfiltered = ablation.is_some().then(|| ds.train.clone());
        let td = crate::training::process(&mut ds, report, &r.filters, &skip, ctx, dir.as_deref())?;
        training_data.insert(sname.clone(), td);
        n_train.insert(sname.clone(), ds.train.len());
        let stats = confidence_stats(&ds.train);
        for router in &r.routers {
            match train_and_evaluate(
                router.value.as_ref(),
                &ds.train,
                &main.test,
                &main.models,
                &stats,
                ctx,
            ) {
                Ok(ev) => {
                    results
                        .entry(router.name.clone())
                        .or_default()
                        .insert(sname.clone(), SourceCell::from(ev.cell(pipeline.seed)));
                }
                Err(e) => {
                    failed
                        .entry(router.name.clone())
                        .or_default()
                        .insert(sname.clone(), e.to_string());
                }
            }
        }
        if let (Some(a), Some(u)) = (ablation.as_deref_mut(), &unfiltered) {
            a.add_source(r, sname, u, &main.test, &main.models, &skip)?;
        }
        session.progress().info(&format!(
            "  source {sname}: {} training questions",
            ds.train.len()
        ));
    }
    if let Some(reference) = &pipeline.reference_source {
        if !order.contains(reference) {
            bail!(
                "reference_source = \"{reference}\" is not a source (sources: {})",
                order.join(", ")
            );
        }
        for cells in results.values_mut() {
            if let Some(base) = cells.get(reference).map(|c| c.top1) {
                for c in cells.values_mut() {
                    c.drop_from_reference = Some(c.top1 - base);
                }
            }
        }
    }
    Ok(SourcesOut {
        training_data,
        order,
        reference: pipeline.reference_source.clone(),
        n_train,
        results,
        failed,
    })
}

impl From<Cell> for SourceCell {
    fn from(c: Cell) -> SourceCell {
        SourceCell {
            top1: c.top1,
            top1_ci95: c.top1_ci95,
            top3_vote: c.top3_vote,
            top3_vote_ci95: c.top3_vote_ci95,
            drop_from_reference: None,
        }
    }
}
