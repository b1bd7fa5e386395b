//! Filter ablation (`ablate_filters = [...]`): every router retrained on each training source
//! with all filters, without each named filter, and without all of them — the effect of a
//! filter measured on the routers' test accuracy, not only on how many questions it removed.

use anyhow::Result;
use rgd_core::eval::{confidence_stats, evaluate};
use rgd_core::{Context, Filter, Router, Split};
use serde::Serialize;
use std::collections::BTreeMap;

/// results.json `filter_ablation`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AblationOut {
    /// The filters ablated.
    pub filters: Vec<String>,
    /// Variant names in order (`all filters`, `without NAME`..., `without all`).
    pub variants: Vec<String>,
    /// source -> variant -> training questions left.
    pub n_train: BTreeMap<String, BTreeMap<String, usize>>,
    /// router -> source -> variant -> top-1 on the test split.
    pub top1: BTreeMap<String, BTreeMap<String, BTreeMap<String, f64>>>,
    /// source -> variant -> why it could not be trained (e.g. a filter removed everything).
    pub failed: BTreeMap<String, BTreeMap<String, String>>,
}

impl AblationOut {
    /// An empty table for these filters.
    pub fn new(filters: &[String]) -> AblationOut {
        let mut variants = vec!["all filters".to_string()];
        variants.extend(filters.iter().map(|f| format!("without {f}")));
        if filters.len() > 1 {
            variants.push("without all".into());
        }
        AblationOut {
            filters: filters.to_vec(),
            variants,
            ..Default::default()
        }
    }

    /// Ablate on one source: `unfiltered` is its training split before any filter;
    /// `not_applied` names the filters this source never uses.
    #[allow(clippy::too_many_arguments)]
    pub fn add_source(
        &mut self,
        source: &str,
        unfiltered: &Split,
        test: &Split,
        models: &[String],
        routers: &[(String, Box<dyn Router>)],
        filters: &[(String, Box<dyn Filter>)],
        types: &[String],
        not_applied: &[String],
        ctx: &Context,
    ) -> Result<()> {
        for (v, variant) in self.variants.clone().iter().enumerate() {
            let mut skip: Vec<String> = match v {
                0 => vec![],
                i if i <= self.filters.len() => vec![self.filters[i - 1].clone()],
                _ => self.filters.clone(),
            };
            skip.extend(not_applied.iter().cloned());
            let mut train = unfiltered.clone();
            let quiet = Context {
                quiet: true,
                ..ctx.clone()
            };
            if let Err(e) =
                crate::training::apply_filters(&mut train, models, filters, types, &skip, &quiet)
            {
                self.failed
                    .entry(source.into())
                    .or_default()
                    .insert(variant.clone(), format!("{e:#}"));
                continue;
            }
            self.n_train
                .entry(source.into())
                .or_default()
                .insert(variant.clone(), train.len());
            let stats = confidence_stats(&train);
            for (name, router) in routers {
                let scores = router
                    .train(&train, models, ctx)
                    .and_then(|t| t.score_split(test));
                if let Ok(scores) = scores {
                    let ev = evaluate(test, models, &scores, &stats);
                    self.top1
                        .entry(name.clone())
                        .or_default()
                        .entry(source.into())
                        .or_default()
                        .insert(variant.clone(), ev.overall.top1);
                }
            }
        }
        Ok(())
    }
}
