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
    /// Take the texts from this pipeline's data (its questions, both splits, a seeded sample),
    /// e.g. `examples/mmlu-pro/six-7b.toml`; default: MMLU's questions.
    #[arg(long)]
    pub pipeline: Option<std::path::PathBuf>,
    /// Also embed the same texts with sentence-transformers (PyTorch on the CPU, the same
    /// MiniLM files and threads) run by this Python, which has it installed; print both, their
    /// ratio and the cosine between the two embeddings of each text (`minilm` only).
    #[arg(long)]
    pub against: Option<std::path::PathBuf>,
    /// Threads of both (default: every core).
    #[arg(long, value_parser = super::count(1, 1024))]
    pub threads: Option<usize>,
    /// MiniLM's dense-layer arithmetic, `f32` or `int8`; with `int8` the f32 model embeds the
    /// same texts too, and the speed-up and the cosine between the two vectors of each text
    /// are printed.
    #[arg(long, default_value = "f32", value_parser = ["f32", "int8"])]
    pub precision: String,
    /// With `--pipeline` and `--precision int8`: embed every question of the pipeline's data
    /// (both splits) with f32 and with int8 MiniLM, train and test each of its routers on both,
    /// and print per router the two test accuracies and the share of identical top-1 picks.
    #[arg(long)]
    pub routing: bool,
}

/// A pipeline resolved for a bench, and a silent session with the default cache to load its
/// data through.
#[cfg(feature = "benchmarks")]
fn resolve_quietly(
    registry: &rgd_core::Registry,
    path: &std::path::Path,
) -> Result<(rgd_experiment::Resolved, rgd_experiment::Session)> {
    let r = rgd_experiment::Resolved::from_file(registry, path, true)?;
    let session = rgd_experiment::Session::new(
        rgd_experiment::CacheOptions::default(),
        std::sync::Arc::new(rgd_experiment::Silent),
        true,
    );
    Ok((r, session))
}

/// The `[embedder]` table of a bench's embedder (MiniLM's at `precision`).
#[cfg(feature = "benchmarks")]
fn embedder_table(embedder: &str, precision: &str) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("type".into(), embedder.into());
    if embedder == "minilm" {
        t.insert("precision".into(), precision.into());
    }
    t
}

/// The bench's texts: a seeded sample of `n` questions of the pipeline's data, or of MMLU's.
#[cfg(feature = "benchmarks")]
fn bench_texts(a: &EmbedBenchArgs) -> Result<(String, Vec<String>)> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let (what, mut texts): (String, Vec<String>) = match &a.pipeline {
        Some(p) => {
            let registry = rgd_components::registry()?;
            let (r, session) = resolve_quietly(&registry, p)?;
            let (ds, _, _) = rgd_experiment::run::load_data(&r, &session)?;
            let texts = [&ds.train, &ds.test]
                .into_iter()
                .flat_map(|s| s.questions.iter().map(|q| q.text.clone()))
                .collect();
            (format!("{} questions", ds.task), texts)
        }
        None => {
            let (all, _) = rgd_components::rgd_benchmarks::load_all("mmlu")?;
            (
                "MMLU questions".into(),
                all.into_iter().map(|q| q.text).collect(),
            )
        }
    };
    texts.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(7));
    texts.truncate(a.batch);
    Ok((what, texts))
}

/// Questions per second of an embedder on question texts (and of sentence-transformers on the
/// same texts, with `--against`).
#[cfg(feature = "benchmarks")]
pub fn bench_embed(a: &EmbedBenchArgs) -> Result<()> {
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // the embedder's matrix products run on rayon's pool
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
    if a.precision != "f32" && a.embedder != "minilm" {
        anyhow::bail!("--precision is MiniLM's (`--embedder minilm`)");
    }
    if a.routing {
        return routing_agreement(a);
    }
    let (what, texts) = bench_texts(a)?;
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let registry = rgd_components::registry()?;
    // one timed run of the embedder at a precision: seconds (median) and the vectors
    let run = |precision: &str| -> Result<(f64, ndarray::Array2<f32>)> {
        let e = registry.build_embedder(embedder_table(&a.embedder, precision), "bench")?;
        e.embed(&texts[..1])?; // load
        let (secs, out) = time(a.repeats, || e.embed(&texts));
        let out = out?;
        let label = if a.embedder == "minilm" {
            format!("{} ({precision})", a.embedder)
        } else {
            a.embedder.clone()
        };
        println!(
            "{label}: {} {what} (random sample, seed 7) in {secs:.3} s = {:.0} questions/s ({}-d, median of {}, {threads} threads)",
            texts.len(),
            texts.len() as f64 / secs,
            out.ncols(),
            a.repeats
        );
        Ok((secs, out))
    };
    let (secs, out) = run(&a.precision)?;
    let rgd_rate = texts.len() as f64 / secs;
    if a.precision != "f32" {
        let (f32_secs, reference) = run("f32")?;
        let (min, mean) = cosines(&out, &reference);
        println!(
            "{} / f32: {:.2}x; cosine between their embeddings of each text: min {min:.6}, mean {mean:.6}",
            a.precision,
            f32_secs / secs
        );
    }
    if let Some(python) = &a.against {
        if a.embedder != "minilm" {
            anyhow::bail!(
                "--against compares MiniLM only (sentence-transformers runs all-MiniLM-L6-v2)"
            );
        }
        let model_dir = rgd_assets::file("minilm", "config.json")?
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let request = serde_json::json!({
            "model_dir": model_dir,
            "texts": texts,
            "batch": 32,
            "repeats": a.repeats,
            "threads": threads,
            "max_tokens": 256,
        });
        let reply = run_python(python, include_str!("st_embed.py"), &request)?;
        let st_secs = reply["seconds"]
            .as_f64()
            .filter(|s| s.is_finite() && *s > 0.0)
            .ok_or_else(|| anyhow::anyhow!("{}: the reply has no `seconds`", python.display()))?;
        let st: Vec<Vec<f32>> = serde_json::from_value(reply["embeddings"].clone())
            .map_err(|e| anyhow::anyhow!("{}: the reply's `embeddings`: {e}", python.display()))?;
        if st.len() != texts.len() || st.iter().any(|v| v.len() != out.ncols()) {
            anyhow::bail!(
                "{}: {} embeddings for {} texts",
                python.display(),
                st.len(),
                texts.len()
            );
        }
        let st = ndarray::Array2::from_shape_fn((st.len(), out.ncols()), |(i, j)| st[i][j]);
        let (min, mean) = cosines(&out, &st);
        let st_rate = texts.len() as f64 / st_secs;
        println!(
            "sentence-transformers {} (torch {}): the same texts in {st_secs:.3} s = {st_rate:.0} questions/s (batch 32, median of {}, {threads} threads)",
            reply["versions"]["sentence_transformers"]
                .as_str()
                .unwrap_or("?"),
            reply["versions"]["torch"].as_str().unwrap_or("?"),
            a.repeats
        );
        println!(
            "rgd ({}) / sentence-transformers: {:.2}x; cosine between their embeddings of each text: min {min:.6}, mean {mean:.6}",
            if a.embedder == "minilm" {
                a.precision.as_str()
            } else {
                a.embedder.as_str()
            },
            rgd_rate / st_rate
        );
    }
    Ok(())
}

/// `--routing`: f32 against int8 MiniLM on every question and router of a pipeline.
#[cfg(feature = "benchmarks")]
fn routing_agreement(a: &EmbedBenchArgs) -> Result<()> {
    let (Some(path), "int8") = (&a.pipeline, a.precision.as_str()) else {
        anyhow::bail!(
            "--routing compares f32 with int8 on a pipeline's data: give --pipeline and --precision int8"
        );
    };
    if a.embedder != "minilm" {
        anyhow::bail!("--routing compares MiniLM's precisions (`--embedder minilm`)");
    }
    let registry = rgd_components::registry()?;
    let (r, session) = resolve_quietly(&registry, path)?;
    let open =
        |precision: &str| registry.build_embedder(embedder_table("minilm", precision), "bench");
    let (f32_e, int8_e) = (open("f32")?, open("int8")?);
    let out = rgd_experiment::agreement::compare_embedders(&r, &session, &*f32_e, &*int8_e)?;
    println!(
        "{}: {} questions embedded by f32 MiniLM in {:.1} s and by int8 in {:.1} s ({:.2}x); cosine between the two embeddings of each question: min {:.6}, mean {:.6}",
        path.display(),
        out.questions,
        out.seconds[0],
        out.seconds[1],
        out.seconds[0] / out.seconds[1].max(f64::MIN_POSITIVE),
        out.cosine_min,
        out.cosine_mean
    );
    println!(
        "{:<18} {:>9} {:>9} {:>8} {:>10} {:>22} {:>10} {:>22} {:>10}",
        "router",
        "top-1 f32",
        "int8",
        "diff",
        "same pick",
        "test only: top-1",
        "same pick",
        "f32, other seed: top-1",
        "same pick"
    );
    for x in &out.routers {
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |s| format!("{:.2}%", 100.0 * s));
        let diff = x.top1_other_seed.map_or(String::new(), |t| {
            format!(" ({:+.2})", 100.0 * (t - x.top1_a))
        });
        println!(
            "{:<18} {:>8.2}% {:>8.2}% {:>+7.2} {:>9.1}% {:>22} {:>9.1}% {:>22} {:>10}",
            x.name,
            100.0 * x.top1_a,
            100.0 * x.top1_b,
            100.0 * (x.top1_b - x.top1_a),
            100.0 * x.same_pick,
            format!(
                "{:.2}% ({:+.2})",
                100.0 * x.top1_test_only,
                100.0 * (x.top1_test_only - x.top1_a)
            ),
            100.0 * x.same_pick_test_only,
            format!("{}{diff}", pct(x.top1_other_seed)),
            pct(x.same_pick_other_seed)
        );
    }
    println!(
        "(same pick: share of test questions on which f32 and int8 pick the same model, each router trained on its own precision's vectors; test only: trained on f32's, tested on int8's (its top-1, its change, its share of f32's picks); f32, other seed: the router retrained under another seed on the f32 vectors, its top-1 (its change) and its share of the same picks as under its own seed)"
    );
    for (name, e) in &out.failed {
        println!("{name}: failed: {e}");
    }
    Ok(())
}

/// The least and the mean cosine between the rows of `a` and the same rows of `b`.
#[cfg(feature = "benchmarks")]
fn cosines(a: &ndarray::Array2<f32>, b: &ndarray::Array2<f32>) -> (f64, f64) {
    rgd_experiment::agreement::min_mean(&rgd_experiment::agreement::cosines(a, b))
}

/// Run a Python script with a JSON request on stdin; its JSON reply from stdout.
#[cfg(feature = "benchmarks")]
fn run_python(
    python: &std::path::Path,
    script: &str,
    request: &serde_json::Value,
) -> Result<serde_json::Value> {
    use std::io::Write as _;
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        // the model files are rgd's: no hub is asked for anything, no bar drawn
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env("TRANSFORMERS_VERBOSITY", "error")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(|e| anyhow::anyhow!("--against {}: cannot start it: {e}", python.display()))?;
    let body = serde_json::to_vec(request)?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(&body)
        .map_err(|e| anyhow::anyhow!("--against {}: {e}", python.display()))?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        anyhow::bail!(
            "--against {}: the sentence-transformers run failed ({}); it needs `pip install sentence-transformers`",
            python.display(),
            out.status
        );
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| anyhow::anyhow!("--against {}: its reply is not JSON: {e}", python.display()))
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
