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

fn time<T>(repeats: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], last.expect("at least one run"))
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

/// `rgd bench pool`: the local pool on real MMLU questions.
#[derive(clap::Args, Debug, Clone)]
pub struct PoolBenchArgs {
    /// MMLU questions (sampled across all subjects, seeded).
    #[arg(long, default_value_t = 200)]
    pub questions: usize,
    /// Models (asset names).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "smollm2-135m,gemma3-270m,qwen2.5-coder-0.5b,qwen2.5-coder-1.5b"
    )]
    pub models: Vec<String>,
    /// Call cache (reruns are free; delete it to re-measure speed).
    #[arg(long, default_value = "/tmp/rgd-bench-pool.sqlite")]
    pub cache: std::path::PathBuf,
}

/// Accuracy with and without letter-prior correction, and seconds per question per model.
pub fn bench_pool(a: &PoolBenchArgs) -> Result<()> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let (mut all, _) = rgd_benchmarks::load_all("mmlu")?;
    all.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(7));
    all.truncate(a.questions);
    let cache = rgd_cache::CallCache::open(&a.cache, rgd_cache::CacheMode::ReadWrite)?;
    println!(
        "{} MMLU questions (seed 7), cache {}",
        all.len(),
        a.cache.display()
    );
    println!(
        "| model | accuracy raw | accuracy prior-corrected | s/question | letter most chosen (raw) |"
    );
    println!("|---|---:|---:|---:|---|");
    let mut per_question_total = 0.0;
    for m in &a.models {
        let backend = rgd_backend_llamacpp::LlamaCpp {
            model: m.clone(),
            n_ctx: 2048,
            threads: 0,
            chat_template: true,
            sequences: 1,
        }
        .open()?;
        let mut row = Vec::new();
        let mut secs = 0.0;
        let mut top_letter = String::new();
        for pc in [false, true] {
            let member = rgd_pool::PoolMember {
                name: m.clone(),
                backend: Box::new(rgd_cache::CachedBackend {
                    inner: Box::new(backend.open_again()),
                    cache: cache.clone(),
                }),
                prior_correction: pc,
                mode: Default::default(),
            };
            let (r, _) = rgd_pool::answer(&all, std::slice::from_ref(&member), &mut |_, _, _| {})?;
            let right = (0..all.len())
                .filter(|&i| r.is_correct(i, 0, all[i].answer))
                .count();
            row.push(right as f64 / all.len() as f64);
            if !pc {
                secs = r
                    .latency
                    .as_ref()
                    .map(|l| l.column(0).mean().unwrap_or(0.0))
                    .unwrap_or(0.0);
                let mut counts = std::collections::BTreeMap::new();
                for c in r.choice.column(0).iter().flatten() {
                    *counts.entry(c.to_string()).or_insert(0usize) += 1;
                }
                if let Some((l, n)) = counts.iter().max_by_key(|(_, n)| **n) {
                    top_letter = format!("{l} ({n}/{})", all.len());
                }
            }
        }
        per_question_total += secs;
        println!(
            "| {m} | {:.3} | {:.3} | {:.2} | {top_letter} |",
            row[0], row[1], secs
        );
    }
    println!(
        "one question with all {} models: {:.2} s",
        a.models.len(),
        per_question_total
    );
    Ok(())
}

/// `rgd bench embed`: MiniLM throughput.
#[derive(clap::Args, Debug, Clone)]
pub struct EmbedBenchArgs {
    /// Questions per batch.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Repetitions.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// `minilm` or `wordllama`.
    #[arg(long, default_value = "minilm")]
    pub embedder: String,
}

/// Questions per second of an embedder on MMLU question texts.
pub fn bench_embed(a: &EmbedBenchArgs) -> Result<()> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let (mut all, _) = rgd_benchmarks::load_all("mmlu")?;
    all.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(7));
    let texts: Vec<&str> = all.iter().take(a.batch).map(|q| q.text.as_str()).collect();
    let registry = rgd_core::Registry::builtin()?;
    let mut t = toml::Table::new();
    t.insert("type".into(), a.embedder.clone().into());
    let e = registry.build_embedder(t, "bench")?;
    e.embed(&texts[..1])?; // load
    let (secs, out) = time(a.repeats, || e.embed(&texts));
    let out = out?;
    println!(
        "{}: {} MMLU questions (random sample, seed 7) in {:.3} s = {:.0} questions/s ({}-d, median of {})",
        a.embedder,
        texts.len(),
        secs,
        texts.len() as f64 / secs,
        out.ncols(),
        a.repeats
    );
    Ok(())
}

/// `rgd bench cache`: overhead of a cache hit.
pub fn bench_cache() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("rgd-bench-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let c = rgd_cache::CallCache::open(&dir.join("c.sqlite"), rgd_cache::CacheMode::ReadWrite)?;
    let n = 10_000;
    let req = |i: usize| rgd_core::ScoreRequest {
        messages: vec![rgd_core::Message {
            role: "user".into(),
            content: format!("question {i}: {}", "lorem ipsum ".repeat(40)),
        }],
        n_options: 4,
        answer_prefix: "Answer:".into(),
    };
    for i in 0..n {
        c.call(
            "bench#model",
            "score",
            &req(i),
            |_| Ok(()),
            || {
                Ok(rgd_core::ChoiceScores {
                    logprobs: vec![-1.0, -2.0, -3.0, -4.0],
                    seconds: 0.5,
                })
            },
        )?;
    }
    let reqs: Vec<_> = (0..n).map(req).collect();
    let t = Instant::now();
    for r in &reqs {
        let _: rgd_core::ChoiceScores =
            c.call("bench#model", "score", r, |_| Ok(()), || unreachable!())?;
    }
    let per = t.elapsed().as_secs_f64() / n as f64 * 1e6;
    println!(
        "cache hit (key hash + SQLite lookup + decode), {n} hits on {n} stored calls: {per:.1} us per hit"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `rgd bench cost`: the cost–quality sweep of every registered router on the CASCAL-sized
/// simulated world (14 x 2,000 training questions, 7,000 test queries, 6 models).
#[derive(clap::Args, Debug, Clone)]
pub struct CostBenchArgs {
    /// Parameter values swept per router.
    #[arg(long, default_value_t = 50)]
    pub points: usize,
    /// Repetitions (the median is reported).
    #[arg(long, default_value_t = 3)]
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
            router.supervision(),
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

/// `rgd bench generate`: the `llm` generator on a local model, timed without the cache.
#[derive(clap::Args, Debug, Clone)]
pub struct GenerateBenchArgs {
    /// Generator model (asset name or GGUF path).
    #[arg(long, default_value = "qwen2.5-coder-1.5b")]
    pub model: String,
    /// Descriptions file; the first `--subjects` subjects are used.
    #[arg(long, default_value = "descriptions/mmlu.toml")]
    pub descriptions: std::path::PathBuf,
    /// Subjects.
    #[arg(long, default_value_t = 4)]
    pub subjects: usize,
    /// Calls per subject.
    #[arg(long, default_value_t = 1)]
    pub calls: usize,
    /// Questions asked for per call.
    #[arg(long, default_value_t = 5)]
    pub questions_per_call: usize,
    /// Instead of the generator: a thinking pool member's replies (step by step, then the
    /// letter) to `--questions` MMLU questions, decoded this many together (e.g. 1,4,8,16).
    #[arg(long, value_delimiter = ',')]
    pub sequences: Vec<usize>,
    /// MMLU questions answered with `--sequences` (sampled across all subjects, seeded).
    #[arg(long, default_value_t = 16)]
    pub questions: usize,
    /// Token budget of each reply with `--sequences`.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
}

/// `rgd bench generate --sequences`: the same greedy replies decoded 1, 4, … at a time; tokens/s,
/// the speed-up over the first setting and how many replies equal the first setting's.
fn bench_sequences(a: &GenerateBenchArgs) -> Result<()> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let (mut qs, _) = rgd_benchmarks::load_all("mmlu")?;
    qs.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(7));
    qs.truncate(a.questions);
    let reqs: Vec<rgd_core::GenerateRequest> = qs
        .iter()
        .map(|q| rgd_pool::cot_request(q, a.max_tokens))
        .collect();
    println!(
        "{}: {} MMLU questions (seed 7) answered step by step, greedy, at most {} tokens each",
        a.model,
        reqs.len(),
        a.max_tokens
    );
    println!(
        "| sequences | tokens | seconds | tokens/s | speed-up | replies equal to the first row's |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut first: Option<(f64, Vec<String>)> = None;
    for &n in &a.sequences {
        let backend = rgd_backend_llamacpp::LlamaCpp {
            model: a.model.clone(),
            n_ctx: 4096,
            threads: 0,
            chat_template: true,
            sequences: n.max(1),
        }
        .open()?;
        // load the model outside the timing
        rgd_core::LlmBackend::generate(
            &backend,
            &rgd_core::GenerateRequest {
                max_tokens: 1,
                ..reqs[0].clone()
            },
        )?;
        let t0 = Instant::now();
        let gens = rgd_core::generate_all(&backend, &reqs)
            .into_iter()
            .collect::<rgd_core::Result<Vec<_>>>()?;
        let wall = t0.elapsed().as_secs_f64();
        let tokens: usize = gens.iter().map(|g| g.n_tokens).sum();
        let rate = tokens as f64 / wall;
        let texts: Vec<String> = gens.into_iter().map(|g| g.text).collect();
        let (speedup, equal) = match &first {
            Some((r0, t0)) => (
                rate / r0,
                texts.iter().zip(t0).filter(|(a, b)| a == b).count(),
            ),
            None => (1.0, texts.len()),
        };
        println!(
            "| {n} | {tokens} | {wall:.1} | {rate:.1} | {speedup:.2}x | {equal} of {} |",
            texts.len()
        );
        if first.is_none() {
            first = Some((rate, texts));
        }
    }
    Ok(())
}

/// Generate, then print tokens/s, questions/minute and the parse success rate.
pub fn bench_generate(a: &GenerateBenchArgs) -> Result<()> {
    if !a.sequences.is_empty() {
        return bench_sequences(a);
    }
    let backend = rgd_backend_llamacpp::LlamaCpp {
        model: a.model.clone(),
        n_ctx: 4096,
        threads: 0,
        chat_template: true,
        sequences: 16,
    }
    .open()?;
    let descs = rgd_generator_llm::descriptions::load(&a.descriptions)?;
    let subjects: Vec<rgd_core::SubjectDescription> = descs
        .iter()
        .take(a.subjects)
        .map(|(s, d)| rgd_core::SubjectDescription {
            subject: s.clone(),
            description: d.clone(),
        })
        .collect();
    let g = rgd_generator_llm::LlmGenerator {
        backend: a.model.clone(),
        questions_per_call: a.questions_per_call,
        calls_per_subject: a.calls,
        seed: 1,
        ..Default::default()
    };
    let mut ctx = rgd_core::Context::new(".");
    ctx.quiet = true;
    let t0 = Instant::now();
    let out = g.generate_with(&backend, &subjects, &ctx)?;
    let wall = t0.elapsed().as_secs_f64();
    let mut total = rgd_core::GenerationStats::default();
    for s in out.stats.values() {
        total.add(s);
    }
    println!(
        "generator {} on {} subjects x {} call(s), {} questions asked per call (cache off)",
        a.model,
        subjects.len(),
        a.calls,
        a.questions_per_call
    );
    println!("  tokens generated      {:>8}", total.tokens);
    println!("  seconds (wall)        {wall:>8.1}");
    println!(
        "  tokens/s              {:>8.1}",
        total.tokens as f64 / total.seconds.max(1e-9)
    );
    println!(
        "  questions parsed      {:>8} of {} asked ({} blocks found)",
        total.parsed,
        total.calls * a.questions_per_call,
        total.blocks
    );
    println!(
        "  questions/minute      {:>8.1}",
        total.parsed as f64 / wall * 60.0
    );
    println!(
        "  parse success         {:>7.1}% of blocks ({} replies without a block; dropped: {:?})",
        100.0 * total.parsed as f64 / total.blocks.max(1) as f64,
        total.replies_without_blocks,
        total.dropped
    );
    Ok(())
}

/// `rgd bench matrix`: write a wide Parquet response matrix, then run a pipeline reading it
/// (best_single only, so the run is the load) and report the run's own load time.
fn bench_matrix(
    registry: &rgd_core::Registry,
    n: usize,
    models: usize,
    dim: usize,
    repeats: usize,
) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("matrix.parquet");
    let t0 = Instant::now();
    rgd_files::synth::write_wide_parquet(&file, n, models, dim, 0)?;
    let size = std::fs::metadata(&file)?.len() as f64 / 1e6;
    eprintln!(
        "wrote {} ({size:.1} MB) in {:.2} s",
        file.display(),
        t0.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let table = rgd_files::Table::read(&file, None)?;
    eprintln!(
        "  reading the table alone: {:.3} s ({} rows, {} columns)",
        t.elapsed().as_secs_f64(),
        table.n_rows,
        table.names().len()
    );
    drop(table);
    let toml = "[data]\ntype = \"responses\"\nlayout = \"wide\"\npath = \"matrix.parquet\"\nchoice = \"{model}|choice\"\nconfidence = \"{model}|confidence\"\n\n[routers.best_single]\ntype = \"best_single\"\n";
    let pipeline = dir.path().join("matrix.toml");
    std::fs::write(&pipeline, toml)?;
    let resolved = rgd_experiment::Resolved::from_file(registry, &pipeline, true)?;
    let mut best = f64::INFINITY;
    for i in 0..repeats.max(1) {
        let t = Instant::now();
        let r = rgd_experiment::run(&resolved, &rgd_experiment::Session::default(), None)?;
        eprintln!(
            "  run {}: load {:.3} s, whole run {:.3} s ({} train + {} test questions, {} models)",
            i + 1,
            r.load_seconds,
            t.elapsed().as_secs_f64(),
            r.n_train,
            r.n_test,
            r.models.len()
        );
        best = best.min(r.load_seconds);
    }
    println!(
        "wide Parquet, {n} questions x {models} models, {dim}-d embeddings ({size:.1} MB): load {best:.3} s (best of {repeats})"
    );
    Ok(())
}

/// `rgd bench` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum BenchCmd {
    /// CASCAL consensus, training and inference times on a simulated world.
    Cascal(BenchArgs),
    /// The local pool on real MMLU questions: accuracy (raw and prior-corrected), speed.
    Pool(PoolBenchArgs),
    /// Embedder throughput on MMLU question texts.
    Embed(EmbedBenchArgs),
    /// Overhead of a call-cache hit.
    Cache,
    /// The cost–quality sweep of every router on the CASCAL-sized simulated world.
    Cost(CostBenchArgs),
    /// The `llm` generator on a local model: tokens/s, questions/minute, parse success.
    Generate(GenerateBenchArgs),
    /// Loading a wide Parquet response matrix (written here first) through `rgd run`.
    Matrix {
        /// Questions in the file.
        #[arg(long, default_value_t = 100_000)]
        questions: usize,
        /// Models (columns `m{i}|choice`, `m{i}|confidence`).
        #[arg(long, default_value_t = 10)]
        models: usize,
        /// Embedding dimension stored in the file.
        #[arg(long, default_value_t = 384)]
        dim: usize,
        /// Timed runs (the best is reported).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
    },
    /// Each stage's time and peak memory on simulated worlds of growing training data.
    Scale {
        /// Training questions of each world (14 subjects, 6 models, 384-d, 7,000 test queries).
        #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
        sizes: Vec<usize>,
        /// Router types to run.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "cascal,knn,mlp,best_single"
        )]
        routers: Vec<String>,
    },
}

/// Run the benchmark asked for.
pub fn run(registry: &rgd_core::Registry, what: &BenchCmd) -> Result<()> {
    match what {
        BenchCmd::Cascal(a) => bench_cascal(a),
        BenchCmd::Pool(a) => bench_pool(a),
        BenchCmd::Embed(a) => bench_embed(a),
        BenchCmd::Cache => bench_cache(),
        BenchCmd::Cost(a) => bench_cost(registry, a),
        BenchCmd::Generate(a) => bench_generate(a),
        BenchCmd::Matrix {
            questions,
            models,
            dim,
            repeats,
        } => bench_matrix(registry, *questions, *models, *dim, *repeats),
        BenchCmd::Scale { sizes, routers } => {
            let rows = rgd_experiment::scale::scale(registry, sizes, routers, &mut |r| {
                let top1 = r
                    .top1
                    .map_or(String::new(), |t| format!(", top-1 {:.2} %", 100.0 * t));
                eprintln!(
                    "  {} train, {}: {:.2} s{top1}",
                    r.n_train, r.stage, r.seconds
                )
            })?;
            print!("{}", rgd_experiment::scale::table(&rows));
            Ok(())
        }
    }
}
