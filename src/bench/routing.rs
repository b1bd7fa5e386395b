//! `rgd bench cascal` and `rgd bench cost`: CASCAL's consensus, training and inference times on a
//! simulated world of the size the authors' timings were taken on (14 subjects x 2,000 training
//! questions, 7,000 test queries, 384-d embeddings, 6 models), and the cost–quality sweep.

use super::time;
use anyhow::Result;
#[cfg(feature = "routers")]
use rgd_components::rgd_router_cascal::Cascal;
use rgd_components::rgd_sim::Simulated;
#[cfg(feature = "routers")]
use rgd_core::{Query, TrainedRouter};
#[cfg(feature = "routers")]
use serde::Serialize;
use std::time::Instant;

/// Bench options.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Subjects.
    #[arg(long, default_value_t = 14, value_parser = super::count(1, 1000))]
    pub subjects: usize,
    /// Training questions per subject.
    #[arg(long, default_value_t = 2000, value_parser = super::count(1, 1000000))]
    pub train_per_subject: usize,
    /// Test queries per subject.
    #[arg(long, default_value_t = 500, value_parser = super::count(1, 1000000))]
    pub test_per_subject: usize,
    /// Embedding dimension.
    #[arg(long, default_value_t = 384, value_parser = super::count(1, 4096))]
    pub dim: usize,
    /// Pool size.
    #[arg(long, default_value_t = 6, value_parser = super::count(2, 64))]
    pub models: usize,
    /// Repetitions (the median is reported).
    #[arg(long, default_value_t = 5, value_parser = super::count(1, 100))]
    pub repeats: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[cfg(feature = "routers")]
#[derive(Serialize)]
struct BenchOut {
    world: String,
    consensus_train_s: f64,
    consensus_test_s: f64,
    train_s: f64,
    infer_all_s: f64,
    single_query_p50_us: f64,
    single_query_p99_us: f64,
    peak_rss_mib: Option<f64>,
    top1: f64,
    top3_vote: f64,
    best_single: f64,
    oracle: f64,
}

/// Run the benchmark.
#[cfg(feature = "routers")]
pub fn bench_cascal(a: &BenchArgs) -> Result<()> {
    let values = a.subjects * (a.train_per_subject + a.test_per_subject) * a.dim;
    if values > super::MAX_VALUES {
        anyhow::bail!(
            "--subjects x (--train-per-subject + --test-per-subject) x --dim = {values} embedding values; at most {} fit a bench world (1 GB)",
            super::MAX_VALUES
        );
    }
    let sim = Simulated {
        subjects: a.subjects,
        train_per_subject: a.train_per_subject,
        test_per_subject: a.test_per_subject,
        dim: a.dim,
        models: a.models,
        ..Simulated::default()
    };
    let ds = sim.generate()?;
    let cascal = Cascal::default();
    let (c_train, _) = time(a.repeats, || cascal.consensus.compute(&ds.train));
    let (c_test, _) = time(a.repeats, || cascal.consensus.compute(&ds.test));
    let (train_s, trained) = time(a.repeats, || cascal.fit(&ds.train, &ds.models));
    let trained = trained?;
    let (infer_s, scores) = time(a.repeats, || trained.score_split(&ds.test));
    let scores = scores?;
    let mut per = Vec::with_capacity(ds.test.len());
    let mut buf = vec![0.0; ds.models.len()];
    for (i, q) in ds.test.questions.iter().enumerate() {
        let query = Query {
            id: &q.id,
            text: &q.text,
            embedding: ds.test.embedding(i),
        };
        let t = Instant::now();
        trained.score(&query, &mut buf)?;
        per.push(t.elapsed().as_secs_f64() * 1e6);
    }
    per.sort_by(f64::total_cmp);
    let stats = rgd_core::eval::confidence_stats(&ds.train);
    let ev = rgd_core::eval::evaluate(&ds.test, &ds.models, &scores, &stats);
    let refs = rgd_core::eval::references(&ds.test, &ds.models);
    let out = BenchOut {
        world: format!(
            "{} subjects x {} training questions, {} test queries, {}-d, {} models",
            a.subjects,
            a.train_per_subject,
            ds.test.len(),
            a.dim,
            a.models
        ),
        consensus_train_s: c_train,
        consensus_test_s: c_test,
        train_s,
        infer_all_s: infer_s,
        single_query_p50_us: per[per.len() / 2],
        single_query_p99_us: per[(per.len() * 99 / 100).min(per.len() - 1)],
        peak_rss_mib: rgd_experiment::scale::peak_rss_mib(),
        top1: ev.overall.top1,
        top3_vote: ev.overall.top3_vote,
        best_single: refs.overall.best_single,
        oracle: refs.overall.oracle,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "CASCAL benchmark: {} (median of {} runs)",
            out.world, a.repeats
        );
        println!(
            "  consensus (train split)     {:>9.4} s",
            out.consensus_train_s
        );
        println!(
            "  consensus (test split)      {:>9.4} s",
            out.consensus_test_s
        );
        println!("  training (incl. consensus)  {:>9.4} s", out.train_s);
        println!("  inference, all test queries {:>9.4} s", out.infer_all_s);
        println!(
            "  single query p50 / p99      {:>9.2} / {:.2} us",
            out.single_query_p50_us, out.single_query_p99_us
        );
        if let Some(m) = out.peak_rss_mib {
            println!("  peak memory (VmHWM)         {m:>9.1} MiB");
        }
        println!(
            "  accuracy: top-1 {:.3}, top-3 vote {:.3} (best single {:.3}, oracle {:.3})",
            out.top1, out.top3_vote, out.best_single, out.oracle
        );
    }
    Ok(())
}

/// `rgd bench cost`: the cost–quality sweep of every registered router on the CASCAL-sized
/// simulated world (14 x 2,000 training questions, 7,000 test queries, 6 models).
#[derive(clap::Args, Debug, Clone)]
pub struct CostBenchArgs {
    /// Parameter values swept per router.
    #[arg(long, default_value_t = 50, value_parser = super::count(2, 100000))]
    pub points: usize,
    /// Repetitions (the median is reported).
    #[arg(long, default_value_t = 3, value_parser = super::count(1, 100))]
    pub repeats: usize,
}

/// Train every router once, then time the sweep (test curve + training calibration) of all
/// of them together, and the cascade; routing (scoring) is excluded and reported apart.
pub fn bench_cost(registry: &rgd_core::Registry, a: &CostBenchArgs) -> Result<()> {
    let sim = Simulated {
        subjects: 14,
        train_per_subject: 2000,
        test_per_subject: 500,
        dim: 384,
        models: 6,
        seconds_per_question: vec![0.2, 0.35, 0.5, 0.8, 1.2, 2.0],
        ..Simulated::default()
    };
    let ds = sim.generate()?;
    let stats = rgd_core::eval::confidence_stats(&ds.train);
    let mut table = toml::Table::new();
    table.insert("from".into(), "latency".into());
    table.insert("points".into(), (a.points as i64).into());
    table.insert("budget".into(), 0.6.into());
    // the sweep alone is timed: the routers' in-sample training scores (no fold retraining)
    table.insert("calibrate_scores".into(), "in_sample".into());
    let settings = rgd_experiment::cost::CostSettings::parse(&table, "bench [costs]")?;
    let analysis = rgd_experiment::costs::Analysis::new(&settings, &ds, &stats, 0)?;
    let mut ctx = rgd_core::Context::new(".");
    ctx.quiet = true;
    let mut scored = Vec::new();
    let mut score_s = 0.0;
    for e in registry.entries(rgd_core::Kind::Router) {
        let mut t = toml::Table::new();
        t.insert("type".into(), e.type_name.clone().into());
        let router = registry.build_router(t, &e.type_name)?;
        let ev = match rgd_experiment::evaluate::on_dataset(router.as_ref(), &ds, &stats, &ctx) {
            Ok(ev) => ev,
            Err(err) => {
                println!("  {} skipped: {err}", e.type_name);
                continue;
            }
        };
        let t0 = Instant::now();
        let train_scores = ev.trained.score_split(&ds.train)?;
        score_s += t0.elapsed().as_secs_f64() + ev.route_seconds;
        scored.push((
            e.type_name.clone(),
            ctx.supervision_of(router.as_ref()),
            train_scores,
            ev.scores,
            ev.eval.overall.top3_vote,
        ));
    }
    let refs = rgd_core::eval::references(&ds.test, &ds.models);
    let (sweep_s, out) = time(a.repeats, || {
        let per: Vec<(String, f64)> = scored
            .iter()
            .map(|(n, sup, tr, te, t3)| {
                (
                    n.clone(),
                    analysis.router(&ds, *sup, (tr, String::new()), te, *t3).aiq,
                )
            })
            .collect();
        let g = analysis.global(
            &ds,
            &stats,
            refs.overall.oracle,
            refs.overall.oracle_if_independent,
            0.0,
        );
        (per, g.cascade.1.aiq, g.zero_router.0)
    });
    println!(
        "cost sweep: {} routers x {} parameter values (test curve + calibration on {} training questions), {} test queries, 6 models; median of {}",
        scored.len(),
        a.points,
        ds.train.len(),
        ds.test.len(),
        a.repeats
    );
    println!("  all routers + cascade + zero router   {sweep_s:>8.3} s");
    println!("  (routing the train and test splits     {score_s:>8.3} s, excluded)");
    for (n, aiq) in &out.0 {
        println!("  AIQ {n:<14} {aiq:.3}");
    }
    println!("  AIQ {:<14} {:.3}", "cascade", out.1);
    println!("  AIQ {:<14} {:.3}", "zero router", out.2);
    Ok(())
}
