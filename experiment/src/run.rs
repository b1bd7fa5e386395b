//! A whole run: load the data, process the training data, train and evaluate every router
//! (with training seeds, the cost analysis, training sources and the filter ablation) and
//! gather the typed results.

use crate::ablation::AblationOut;
use crate::costs::Analysis;
use crate::error::Result;
use crate::evaluate::{Cell, Evaluated, mean_sd, on_dataset};
use crate::resolve::{Named, Resolved};
use crate::results::{
    Calls, Calls2, Ci95, GapClosed, OverSeeds, PairedDiff, ReferencesOut, RouterFailure,
    RouterResult, RunResults,
};
use crate::session::Session;
use rgd_core::eval::{confidence_stats, majority_vote, references};
use rgd_core::pipeline::DataSpec;
use rgd_core::stats::LocScale;
use rgd_core::{Dataset, Router};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

fn gap(router: f64, best: f64, oracle: f64) -> Option<f64> {
    (oracle - best > 1e-12).then(|| (router - best) / (oracle - best))
}

/// Retrain a router (one with a `seed` field) once per training seed.
fn over_seeds(
    r: &Resolved,
    router: &Named<Box<dyn Router>>,
    ds: &Dataset,
    train_stats: &[LocScale],
) -> Result<Option<OverSeeds>> {
    let seeds = &r.pipeline.training_seeds;
    if seeds.is_empty() || !r.is_seeded(router) {
        return Ok(None);
    }
    let (mut t1, mut t3) = (Vec::new(), Vec::new());
    for &seed in seeds {
        let seeded = r.router_with_seed(router, seed)?;
        let ev = on_dataset(seeded.as_ref(), ds, train_stats, &r.ctx)?;
        t1.push(ev.eval.overall.top1);
        t3.push(ev.eval.overall.top3_vote);
    }
    let ((m1, s1), (m3, s3)) = (mean_sd(&t1), mean_sd(&t3));
    Ok(Some(OverSeeds {
        seeds: seeds.to_vec(),
        top1: t1,
        top1_mean: m1,
        top1_sd: s1,
        top3_vote_mean: m3,
        top3_vote_sd: s3,
    }))
}

/// Load the pipeline's data (a data source, or questions answered by the pool), validate it
/// and report legal but suspicious data through the session's progress.
pub fn load_data(
    r: &Resolved,
    session: &Session,
) -> Result<(
    Dataset,
    Option<rgd_cache::CallCache>,
    crate::data::DataReport,
)> {
    let (ds, cache, report) = crate::data::load(
        &r.registry,
        &r.pipeline,
        &r.ctx,
        session,
        r.generator.as_deref(),
    )?;
    ds.validate()?;
    Ok((ds, cache, report))
}

/// Run the resolved pipeline. With `out`, the trained routers (`out/routers/NAME.json`, plus
/// `embedder.toml`), the generated questions and the sources' training data are written
/// there; results, report and plots are the caller's to write.
pub fn run(r: &Resolved, session: &Session, out: Option<&Path>) -> Result<RunResults> {
    r.check()?;
    let pipeline = &r.pipeline;
    let ctx = &r.ctx;
    let routers_dir = out.map(|o| o.join("routers"));
    let embedder = match &pipeline.data {
        DataSpec::Answered { embedder, .. } => Some(embedder),
        DataSpec::Source { embedder, .. } => embedder.as_ref(),
    };
    if let (Some(dir), Some(embedder)) = (&routers_dir, embedder) {
        // `rgd route` embeds queries with the same embedder
        crate::artifact::save_embedder(dir, &embedder.table)?;
    } else if let Some(dir) = &routers_dir {
        std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
    }

    let stage = session.stage("load data");
    let (mut ds, cache, data_report) = load_data(r, session)?;
    // what the components said while loading (already shown), then the dataset's own checks
    let mut warnings = data_report.warnings.clone();
    for w in ds.warnings() {
        session.warn(&w);
        warnings.push(w);
    }
    let unfiltered_train = (!pipeline.ablate_filters.is_empty()).then(|| ds.train.clone());
    let training = crate::training::process(&mut ds, data_report, &r.filters, &[], ctx, out)?;
    let load_seconds = stage.done(&format!(
        "{} training and {} test questions, {} models",
        ds.train.len(),
        ds.test.len(),
        ds.models.len()
    ));
    let refs = references(&ds.test, &ds.models);
    let train_stats = confidence_stats(&ds.train);
    let (best, oracle) = (refs.overall.best_single, refs.overall.oracle);
    // the best single model's correctness per test question, for paired comparisons
    let best_correct: Option<Vec<bool>> = ds
        .models
        .iter()
        .position(|m| *m == refs.overall.best_single_model)
        .map(|j| {
            (0..ds.test.len())
                .map(|q| {
                    ds.test
                        .responses
                        .is_correct(q, j, ds.test.questions[q].answer)
                })
                .collect()
        });
    let majority = majority_vote(&ds.test, &train_stats);
    let analysis = r
        .costs
        .as_ref()
        .map(|c| Analysis::new(c, &ds, &train_stats, pipeline.seed))
        .transpose()?;
    let mut cost_seconds = 0.0;

    let mut routers = BTreeMap::new();
    let mut failed = BTreeMap::new();
    for router in &r.routers {
        ctx.check_interrupt()?;
        let name = &router.name;
        let stage = session.stage(format!("router {name}"));
        let outcome = on_dataset(router.value.as_ref(), &ds, &train_stats, ctx);
        let ev: Evaluated = match outcome {
            Ok(ev) => ev,
            Err(rgd_core::Error::Interrupted) => return Err(rgd_core::Error::Interrupted.into()),
            Err(e) => {
                stage.done(&format!("FAILED: {e}"));
                failed.insert(
                    name.clone(),
                    RouterFailure {
                        type_name: router.type_name.clone(),
                        error: e.to_string(),
                    },
                );
                continue;
            }
        };
        let cost = match &analysis {
            None => None,
            Some(a) => {
                let t = Instant::now();
                let (train_scores, scored) =
                    a.training_scores(router.value.as_ref(), ev.trained.as_ref(), &ds, ctx)?;
                let rc = a.router(
                    &ds,
                    router.value.supervision(),
                    (&train_scores, scored),
                    &ev.scores,
                    ev.eval.overall.top3_vote,
                );
                cost_seconds += t.elapsed().as_secs_f64();
                Some(rc)
            }
        };
        if let Some(dir) = &routers_dir {
            crate::artifact::save_router(dir, name, ev.trained.as_ref())?;
        }
        stage.done(&format!(
            "top-1 {:.1}%, top-3 vote {:.1}%",
            100.0 * ev.eval.overall.top1,
            100.0 * ev.eval.overall.top3_vote
        ));
        let cell = ev.cell(pipeline.seed);
        let overall = &ev.eval.overall;
        routers.insert(
            name.clone(),
            RouterResult {
                type_name: router.type_name.clone(),
                supervision: router.value.supervision(),
                top1: overall.top1,
                top3_vote: overall.top3_vote,
                ci95: Ci95 {
                    top1: cell.top1_ci95,
                    top3_vote: cell.top3_vote_ci95,
                },
                calls_per_query: Calls {
                    top1: 1,
                    top3_vote: ds.models.len().min(3),
                },
                oracle_gap_closed: GapClosed {
                    top1: gap(overall.top1, best, oracle),
                    top3_vote: gap(overall.top3_vote, best, oracle),
                },
                vs_best_single: best_correct.as_ref().map(|b| PairedDiff {
                    model: refs.overall.best_single_model.clone(),
                    top1: overall.top1 - best,
                    top1_ci95: rgd_core::eval::paired_bootstrap_ci(
                        &ev.eval.top1_correct,
                        b,
                        1000,
                        pipeline.seed,
                    ),
                }),
                seconds: [
                    ("train".to_string(), ev.train_seconds),
                    ("route".to_string(), ev.route_seconds),
                ]
                .into(),
                per_subject: ev.eval.per_subject.clone(),
                top1_share: ev.eval.top1_share.clone(),
                artifact: routers_dir.as_ref().map(|_| format!("routers/{name}.json")),
                over_seeds: over_seeds(r, router, &ds, &train_stats)?,
                aiq: cost.as_ref().map(|c| c.aiq),
                curve: cost.as_ref().map(|c| c.curve.clone()),
                cost: cost.map(|c| c.detail),
            },
        );
    }
    ctx.check_interrupt()?;
    let mut ablation = unfiltered_train
        .map(|unfiltered| -> Result<AblationOut> {
            let stage = session.stage("filter ablation: main");
            let mut a = AblationOut::new(&pipeline.ablate_filters);
            a.add_source(r, "main", &unfiltered, &ds.test, &ds.models, &[])?;
            stage.done("retrained every router without each ablated filter");
            Ok(a)
        })
        .transpose()?;
    let sources = if pipeline.sources.is_empty() {
        None
    } else {
        let main: BTreeMap<String, Cell> = routers
            .iter()
            .map(|(n, x)| {
                (
                    n.clone(),
                    Cell {
                        top1: x.top1,
                        top1_ci95: x.ci95.top1,
                        top3_vote: x.top3_vote,
                        top3_vote_ci95: x.ci95.top3_vote,
                    },
                )
            })
            .collect();
        Some(crate::sources::run_sources(
            r,
            session,
            &ds,
            &main,
            out,
            ablation.as_mut(),
        )?)
    };
    let costs = analysis.map(|a| {
        let t = Instant::now();
        let mut g = a.global(
            &ds,
            &train_stats,
            refs.overall.oracle,
            refs.overall.oracle_if_independent,
            0.0,
        );
        g.seconds = cost_seconds + t.elapsed().as_secs_f64();
        g
    });
    Ok(RunResults {
        rgd_version: env!("CARGO_PKG_VERSION").to_string(),
        pipeline: pipeline.path.display().to_string(),
        task: ds.task.clone(),
        models: ds.models.clone(),
        order: r.routers.iter().map(|x| x.name.clone()).collect(),
        n_train: ds.train.len(),
        n_test: ds.test.len(),
        routers,
        failed,
        references: ReferencesOut {
            best_single: refs.overall.best_single,
            best_single_model: refs.overall.best_single_model.clone(),
            oracle: refs.overall.oracle,
            oracle_if_independent: refs.overall.oracle_if_independent,
            random: refs.overall.random,
            majority_vote: majority,
            single: refs.overall.single.clone(),
            per_subject: refs.per_subject.clone(),
        },
        load_seconds,
        training_data: training,
        sources,
        filter_ablation: ablation,
        costs,
        call_failures: [&ds.train, &ds.test]
            .into_iter()
            .filter(|sp| !sp.call_failures.is_empty())
            .map(|sp| (sp.name.clone(), sp.call_failures.clone()))
            .collect(),
        calls: cache.map(|c| {
            let (hits, misses) = c.stats();
            Calls2 {
                cache: c.path().display().to_string(),
                cache_hits: hits,
                model_calls: misses,
            }
        }),
        warnings,
    })
}
