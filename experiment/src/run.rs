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
use std::path::{Path, PathBuf};
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

/// Where a run writes its trained routers (`out/routers`, with the embedder `rgd route` uses).
fn prepare_outputs(r: &Resolved, out: Option<&Path>) -> Result<Option<PathBuf>> {
    let routers_dir = out.map(|o| o.join("routers"));
    let embedder = match &r.pipeline.data {
        DataSpec::Answered { embedder, .. } => Some(embedder),
        DataSpec::Source { embedder, .. } => embedder.as_ref(),
    };
    if let (Some(dir), Some(embedder)) = (&routers_dir, embedder) {
        // `rgd route` embeds queries with the same embedder
        crate::artifact::save_embedder(dir, &embedder.table)?;
    } else if let Some(dir) = &routers_dir {
        std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
    }
    Ok(routers_dir)
}

/// The data stage's output: the dataset after the training-data filters, and what was said
/// about it.
struct Loaded {
    ds: Dataset,
    cache: Option<rgd_cache::CallCache>,
    warnings: Vec<String>,
    /// The training split before the filters, when the pipeline ablates some.
    unfiltered_train: Option<rgd_core::Split>,
    training: crate::training::TrainingData,
    load_seconds: f64,
}

/// Load the data, show its warnings, and process the training data (filters, diagnostics).
fn load_stage(r: &Resolved, session: &Session, out: Option<&Path>) -> Result<Loaded> {
    let stage = session.stage("load data");
    let (mut ds, cache, data_report) = load_data(r, session)?;
    check_subjects(r, &ds)?;
    // what the components said while loading (already shown), then the dataset's own checks
    let mut warnings = data_report.warnings.clone();
    for w in ds.warnings() {
        session.warn(&w);
        warnings.push(w);
    }
    let unfiltered_train = (!r.pipeline.ablate_filters.is_empty()).then(|| ds.train.clone());
    let training = crate::training::process(&mut ds, data_report, &r.filters, &[], &r.ctx, out)?;
    let load_seconds = stage.done(&format!(
        "{} training and {} test questions, {} models",
        ds.train.len(),
        ds.test.len(),
        ds.models.len()
    ));
    Ok(Loaded {
        ds,
        cache,
        warnings,
        unfiltered_train,
        training,
        load_seconds,
    })
}

/// Train and test splits with no subject in common are an error unless the pipeline says so
/// (`disjoint_subjects = true`): usually a subject column that was not read (the file names
/// as subjects), and every per-subject router then trains on the wrong structure.
fn check_subjects(r: &Resolved, ds: &Dataset) -> Result<()> {
    let (shared, unseen) = ds.subject_overlap();
    if shared == 0 && !ds.train.is_empty() && !unseen.is_empty() && !r.pipeline.disjoint_subjects {
        let train: Vec<String> = ds.train.subjects().into_iter().map(String::from).collect();
        crate::error::bail!(
            "{}: the training and test splits share no subject (training: {}; test: {}). If the data has a subject column, name it (`subject = \"...\"` in [data]); to route to subjects never trained on, set `disjoint_subjects = true` at the top of the pipeline",
            r.pipeline.path.display(),
            rgd_core::data::name_list(&train),
            rgd_core::data::name_list(&unseen)
        );
    }
    Ok(())
}

/// What every router is compared against on the test split, computed once.
struct Baselines {
    refs: rgd_core::eval::References,
    train_stats: Vec<LocScale>,
    /// The best single model's correctness per test question, for paired comparisons.
    best_correct: Option<Vec<bool>>,
    majority: f64,
    analysis: Option<Analysis>,
}

fn baselines(r: &Resolved, ds: &Dataset) -> Result<Baselines> {
    let refs = references(&ds.test, &ds.models);
    let train_stats = confidence_stats(&ds.train);
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
        .map(|c| Analysis::new(c, ds, &train_stats, r.pipeline.seed))
        .transpose()?;
    Ok(Baselines {
        refs,
        train_stats,
        best_correct,
        majority,
        analysis,
    })
}

/// Before any training: every router's labeler must find what it reads in the training data
/// (a key, the pool's letters). Those that cannot, by router name, with an error naming the
/// router and the labeler: they are reported failed without training; the others run.
fn check_labelers(r: &Resolved, ds: &Dataset) -> Result<BTreeMap<String, String>> {
    let mut refused = BTreeMap::new();
    for router in &r.routers {
        let Some(name) = router.value.labels() else {
            continue;
        };
        if let Err(msg) = r.ctx.labeler(name)?.needs().check(&ds.train) {
            refused.insert(
                router.name.clone(),
                format!(
                    "[routers.{}] (type `{}`) learns from labeler `{name}`, and {msg}",
                    router.name, router.type_name
                ),
            );
        }
    }
    Ok(refused)
}

/// How well the labels of each labeler the routers learn from agree with the key, on the
/// training and test splits that have one (a labeler that fails is left out: the routers
/// that learn from it fail, naming it).
fn label_quality(r: &Resolved, ds: &Dataset) -> Result<Vec<rgd_core::LabelQuality>> {
    let mut names: Vec<&str> = Vec::new();
    for router in &r.routers {
        if let Some(n) = router.value.labels()
            && !names.contains(&n)
        {
            names.push(n);
        }
    }
    let mut out = Vec::new();
    for name in names {
        for split in [&ds.train, &ds.test] {
            let labeler = r.ctx.labeler(name)?;
            if labeler.needs().check(split).is_err() {
                continue;
            }
            // a labeler that fails here fails its routers too, which report why
            if let Ok(labels) = r.ctx.labels(name, split) {
                out.extend(rgd_core::labels::quality(&labels, split, name));
            }
        }
    }
    Ok(out)
}

/// Train and evaluate one router (its cost analysis, artifact and training seeds included):
/// its result, or why it failed. `cost_seconds` adds the time of its cost analysis.
fn router_stage(
    r: &Resolved,
    session: &Session,
    router: &Named<Box<dyn Router>>,
    ds: &Dataset,
    b: &Baselines,
    routers_dir: Option<&Path>,
    cost_seconds: &mut f64,
) -> Result<std::result::Result<RouterResult, RouterFailure>> {
    let (ctx, seed) = (&r.ctx, r.pipeline.seed);
    let name = &router.name;
    let stage = session.stage(format!("router {name}"));
    let ev: Evaluated = match on_dataset(router.value.as_ref(), ds, &b.train_stats, ctx) {
        Ok(ev) => ev,
        Err(rgd_core::Error::Interrupted) => return Err(rgd_core::Error::Interrupted.into()),
        Err(e) => {
            stage.done(&format!("FAILED: {e}"));
            return Ok(Err(RouterFailure {
                type_name: router.type_name.clone(),
                error: e.to_string(),
            }));
        }
    };
    let cost = match &b.analysis {
        None => None,
        Some(a) => {
            let t = Instant::now();
            let (train_scores, scored) =
                a.training_scores(router.value.as_ref(), ev.trained.as_ref(), ds, ctx)?;
            let rc = a.router(
                ds,
                ctx.supervision_of(router.value.as_ref()),
                (&train_scores, scored),
                &ev.scores,
                ev.eval.overall.top3_vote,
            );
            *cost_seconds += t.elapsed().as_secs_f64();
            Some(rc)
        }
    };
    if let Some(dir) = routers_dir {
        crate::artifact::save_router(dir, name, ev.trained.as_ref())?;
    }
    stage.done(&format!(
        "top-1 {:.1}%, top-3 vote {:.1}%",
        100.0 * ev.eval.overall.top1,
        100.0 * ev.eval.overall.top3_vote
    ));
    let cell = ev.cell(seed);
    let overall = &ev.eval.overall;
    let (best, oracle) = (b.refs.overall.best_single, b.refs.overall.oracle);
    Ok(Ok(RouterResult {
        type_name: router.type_name.clone(),
        supervision: ctx.supervision_of(router.value.as_ref()),
        labels: router.value.labels().map(str::to_string),
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
        vs_best_single: b.best_correct.as_ref().map(|bc| PairedDiff {
            model: b.refs.overall.best_single_model.clone(),
            top1: overall.top1 - best,
            top1_ci95: rgd_core::eval::paired_bootstrap_ci(&ev.eval.top1_correct, bc, 1000, seed),
        }),
        seconds: [
            ("train".to_string(), ev.train_seconds),
            ("route".to_string(), ev.route_seconds),
        ]
        .into(),
        per_subject: ev.eval.per_subject.clone(),
        top1_share: ev.eval.top1_share.clone(),
        artifact: routers_dir.map(|_| format!("routers/{name}.json")),
        over_seeds: over_seeds(r, router, ds, &b.train_stats)?,
        aiq: cost.as_ref().map(|c| c.aiq),
        curve: cost.as_ref().map(|c| c.curve.clone()),
        cost: cost.map(|c| c.detail),
    }))
}

/// The training sources (`[sources.NAME]`) side by side with the main one.
fn sources_stage(
    r: &Resolved,
    session: &Session,
    ds: &Dataset,
    routers: &BTreeMap<String, RouterResult>,
    out: Option<&Path>,
    ablation: Option<&mut AblationOut>,
) -> Result<Option<crate::sources::SourcesOut>> {
    if r.pipeline.sources.is_empty() {
        return Ok(None);
    }
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
    Ok(Some(crate::sources::run_sources(
        r, session, ds, &main, out, ablation,
    )?))
}

/// The label of the routers' progress items.
const ROUTERS_STEP: &str = "routers trained and tested";

/// Run the resolved pipeline. With `out`, the trained routers (`out/routers/NAME.json`, plus
/// `embedder.toml`), the generated questions and the sources' training data are written
/// there; results, report and plots are the caller's to write. The stages, in order: outputs,
/// data, baselines, each router, the filter ablation, the training sources, the cost analysis.
pub fn run(r: &Resolved, session: &Session, out: Option<&Path>) -> Result<RunResults> {
    r.check()?;
    let pipeline = &r.pipeline;
    let routers_dir = prepare_outputs(r, out)?;
    let loaded = load_stage(r, session, out)?;
    let ds = &loaded.ds;
    let refused = check_labelers(r, ds)?;
    for msg in refused.values() {
        session.warn(msg);
    }
    let label_quality = label_quality(r, ds)?;
    let b = baselines(r, ds)?;

    let mut cost_seconds = 0.0;
    let mut routers = BTreeMap::new();
    let mut failed = BTreeMap::new();
    // the routers are the run's other long step (beside model calls): a bar where one is shown
    let n_routers = r.routers.len();
    for (i, router) in r.routers.iter().enumerate() {
        session.progress().items(ROUTERS_STEP, i, n_routers);
        r.ctx.check_interrupt()?;
        if let Some(msg) = refused.get(&router.name) {
            failed.insert(
                router.name.clone(),
                RouterFailure {
                    type_name: router.type_name.clone(),
                    error: msg.clone(),
                },
            );
            continue;
        }
        match router_stage(
            r,
            session,
            router,
            ds,
            &b,
            routers_dir.as_deref(),
            &mut cost_seconds,
        )? {
            Ok(result) => {
                routers.insert(router.name.clone(), result);
            }
            Err(failure) => {
                failed.insert(router.name.clone(), failure);
            }
        }
    }
    session.progress().items(ROUTERS_STEP, n_routers, n_routers);
    session.progress().items_done();
    r.ctx.check_interrupt()?;
    let mut ablation = loaded
        .unfiltered_train
        .as_ref()
        .map(|unfiltered| -> Result<AblationOut> {
            let stage = session.stage("filter ablation: main");
            let mut a = AblationOut::new(&pipeline.ablate_filters);
            a.add_source(r, "main", unfiltered, &ds.test, &ds.models, &[])?;
            stage.done("retrained every router without each ablated filter");
            Ok(a)
        })
        .transpose()?;
    let sources = sources_stage(r, session, ds, &routers, out, ablation.as_mut())?;
    let refs = &b.refs;
    let costs = b.analysis.as_ref().map(|a| {
        let t = Instant::now();
        let mut g = a.global(
            ds,
            &b.train_stats,
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
            majority_vote: b.majority,
            single: refs.overall.single.clone(),
            per_subject: refs.per_subject.clone(),
        },
        load_seconds: loaded.load_seconds,
        training_data: loaded.training,
        sources,
        filter_ablation: ablation,
        costs,
        call_failures: [&ds.train, &ds.test]
            .into_iter()
            .filter(|sp| !sp.call_failures.is_empty())
            .map(|sp| (sp.name.clone(), sp.call_failures.clone()))
            .collect(),
        calls: loaded.cache.map(|c| {
            let (hits, misses) = c.stats();
            Calls2 {
                cache: c.path().display().to_string(),
                cache_hits: hits,
                model_calls: misses,
            }
        }),
        warnings: loaded.warnings,
        label_quality,
    })
}
