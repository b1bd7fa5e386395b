//! `rgd bench cascal`: CASCAL's consensus, training and inference times on a simulated world
//! of the size the authors' timings were taken on (14 subjects x 2,000 training questions,
//! 7,000 test queries, 384-d embeddings, 6 models).

use anyhow::Result;
use rgd_core::{Query, TrainedRouter};
use rgd_router_cascal::Cascal;
use rgd_sim::Simulated;
use serde::Serialize;
use std::time::Instant;

/// Bench options.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Subjects.
    #[arg(long, default_value_t = 14)]
    pub subjects: usize,
    /// Training questions per subject.
    #[arg(long, default_value_t = 2000)]
    pub train_per_subject: usize,
    /// Test queries per subject.
    #[arg(long, default_value_t = 500)]
    pub test_per_subject: usize,
    /// Embedding dimension.
    #[arg(long, default_value_t = 384)]
    pub dim: usize,
    /// Pool size.
    #[arg(long, default_value_t = 6)]
    pub models: usize,
    /// Repetitions (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Peak resident memory of this process (VmHWM), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn time<T>(repeats: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed().as_secs_f64());
    }
    (median(times), last.expect("at least one run"))
}

/// Run the benchmark.
pub fn bench_cascal(a: &BenchArgs) -> Result<()> {
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
        peak_rss_mib: peak_rss_mib(),
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
