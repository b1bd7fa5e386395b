//! `rgd bench embed`, `rgd bench cache` and `rgd bench matrix`: embedding, the call cache and
//! loading a response matrix.

#[cfg(feature = "benchmarks")]
use super::time;
use anyhow::Result;
#[cfg(feature = "files")]
use rgd_components::rgd_files;
use std::time::Instant;

/// `rgd bench embed`: MiniLM throughput.
#[derive(clap::Args, Debug, Clone)]
pub struct EmbedBenchArgs {
    /// Questions per batch.
    #[arg(long, default_value_t = 256, value_parser = super::count(1, 10000))]
    pub batch: usize,
    /// Repetitions.
    #[arg(long, default_value_t = 3, value_parser = super::count(1, 100))]
    pub repeats: usize,
    /// `minilm` or `wordllama`.
    #[arg(long, default_value = "minilm")]
    pub embedder: String,
}

/// Questions per second of an embedder on MMLU question texts.
#[cfg(feature = "benchmarks")]
pub fn bench_embed(a: &EmbedBenchArgs) -> Result<()> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let (mut all, _) = rgd_components::rgd_benchmarks::load_all("mmlu")?;
    all.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(7));
    let texts: Vec<&str> = all.iter().take(a.batch).map(|q| q.text.as_str()).collect();
    let registry = rgd_components::registry()?;
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

/// `rgd bench matrix`: write a wide Parquet response matrix, then run a pipeline reading it
/// (best_single only, so the run is the load) and report the run's own load time.
#[cfg(feature = "files")]
pub fn bench_matrix(
    registry: &rgd_core::Registry,
    n: usize,
    models: usize,
    dim: usize,
    repeats: usize,
) -> Result<()> {
    if n * dim > super::MAX_VALUES {
        anyhow::bail!(
            "--questions x --dim = {} embedding values; at most {} fit a bench matrix (1 GB)",
            n * dim,
            super::MAX_VALUES
        );
    }
    // the file's columns as written, then read back into a run's dataset: a few copies of
    // the embeddings and the answers
    rgd_core::memory::check(
        &format!("a matrix of --questions {n} x (--dim {dim} + --models {models})"),
        (n as u64) * (16 * dim as u64 + 48 * models as u64 + 256),
    )?;
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
