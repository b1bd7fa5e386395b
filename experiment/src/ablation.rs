//! Filter ablation (`ablate_filters = [...]`): every router retrained on each training source
//! with all filters, without each named filter, and without all of them — the effect of a
//! filter measured on the routers' test accuracy, not only on how many questions it removed.

use crate::error::Result;
use crate::evaluate::train_and_evaluate;
use crate::resolve::Resolved;
use rgd_core::eval::confidence_stats;
use rgd_core::{Context, Split};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// results.json `filter_ablation`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
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
    /// router -> source -> variant -> why the router failed there.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub router_failed: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>,
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
    /// `not_applied` names the filters this source never uses. A router that fails on a
    /// variant is recorded in `router_failed`.
    pub fn add_source(
        &mut self,
        r: &Resolved,
        source: &str,
        unfiltered: &Split,
        test: &Split,
        models: &[String],
        not_applied: &[String],
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
                ..r.ctx.clone()
            };
            if let Err(e) =
                crate::training::apply_filters(&mut train, models, &r.filters, &skip, &quiet)
            {
                self.failed
                    .entry(source.into())
                    .or_default()
                    .insert(variant.clone(), e.to_string());
                continue;
            }
            self.n_train
                .entry(source.into())
                .or_default()
                .insert(variant.clone(), train.len());
            let stats = confidence_stats(&train);
            for router in &r.routers {
                match train_and_evaluate(
                    router.value.as_ref(),
                    &train,
                    test,
                    models,
                    &stats,
                    &r.ctx,
                ) {
                    Ok(ev) => {
                        self.top1
                            .entry(router.name.clone())
                            .or_default()
                            .entry(source.into())
                            .or_default()
                            .insert(variant.clone(), ev.eval.overall.top1);
                    }
                    Err(e) => {
                        self.router_failed
                            .entry(router.name.clone())
                            .or_default()
                            .entry(source.into())
                            .or_default()
                            .insert(variant.clone(), e.to_string());
                    }
                }
            }
        }
        Ok(())
    }
}
