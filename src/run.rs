//! `rgd run`: build a pipeline, load its data, train and evaluate every router, write results.

use anyhow::{Context as _, Result};
use rgd_core::eval::{bootstrap_ci, confidence_stats, evaluate, majority_vote, references};
use rgd_core::{Pipeline, Registry, TrainedRouter};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use crate::data::CacheArgs;
use crate::progress::Stage;
use crate::results::{
    Calls, GapClosed, ReferencesOut, RouterFailure, RouterResult, RunResults, report,
};

fn gap(router: f64, best: f64, oracle: f64) -> Option<f64> {
    (oracle - best > 1e-12).then(|| (router - best) / (oracle - best))
}

/// Mean and sample standard deviation.
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, var.sqrt())
}

/// Retrain a router (one with a `seed` field) once per training seed.
fn over_seeds(
    registry: &Registry,
    located: &rgd_core::pipeline::Located,
    seeds: &[u64],
    ds: &rgd_core::Dataset,
    ctx: &rgd_core::Context,
    train_stats: &[rgd_core::stats::LocScale],
) -> Result<Option<crate::results::OverSeeds>> {
    let type_name = located
        .table
        .get("type")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let seeded = registry
        .get(rgd_core::Kind::Router, type_name)
        .is_some_and(|e| e.fields.iter().any(|f| f.name == "seed"));
    if seeds.is_empty() || !seeded {
        return Ok(None);
    }
    let (mut t1, mut t3) = (Vec::new(), Vec::new());
    for &seed in seeds {
        let mut t = located.table.clone();
        t.insert("seed".into(), toml::Value::Integer(seed as i64));
        let router = registry.build_router(t, &located.context)?;
        let scores = router
            .train(&ds.train, &ds.models, ctx)?
            .score_split(&ds.test)?;
        let ev = evaluate(&ds.test, &ds.models, &scores, train_stats);
        t1.push(ev.overall.top1);
        t3.push(ev.overall.top3_vote);
    }
    let ((m1, s1), (m3, s3)) = (mean_sd(&t1), mean_sd(&t3));
    Ok(Some(crate::results::OverSeeds {
        seeds: seeds.to_vec(),
        top1: t1,
        top1_mean: m1,
        top1_sd: s1,
        top3_vote_mean: m3,
        top3_vote_sd: s3,
    }))
}

/// One row per router (and per failed router), for spreadsheets and pandas.
fn csv(r: &RunResults, order: &[String]) -> String {
    let mut s = String::from(
        "router,type,supervision,status,top1,top1_lo,top1_hi,top3_vote,top3_vote_lo,top3_vote_hi,calls_top1,calls_top3,gap_closed_top1,gap_closed_top3,train_s,route_s,aiq\n",
    );
    let f = |x: Option<f64>| x.map(|v| format!("{v:.6}")).unwrap_or_default();
    for name in order {
        if let Some(x) = r.routers.get(name) {
            s.push_str(&format!(
                "{name},{},{},ok,{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{},{},{},{},{:.4},{:.4},{}\n",
                x.type_name,
                x.supervision.label(),
                x.top1,
                x.ci95.top1[0],
                x.ci95.top1[1],
                x.top3_vote,
                x.ci95.top3_vote[0],
                x.ci95.top3_vote[1],
                x.calls_per_query.top1,
                x.calls_per_query.top3_vote,
                f(x.oracle_gap_closed.top1),
                f(x.oracle_gap_closed.top3_vote),
                x.seconds.get("train").copied().unwrap_or(0.0),
                x.seconds.get("route").copied().unwrap_or(0.0),
                f(x.aiq),
            ));
        } else if let Some(x) = r.failed.get(name) {
            s.push_str(&format!("{name},{},,failed,,,,,,,,,,,,,\n", x.type_name));
        }
    }
    s
}

fn write_file(path: &Path, contents: &[u8]) -> Result<()> {
    // write then rename, so an interrupted run never leaves a half-written file
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// The registry plus the pipeline's `plugins = [...]` libraries (those not loaded yet).
pub fn with_plugins(registry: &Registry, pipeline: &Pipeline) -> Result<Registry> {
    let mut r = registry.clone();
    for p in &pipeline.plugins {
        if !rgd_dylib::is_loaded(&r, p) {
            rgd_dylib::load(p, &mut r)
                .with_context(|| format!("{}: plugins", pipeline.path.display()))?;
        }
    }
    Ok(r)
}

/// Run the pipeline at `pipeline_path`, writing `results.json`, `report.md` and the trained
/// routers (`routers/<name>.json`) into `out`.
pub fn run(
    registry: &Registry,
    pipeline_path: &Path,
    out: &Path,
    cache_args: &CacheArgs,
    quiet: bool,
) -> Result<RunResults> {
    let pipeline = Pipeline::from_file(pipeline_path)?;
    let registry = &with_plugins(registry, &pipeline)?;
    let built = pipeline.build(registry, quiet)?;
    let ctx = &built.ctx;
    std::fs::create_dir_all(out.join("routers"))
        .with_context(|| format!("creating {}", out.display()))?;
    if let rgd_core::pipeline::DataSpec::Answered { embedder, .. } = &pipeline.data {
        // `rgd route` embeds queries with the same embedder
        write_file(
            &out.join("routers").join("embedder.toml"),
            toml::to_string(&embedder.table)?.as_bytes(),
        )?;
    }

    let stage = Stage::start("load data", quiet);
    let (mut ds, cache, data_report) =
        crate::data::load(registry, &pipeline, ctx, cache_args, quiet)?;
    ds.validate()?;
    // legal but suspicious data: said even with --quiet
    for w in ds.warnings() {
        eprintln!("warning: {w}");
    }
    let filter_types: Vec<String> = pipeline
        .filters
        .iter()
        .map(|(_, l)| {
            l.table
                .get("type")
                .and_then(|v| v.as_str())
                .unwrap_or("?")
                .to_string()
        })
        .collect();
    let unfiltered_train = (!pipeline.ablate_filters.is_empty()).then(|| ds.train.clone());
    let training = crate::training::process(
        &mut ds,
        data_report,
        &built.filters,
        &filter_types,
        &[],
        ctx,
        out,
    )?;
    let load_seconds = stage.done(&format!(
        "{} training and {} test questions, {} models",
        ds.train.len(),
        ds.test.len(),
        ds.models.len()
    ));
    let refs = references(&ds.test, &ds.models);
    let train_stats = confidence_stats(&ds.train);
    let (best, oracle) = (refs.overall.best_single, refs.overall.oracle);
    let majority = majority_vote(&ds.test, &train_stats);
    let analysis = built
        .costs
        .as_ref()
        .map(|c| crate::costs::Analysis::new(c, &ds, &train_stats))
        .transpose()?;
    let mut cost_seconds = 0.0;
    let mut curves = Vec::new();

    let mut routers = BTreeMap::new();
    let mut failed = BTreeMap::new();
    let order: Vec<String> = built.routers.iter().map(|(n, _)| n.clone()).collect();
    for ((name, router), (_, located)) in built.routers.iter().zip(&pipeline.routers) {
        let type_name = located
            .table
            .get("type")
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_string();
        let stage = Stage::start(format!("router {name}"), quiet);
        let t0 = Instant::now();
        let outcome = router
            .train(&ds.train, &ds.models, ctx)
            .and_then(|trained| {
                let train_s = t0.elapsed().as_secs_f64();
                let t1 = Instant::now();
                let scores = trained.score_split(&ds.test)?;
                Ok((trained, train_s, t1.elapsed().as_secs_f64(), scores))
            });
        match outcome {
            Ok((trained, train_s, route_s, scores)) => {
                let ev = evaluate(&ds.test, &ds.models, &scores, &train_stats);
                let cost = match &analysis {
                    None => None,
                    Some(a) => {
                        let train_scores = trained.score_split(&ds.train)?;
                        let t = Instant::now();
                        let rc = a.router(
                            &ds,
                            router.supervision(),
                            &train_scores,
                            &scores,
                            ev.overall.top3_vote,
                        );
                        cost_seconds += t.elapsed().as_secs_f64();
                        curves.push((name.clone(), rc.curve.clone(), rc.detail.top3_vote));
                        Some(rc)
                    }
                };
                let artifact = out.join("routers").join(format!("{name}.json"));
                let boxed: &dyn TrainedRouter = trained.as_ref();
                let json = serde_json::to_vec(boxed)?;
                write_file(&artifact, &json)?;
                stage.done(&format!(
                    "top-1 {:.1}%, top-3 vote {:.1}%",
                    100.0 * ev.overall.top1,
                    100.0 * ev.overall.top3_vote
                ));
                routers.insert(
                    name.clone(),
                    RouterResult {
                        type_name,
                        supervision: router.supervision(),
                        top1: ev.overall.top1,
                        top3_vote: ev.overall.top3_vote,
                        ci95: crate::results::Ci95 {
                            top1: bootstrap_ci(&ev.top1_correct, 1000, pipeline.seed),
                            top3_vote: bootstrap_ci(&ev.top3_correct, 1000, pipeline.seed),
                        },
                        calls_per_query: Calls {
                            top1: 1,
                            top3_vote: ds.models.len().min(3),
                        },
                        oracle_gap_closed: GapClosed {
                            top1: gap(ev.overall.top1, best, oracle),
                            top3_vote: gap(ev.overall.top3_vote, best, oracle),
                        },
                        seconds: [
                            ("train".to_string(), train_s),
                            ("route".to_string(), route_s),
                        ]
                        .into(),
                        per_subject: ev.per_subject,
                        top1_share: ev.top1_share,
                        artifact: Some(format!("routers/{name}.json")),
                        over_seeds: over_seeds(
                            registry,
                            located,
                            &pipeline.training_seeds,
                            &ds,
                            ctx,
                            &train_stats,
                        )?,
                        aiq: cost.as_ref().map(|c| c.aiq),
                        curve: cost.as_ref().map(|c| c.curve.clone()),
                        cost: cost.map(|c| c.detail),
                    },
                );
            }
            Err(e) => {
                stage.done(&format!("FAILED: {e}"));
                failed.insert(
                    name.clone(),
                    RouterFailure {
                        type_name,
                        error: e.to_string(),
                    },
                );
            }
        }
    }
    let mut ablation = unfiltered_train
        .map(|unfiltered| -> Result<crate::ablation::AblationOut> {
            let stage = Stage::start("filter ablation: main", quiet);
            let mut a = crate::ablation::AblationOut::new(&pipeline.ablate_filters);
            a.add_source(
                "main",
                &unfiltered,
                &ds.test,
                &ds.models,
                &built.routers,
                &built.filters,
                &filter_types,
                &[],
                ctx,
            )?;
            stage.done("retrained every router without each ablated filter");
            Ok(a)
        })
        .transpose()?;
    let sources = if pipeline.sources.is_empty() {
        None
    } else {
        let main: crate::sources::MainResults = routers
            .iter()
            .map(|(n, r)| {
                (
                    n.clone(),
                    crate::sources::MainCell {
                        top1: r.top1,
                        top1_ci95: r.ci95.top1,
                        top3_vote: r.top3_vote,
                        top3_vote_ci95: r.ci95.top3_vote,
                    },
                )
            })
            .collect();
        Some(crate::sources::run_sources(
            registry,
            &pipeline,
            &ds,
            &main,
            &built.routers,
            &built.filters,
            &filter_types,
            ctx,
            cache_args,
            quiet,
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
    if let Some(c) = &costs {
        crate::plot::cost_quality(
            &out.join("cost_quality.svg"),
            &format!("{}: cost and quality", ds.task),
            &curves,
            c,
        )?;
    }
    let results_for_plots: Vec<crate::plot::RouterAcc> = order
        .iter()
        .filter_map(|n| routers.get(n).map(|r: &RouterResult| (n, r)))
        .map(|(n, r)| crate::plot::RouterAcc {
            name: n.clone(),
            top1: (r.top1, r.ci95.top1),
            top3: (r.top3_vote, r.ci95.top3_vote),
        })
        .collect();
    if let Some(src) = &sources {
        crate::plot::sources(
            &out.join("sources.svg"),
            &format!("{}: routers by training source", ds.task),
            src,
            &order,
            refs.overall.best_single,
            refs.overall.oracle,
        )?;
    }
    if !results_for_plots.is_empty() {
        crate::plot::accuracy(
            &out.join("accuracy.svg"),
            &format!("{}: routers on the test split", ds.task),
            &results_for_plots,
            refs.overall.best_single,
            majority,
            refs.overall.oracle,
        )?;
        let mut cols: Vec<String> = results_for_plots.iter().map(|r| r.name.clone()).collect();
        cols.push("hindsight best".into());
        cols.push("oracle".into());
        let rows: Vec<(String, Vec<Option<f64>>)> = refs
            .per_subject
            .iter()
            .map(|(subj, rs)| {
                let mut v: Vec<Option<f64>> = results_for_plots
                    .iter()
                    .map(|r| routers[&r.name].per_subject.get(subj).map(|a| a.top1))
                    .collect();
                v.push(Some(rs.best_single));
                v.push(Some(rs.oracle));
                (subj.clone(), v)
            })
            .collect();
        crate::plot::heatmap(
            &out.join("per_subject.svg"),
            &format!("{}: top-1 accuracy per subject (%)", ds.task),
            &cols,
            &rows,
        )?;
    }
    let results = RunResults {
        rgd_version: env!("CARGO_PKG_VERSION").to_string(),
        pipeline: pipeline.path.display().to_string(),
        task: ds.task.clone(),
        models: ds.models.clone(),
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
            crate::results::Calls2 {
                cache: c.path().display().to_string(),
                cache_hits: hits,
                model_calls: misses,
            }
        }),
    };
    write_file(
        &out.join("results.json"),
        &serde_json::to_vec_pretty(&results)?,
    )?;
    write_file(&out.join("report.md"), report(&results, &order).as_bytes())?;
    write_file(&out.join("results.csv"), csv(&results, &order).as_bytes())?;
    Ok(results)
}
